#!/usr/bin/env bash
# Static checks of the CUDA kernels, no GPU needed: every cuda/*.cu compiles with nvcc to a
# cubin for sm_80 (A100) and sm_90 (H100/H200) with ptxas warnings for spills and local memory
# made errors, and the registers and shared memory of every kernel are printed (--resource-usage).
# Usage: bash tools/check_kernels.sh [--record] [OUT_DIR]   (the ptxas reports are kept in OUT_DIR)
#   --record  also rewrite cuda/resource_usage.txt, the committed table of registers and static
#             shared memory per kernel and architecture, so that a change in a kernel's resources
#             shows in its diff. CI runs without it: it fails on spills, and on a table
#             that does not match the kernels (when the table's nvcc is the one running).
set -euo pipefail
cd "$(dirname "$0")/.."
record=0
if [[ "${1:-}" == "--record" ]]; then
    record=1
    shift
fi
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

# One line per kernel and architecture: file, kernel, arch, registers, static shared bytes.
resource_table() {
    local report
    for report in "$out"/*.txt; do
        awk -v file="$(basename "${report%.*.txt}").cu" '
            /Compiling entry function/ {
                split($0, q, "'\''"); kernel = q[2]; arch = q[4]
            }
            /Used [0-9]+ registers/ {
                regs = $0; sub(/.*Used /, "", regs); sub(/ registers.*/, "", regs)
                smem = 0
                if ($0 ~ /bytes smem/) {
                    smem = $0; sub(/ bytes smem.*/, "", smem); sub(/.* /, "", smem)
                }
                printf "%-14s %-34s %-6s %4d %8d\n", file, kernel, arch, regs, smem
            }' "$report"
    done | sort
}

echo "registers and shared memory per kernel (sm_90):"
resource_table | awk '$3 == "sm_90"' || true
# The committed table must match what this compiler reports: a kernel changed without
# --record fails here. Another nvcc release may allocate registers differently, so with a
# compiler other than the one the table names, a difference is only reported.
version="($(nvcc --version | tail -n 1 | sed -e 's/^Build //'))"
if [[ $record == 0 && $status == 0 && -f cuda/resource_usage.txt ]]; then
    if ! diff <(grep -v '^#' cuda/resource_usage.txt) <(resource_table) >"$out/resource.diff"; then
        if grep -qF -- "$version" cuda/resource_usage.txt; then
            echo "check_kernels: cuda/resource_usage.txt is out of date (run with --record):"
            cat "$out/resource.diff"; status=1
        else
            echo "check_kernels: register counts differ from cuda/resource_usage.txt, which" \
                 "another nvcc wrote (this one: $version)"
        fi
    fi
fi
if [[ $record == 1 && $status == 0 ]]; then
    {
        echo "# Registers and static shared memory (bytes) of every kernel, from ptxas"
        echo "# --resource-usage $version."
        echo "# Regenerate: bash tools/check_kernels.sh --record"
        printf "%-14s %-34s %-6s %4s %8s\n" "# file" "kernel" "arch" "regs" "smem"
        resource_table
    } >cuda/resource_usage.txt
    echo "wrote cuda/resource_usage.txt"
fi
exit $status
