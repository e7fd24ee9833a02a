"""One sanitizer pass over the kernel tests: the LeNet-path layer tests, the device BLAS and every
GEMM version run again, on the emulator built with ASan+UBSan, in a subprocess (the sanitizer
runtime must be loaded before Python starts). An out-of-bounds or misaligned access in any kernel they launch
fails this test with the sanitizer's report, which names the kernel, block and thread."""

import os
import subprocess
import sys

import pytest

from confnet.errors import ConfnetError
from confnet.gpu.emu import sanitizer_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KERNEL_TESTS = ["tests/gpu/test_blas.py", "tests/gpu/test_gemm.py"] + [
    f"tests/layers/test_{name}.py" for name in
    ("convolution", "inner_product", "pooling", "relu", "dropout", "softmax", "softmax_loss",
     "accuracy", "split")]


@pytest.mark.sanitizer
def test_kernel_tests_pass_under_asan_and_ubsan():
    try:
        env = sanitizer_env("asan")
    except ConfnetError as error:
        pytest.skip(str(error))
    tests = [t for t in KERNEL_TESTS if os.path.exists(os.path.join(ROOT, t))]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-k",
         "gpu or device", *tests], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=1500, check=False)
    report = done.stdout[-6000:] + done.stderr[-6000:]
    assert done.returncode == 0, report
    assert "AddressSanitizer" not in report and "runtime error" not in report, report
    assert " passed" in done.stdout, report
