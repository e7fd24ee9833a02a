#!/usr/bin/env bash
# GPU check for the offline GPU host: one call, under 10 minutes, one summary table printed last.
#
# Steps, each capped with `timeout` (and all together by GPU_CHECK_BUDGET_S); a failing step
# never stops the ones after it:
#   a. venv      a fresh venv with --system-site-packages (reuses the host's numpy and torch),
#                the carried wheels installed offline (pip install --no-index --find-links .whl),
#                then pycuda's driver loaded and asked for the devices
#   b. device    nvidia-smi (name, driver, memory, compute capability) and `confnet device-query`
#   c. gpu tests python -m pytest -q -m gpu: every kernel against the CPU path on the device
#   d. sanitize  compute-sanitizer --tool memcheck, then --tool racecheck, over a small subset
#                of the gpu tests (pytest -k "$GPU_CHECK_SANITIZE_K")
#   e. gemm      python tools/bench_gemm.py: GFLOP/s of every GEMM version beside torch.matmul
#                (TF32 off and on), % of the FP32/TF32 peaks (--emu: tiny shapes, a run check)
#   f. bench     training speed and peak memory of LeNet, CIFAR-10 quick and CaffeNet, confnet
#                (CUDA graph and TF32 off/on) against PyTorch (eager and CUDA graph, TF32 off/on):
#                python tools/bench_gpu.py --quick --budget S, S two thirds of the step's cap so
#                the table comes out before the cap; its last line, the ratios, is the key figure
#                (--emu: LeNet alone on the emulator, which checks the script, not the speed)
# Tests and commands run the checkout's code (PYTHONPATH=repo root), so what is tested is what
# was carried; the wheels supply the dependencies (pycuda, lmdb, protobuf, pytest, ...).
# The gpu tests see CONFNET_TEST_GPU: "0" here, "emu" in --emu mode (a device choice that the
# gpu-marked tests may follow; a test that needs a real GPU skips without one).
#
# Usage, from the repo root on the GPU host, with .whl/ built on a CPU machine by
# tools/build_offline_wheels.sh and carried along (device run tool: carry [".whl"]):
#   bash tools/gpu_check.sh
# The same sequence on a machine without a GPU, with the emulator (steps that need the real
# device are skipped and say so; the Python 3.12 is pyenv's, numpy comes from
# .offline/build/host-provides, which build_offline_wheels.sh fills):
#   bash tools/gpu_check.sh --emu
#
# Environment overrides:
#   GPU_CHECK_PYTHON      interpreter for the venv (default: a Python 3.12, see offline_lib.sh)
#   GPU_CHECK_WHEELS      wheel folder (default .whl)
#   GPU_CHECK_FIND_LINKS  a second wheel folder for what the host would have (--emu default:
#                         .offline/build/host-provides)
#   GPU_CHECK_VENV        venv folder (default .offline/gpu-check-venv; made anew each run)
#   GPU_CHECK_LOGS        per-step logs and summary.txt (default $OUT/gpu_check when $OUT is
#                         set, as on the device machine, so they come back; else .offline/gpu-check)
#   GPU_CHECK_SANITIZE_K  pytest -k expression for the sanitizer subset
#   GPU_CHECK_BUDGET_S    seconds for all steps together (default 560)
# Exit status: 0 when no step failed or timed out (nor, on a GPU, found no test), 1 otherwise.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
REPO=$(pwd)
MODE=gpu
case "${1:-}" in
    "") ;;
    --emu) MODE=emu ;;
    *) echo "usage: $0 [--emu]" >&2; exit 2 ;;
esac
WHEELS=${GPU_CHECK_WHEELS:-$REPO/.whl}
VENV=${GPU_CHECK_VENV:-$REPO/.offline/gpu-check-venv}
if [ -n "${OUT:-}" ]; then LOG_DIR=${GPU_CHECK_LOGS:-$OUT/gpu_check}; else
    LOG_DIR=${GPU_CHECK_LOGS:-$REPO/.offline/gpu-check}; fi
SANITIZE_K=${GPU_CHECK_SANITIZE_K:-relu or pooling or softmax}
BUDGET=${GPU_CHECK_BUDGET_S:-560}
FIND_LINKS=${GPU_CHECK_FIND_LINKS:-}
[ "$MODE" = emu ] && FIND_LINKS=${FIND_LINKS:-$REPO/.offline/build/host-provides}
# The wheels' own names; their dependencies come along from the same folder.
INSTALL=(confnet pycuda pytest hypothesis)
# Per-step caps in seconds; together above the budget on purpose: the late steps get what the
# early ones left (the deadline trims every cap).
CAP_VENV=120 CAP_DRIVER=30 CAP_SMI=20 CAP_QUERY=45 CAP_TESTS=200 CAP_SANITIZE=90 CAP_GEMM=60 CAP_BENCH=240
SANITIZER_ERROR_RC=86

# shellcheck source=tools/offline_lib.sh
. tools/offline_lib.sh

NAMES=() STATUS=() TIMES=() FIGURES=()
record() {  # record NAME STATUS SECONDS FIGURE: one row of the table
    local figure=$4
    [ "$2" = TIMEOUT ] && figure="stopped at its cap; last line: $figure"
    NAMES+=("$1") STATUS+=("$2") TIMES+=("$3") FIGURES+=("$figure")
}

# capped NAME CAP CMD...: CMD under `timeout`, output in $LOG_DIR/NAME.log; sets RC (or "late"
# when the budget is spent), SECS and LOG.
capped() {
    local name=$1 cap=$2 left=$((DEADLINE - SECONDS)) t0=$SECONDS
    shift 2
    LOG=$LOG_DIR/$name.log
    if ((left < 10)); then
        RC=late SECS=0
        echo "skipped: the ${BUDGET}s budget is spent" >"$LOG"
        return
    fi
    ((cap > left)) && cap=$left
    echo "--- $name (at most ${cap}s): $*"
    timeout --kill-after=10 "$cap" "$@" >"$LOG" 2>&1
    RC=$?
    SECS=$((SECONDS - t0))
    tail -n 4 "$LOG" | cut -c1-160 | sed 's/^/    /'
}

status_of() {  # the status word for RC
    case $RC in
        0) echo PASS ;;
        124 | 137) echo TIMEOUT ;;
        late) echo "SKIP" ;;
        *) echo "FAIL rc=$RC" ;;
    esac
}

pytest_status() {  # pytest's exit 5 means the selection held no test
    if [ "$RC" = 5 ]; then echo "NO TESTS"; else status_of; fi
}

pytest_summary() {  # pytest's closing line, without its = frame (not the sanitizer's summary)
    grep -v "ERROR SUMMARY" "$LOG" \
        | grep -E "([0-9]+ (passed|failed|skipped|deselected|errors?))|no tests ran" | tail -1 \
        | tr -d '=' | sed 's/^ *//; s/ *$//'
}

first_lines() {  # first_lines N: the log's first N non-empty lines joined with " | "
    grep -v '^\s*$' "$LOG" | head -"$1" | paste -sd'|' | sed 's/|/ | /g' | cut -c1-110
}

late_figure() { [ "$RC" = late ] && echo "budget spent"; }

last_line() {  # the log's last non-empty line (or why the step did not run)
    late_figure || grep -v '^\s*$' "$LOG" | tail -1 | cut -c1-110
}

install_wheels() {  # the venv, then the wheels, from the carried folders only
    local links=(--find-links "$WHEELS")
    [ -n "$FIND_LINKS" ] && links+=(--find-links "$FIND_LINKS")
    rm -rf "$VENV"
    # Without ensurepip (a distribution's python3 lacking its venv package) the venv borrows the
    # host's own pip through the system site-packages.
    { "$PY" -m venv --system-site-packages "$VENV" ||
        "$PY" -m venv --system-site-packages --without-pip "$VENV"; } &&
        "$VENV/bin/python" -m pip install --no-index "${links[@]}" "${INSTALL[@]}" &&
        "$VENV/bin/python" - <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version


def v(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


print(f"python {sys.version.split()[0]}, numpy {v('numpy')}, torch {v('torch')}, "
      f"pycuda {v('pycuda')}, lmdb {v('lmdb')}")
EOF
}

step_venv() {
    if ! PY=$(PYTHON312=${GPU_CHECK_PYTHON:-} find_python312); then
        record "venv + wheels" "FAIL" 0 "no Python 3.12 (set GPU_CHECK_PYTHON)"
        return
    fi
    if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        record "venv + wheels" "FAIL" 0 "no wheels in $WHEELS (build_offline_wheels.sh, carry .whl)"
        return
    fi
    export PY WHEELS FIND_LINKS VENV
    export -f install_wheels
    # timeout runs programs, not functions: a bash child runs the exported function (an array
    # cannot be exported, so INSTALL travels as words).
    # shellcheck disable=SC2016
    capped venv "$CAP_VENV" env INSTALL="${INSTALL[*]}" bash -c \
        'INSTALL=($INSTALL); install_wheels'
    record "venv + wheels" "$(status_of)" "$SECS" "$(last_line)"
}

step_driver() {
    capped driver "$CAP_DRIVER" "$VENV/bin/python" -c "
import pycuda.driver as drv
drv.init()
major, minor = divmod(drv.get_driver_version() // 10, 100)
print(f'CUDA driver API {major}.{minor}, {drv.Device.count()} device(s)')"
    if [ "$MODE" = emu ] && [ "$RC" != 0 ] && grep -q "libcuda.so.1" "$LOG"; then
        record "pycuda driver" "SKIP" "$SECS" "no driver here (libcuda.so.1 missing), as expected"
    else
        record "pycuda driver" "$(status_of)" "$SECS" "$(last_line)"
    fi
}

step_device() {
    if [ "$MODE" = emu ]; then
        record "nvidia-smi" "SKIP" 0 "needs a real device"
    else
        capped nvidia-smi "$CAP_SMI" nvidia-smi \
            --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader
        record "nvidia-smi" "$(status_of)" "$SECS" "$(late_figure || first_lines 2)"
    fi
    capped device-query "$CAP_QUERY" "$VENV/bin/python" -m confnet.cli device-query
    if grep -q "No such command 'device-query'" "$LOG"; then
        record "device-query" "SKIP" "$SECS" "not present (no confnet device-query command yet)"
    elif [ "$MODE" = emu ] && [ "$RC" != 0 ] && [ "$(grep -vc '^\s*$' "$LOG")" = 1 ]; then
        record "device-query" "PASS" "$SECS" "one-line refusal without a GPU: $(first_lines 1)"
    else
        record "device-query" "$(status_of)" "$SECS" "$(late_figure || first_lines 3)"
    fi
}

step_tests() {
    capped gpu-tests "$CAP_TESTS" "$VENV/bin/python" -m pytest -q -m gpu tests
    record "gpu tests" "$(pytest_status)" "$SECS" "$(late_figure || pytest_summary)"
}

step_sanitize() {  # step_sanitize TOOL
    local tool=$1 sanitizer
    if [ "$MODE" = emu ]; then
        record "$tool" "SKIP" 0 \
            "needs a real device (the emulator's ASan/TSan runs are its CPU counterpart)"
        return
    fi
    sanitizer=$(command -v compute-sanitizer || echo "$(find_cuda_root)/bin/compute-sanitizer")
    if [ ! -x "$sanitizer" ]; then
        record "$tool" "FAIL" 0 "compute-sanitizer not found (PATH, CUDA root)"
        return
    fi
    capped "$tool" "$CAP_SANITIZE" "$sanitizer" --tool "$tool" \
        --error-exitcode "$SANITIZER_ERROR_RC" --target-processes all --print-limit 20 \
        "$VENV/bin/python" -m pytest -q -m gpu -k "$SANITIZE_K" tests
    local status errors
    status=$(pytest_status)
    [ "$RC" = "$SANITIZER_ERROR_RC" ] && status=ERRORS
    errors=$(grep -o "ERROR SUMMARY: [0-9]* errors\?" "$LOG" | tail -1)
    record "$tool" "$status" "$SECS" \
        "$(late_figure || echo "${errors:-no summary}; $(pytest_summary)")"
}

step_gemm() {   # every GEMM version beside torch.matmul, after each is checked against it
    if [ "$MODE" = emu ]; then
        capped gemm "$CAP_GEMM" "$VENV/bin/python" tools/bench_gemm.py --gpu emu
    else
        capped gemm "$CAP_GEMM" "$VENV/bin/python" tools/bench_gemm.py --gpu 0
    fi
    record "bench gemm" "$(status_of)" "$SECS" "$(last_line)"
}

step_bench() {
    local cap=$CAP_BENCH left=$((DEADLINE - SECONDS))
    ((cap > left)) && cap=$left
    if [ ! -f tools/bench_gpu.py ]; then
        record "bench vs PyTorch" "SKIP" 0 "not present (tools/bench_gpu.py)"
        return
    elif [ "$MODE" = emu ]; then
        capped bench "$CAP_BENCH" "$VENV/bin/python" tools/bench_gpu.py --gpu emu --quick \
            --nets lenet
    else
        capped bench "$CAP_BENCH" "$VENV/bin/python" tools/bench_gpu.py --quick \
            --budget $((cap * 2 / 3))
    fi
    record "bench vs PyTorch" "$(status_of)" "$SECS" "$(last_line)"
}

print_table() {
    local i failed=0
    {
        echo
        echo "== gpu_check summary: mode $MODE, $((SECONDS - START)) s on $(uname -n)," \
             "logs in $LOG_DIR"
        printf '%-17s %-11s %5s  %s\n' step status time "key figure"
        for i in "${!NAMES[@]}"; do
            printf '%-17s %-11s %4ss  %s\n' "${NAMES[$i]}" "${STATUS[$i]}" "${TIMES[$i]}" \
                "${FIGURES[$i]}"
        done
    } | tee "$LOG_DIR/summary.txt"
    for i in "${!STATUS[@]}"; do
        case ${STATUS[$i]} in FAIL* | TIMEOUT | ERRORS) failed=1 ;; esac
        # On the GPU host a selection without tests means nothing was checked.
        [ "$MODE" = gpu ] && [ "${STATUS[$i]}" = "NO TESTS" ] && failed=1
    done
    return $failed
}

# One function that bash parses whole before running (an edit to this file during a run must
# not derail the run).
main() {
    START=$SECONDS
    DEADLINE=$((SECONDS + BUDGET))
    mkdir -p "$LOG_DIR"
    echo "gpu_check: mode $MODE, budget ${BUDGET}s, wheels $WHEELS, logs $LOG_DIR"
    step_venv
    # From here on the checkout's code runs (see the header); set after the install so that
    # pip does not take the checkout for an installed confnet.
    export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
    if [ "$MODE" = emu ]; then export CONFNET_TEST_GPU=emu; else export CONFNET_TEST_GPU=0; fi
    step_driver
    step_device
    step_tests
    step_sanitize memcheck
    step_sanitize racecheck
    step_gemm
    step_bench
    print_table
}

main
