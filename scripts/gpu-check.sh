#!/usr/bin/env bash
# Issue 30's checks for a lent GPU, prepared to run in one device call of under 8 minutes
# (docs/gpu.md, "Running the GPU checks"):
#   1. the tests marked gpu;
#   2. greedy agreement in bf16 on all 164 HumanEval prompts, 0.5B model (`bench humaneval
#      --methods greedy,default`: its "identical to greedy" column);
#   3. `bench humaneval` speed (greedy, hf_greedy, hf_prompt_lookup, rest_paper, default) on the
#      0.5B and 1.5B models, on the first GPU_CHECK_SPEED_LIMIT prompts;
#   4. one report: $OUT_DIR/gpu-check.json and gpu-check.md (a table for BENCHMARKS.md), and the
#      steps' output in gpu-check.log.
# Every step runs under its own `timeout` (the smaller of its cap and what is left of
# GPU_CHECK_BUDGET_S), so one hang cannot eat the lease; a step that fails is recorded and the
# others still run.  Without CUDA each CUDA step is skipped, saying so, the report is still written
# and the script exits 0, so CI keeps it working.  Exit 1 when a step failed or timed out.
#
# Settings (environment):
#   REST_LSP_GPU_MODEL_05B, REST_LSP_GPU_MODEL_15B  model.name of each size, normally a .gguf path;
#       unset: a model staged onto the device (scripts/gpu-assemble.sh), else the packaged model
#       installed on this machine; set but empty: that size is skipped
#   OUT_DIR (default $OUT on the device, else bench-out/gpu-check)   where the report goes
#   GPU_CHECK_BUDGET_S=450      seconds for all steps (the issue's 8 minutes less the report)
#   GPU_CHECK_TIMEOUT_<STEP>    a step's cap in seconds (STEP as in the report, upper case)
#   GPU_CHECK_AGREEMENT_LIMIT=0 prompts of the agreement run (0: all 164)
#   GPU_CHECK_SPEED_LIMIT=20    prompts of each speed run
#   GPU_CHECK_SPEED_METHODS     default greedy,hf_greedy,hf_prompt_lookup,rest_paper,default
#   GPU_CHECK_MAX_NEW_TOKENS=128, GPU_CHECK_THREADS=0 (torch CPU threads; 0: all cores)
#   GPU_CHECK_BUILD_INDEX=1     build the corpus index (the standard library) for each model's
#       tokenizer first; 0: the benchmarks use one only if it was built before
#   GPU_CHECK_STAGE_DIR=.gpu-stage   where carried model chunks are looked for
#   GPU_CHECK_SKIP              comma-separated step names to skip (e.g. model_15b,speed_15b)
#   GPU_CHECK_DEVICE=cuda       `cpu`: a rehearsal that runs the CUDA steps on the CPU (float32)
#       to check the script itself; it measures nothing worth reporting
#   GPU_CHECK_WORK              keep the steps' raw outputs there (default: a temporary folder)
#   PYTHON                      default .venv/bin/python when present, else python3
set -uo pipefail  # no -e: a failing step is recorded and the script goes on
cd "$(dirname "$0")/.."
ROOT=$PWD
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
# the source tree is what runs: on the device rest-lsp is not pip-installed
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
RL=("$PYTHON" -m rest_lsp.cli)
GC=("$PYTHON" -m rest_lsp.bench.gpu_check)

OUT_DIR=${OUT_DIR:-${OUT:-$ROOT/bench-out/gpu-check}}
mkdir -p "$OUT_DIR"
# raw outputs stay out of OUT_DIR: the device returns at most 8 files from $OUT
if [ -n "${GPU_CHECK_WORK:-}" ]; then
    WORK=$GPU_CHECK_WORK
    mkdir -p "$WORK"
    rm -f "$WORK/steps.jsonl" "$WORK/env.json"
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
    trap 'rm -rf -- "$WORK"' EXIT
fi
STEPS=$WORK/steps.jsonl
LOG=$OUT_DIR/gpu-check.log
: > "$LOG"
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET_S:-450}
MIN_STEP=15  # a step given less than this cannot even load torch: skipped instead
THREADS=${GPU_CHECK_THREADS:-0}
MAX_NEW=${GPU_CHECK_MAX_NEW_TOKENS:-128}
STAGE_DIR=${GPU_CHECK_STAGE_DIR:-$ROOT/.gpu-stage}

say() { echo "$*" | tee -a "$LOG"; }

# cap STEP DEFAULT: the step's cap in seconds (GPU_CHECK_TIMEOUT_<STEP> overrides DEFAULT)
cap() {
    local var="GPU_CHECK_TIMEOUT_${1^^}"
    echo "${!var:-$2}"
}

# skip NAME TITLE SAY REASON [MODEL]: record a skipped step; SAY is the line printed before the title
skip() {
    say "$3: skipping $2"
    "${GC[@]}" step --steps "$STEPS" --name "$1" --title "$2" --status skipped --reason "$4" --model "${5:-}"
}

# run_step NAME TITLE CAP MODEL BENCH_DIR -- COMMAND...: one step under its own timeout; its output
# goes to the terminal and the log, its record to STEPS.  SKIP_RC=N: exit N means "nothing to do".
run_step() {
    local name=$1 title=$2 limit=$3 model=$4 bench_dir=$5
    shift 6
    if [[ ",${GPU_CHECK_SKIP:-}," == *",$name,"* ]]; then
        # asked for: not a failure, and what comes after does its own loading
        skip "$name" "$title" "GPU_CHECK_SKIP" "GPU_CHECK_SKIP names $name" "$model"
        return 0
    fi
    local left=$(( BUDGET - ($(date +%s) - START) ))
    if (( left < MIN_STEP )); then
        skip "$name" "$title" "time budget spent" "the time budget is spent (GPU_CHECK_BUDGET_S=$BUDGET)" "$model"
        return 1
    fi
    (( limit > left )) && limit=$left
    # a kept GPU_CHECK_WORK may hold an earlier run's figures: a failing run must not report them
    [ -n "$bench_dir" ] && rm -rf -- "$bench_dir"
    say "== $title (timeout ${limit}s): $*"
    local t0 t1 rc reason=""
    t0=$(date +%s.%N)
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    t1=$(date +%s.%N)
    if (( rc == 124 || rc == 137 )); then
        reason="timed out after ${limit}s (GPU_CHECK_TIMEOUT_${name^^} or GPU_CHECK_BUDGET_S)"
    fi
    local extra=()
    [ -n "${SKIP_RC:-}" ] && extra=(--skip-rc "$SKIP_RC")
    "${GC[@]}" step --steps "$STEPS" --name "$name" --title "$title" --rc "$rc" --started "$t0" --ended "$t1" \
        --reason "$reason" --command "$*" --model "$model" --bench-dir "$bench_dir" "${extra[@]}"
    say "== $title: exit $rc"
    return "$rc"
}

# 0. what machine this is
run_step probe "environment probe" "$(cap probe 120)" "" "" -- "${GC[@]}" probe --out "$WORK/env.json"
CUDA=$("$PYTHON" -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["cuda_available"]))' \
       "$WORK/env.json" 2>/dev/null || echo 0)
NO_CUDA_WHY=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["reason"])' \
              "$WORK/env.json" 2>/dev/null || echo "the probe failed")
DEVICE=${GPU_CHECK_DEVICE:-cuda}
RUN=0
if [ "$DEVICE" = cpu ]; then
    RUN=1
    DTYPE=${GPU_CHECK_DTYPE:-float32}
    say "GPU_CHECK_DEVICE=cpu: a rehearsal of the CUDA steps on the CPU (it checks the script, measures nothing)"
elif [ "$CUDA" = 1 ]; then
    RUN=1
    DTYPE=${GPU_CHECK_DTYPE:-bfloat16}
fi
NO_CUDA="no CUDA device"

# when RUN is 0: skip_cuda NAME TITLE [MODEL]
skip_cuda() { skip "$1" "$2" "$NO_CUDA" "$NO_CUDA: $NO_CUDA_WHY" "${3:-}"; }

# 1. models carried in chunks (scripts/gpu-stage.sh): collected and verified before anything uses them
if (( ! RUN )); then
    skip_cuda stage "join the staged model chunks"
elif [ -d "$STAGE_DIR" ]; then
    run_step stage "join the staged model chunks" "$(cap stage 180)" "" "" -- \
        "$PYTHON" -m rest_lsp.bench.gpu_stage collect --stage-dir "$STAGE_DIR" --require-complete
else
    skip stage "join the staged model chunks" "nothing staged" "no $STAGE_DIR (models come from elsewhere)"
fi

# model_for SIZE VAR: the variable's value when it is set (even empty), else the default model
model_for() {
    local var=$2
    if [ -n "${!var+set}" ]; then printf '%s' "${!var}"; else "${GC[@]}" default-model "$1" 2>/dev/null; fi
}
M05=$(model_for 0.5b REST_LSP_GPU_MODEL_05B)
M15=$(model_for 1.5b REST_LSP_GPU_MODEL_15B)
say "models: 0.5B '${M05:-none}', 1.5B '${M15:-none}'; device $DEVICE (CUDA available: $CUDA)"

# step titles, by step name
AGREEMENT_LIMIT=${GPU_CHECK_AGREEMENT_LIMIT:-0}
AGREEMENT_TXT=$AGREEMENT_LIMIT
[ "$AGREEMENT_LIMIT" = 0 ] && AGREEMENT_TXT="all 164"
declare -A TITLE=(
    [model_05b]="load the 0.5B model (converts the GGUF file the first time)"
    [model_15b]="load the 1.5B model (converts the GGUF file the first time)"
    [gpu_tests]="tests marked gpu"
    [index_05b]="corpus index (the standard library) for the 0.5B tokenizer"
    [index_15b]="corpus index (the standard library) for the 1.5B tokenizer"
    [agreement_05b]="greedy agreement, 0.5B, $AGREEMENT_TXT prompts"
    [speed_05b]="bench humaneval speed, 0.5B, ${GPU_CHECK_SPEED_LIMIT:-20} prompts"
    [speed_15b]="bench humaneval speed, 1.5B, ${GPU_CHECK_SPEED_LIMIT:-20} prompts"
)

# load_model KEY SIZE MODEL: load the model once (converting its GGUF file into the cache), so that
# the conversion is timed on its own and the tests and benchmarks after it load in seconds; sets
# LOADED_<KEY>=1 when it loaded
load_model() {
    local key=$1 size=$2 model=$3 name=model_$1
    if (( ! RUN )); then
        skip_cuda "$name" "${TITLE[$name]}" "$model"
    elif [ -z "$model" ]; then
        skip "$name" "${TITLE[$name]}" "no $size model" \
            "no $size model: set REST_LSP_GPU_MODEL_${key^^} to a .gguf file or stage one (docs/gpu.md)"
    elif run_step "$name" "${TITLE[$name]}" "$(cap "$name" 240)" "$model" "" -- \
            "${RL[@]}" model info --model "$model" --device "$DEVICE" --dtype "$DTYPE" --threads "$THREADS" --json; then
        printf -v "LOADED_${key^^}" 1
    fi
}

# bench_model KEY SIZE MODEL: the corpus index for the model's tokenizer, then its benchmarks
bench_model() {
    local key=$1 size=$2 model=$3 loaded="LOADED_${1^^}"
    local names=("index_$key")
    [ "$key" = 05b ] && names+=("agreement_$key")
    names+=("speed_$key")
    local name
    if (( ! RUN )); then
        for name in "${names[@]}"; do skip_cuda "$name" "${TITLE[$name]}" "$model"; done
        return
    fi
    if [ -z "$model" ]; then
        for name in "${names[@]}"; do
            skip "$name" "${TITLE[$name]}" "no $size model" \
                "no $size model: set REST_LSP_GPU_MODEL_${key^^} to a .gguf file or stage one (docs/gpu.md)"
        done
        return
    fi
    if [ "${!loaded:-0}" != 1 ]; then
        for name in "${names[@]}"; do
            skip "$name" "${TITLE[$name]}" "the $size model did not load" \
                "the $size model did not load (step model_$key)" "$model"
        done
        return
    fi
    if [ "${GPU_CHECK_BUILD_INDEX:-1}" = 1 ]; then
        mkdir -p "$WORK/empty-workspace"
        # the index build takes its tokenizer from the default model: this one.  The empty
        # workspace's own index goes to WORK; the corpus index to the cache, where the
        # benchmarks look for it
        run_step "index_$key" "${TITLE[index_$key]}" "$(cap "index_$key" 180)" "$model" "" -- \
            env REST_LSP_DEFAULT_MODEL="$model" "${RL[@]}" index build --workspace "$WORK/empty-workspace" \
            --index-dir "$WORK/workspace-index-$key"
    else
        skip "index_$key" "${TITLE[index_$key]}" "GPU_CHECK_BUILD_INDEX=0" \
            "GPU_CHECK_BUILD_INDEX=0: the benchmarks use a corpus index only if one was built before" "$model"
    fi
    local common=(--model "$model" --device "$DEVICE" --dtype "$DTYPE" --threads "$THREADS"
                  --max-new-tokens "$MAX_NEW" --store-fractions '')
    if [ "$key" = 05b ]; then
        run_step "agreement_$key" "${TITLE[agreement_$key]}" "$(cap "agreement_$key" 300)" "$model" \
            "$WORK/agreement_$key" -- \
            "${RL[@]}" bench humaneval --methods greedy,default --limit "$AGREEMENT_LIMIT" \
            "${common[@]}" --out "$WORK/agreement_$key"
    fi
    run_step "speed_$key" "${TITLE[speed_$key]}" "$(cap "speed_$key" 150)" "$model" "$WORK/speed_$key" -- \
        "${RL[@]}" bench humaneval \
        --methods "${GPU_CHECK_SPEED_METHODS:-greedy,hf_greedy,hf_prompt_lookup,rest_paper,default}" \
        --limit "${GPU_CHECK_SPEED_LIMIT:-20}" "${common[@]}" --out "$WORK/speed_$key"
}

# 2. the 0.5B model, loaded once: the gpu tests and the benchmarks reuse its conversion
load_model 05b 0.5B "$M05"

# 3. the tests marked gpu.  Only the files that mark some: collecting all of tests/ would import
# every module, and some import packages the device lacks (pytest_lsp, ray), which pytest reports
# as collection errors even for deselected tests.
if (( ! RUN )); then
    skip_cuda gpu_tests "${TITLE[gpu_tests]}"
else
    mapfile -t GPU_TESTS < <(grep -rlE 'mark\.gpu\b' tests --include='test_*.py' 2>/dev/null)
    if (( ${#GPU_TESTS[@]} == 0 )); then
        skip gpu_tests "${TITLE[gpu_tests]}" "no gpu tests" "no file in tests/ marks a test gpu"
    else
        # the tests find the real model where this script does
        REST_LSP_GPU_MODEL_05B=$M05 REST_LSP_GPU_MODEL_15B=$M15 SKIP_RC=5 \
            run_step gpu_tests "${TITLE[gpu_tests]}" "$(cap gpu_tests 150)" "" "" -- \
            "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider "${GPU_TESTS[@]}"
    fi
fi

# 4. the benchmarks, the 0.5B first: its agreement is the headline, and the 1.5B may not be staged
bench_model 05b 0.5B "$M05"
load_model 15b 1.5B "$M15"
bench_model 15b 1.5B "$M15"

# 5. the report
if ! "${GC[@]}" report --work "$WORK" --out-dir "$OUT_DIR" --started "$START" 2>&1 | tee -a "$LOG"; then
    # the JSON must exist whatever broke: a minimal one that points at the log
    printf '{"format": 1, "ok": false, "error": "the report could not be written; see gpu-check.log"}\n' \
        > "$OUT_DIR/gpu-check.json"
    say "the report could not be written: $OUT_DIR/gpu-check.json says so"
    exit 1
fi
if grep -qE '"status": "(failed|timeout)"' "$STEPS"; then
    say "some steps failed or timed out: see $OUT_DIR/gpu-check.md"
    exit 1
fi
exit 0
