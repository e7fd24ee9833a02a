#!/usr/bin/env bash
# Build, on a CPU machine, the wheels an offline GPU host lacks, into the git-ignored .whl/.
#
# The GPU host (DESIGN.md §5 "GPU machines") has Python 3.12, PyTorch, CuPy, numpy, mpi4py,
# nvidia-nccl and nvcc, but no network, no pycuda and no lmdb. This recipe puts into .whl/:
#   - pycuda, built from its sdist (PyPI has no pycuda wheels) for CPython 3.12 without a GPU:
#     it links against a libcuda.so.1 stub generated from cuda.h by tools/gen_cuda_stub.py
#     (the toolkit has no driver stub); the wheel records NEEDED libcuda.so.1 and binds to the
#     host driver's real library at import. The stub is checked NOT to be inside the wheel.
#   - confnet itself (with the kernels as confnet/cuda/*.cu, see setup.py);
#   - the binary cp312 manylinux x86_64 wheels of what confnet and pycuda need at run time
#     (protobuf, lmdb, pillow, click, pytools, mako, ...) and the test runner (pytest,
#     hypothesis), all but what the host has already (numpy: HOST_PROVIDES).
# Then it verifies, in a fresh Python 3.12 venv installed only from .whl/ (numpy from a side
# folder, standing in for the host's own): confnet imports and finds its kernels, lmdb works,
# `import pycuda.compiler` works and compiles a kernel to a cubin with nvcc, and `import
# pycuda.driver` fails only for want of the real libcuda.so.1.
#
# Usage (from anywhere; 8 to 16 minutes on 2 shared cores, most of it pycuda's C++; about 3
# minutes of CPU time):
#   bash tools/build_offline_wheels.sh              # build + verify
#   bash tools/build_offline_wheels.sh --no-verify  # build only
#   bash tools/build_offline_wheels.sh --rebuild    # build pycuda again instead of reusing
#                                                   # .offline/build/dist/ from an earlier run
# Logs of the long steps: .offline/build/logs/.
# Then carry .whl/ to the GPU host (run tool: carry [".whl"]) and run tools/gpu_check.sh there.
#
# Environment overrides:
#   CUDA_ROOT       toolkit root (default: asked from nvcc itself, since the nvcc on PATH may be
#                   a wrapper script; then /usr/local/cuda)
#   PYTHON312       a Python 3.12 interpreter (default: pyenv's newest 3.12, then python3.12)
#   PYCUDA_VERSION  pycuda release to build (default below)
#   HOST_PROVIDES   space-separated distributions the host has, left out of .whl/ (default numpy)
#   WHEEL_DIR       output folder (default .whl); WORK_DIR scratch folder (default .offline/build)
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
WHEEL_DIR=${WHEEL_DIR:-$REPO/.whl}
WORK_DIR=${WORK_DIR:-$REPO/.offline/build}
PYCUDA_VERSION=${PYCUDA_VERSION:-2026.1}
HOST_PROVIDES=${HOST_PROVIDES:-numpy}
# The test runner and what the test modules import at collection time.
TEST_REQUIREMENTS=(pytest hypothesis)
# The host's wheels must be CPython 3.12 manylinux x86_64; pip also accepts the older manylinux
# tags under this one.
TARGET=(--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312
        --platform manylinux_2_28_x86_64)
SIZE_LIMIT_MIB=40
VERIFY=1
REBUILD=0
for arg in "$@"; do
    case $arg in
        --no-verify) VERIFY=0 ;;
        --rebuild) REBUILD=1 ;;
        *) echo "usage: $0 [--no-verify] [--rebuild]" >&2; exit 2 ;;
    esac
done

START=$SECONDS
step() { printf '\n== %s (%ds)\n' "$*" $((SECONDS - START)); }
die() { echo "build_offline_wheels: $*" >&2; exit 1; }
logged() {  # logged NAME CMD...: run CMD into logs/NAME.log; on failure show its tail and stop
    local log=$WORK_DIR/logs/$1.log
    shift
    if ! "$@" >"$log" 2>&1; then
        tail -30 "$log" >&2
        die "failed: $* (log: $log)"
    fi
}

# shellcheck source=tools/offline_lib.sh
. tools/offline_lib.sh

fresh_venv() {  # fresh_venv DIR: an empty Python 3.12 venv
    rm -rf "$1"
    "$PY312" -m venv "$1"
}

# The steps, in one function that bash parses whole before running any of it (the build takes
# minutes; an edit to this file meanwhile must not derail it). Not indented: the heredocs
# hold Python.
main() {
CUDA_ROOT=$(find_cuda_root) || die "no include/cuda.h under the CUDA root; set CUDA_ROOT"
PY312=$(find_python312) || die "no Python 3.12 found; set PYTHON312"
echo "CUDA toolkit root: $CUDA_ROOT ($("$CUDA_ROOT/bin/nvcc" --version | tail -1))"
echo "Python 3.12:       $PY312 ($("$PY312" --version))"
mkdir -p "$WHEEL_DIR" "$WORK_DIR/logs"
rm -f "$WHEEL_DIR"/*.whl

step "build venv"
fresh_venv "$WORK_DIR/venv"
BPY=$WORK_DIR/venv/bin/python
logged pip-upgrade "$BPY" -m pip install --upgrade pip

step "libcuda.so.1 link stub from cuda.h"
STUB_DIR=$WORK_DIR/cuda-stub
"$BPY" tools/gen_cuda_stub.py --cuda-root "$CUDA_ROOT" --out "$STUB_DIR"

step "pycuda $PYCUDA_VERSION from its sdist"
SRC_DIR=$WORK_DIR/src
DIST_DIR=$WORK_DIR/dist
mkdir -p "$SRC_DIR" "$DIST_DIR"
[ "$REBUILD" = 1 ] && rm -f "$DIST_DIR"/pycuda-*.whl
if ls "$DIST_DIR/pycuda-$PYCUDA_VERSION"-cp312-*.whl >/dev/null 2>&1; then
    echo "reusing the wheel built earlier in $DIST_DIR (--rebuild to build it again)"
else
    SDIST=$SRC_DIR/pycuda-$PYCUDA_VERSION.tar.gz
    [ -f "$SDIST" ] || logged pycuda-download "$BPY" -m pip download --no-deps \
        --no-binary pycuda -d "$SRC_DIR" "pycuda==$PYCUDA_VERSION"
    rm -rf "$SRC_DIR/pycuda-$PYCUDA_VERSION"
    tar -xzf "$SDIST" -C "$SRC_DIR"
    # configure.py writes siteconf.py, which setup.py reads. The toolkit root is given
    # explicitly (pycuda would guess it from the nvcc on PATH, a wrapper script here); the
    # driver library comes from the stub folder; curand is off (this toolkit has no libcurand
    # and confnet does not use it). libstdc++ stays dynamic: linked statically it would pull in
    # symbols of this machine's newer glibc (arc4random, GLIBC_2.36).
    (cd "$SRC_DIR/pycuda-$PYCUDA_VERSION" && logged pycuda-configure "$BPY" configure.py \
        --cuda-root="$CUDA_ROOT" --cuda-inc-dir="$CUDA_ROOT/include" \
        --cudadrv-lib-dir="$STUB_DIR" --no-cuda-enable-curand)
    logged pycuda-build "$BPY" -m pip wheel --no-deps -w "$DIST_DIR" \
        "$SRC_DIR/pycuda-$PYCUDA_VERSION"
fi
cp "$DIST_DIR/pycuda-$PYCUDA_VERSION"-cp312-*.whl "$WHEEL_DIR"/
PYCUDA_WHEEL=$(ls "$WHEEL_DIR"/pycuda-*-cp312-*.whl | head -1)

step "check the pycuda wheel"
CHECK_DIR=$WORK_DIR/pycuda-wheel
rm -rf "$CHECK_DIR" && mkdir -p "$CHECK_DIR"
"$BPY" -m zipfile -e "$PYCUDA_WHEEL" "$CHECK_DIR"
if find "$CHECK_DIR" -name 'libcuda*' | grep -q .; then
    die "the pycuda wheel bundles a libcuda: the link stub must not ship"
fi
DRIVER_SO=$(ls "$CHECK_DIR"/pycuda/_driver*.so)
readelf -d "$DRIVER_SO" | grep -q 'NEEDED.*\[libcuda\.so\.1\]' \
    || die "_driver does not record NEEDED libcuda.so.1 (the stub was dropped at link time)"
missing=$(comm -23 <(nm -D --undefined-only "$DRIVER_SO" | awk '$2 ~ /^cu/ {print $2}' | sort -u) \
                   <(nm -D --defined-only "$STUB_DIR/libcuda.so.1" | awk '{print $3}' | sort -u))
[ -z "$missing" ] || die "driver symbols absent from the stub: $missing"
newest() { objdump -T "$CHECK_DIR"/pycuda/*.so | grep -o "$1_[0-9.]*" | sort -V -u | tail -1; }
echo "$(basename "$PYCUDA_WHEEL"): no libcuda inside, NEEDED libcuda.so.1;" \
     "the host needs glibc >= $(newest GLIBC | cut -d_ -f2) and libstdc++ with $(newest GLIBCXX)"

step "confnet wheel"
logged confnet-build "$BPY" -m pip wheel --no-deps -w "$WHEEL_DIR" "$REPO"
CONFNET_WHEEL=$(ls "$WHEEL_DIR"/confnet-*.whl | head -1)
shipped=$("$BPY" -m zipfile -l "$CONFNET_WHEEL" | grep -c '^confnet/cuda/.*\.cu ' || true)
expected=$(shopt -s nullglob; set -- "$REPO"/cuda/*.cu; echo $#)
[ "$shipped" -eq "$expected" ] \
    || die "$(basename "$CONFNET_WHEEL") ships $shipped kernel files, cuda/ has $expected"
echo "$(basename "$CONFNET_WHEEL"): $shipped kernel file(s) under confnet/cuda"

step "run-time dependencies (binary wheels for cp312 manylinux x86_64)"
# The unconditional Requires-Dist of the two wheels (no extras), less what the host has.
requirements=$("$BPY" - "$CONFNET_WHEEL" "$PYCUDA_WHEEL" "$HOST_PROVIDES" <<'EOF'
import re
import sys
import zipfile
from email.parser import Parser

host = {name.lower() for name in sys.argv[3].split()}
for wheel in sys.argv[1:3]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        for req in Parser().parsestr(z.read(meta).decode()).get_all("Requires-Dist") or []:
            name = re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower()
            if "extra ==" not in req and name not in host:
                print(req.split(";")[0].strip())
EOF
)
echo "$requirements" "${TEST_REQUIREMENTS[@]}"
# shellcheck disable=SC2086  # one requirement per word
logged download "$BPY" -m pip download "${TARGET[@]}" -d "$WHEEL_DIR" $requirements \
    "${TEST_REQUIREMENTS[@]}"
for name in $HOST_PROVIDES; do
    rm -f "$WHEEL_DIR/$name"-*.whl
done

step "wheels"
ls -1s --block-size=K "$WHEEL_DIR"
size_mib=$(du -sm "$WHEEL_DIR" | cut -f1)
echo "total: $(du -sh "$WHEEL_DIR" | cut -f1) in $(ls "$WHEEL_DIR" | wc -l) wheels"
[ "$size_mib" -le "$SIZE_LIMIT_MIB" ] \
    || die "$WHEEL_DIR is ${size_mib} MiB, over $SIZE_LIMIT_MIB MiB"

if [ "$VERIFY" = 1 ]; then
    step "verify: fresh Python 3.12 venv, installed only from $WHEEL_DIR"
    # numpy stands in for the host's own copy, from a side folder; everything else must come
    # from the wheel folder alone.
    HOST_SIM=$WORK_DIR/host-provides
    mkdir -p "$HOST_SIM"
    # shellcheck disable=SC2086
    logged download-host "$BPY" -m pip download "${TARGET[@]}" -d "$HOST_SIM" $HOST_PROVIDES
    VENV=$WORK_DIR/verify-venv
    fresh_venv "$VENV"
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install -q --no-index --find-links "$HOST_SIM" $HOST_PROVIDES
    "$VENV/bin/python" -m pip install -q --no-index --find-links "$WHEEL_DIR" \
        confnet pycuda "${TEST_REQUIREMENTS[@]}"
    (cd "$WORK_DIR" && "$VENV/bin/python" - "$CUDA_ROOT" "$expected" <<'EOF'
import os
import sys

import lmdb

import confnet
from confnet.proto import confnet_pb2  # noqa: F401 (the generated protobuf module loads)

shipped = os.path.join(os.path.dirname(confnet.__file__), "cuda")
kernels = [p for p in os.listdir(shipped) if p.endswith(".cu")] if os.path.isdir(shipped) else []
assert confnet.__file__.startswith(sys.prefix), f"confnet imported from {confnet.__file__}"
assert len(kernels) == int(sys.argv[2]), f"{len(kernels)} kernels in {shipped}, not {sys.argv[2]}"
print(f"confnet from the wheel, {len(kernels)} kernel file(s); lmdb {lmdb.version()}")

import pycuda.compiler

# compile_plain runs nvcc alone (compile() would ask the driver for the device's arch).
nvcc = os.path.join(sys.argv[1], "bin", "nvcc")
cubin = pycuda.compiler.compile_plain('extern "C" __global__ void k(float *x) { x[0] = 1.f; }',
                                      ["-arch=sm_80"], False, nvcc, None)
print(f"pycuda.compiler imports and compiles a kernel: {len(cubin)}-byte cubin for sm_80")
try:
    import pycuda.driver  # noqa: F401
except ImportError as e:
    assert "libcuda.so.1" in str(e), f"pycuda.driver failed for another reason: {e}"
    print(f"pycuda.driver fails only for want of the driver: {e}")
else:
    sys.exit("pycuda.driver imported: a libcuda.so.1 is on this machine (the stub leaked?)")
EOF
    )
fi

step "done"
echo "wheels in $WHEEL_DIR ($(du -sh "$WHEEL_DIR" | cut -f1)); build took $((SECONDS - START)) s"
}

main
