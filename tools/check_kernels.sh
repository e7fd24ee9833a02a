#!/usr/bin/env bash
# Static checks of the CUDA kernels, no GPU needed: every cuda/*.cu compiles with nvcc to a
# cubin for sm_80 (A100) and sm_90 (H100/H200) with ptxas warnings for spills and local memory
# made errors, and the registers and shared memory of every kernel are printed (--resource-usage).
# Usage: bash tools/check_kernels.sh [OUT_DIR]   (the resource report is kept in OUT_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
kernels=(cuda/*.cu)
if ! command -v nvcc >/dev/null 2>&1; then
    echo "check_kernels: nvcc not found: skipping the static checks of ${#kernels[@]} kernel file(s)"
    exit 0
fi
out=${1:-$(mktemp -d)}
mkdir -p "$out"
status=0
for arch in sm_80 sm_90; do
    for cu in "${kernels[@]}"; do
        name=$(basename "$cu" .cu)
        if nvcc -arch="$arch" -cubin -std=c++17 -Icuda -o "$out/$name.$arch.cubin" \
                -Xptxas -warn-spills,-warn-lmem-usage -Werror all-warnings --resource-usage \
                "$cu" >"$out/$name.$arch.txt" 2>&1; then
            echo "nvcc $arch $cu: ok"
        else
            echo "nvcc $arch $cu: FAILED"; cat "$out/$name.$arch.txt"; status=1
        fi
    done
done
echo "registers and shared memory per kernel (sm_90):"
grep -h "Compiling entry\|Used" "$out"/*.sm_90.txt | sed -e "s/ptxas info    : //" | paste - - \
    | sed -e "s/Compiling entry function '\([a-z0-9_]*\)' for 'sm_90'/\1:/" | sort | column -t || true
exit $status
