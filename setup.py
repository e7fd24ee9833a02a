"""Build hook: ship the CUDA kernels inside the package.

The kernels live in the top-level ``cuda/`` folder of the checkout (``cuda/*.cu`` and the headers
they include, ``cuda/*.cuh``); a built wheel carries them as ``confnet/cuda/``, which is where
``confnet.gpu.backend.kernel_dir()`` looks first in an installed package. All metadata stays in
pyproject.toml; this file only adds the copy step. An editable install (``pip install -e .``)
copies nothing: there ``kernel_dir()`` finds the checkout's ``cuda/`` folder itself.
"""

import glob
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

KERNEL_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda")
KERNEL_PATTERNS = ("*.cu", "*.cuh")


def kernel_files():
    """The kernel sources to ship, sorted: cuda/*.cu and cuda/*.cuh of the checkout."""
    return sorted(path for pattern in KERNEL_PATTERNS
                  for path in glob.glob(os.path.join(KERNEL_SOURCE, pattern)))


class BuildPyWithKernels(build_py):
    """build_py that also copies cuda/*.cu, cuda/*.cuh into <build_lib>/confnet/cuda."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = os.path.join(self.build_lib, "confnet", "cuda")
        # Start from an empty folder: a kernel deleted from cuda/ must not live on in a wheel
        # through the build folder of an earlier run.
        shutil.rmtree(target, ignore_errors=True)
        os.makedirs(target)
        for path in kernel_files():
            shutil.copy2(path, target)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outputs
        target = os.path.join(self.build_lib, "confnet", "cuda")
        return outputs + [os.path.join(target, os.path.basename(p)) for p in kernel_files()]


setup(cmdclass={"build_py": BuildPyWithKernels})
