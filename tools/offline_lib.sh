# shellcheck shell=bash
# Helpers shared by tools/build_offline_wheels.sh and tools/gpu_check.sh (sourced, not run).

# The CUDA toolkit root. The nvcc on PATH may be a wrapper script, so ask nvcc itself: under
# --dryrun it prints its real location ("#$ TOP=/usr/local/cuda-13.0/bin/.."). CUDA_ROOT wins;
# /usr/local/cuda is the last guess. Prints nothing and fails when no include/cuda.h is found.
find_cuda_root() {
    local top=""
    if [ -n "${CUDA_ROOT:-}" ]; then
        top=$CUDA_ROOT
    elif command -v nvcc >/dev/null; then
        top=$(nvcc --dryrun -c -x cu /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)
    fi
    [ -n "$top" ] || top=/usr/local/cuda
    top=$(realpath "$top" 2>/dev/null) || return 1
    [ -f "$top/include/cuda.h" ] || return 1
    echo "$top"
}

# A Python 3.12 interpreter (the carried wheels are cp312): PYTHON312, then pyenv's newest 3.12,
# then python3.12, then python3. Prints its path; fails when none is 3.12.
find_python312() {
    local candidates=() py
    [ -n "${PYTHON312:-}" ] && candidates+=("$PYTHON312")
    if command -v pyenv >/dev/null; then
        while read -r py; do candidates+=("$py"); done \
            < <(ls -d "$(pyenv root)"/versions/3.12*/bin/python3.12 2>/dev/null | sort -V -r)
    fi
    candidates+=(python3.12 python3)
    for py in "${candidates[@]}"; do
        if "$py" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
            command -v "$py"
            return 0
        fi
    done
    return 1
}
