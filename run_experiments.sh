#!/usr/bin/env bash
# Train several methods under one recipe, one after the other or in parallel, with live progress,
# then compare them (plot_comparison.py). ./run_experiments.sh -h lists the flags.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x $ROOT/.venv/bin/python ]]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
# Kept equal to config.py's choices by tests/test_run_experiments.py.
SIZES=(tiny small base large)
TASKS=(sst2 mnli qnli qqp rte wnli mrpc cola stsb custom)
read -r -a AVAILABLE <<<"$("$PYTHON" -c 'import sys; sys.path.insert(0, sys.argv[1]); from gated_bert.vocabulary import METHODS; print(*METHODS)' "$ROOT")"

# A flag that is not given is not passed: train.py's own defaults apply, and so do the values of a
# `-- --config FILE`. The values shown by -h are train.py's defaults (kept equal by tests/test_run_experiments.py).
EPOCHS="" BATCH_SIZE="" LEARNING_RATE="" MODEL_SIZE="" START_SPARSITY="" END_SPARSITY=""
PRUNING_START="" PRUNING_END="" SPARSITY_STEPS="" SPT_EXPLORE="" TASK="" MAX_LEN="" TARGET_SPARSITY="" INIT_FROM=""
GRANULARITY=""
METHOD_LIST=$(IFS=,; echo "${AVAILABLE[*]}")
PARALLEL=false MAX_JOBS="" OUTPUT_MODE="" OUTPUT_DIR=. RESUME=false
PASS=()

usage() {
    cat <<EOF
Usage: ./run_experiments.sh [options] [-- train.py settings...]

Train every chosen method with one recipe through train.py, sequentially or
in parallel, show live progress, then print a summary table and write the
comparison figures and tables (plot_comparison.py).

  -e,  --epochs N            training epochs                              [25]
  -b,  --batch-size N        examples per batch                           [96]
  -l,  --learning-rate X     peak learning rate                           [2e-05]
  -m,  --model-size S        ${SIZES[*]}                       [tiny]
  -p,  --pruning-methods L   comma list of: ${AVAILABLE[*]}
                             [all: $METHOD_LIST]
  -s,  --start-sparsity X    sparsity at the start of the pruning window  [0.0]
  -f,  --end-sparsity X      final sparsity                               [0.99]
  -ps, --pruning-start N     epochs trained before pruning begins         [4]
  -pe, --pruning-end N       epoch at whose end end sparsity is reached   [23; capped at epochs]
  -ss, --sparsity-steps "L"  space-separated percentages walked by magnitude and spt [train.py's]
  -se, --spt-explore B       SPT explores each layer on its own: true|false [false]
  -ts, --target-sparsity X   gumbel only: fraction of heads/neurons to remove [none: fixed weight]
  -g,  --granularity G       magnitude, movement and spt only: weight, or neuron, head or both (units
                             through their gates; -f is then a fraction of the blocks' MACs) [weight]
  -t,  --task T              ${TASKS[*]} [sst2]
  -ml, --max-len N           longest sequence in tokens                   [128]
  -i,  --init-from DIR       fine-tune every method from this Hugging Face folder [none: from scratch];
                             its fine-tuning recipe then replaces the bracketed defaults of -e, -b, -l, -ps
  -d,  --output-dir DIR      where results_*/, checkpoints_*/ and experiment_logs/ go [.]
  -parallel                  run methods at the same time (default: one after the other)
  -resume                    continue the runs of --output-dir that did not finish (killed, interrupted,
                             failed) from their last finished epoch (train.py --resume): give the same
                             flags as the first time; a method whose latest run completed is not run
                             again, one with no run to continue starts anew
  -max-parallel-jobs N       most jobs at once with -parallel [CPU cores, at most one per method]
  -o,  --output-mode M       bars (one live bar per job), logs (every log line, prefixed by its
                             method) or both (bars and important log lines)
                             [asked on a terminal, else bars]
  -h,  --help                this help

The values in brackets are train.py's defaults: a flag not given is not
passed, so train.py's defaults, its environment variables and the values of
a --config file given after -- apply (e.g. -- --config recipe.json
--max_train_samples 2000). The script sets each job's --pruning_method,
--output_dir, --progress_file, --verbose and thread counts itself. Before
any job starts, every job's settings are resolved and checked
(train.py --dry_run): a job that would fail is reported, with every other
problem, and nothing runs. Each job runs in experiment_logs/work_<method>_<task>/
(relative paths inside a --config file are read from there: use absolute
ones) and logs to experiment_logs/run_experiments_<method>_<task>_<timestamp>.log.
The exit status is non-zero when any job failed.
EOF
}

ERRORS=()
need_value() { [[ $# -ge 2 ]] || { echo "error: $1 needs a value (see -h)" >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
    case $1 in
        -e|--epochs) need_value "$@"; EPOCHS=$2; shift 2 ;;
        -b|--batch-size) need_value "$@"; BATCH_SIZE=$2; shift 2 ;;
        -l|--learning-rate) need_value "$@"; LEARNING_RATE=$2; shift 2 ;;
        -m|--model-size) need_value "$@"; MODEL_SIZE=$2; shift 2 ;;
        -p|--pruning-methods) need_value "$@"; METHOD_LIST=$2; shift 2 ;;
        -s|--start-sparsity) need_value "$@"; START_SPARSITY=$2; shift 2 ;;
        -f|--end-sparsity) need_value "$@"; END_SPARSITY=$2; shift 2 ;;
        -ps|--pruning-start) need_value "$@"; PRUNING_START=$2; shift 2 ;;
        -pe|--pruning-end) need_value "$@"; PRUNING_END=$2; shift 2 ;;
        -ss|--sparsity-steps) need_value "$@"; SPARSITY_STEPS=$2; shift 2 ;;
        -se|--spt-explore) need_value "$@"; SPT_EXPLORE=$2; shift 2 ;;
        -ts|--target-sparsity) need_value "$@"; TARGET_SPARSITY=$2; shift 2 ;;
        -g|--granularity) need_value "$@"; GRANULARITY=$2; shift 2 ;;
        -t|--task) need_value "$@"; TASK=$2; shift 2 ;;
        -ml|--max-len) need_value "$@"; MAX_LEN=$2; shift 2 ;;
        -i|--init-from) need_value "$@"; INIT_FROM=$2; shift 2 ;;
        -d|--output-dir) need_value "$@"; OUTPUT_DIR=$2; shift 2 ;;
        -parallel|--parallel) PARALLEL=true; shift ;;
        -resume|--resume) RESUME=true; shift ;;
        -max-parallel-jobs|--max-parallel-jobs) need_value "$@"; MAX_JOBS=$2; shift 2 ;;
        -o|--output-mode) need_value "$@"; OUTPUT_MODE=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; PASS=("$@"); break ;;
        *) echo "error: unknown option '$1' (see -h; train.py settings go after --)" >&2; exit 2 ;;
    esac
done

# -- Validation 1: this script's flags, every problem one message, before anything runs -------------
is_in() { local item=$1; shift; local x; for x in "$@"; do [[ $x == "$item" ]] && return 0; done; return 1; }
is_number() { [[ $1 =~ ^[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$ ]]; }
check_positive_int() { [[ -z $2 || $2 =~ ^[1-9][0-9]*$ ]] || ERRORS+=("$1 must be a positive integer, got '$2'"); }
check_fraction() {
    [[ -n $2 ]] || return 0
    if ! is_number "$2" || ! awk -v x="$2" 'BEGIN { exit !(x >= 0 && x <= 1) }'; then
        ERRORS+=("$1 must be a number in [0, 1], got '$2'")
    fi
}
check_positive_int --epochs "$EPOCHS"
check_positive_int --batch-size "$BATCH_SIZE"
check_positive_int --max-len "$MAX_LEN"
check_positive_int --pruning-end "$PRUNING_END"
[[ -z $PRUNING_START || $PRUNING_START =~ ^[0-9]+$ ]] ||
    ERRORS+=("--pruning-start must be a non-negative integer, got '$PRUNING_START'")
if [[ -n $LEARNING_RATE ]] && { ! is_number "$LEARNING_RATE" || awk -v x="$LEARNING_RATE" 'BEGIN { exit !(x <= 0) }'; }
then
    ERRORS+=("--learning-rate must be a positive number (e.g. 1e-3), got '$LEARNING_RATE'")
fi
[[ -z $MODEL_SIZE ]] || is_in "$MODEL_SIZE" "${SIZES[@]}" ||
    ERRORS+=("unknown --model-size '$MODEL_SIZE'; choose one of: ${SIZES[*]}")
[[ -z $TASK ]] || is_in "$TASK" "${TASKS[@]}" || ERRORS+=("unknown --task '$TASK'; choose one of: ${TASKS[*]}")
check_fraction --start-sparsity "$START_SPARSITY"
check_fraction --end-sparsity "$END_SPARSITY"
check_fraction --target-sparsity "$TARGET_SPARSITY"
[[ -z $GRANULARITY ]] || is_in "$GRANULARITY" weight neuron head both ||
    ERRORS+=("unknown --granularity '$GRANULARITY'; choose one of: weight neuron head both")
[[ -z $SPT_EXPLORE ]] || is_in "$SPT_EXPLORE" true false ||
    ERRORS+=("--spt-explore must be true or false, got '$SPT_EXPLORE'")
for step in $SPARSITY_STEPS; do
    is_number "$step" || ERRORS+=("--sparsity-steps must be space-separated percentages, got '$step'")
done
[[ -z $MAX_JOBS ]] || check_positive_int -max-parallel-jobs "$MAX_JOBS"
[[ -z $OUTPUT_MODE ]] || is_in "$OUTPUT_MODE" bars logs both ||
    ERRORS+=("unknown --output-mode '$OUTPUT_MODE'; choose one of: bars logs both")
IFS=, read -r -a METHODS <<<"$METHOD_LIST"
[[ ${#METHODS[@]} -gt 0 ]] || ERRORS+=("--pruning-methods is empty; choose from: ${AVAILABLE[*]}")
for method in "${METHODS[@]}"; do
    is_in "$method" "${AVAILABLE[@]}" || ERRORS+=("unknown method '$method'; choose from: ${AVAILABLE[*]}")
done
if [[ ${#ERRORS[@]} -gt 0 ]]; then
    printf 'error: %s\n' "${ERRORS[@]}" >&2
    exit 2
fi

# -- Threads and paths ---------------------------------------------------------------
CORES=$(nproc)
JOBS=1
if [[ $PARALLEL == true ]]; then
    JOBS=${MAX_JOBS:-$CORES}
    ((JOBS <= ${#METHODS[@]})) || JOBS=${#METHODS[@]}
fi
THREADS=0  # TensorFlow decides
if ((JOBS > 1)); then
    THREADS=$((CORES / JOBS))
    ((THREADS >= 1)) || THREADS=1
fi
OUTPUT_DIR=$(realpath -m "$OUTPUT_DIR")  # created once every check has passed
[[ -z $INIT_FROM ]] || INIT_FROM=$(realpath -m "$INIT_FROM")
LOG_DIR=$OUTPUT_DIR/experiment_logs
# Jobs run in their own folders: paths relative to here must become absolute.
absolute() { if [[ -e $1 && $1 != /* ]]; then echo "$PWD/$1"; else echo "$1"; fi; }
for name in GLUE_DIR TOKENIZER CACHE_DIR; do
    if [[ -n ${!name:-} ]]; then export "$name=$(absolute "${!name}")"; fi
done
for i in "${!PASS[@]}"; do
    if ((i > 0)) && [[ ${PASS[i - 1]} =~ ^--(data_dir|tokenizer|cache_dir|config|init_from|train_file|validation_file|teacher)$ ]]
    then
        PASS[i]=$(absolute "${PASS[i]}")
    fi
done

# This script's settings and the train.py flag each one sets.
FLAGS=(MODEL_SIZE:model_size TASK:task EPOCHS:epochs BATCH_SIZE:batch_size LEARNING_RATE:learning_rate
    MAX_LEN:max_len START_SPARSITY:start_sparsity END_SPARSITY:end_sparsity PRUNING_START:pruning_start_epoch
    PRUNING_END:pruning_end_epoch SPARSITY_STEPS:sparsity_steps SPT_EXPLORE:spt_explore_per_layer
    INIT_FROM:init_from)

# A job's train.py flags: those the user set, then those this script decides.
train_args() {
    local method=$1 args=() pair variable
    for pair in "${FLAGS[@]}"; do
        variable=${pair%%:*}
        [[ -z ${!variable} ]] || args+=("--${pair#*:}" "${!variable}")
    done
    [[ $method != gumbel || -z $TARGET_SPARSITY ]] || args+=(--target_sparsity "$TARGET_SPARSITY")
    if [[ -n $GRANULARITY ]] && is_in "$method" magnitude movement spt; then
        args+=(--pruning_granularity "$GRANULARITY")
    fi
    local pruning=$method
    [[ $method != baseline ]] || pruning=none
    args+=(--pruning_method "$pruning" --output_dir "$OUTPUT_DIR" --verbose 2 --intra_op_threads "$THREADS"
        --inter_op_threads "$THREADS")
    printf '%s\n' "${args[@]}"
}

# -- Validation 2: every job's settings, resolved and checked by train.py --dry_run --------------
FIRST_CONFIG=""  # the first job's resolved config (JSON), shown below
CHECK_ERR=$(mktemp)
for method in "${METHODS[@]}"; do
    mapfile -t args < <(train_args "$method")
    if resolved=$("$PYTHON" "$ROOT/train.py" --dry_run "${args[@]}" "${PASS[@]}" 2>"$CHECK_ERR"); then
        [[ -n $FIRST_CONFIG ]] || FIRST_CONFIG=$resolved
    else
        ERRORS+=("$method: $(sed 's/^error: //; s/^train.py: error: //' "$CHECK_ERR" | tail -n 1)")
    fi
done
rm -f "$CHECK_ERR"
if [[ ${#ERRORS[@]} -gt 0 ]]; then
    printf 'error: %s\n' "${ERRORS[@]}" >&2
    echo "no job was started. train.py's names for this script's flags: --epochs -e, --batch_size -b," \
        "--learning_rate -l, --model_size -m, --start_sparsity -s, --end_sparsity -f, --pruning_start_epoch -ps," \
        "--pruning_end_epoch -pe, --sparsity_steps -ss, --task -t, --max_len -ml" >&2
    exit 2
fi

# -- Resolved configuration: the first job's (the jobs differ in their method only) -------------
RESOLVED=$("$PYTHON" - "$FIRST_CONFIG" <<'PY'
import json, sys

c = json.loads(sys.argv[1])
print(c["task"], c["epochs"])
shape = "/".join(str(c[key]) for key in ("num_layers", "d_model", "num_heads", "dff"))
steps = " ".join(f"{step:g}" for step in c["sparsity_steps"])
last = min(c["pruning_end_epoch"], c["epochs"])
print(f"model / task:   {c['model_size']} ({shape}) / {c['task']}, max_len {c['max_len']}")
print(f"training:       {c['epochs']} epochs, batch {c['batch_size']}, learning rate {c['learning_rate']:g}")
print(f"pruning:        sparsity {c['start_sparsity']} -> {c['end_sparsity']} over epochs {c['pruning_start_epoch']}"
      f" -> {last}, steps [{steps}], spt explore per layer {str(c['spt_explore_per_layer']).lower()}")
if c["pruning_end_epoch"] > c["epochs"]:
    print(f"note:           --pruning-end {c['pruning_end_epoch']} is past --epochs {c['epochs']}; capped at {last}")
PY
)
read -r TASK EPOCHS <<<"$(head -n 1 <<<"$RESOLVED")"
if [[ -z $OUTPUT_MODE ]]; then
    OUTPUT_MODE=bars
    if [[ -t 0 ]]; then
        read -r -p "Output mode: bars, logs or both? [bars] " answer || true
        is_in "${answer:-bars}" bars logs both || { echo "error: unknown output mode '$answer'" >&2; exit 2; }
        OUTPUT_MODE=${answer:-bars}
    fi
fi
mkdir -p "$OUTPUT_DIR"
STAMP=$(date +%Y%m%d_%H%M%S)
cat <<EOF
methods:        ${METHODS[*]}
mode:           $([[ $PARALLEL == true ]] && echo "parallel, up to $JOBS jobs, $THREADS CPU thread(s) each ($CORES cores)" || echo "sequential")
$(tail -n +2 <<<"$RESOLVED")
gumbel target:  ${TARGET_SPARSITY:-train.py default}
granularity:    ${GRANULARITY:-weight} (magnitude, movement, spt)
pass-through:   ${PASS[*]:-none}
outputs:        $OUTPUT_DIR (logs in $LOG_DIR)
output mode:    $OUTPUT_MODE
EOF

# -- Jobs ---------------------------------------------------------------------
declare -A PID=() STATUS=() STARTED=() SECONDS_TAKEN=() LOG=() PROGRESS=() OFFSET=()
start_job() {
    local method=$1 work=$LOG_DIR/work_${1}_$TASK
    mkdir -p "$work"
    LOG[$method]=$LOG_DIR/run_experiments_${method}_${TASK}_$STAMP.log
    PROGRESS[$method]=$work/progress
    OFFSET[$method]=0
    rm -f "${PROGRESS[$method]}"
    local args
    mapfile -t args < <(train_args "$method")
    [[ ${RUN_STATE[$method]:-new} != unfinished ]] || args+=(--resume)
    (cd "$work" && exec "$PYTHON" "$ROOT/train.py" "${args[@]}" --progress_file "${PROGRESS[$method]}" "${PASS[@]}") \
        >"${LOG[$method]}" 2>&1 &
    PID[$method]=$!
    STATUS[$method]=running
    STARTED[$method]=$SECONDS
}

finish_job() {
    local method=$1 code=0
    wait "${PID[$method]}" || code=$?
    SECONDS_TAKEN[$method]=$((SECONDS - STARTED[$method]))
    if ((code == 0)); then STATUS[$method]="done"; else STATUS[$method]="failed (exit $code)"; fi
    unset "PID[$method]"
}

# -- Progress -------------------------------------------------------------------
DRAWN=0  # lines of bars on the terminal, redrawn in place
LAST_PLAIN=0
bar_line() {
    local method=$1 percent=0 epoch=0 epochs=$EPOCHS metric="" value="-" state=${STATUS[$1]:-queued}
    if [[ -f ${PROGRESS[$method]:-} ]]; then
        read -r percent epoch epochs metric value _ <"${PROGRESS[$method]}" || true
    fi
    local filled=$(( ${percent%.*} * 30 / 100 ))
    local bar
    bar=$(printf '%*s' "$filled" '' | tr ' ' '#')$(printf '%*s' $((30 - filled)) '' | tr ' ' '-')
    printf '%-13s [%s] %5s%%  epoch %s/%s  %s %s  %s\n' "$method" "$bar" "$percent" "$epoch" "$epochs" \
        "${metric:-dev}" "$value" "$state"
}

new_log_lines() {  # the lines a job's log gained since the last call, prefixed by its method
    local method=$1 size
    [[ -f ${LOG[$method]:-} ]] || return 0
    size=$(stat -c %s "${LOG[$method]}")
    if ((size > OFFSET[$method])); then
        # head reads the file and stops at `size`; tail reads head's whole output, so no writer in this
        # pipeline meets a closed pipe (under pipefail a SIGPIPE'd tail would end the script).
        head -c "$size" "${LOG[$method]}" | tail -c +"$((OFFSET[$method] + 1))" | sed "s/^/[$method] /"
        OFFSET[$method]=$size
    fi
}

show_progress() {
    local final=${1:-false} lines="" method
    for method in "${METHODS[@]}"; do
        lines+=$(new_log_lines "$method")$'\n'
    done
    lines=$(printf '%s' "$lines" | grep -v '^$' || true)
    [[ $OUTPUT_MODE != both ]] || lines=$(printf '%s' "$lines" | grep -E 'ERROR|Error|error:| WARNING |final |epoch [0-9]+:|Epoch [0-9]+' || true)
    if [[ -t 1 ]]; then
        ((DRAWN == 0)) || printf '\033[%dA\033[J' "$DRAWN"
        [[ -z $lines || $OUTPUT_MODE == bars ]] || printf '%s\n' "$lines"
        DRAWN=0
        if [[ $OUTPUT_MODE != logs ]]; then
            for method in "${METHODS[@]}"; do bar_line "$method"; DRAWN=$((DRAWN + 1)); done
        fi
        return
    fi
    [[ -z $lines || $OUTPUT_MODE == bars ]] || printf '%s\n' "$lines"
    if [[ $OUTPUT_MODE != logs ]] && { $final || ((SECONDS - LAST_PLAIN >= 10)); }; then
        echo "-- progress after ${SECONDS}s"
        for method in "${METHODS[@]}"; do bar_line "$method"; done
        LAST_PLAIN=$SECONDS
    fi
}

# -- Ctrl-C / SIGTERM, or any other end: stop every job, keep what they wrote -------------------
stop_jobs() {  # SIGTERM to the running jobs, 15 s for train.py to record the interruption, then SIGKILL
    local method pid
    for pid in "${PID[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 150); do
        local alive=0
        for pid in "${PID[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${PID[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for method in "${!PID[@]}"; do wait "${PID[$method]}" 2>/dev/null || true; unset "PID[$method]"; done
}
stop_all() {
    trap - INT TERM
    echo
    echo "stopping: ${!PID[*]}" >&2
    stop_jobs
    echo "stopped; finished epochs stay in $OUTPUT_DIR/results_*_$TASK/ (metadata status 'interrupted')" >&2
    exit "$1"
}
on_exit() {  # a failure of this script itself must not leave its jobs running
    local code=$?
    if ((${#PID[@]} > 0)); then
        echo "run_experiments.sh is ending (status $code); stopping the jobs still running: ${!PID[*]}" >&2
        stop_jobs
    fi
}
set -E  # the ERR trap also fires inside functions
trap 'echo "error: run_experiments.sh line $LINENO: \"$BASH_COMMAND\" failed with status $?" >&2' ERR
trap on_exit EXIT
trap 'stop_all 130' INT
trap 'stop_all 143' TERM

# -- With -resume: what each method's latest run in the output folder left -------------------------
declare -A RUN_STATE=()  # completed, unfinished (has a resume state) or new
if [[ $RESUME == true ]]; then
    while read -r method state; do RUN_STATE[$method]=$state; done < <("$PYTHON" - "$OUTPUT_DIR" "$TASK" \
        "${METHODS[@]}" <<'PY'
import glob, json, os, sys

out, task, methods = sys.argv[1], sys.argv[2], sys.argv[3:]
for method in methods:
    runs = []
    for path in glob.glob(os.path.join(out, f"results_{method}_{task}", "metadata_*.json")):
        try:
            with open(path, encoding="utf-8") as handle:
                runs.append(json.load(handle))
        except (OSError, ValueError):
            continue
    latest = max(runs, key=lambda meta: meta.get("timestamp", ""), default=None)
    state = "new"
    if latest and latest.get("status") == "completed":
        state = "completed"
    elif latest and os.path.isfile((latest.get("paths") or {}).get("resume_state") or ""):
        state = "unfinished"
    print(method, state)
PY
)
    for method in "${METHODS[@]}"; do
        case ${RUN_STATE[$method]} in
            completed) echo "$method: its latest run completed; not run again" ;;
            unfinished) echo "$method: resuming its unfinished run" ;;
            *) echo "$method: no run to continue; starting a new one" ;;
        esac
    done
fi

mkdir -p "$LOG_DIR"
STARTED_MARK=$LOG_DIR/.started_$STAMP
touch "$STARTED_MARK"
QUEUE=()
for method in "${METHODS[@]}"; do
    if [[ ${RUN_STATE[$method]:-new} == completed ]]; then
        STATUS[$method]="done (earlier)"
        SECONDS_TAKEN[$method]=0
    else
        QUEUE+=("$method")
    fi
done
while ((${#QUEUE[@]} > 0 || ${#PID[@]} > 0)); do
    while ((${#QUEUE[@]} > 0 && ${#PID[@]} < JOBS)); do
        start_job "${QUEUE[0]}"
        QUEUE=("${QUEUE[@]:1}")
    done
    sleep 0.5
    for method in "${!PID[@]}"; do
        kill -0 "${PID[$method]}" 2>/dev/null || finish_job "$method"
    done
    show_progress
done
show_progress true

# -- Summary ------------------------------------------------------------------
FAILED=()
for method in "${METHODS[@]}"; do
    if [[ ${STATUS[$method]} != done* ]]; then
        FAILED+=("$method")
        echo
        echo "FAILED: $method, ${STATUS[$method]}; last lines of ${LOG[$method]}:"
        tail -n 15 "${LOG[$method]}" | sed 's/^/    /'
    fi
done
echo
summary_args=()
for method in "${METHODS[@]}"; do
    summary_args+=("$method" "${STATUS[$method]}" "${SECONDS_TAKEN[$method]}")
done
"$PYTHON" - "$OUTPUT_DIR" "$TASK" "$STARTED_MARK" "${summary_args[@]}" <<'PY' || true
import glob, json, os, sys

out, task, mark, rest = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
since = os.path.getmtime(mark)
print(f"{'method':<13} {'status':<18} {'best dev':>9} {'final sparsity':>15} {'wall time':>10}")
for method, status, seconds in zip(rest[0::3], rest[1::3], rest[2::3]):
    files = [f for f in glob.glob(os.path.join(out, f"results_{method}_{task}", "metadata_*.json"))
             if os.path.getmtime(f) >= since or status == "done (earlier)"]
    best = sparsity = "-"
    if files:
        meta = json.load(open(max(files, key=os.path.getmtime)))
        row, final = meta.get("best") or {}, meta.get("final") or {}
        best = f"{row[meta['primary_metric']]:.4f}" if meta["primary_metric"] in row else "-"
        sparsity = f"{final['global_sparsity']:.4f}" if "global_sparsity" in final else "-"
    print(f"{method:<13} {status:<18} {best:>9} {sparsity:>15} {int(seconds) // 60:>7}m{int(seconds) % 60:02d}s")
PY
rm -f "$STARTED_MARK"
if ((${#FAILED[@]} < ${#METHODS[@]})); then
    "$PYTHON" "$ROOT/plot_comparison.py" --results_dir "$OUTPUT_DIR" --task "$TASK" --methods "${METHODS[@]}" --pareto ||
        echo "warning: plot_comparison.py failed; the results folders are complete" >&2
fi
if ((${#FAILED[@]} > 0)); then
    echo "failed jobs: ${FAILED[*]}" >&2
    exit 1
fi
