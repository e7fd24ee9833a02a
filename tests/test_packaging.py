"""The build hook in setup.py ships the CUDA kernels inside the package as confnet/cuda."""

import os
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("setuptools")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _project_copy(tmp_path):
    """The files a build reads, copied beside a cuda/ folder with known content."""
    for name in ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy(os.path.join(ROOT, name), tmp_path / name)
    shutil.copytree(os.path.join(ROOT, "confnet"), tmp_path / "confnet",
                    ignore=shutil.ignore_patterns("__pycache__", "cuda"))
    kernels = tmp_path / "cuda"
    kernels.mkdir()
    (kernels / "example.cu").write_text('#include "example.cuh"\n'
                                        'extern "C" __global__ void example_forward() {}\n')
    (kernels / "example.cuh").write_text("#pragma once\n")
    (kernels / "notes.txt").write_text("not a kernel\n")
    return tmp_path


def test_build_py_copies_kernels_into_the_package(tmp_path):
    project = _project_copy(tmp_path)
    stale = project / "lib" / "confnet" / "cuda"
    stale.mkdir(parents=True)
    (stale / "removed_since.cu").write_text("// left by an earlier build\n")
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", "lib"],
                   cwd=project, check=True, capture_output=True)
    shipped = project / "lib" / "confnet" / "cuda"
    assert sorted(os.listdir(shipped)) == ["example.cu", "example.cuh"]
    assert (shipped / "example.cu").read_text() == (project / "cuda" / "example.cu").read_text()
    assert (project / "lib" / "confnet" / "proto" / "confnet.proto").is_file()
