#!/usr/bin/env bash
# Train several methods under one recipe, or a grid of methods x tasks x sparsities x seeds, one after the other,
# in parallel or on a Ray cluster, with live progress, then compare them (plot_comparison.py).
# ./run_experiments.sh -h lists the flags.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x $ROOT/.venv/bin/python ]]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
# Jobs run in their own folders: a relative interpreter path must become absolute (its venv link kept).
[[ $PYTHON != */* || $PYTHON == /* ]] || PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")
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
PARALLEL=false MAX_JOBS="" OUTPUT_MODE="" OUTPUT_DIR=. RESUME=false LIST=false
SEED_LIST="" SPARSITY_LIST="" TASK_LIST="" BACKEND=local RAY_ADDRESS_ARG="" RAY_DASHBOARD=false
PASS=()
# Methods that take a sparsity target from -sparsities (gumbel and soft movement as their --target_sparsity); the
# others run once per task and seed.
TARGETED=(magnitude movement spt soft_movement gumbel)
# Methods whose target is --target_sparsity (a learned-mask controller), and those that prune heads and neurons.
CONTROLLED=(soft_movement gumbel)
GRANULAR=(magnitude movement spt soft_movement)

usage() {
    cat <<EOF
Usage: ./run_experiments.sh [options] [-- train.py settings...]

Train every chosen method with one recipe through train.py, sequentially,
in parallel or as Ray tasks, show live progress, then print a summary table
and write the comparison figures and tables (plot_comparison.py). With
-seeds, -sparsities or -tasks, every combination is one job (a grid).

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
  -ts, --target-sparsity X   gumbel and soft_movement: fraction to remove, reached by a controller
                             [none: gumbel's fixed weight, soft_movement's lambda]
  -g,  --granularity G       magnitude, movement, spt and soft_movement: weight, or neuron, head or both
                             (units through their gates; -f and soft_movement's -ts are then fractions
                             of the blocks' MACs) [weight]
  -t,  --task T              ${TASKS[*]} [sst2]
  -ml, --max-len N           longest sequence in tokens                   [128]
  -i,  --init-from DIR       fine-tune every method from this Hugging Face folder [none: from scratch];
                             its fine-tuning recipe then replaces the bracketed defaults of -e, -b, -l, -ps
  -d,  --output-dir DIR      where results_*/, checkpoints_*/ and experiment_logs/ go [.]
  -seeds L                   comma list of seeds (train.py --seed): one job per seed   [train.py's: 42]
  -sparsities L              comma list of targets: the end sparsity of magnitude, movement and spt, the
                             target sparsity of gumbel and soft_movement; baseline runs once per task
                             and seed [one job: -f / -ts]
  -tasks L                   comma list of tasks (instead of -t): one job per task
                             With any of these three, each job writes into its own folder of
                             --output-dir, <method>_<task>_<sparsity|dense|lambda..>_seed<seed>/, and a
                             job whose folder holds a completed run is never run again (nor overwritten)
  -parallel                  run jobs at the same time (default: one after the other)
  -backend B                 local (this machine) or ray (each job one Ray task; needs the ray extra:
                             pip install 'gated-bert[ray]')                       [local]
  -ray-address A             the Ray cluster to join: auto (the one \`ray start\` began on this node) or
                             HOST:PORT [none: a Ray instance on 127.0.0.1 sized to this machine, for this
                             run only]
  -ray-dashboard             with that local instance, start the Ray dashboard (127.0.0.1:8265) [off]
  -list                      check every job, print each one's folder and train.py command, and exit
                             without running anything
  -resume                    continue the runs of --output-dir that did not finish (killed, interrupted,
                             failed) from their last finished epoch (train.py --resume): give the same
                             flags as the first time; a method whose latest run completed is not run
                             again, one with no run to continue starts anew
  -max-parallel-jobs N       most jobs at once with -parallel [CPU cores, at most one per job]; with
                             -backend ray it sets each job's CPU share, cores / N (Ray's num_cpus)
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
problem, and nothing runs. Each job runs in experiment_logs/work_<job>/,
where <job> is <method>_<task> or a grid job's folder name (relative paths
inside a --config file are read from there: use absolute ones), and logs to
experiment_logs/run_experiments_<job>_<timestamp>.log. The exit status is
non-zero when any job failed.
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
        -seeds|--seeds) need_value "$@"; SEED_LIST=$2; shift 2 ;;
        -sparsities|--sparsities) need_value "$@"; SPARSITY_LIST=$2; shift 2 ;;
        -tasks|--tasks) need_value "$@"; TASK_LIST=$2; shift 2 ;;
        -backend|--backend) need_value "$@"; BACKEND=$2; shift 2 ;;
        -ray-address|--ray-address) need_value "$@"; RAY_ADDRESS_ARG=$2; shift 2 ;;
        -ray-dashboard|--ray-dashboard) RAY_DASHBOARD=true; shift ;;
        -list|--list) LIST=true; shift ;;
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
# The grid: each list's items, checked; an empty list is one job with train.py's (or -t/-f/-ts's) value.
IFS=, read -r -a SEEDS <<<"$SEED_LIST"
IFS=, read -r -a SPARSITIES <<<"$SPARSITY_LIST"
IFS=, read -r -a GRID_TASKS <<<"$TASK_LIST"
for seed in "${SEEDS[@]}"; do
    [[ $seed =~ ^[0-9]+$ ]] || ERRORS+=("-seeds must be a comma list of non-negative integers, got '$seed'")
done
for target in "${SPARSITIES[@]}"; do check_fraction -sparsities "$target"; done
for task in "${GRID_TASKS[@]}"; do
    is_in "$task" "${TASKS[@]}" || ERRORS+=("unknown task '$task' in -tasks; choose from: ${TASKS[*]}")
done
has_duplicates() { [[ $(printf '%s\n' "$@" | sort | uniq -d) != "" ]]; }
for pair in SEEDS:-seeds SPARSITIES:-sparsities GRID_TASKS:-tasks; do
    declare -n items=${pair%%:*}
    ! has_duplicates "${items[@]}" || ERRORS+=("${pair#*:} lists a value twice: ${items[*]}")
done
unset -n items
[[ -z $TASK_LIST || -z $TASK ]] || ERRORS+=("give -t or -tasks, not both (-t $TASK, -tasks $TASK_LIST)")
if [[ -n $SPARSITY_LIST && -n $END_SPARSITY$TARGET_SPARSITY ]]; then
    ERRORS+=("-sparsities sets each job's -f (and gumbel's and soft_movement's -ts); drop -f/-ts or -sparsities")
fi
GRID=false
[[ -z $SEED_LIST$SPARSITY_LIST$TASK_LIST ]] || GRID=true
NO_RAY="-backend ray needs the ray package, which $PYTHON cannot import: pip install 'gated-bert[ray]'"
NO_RAY+=" (or pip install ray), or use -backend local"
if ! is_in "$BACKEND" local ray; then
    ERRORS+=("unknown -backend '$BACKEND'; choose local or ray")
elif [[ $BACKEND == local ]]; then
    [[ -z $RAY_ADDRESS_ARG ]] || ERRORS+=("-ray-address '$RAY_ADDRESS_ARG' needs -backend ray")
    [[ $RAY_DASHBOARD == false ]] || ERRORS+=("-ray-dashboard needs -backend ray")
fi
[[ -z $RAY_ADDRESS_ARG || $RAY_DASHBOARD == false ]] ||
    ERRORS+=("-ray-dashboard starts the dashboard of a local instance; a cluster (-ray-address) has its own")
# A run that goes on has its Ray driver, which imports ray, started below; here, the check alone.
if [[ $BACKEND == ray ]] && { [[ $LIST == true ]] || ((${#ERRORS[@]} > 0)); }; then
    "$PYTHON" -c 'import ray' 2>/dev/null || ERRORS+=("$NO_RAY")
fi
if [[ ${#ERRORS[@]} -gt 0 ]]; then
    printf 'error: %s\n' "${ERRORS[@]}" >&2
    exit 2
fi

# -- Paths ---------------------------------------------------------------------------
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

# This script's settings and the train.py flag each one sets (the task is each job's own).
FLAGS=(MODEL_SIZE:model_size EPOCHS:epochs BATCH_SIZE:batch_size LEARNING_RATE:learning_rate
    MAX_LEN:max_len START_SPARSITY:start_sparsity END_SPARSITY:end_sparsity PRUNING_START:pruning_start_epoch
    PRUNING_END:pruning_end_epoch SPARSITY_STEPS:sparsity_steps SPT_EXPLORE:spt_explore_per_layer
    INIT_FROM:init_from)

# -- Jobs: every combination of task, method, target and seed (a job is its index in these arrays) -----------
JOB_METHOD=() JOB_TASK=() JOB_TARGET=() JOB_SEED=() JOB_ID=() JOB_KEY=() JOB_DIR=() JOB_GROUP=()
[[ ${#GRID_TASKS[@]} -gt 0 ]] || GRID_TASKS=("$TASK")
[[ ${#SEEDS[@]} -gt 0 ]] || SEEDS=("")
for task in "${GRID_TASKS[@]}"; do
    for method in "${METHODS[@]}"; do
        targets=("")
        if [[ ${#SPARSITIES[@]} -gt 0 ]] && is_in "$method" "${TARGETED[@]}"; then targets=("${SPARSITIES[@]}"); fi
        for target in "${targets[@]}"; do
            for seed in "${SEEDS[@]}"; do
                JOB_METHOD+=("$method") JOB_TASK+=("$task") JOB_TARGET+=("$target") JOB_SEED+=("$seed")
            done
        done
    done
done
ALL_JOBS=("${!JOB_METHOD[@]}")

CORES=$(nproc)
JOBS=1
if [[ $PARALLEL == true || $BACKEND == ray ]]; then
    JOBS=${MAX_JOBS:-$CORES}
    ((JOBS <= ${#ALL_JOBS[@]})) || JOBS=${#ALL_JOBS[@]}
fi
THREADS=0  # TensorFlow decides
if ((JOBS > 1)); then
    THREADS=$((CORES / JOBS))
    ((THREADS >= 1)) || THREADS=1
fi

# A job's train.py flags: those the user set, then those this script decides.
train_args() {
    local i=$1 method=${JOB_METHOD[$1]} args=() pair variable
    for pair in "${FLAGS[@]}"; do
        variable=${pair%%:*}
        [[ -z ${!variable} ]] || args+=("--${pair#*:}" "${!variable}")
    done
    [[ -z ${JOB_TASK[i]} ]] || args+=(--task "${JOB_TASK[i]}")
    [[ -z ${JOB_SEED[i]} ]] || args+=(--seed "${JOB_SEED[i]}")
    if [[ -n ${JOB_TARGET[i]} ]] && is_in "$method" "${CONTROLLED[@]}"; then
        args+=(--target_sparsity "${JOB_TARGET[i]}")
    elif [[ -n ${JOB_TARGET[i]} ]]; then
        args+=(--end_sparsity "${JOB_TARGET[i]}")
    fi
    if [[ -n $TARGET_SPARSITY ]] && is_in "$method" "${CONTROLLED[@]}"; then
        args+=(--target_sparsity "$TARGET_SPARSITY")
    fi
    if [[ -n $GRANULARITY ]] && is_in "$method" "${GRANULAR[@]}"; then
        args+=(--pruning_granularity "$GRANULARITY")
    fi
    local pruning=$method
    [[ $method != baseline ]] || pruning=none
    args+=(--pruning_method "$pruning" --output_dir "${JOB_DIR[i]:-$OUTPUT_DIR}" --verbose 2
        --intra_op_threads "$THREADS" --inter_op_threads "$THREADS")
    printf '%s\n' "${args[@]}"
}

job_label() {  # a job in messages before it has a name
    local i=$1 label=${JOB_METHOD[$1]}
    [[ $GRID == false ]] || label+=" (task ${JOB_TASK[i]:-default}, sparsity ${JOB_TARGET[i]:-default}, seed ${JOB_SEED[i]:-default})"
    echo "$label"
}

# -- The Ray driver (experiment/ray_jobs.py), started now: its instance comes up while the jobs are checked -----
# It runs every job as a Ray task once given them (start_ray_jobs), and tells this script through $EVENTS when each
# starts (on which node) and ends (with its exit code). Its log is read from $RAY_LIVE_LOG, and kept as $RAY_LOG.
CHECK_DIR=$(mktemp -d)
STAMP=$(date +%Y%m%d_%H%M%S)
RAY_PID="" RAY_GIVEN=false RAY_LOG="" RAY_LIVE_LOG="" EVENTS="" RAY_INSTANCE=""
stop_idle_ray() {  # a driver that has no jobs: it stops its instance and ends, or is killed after 60 s
    [[ -n $RAY_PID ]] || return 0
    kill -TERM "$RAY_PID" 2>/dev/null || true
    # A driver blocked inside ray.init runs its SIGTERM handler only when that returns: once, in CI on 2 busy
    # cores, not within 300 s. Killed, it leaves two of Ray's agents behind: they carry $RAY_INSTANCE, and go too.
    local tenths=0
    while ((tenths < 600)) && [[ $(ps -o stat= -p "$RAY_PID" 2>/dev/null) == [!Z]* ]]; do
        sleep 0.1
        tenths=$((tenths + 1))
    done
    if ((tenths >= 600)); then
        echo "warning: the Ray driver did not stop within 60 s of SIGTERM; killed it and its instance" >&2
        kill -KILL "$RAY_PID" 2>/dev/null || true
        wait "$RAY_PID" 2>/dev/null || true
        (cd "$ROOT" && "$PYTHON" -m experiment.ray_jobs --sweep "$RAY_INSTANCE") || true
    fi
    wait "$RAY_PID" 2>/dev/null || true
    RAY_PID=""
}
trap 'stop_idle_ray; rm -rf "$CHECK_DIR"' EXIT
if [[ $BACKEND == ray && $LIST == false ]]; then
    EVENTS=$LOG_DIR/ray_events_$STAMP
    RAY_LOG=$LOG_DIR/ray_$STAMP.log
    RAY_LIVE_LOG=$CHECK_DIR/ray.log
    ray_args=(--jobs "$EVENTS/jobs.jsonl" --events "$EVENTS" --imported "$CHECK_DIR/ray_imported"
        --cpus_per_job "$((THREADS > 0 ? THREADS : CORES))" --cores "$CORES")
    [[ -z $RAY_ADDRESS_ARG ]] || ray_args+=(--address "$RAY_ADDRESS_ARG")
    [[ $RAY_DASHBOARD == false ]] || ray_args+=(--dashboard)
    RAY_INSTANCE=${STAMP}_$$_$RANDOM  # what a local instance's processes carry (GATED_BERT_RAY_INSTANCE)
    ray_args+=(--instance "$RAY_INSTANCE")
    (cd "$ROOT" && exec "$PYTHON" -m experiment.ray_jobs "${ray_args[@]}") >"$RAY_LIVE_LOG" 2>&1 &
    RAY_PID=$!
fi

# -- Validation 2: every job's settings, resolved and checked by train.py --dry_run --------------
for i in "${ALL_JOBS[@]}"; do
    mapfile -t args < <(train_args "$i")
    if ! "$PYTHON" "$ROOT/train.py" --dry_run "${args[@]}" "${PASS[@]}" >"$CHECK_DIR/$i.json" 2>"$CHECK_DIR/err"; then
        ERRORS+=("$(job_label "$i"): $(sed 's/^error: //; s/^train.py: error: //' "$CHECK_DIR/err" | tail -n 1)")
    fi
done
if [[ -n $RAY_PID ]]; then  # the driver has imported ray, or could not
    while [[ ! -e $CHECK_DIR/ray_imported ]] && kill -0 "$RAY_PID" 2>/dev/null; do sleep 0.05; done
    if [[ ! -e $CHECK_DIR/ray_imported ]]; then
        code=0
        wait "$RAY_PID" || code=$?
        RAY_PID=""
        if ((code == 2)); then ERRORS+=("$NO_RAY"); else
            ERRORS+=("the Ray driver ended at its start (status $code): $(tail -n 1 "$RAY_LIVE_LOG")")
        fi
    fi
fi
if [[ ${#ERRORS[@]} -gt 0 ]]; then
    printf 'error: %s\n' "${ERRORS[@]}" >&2
    echo "no job was started. train.py's names for this script's flags: --epochs -e, --batch_size -b," \
        "--learning_rate -l, --model_size -m, --start_sparsity -s, --end_sparsity -f, --pruning_start_epoch -ps," \
        "--pruning_end_epoch -pe, --sparsity_steps -ss, --task -t, --max_len -ml" >&2
    exit 2
fi
FIRST_CONFIG=$(cat "$CHECK_DIR/0.json")

# Each job's task, setting and seed as resolved (flags, --config file, environment): a grid job's folder name.
mapfile -t RESOLVED_NAMES < <("$PYTHON" - "$CHECK_DIR" "${#ALL_JOBS[@]}" <<'PY'
import json, os, sys

folder, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    with open(os.path.join(folder, f"{i}.json"), encoding="utf-8") as handle:
        c = json.load(handle)
    method = c["pruning_method"]
    if method == "none":
        setting = "dense"
    elif method in ("gumbel", "soft_movement") and c["target_sparsity"] is not None:
        setting = f"sparsity{c['target_sparsity']:g}"
    elif method == "gumbel":
        setting = "untargeted"
    elif method == "soft_movement":
        setting = f"lambda{c['soft_movement_lambda']:g}"
    else:
        setting = f"sparsity{c['end_sparsity']:g}"
    print(c["task"], setting, c["seed"])
PY
)
declare -A TAKEN=()
for i in "${ALL_JOBS[@]}"; do
    read -r task setting seed <<<"${RESOLVED_NAMES[i]}"
    JOB_TASK[i]=$task
    JOB_KEY[i]=${JOB_METHOD[i]}_$task
    JOB_GROUP[i]="${JOB_METHOD[i]} $task $setting"
    if [[ $GRID == true ]]; then
        JOB_KEY[i]=${JOB_METHOD[i]}_${task}_${setting}_seed$seed
        JOB_ID[i]=${JOB_KEY[i]}
        JOB_DIR[i]=$OUTPUT_DIR/${JOB_KEY[i]}
    else
        JOB_ID[i]=${JOB_METHOD[i]}
        JOB_DIR[i]=$OUTPUT_DIR
    fi
    [[ -z ${TAKEN[${JOB_KEY[i]}]:-} ]] || ERRORS+=("two jobs would share ${JOB_KEY[i]}: $(job_label "${TAKEN[${JOB_KEY[i]}]}") and $(job_label "$i")")
    TAKEN[${JOB_KEY[i]}]=$i
done
if [[ ${#ERRORS[@]} -gt 0 ]]; then
    printf 'error: %s\n' "${ERRORS[@]}" >&2
    exit 2
fi
mapfile -t RUN_TASKS < <(printf '%s\n' "${JOB_TASK[@]}" | awk '!seen[$0]++')
if [[ $LIST == true ]]; then
    for i in "${ALL_JOBS[@]}"; do
        mapfile -t args < <(train_args "$i")
        printf '%s\t%s\ttrain.py %s\n' "${JOB_ID[i]}" "${JOB_DIR[i]}" "${args[*]} ${PASS[*]}"
    done
    exit 0
fi
ID_WIDTH=13
for i in "${ALL_JOBS[@]}"; do ((${#JOB_ID[i]} <= ID_WIDTH)) || ID_WIDTH=${#JOB_ID[i]}; done

# -- Resolved configuration: the first job's (the jobs differ in method, task, target and seed only) --------
RESOLVED=$("$PYTHON" - "$FIRST_CONFIG" <<'PY'
import json, sys

c = json.loads(sys.argv[1])
print(c["epochs"])
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
EPOCHS=$(head -n 1 <<<"$RESOLVED")
if [[ -z $OUTPUT_MODE ]]; then
    OUTPUT_MODE=bars
    if [[ -t 0 ]]; then
        read -r -p "Output mode: bars, logs or both? [bars] " answer || true
        is_in "${answer:-bars}" bars logs both || { echo "error: unknown output mode '$answer'" >&2; exit 2; }
        OUTPUT_MODE=${answer:-bars}
    fi
fi
mkdir -p "$OUTPUT_DIR"
if [[ $BACKEND == ray ]]; then
    MODE="Ray tasks on ${RAY_ADDRESS_ARG:-a local instance on 127.0.0.1 ($CORES cores)}, $((THREADS > 0 ? THREADS : CORES)) CPU(s) each"
elif [[ $PARALLEL == true ]]; then
    MODE="parallel, up to $JOBS jobs, $THREADS CPU thread(s) each ($CORES cores)"
else
    MODE=sequential
fi
cat <<EOF
methods:        ${METHODS[*]}
mode:           $MODE
$(tail -n +2 <<<"$RESOLVED")
learned target: ${TARGET_SPARSITY:-train.py default} (gumbel, soft_movement)
granularity:    ${GRANULARITY:-weight} (${GRANULAR[*]})
pass-through:   ${PASS[*]:-none}
outputs:        $OUTPUT_DIR (logs in $LOG_DIR)
output mode:    $OUTPUT_MODE
EOF
if [[ $GRID == true ]]; then
    echo "grid:           ${#ALL_JOBS[@]} jobs: tasks ${RUN_TASKS[*]}; sparsities ${SPARSITIES[*]:-as set}" \
        "(${TARGETED[*]}); seeds ${SEEDS[*]:-as set}; one folder each"
fi

# -- Jobs ---------------------------------------------------------------------
declare -A PID=() STATUS=() STARTED=() SECONDS_TAKEN=() LOG=() PROGRESS=() OFFSET=() NODE=()
COMMAND=()
prepare_job() {  # its folders and files; its train.py command in COMMAND
    local i=$1 work=$LOG_DIR/work_${JOB_KEY[$1]}
    mkdir -p "$work" "${JOB_DIR[i]}"
    LOG[$i]=$LOG_DIR/run_experiments_${JOB_KEY[i]}_$STAMP.log
    PROGRESS[$i]=$work/progress
    OFFSET[$i]=0
    rm -f "${PROGRESS[$i]}"
    local args
    mapfile -t args < <(train_args "$i")
    [[ ${RUN_STATE[$i]:-new} != unfinished || $RESUME == false ]] || args+=(--resume)
    COMMAND=("$PYTHON" "$ROOT/train.py" "${args[@]}" --progress_file "${PROGRESS[$i]}" "${PASS[@]}")
}

start_job() {
    local i=$1
    prepare_job "$i"
    (cd "$LOG_DIR/work_${JOB_KEY[i]}" && exec "${COMMAND[@]}") >"${LOG[$i]}" 2>&1 &
    PID[$i]=$!
    STATUS[$i]=running
    STARTED[$i]=$SECONDS
}

finish_job() {  # $2: the exit code, when known (Ray); else waited for
    local i=$1 code=${2:-0}
    if [[ -n ${PID[$i]:-} ]]; then
        wait "${PID[$i]}" || code=$?
        unset "PID[$i]"
    fi
    SECONDS_TAKEN[$i]=$((SECONDS - ${STARTED[$i]:-$SECONDS}))
    if ((code == 0)); then STATUS[$i]="done"; else STATUS[$i]="failed (exit $code)"; fi
}

# The Ray backend: the queued jobs, for the driver started above (its jobs file appears whole: written, renamed).
start_ray_jobs() {
    local i
    mkdir -p "$EVENTS"
    for i in "${QUEUE[@]}"; do  # each job's fields and its command's words, NUL-separated, for one JSON encoder
        prepare_job "$i"
        printf '%s\0' "$i" "$LOG_DIR/work_${JOB_KEY[i]}" "${LOG[$i]}" "${JOB_DIR[i]}" "${#COMMAND[@]}" "${COMMAND[@]}"
        STATUS[$i]=queued
    done >"$CHECK_DIR/jobs"
    "$PYTHON" - "$CHECK_DIR/jobs" >"$EVENTS/jobs.jsonl.tmp" <<'PY'
import itertools, json, sys

with open(sys.argv[1], "rb") as handle:
    words = iter(handle.read().decode().split("\0")[:-1])
for job in words:
    cwd, log, out, count = itertools.islice(words, 4)
    argv = list(itertools.islice(words, int(count)))
    print(json.dumps(dict(id=job, cwd=cwd, log=log, output_dir=out, argv=argv)))
PY
    mv "$EVENTS/jobs.jsonl.tmp" "$EVENTS/jobs.jsonl"
    RAY_GIVEN=true
    QUEUE=()
}

poll_ray_jobs() {
    local i code node host
    for i in "${ALL_JOBS[@]}"; do
        [[ ${STATUS[$i]:-} == queued || ${STATUS[$i]:-} == running ]] || continue
        if [[ ${STATUS[$i]} == queued && -f $EVENTS/$i.started ]]; then
            STATUS[$i]=running
            STARTED[$i]=$SECONDS
            read -r node host <"$EVENTS/$i.started"
            NODE[$i]="$host/$node"
        fi
        if [[ -f $EVENTS/$i.done ]]; then
            read -r code node host _ <"$EVENTS/$i.done"
            [[ $node == - ]] || NODE[$i]="$host/$node"
            finish_job "$i" "$code"
        fi
    done
    if [[ -n $RAY_PID ]] && ! kill -0 "$RAY_PID" 2>/dev/null; then
        code=0
        wait "$RAY_PID" || code=$?
        RAY_PID=""
        for i in "${ALL_JOBS[@]}"; do  # whatever the driver left unfinished
            if [[ ${STATUS[$i]:-} == queued || ${STATUS[$i]:-} == running ]]; then
                [[ -f $EVENTS/$i.done ]] && continue
                finish_job "$i" "$((code == 0 ? 1 : code))"
                STATUS[$i]+=", its Ray driver ended"
            fi
        done
    fi
}

ray_jobs_left() {
    local i
    for i in "${ALL_JOBS[@]}"; do
        [[ ${STATUS[$i]:-} != queued && ${STATUS[$i]:-} != running ]] || return 0
    done
    return 1
}

# -- Progress -------------------------------------------------------------------
DRAWN=0  # lines of bars on the terminal, redrawn in place
LAST_PLAIN=0
RAY_OFFSET=0
bar_line() {
    local i=$1 percent=0 epoch=0 epochs=$EPOCHS metric="" value="-" state=${STATUS[$1]:-queued}
    if [[ -f ${PROGRESS[$i]:-} ]]; then
        read -r percent epoch epochs metric value _ <"${PROGRESS[$i]}" || true
    fi
    local filled=$(( ${percent%.*} * 30 / 100 ))
    local bar
    bar=$(printf '%*s' "$filled" '' | tr ' ' '#')$(printf '%*s' $((30 - filled)) '' | tr ' ' '-')
    printf '%-*s [%s] %5s%%  epoch %s/%s  %s %s  %s\n' "$ID_WIDTH" "${JOB_ID[i]}" "$bar" "$percent" "$epoch" \
        "$epochs" "${metric:-dev}" "$value" "$state"
}

new_lines() {  # the lines file $1 gained since offset $2, prefixed by [$3], in NEW_TEXT; its new offset in NEW_OFFSET
    local file=$1 offset=$2 prefix=$3 size
    NEW_TEXT="" NEW_OFFSET=$offset
    [[ -f $file ]] || return 0
    size=$(stat -c %s "$file")
    if ((size > offset)); then
        # head reads the file and stops at `size`; tail reads head's whole output, so no writer in this
        # pipeline meets a closed pipe (under pipefail a SIGPIPE'd tail would end the script).
        NEW_TEXT=$(head -c "$size" "$file" | tail -c +"$((offset + 1))" | sed "s|^|[$prefix] |")
        NEW_OFFSET=$size
    fi
}

show_progress() {
    local final=${1:-false} lines="" i
    for i in "${ALL_JOBS[@]}"; do
        [[ -n ${LOG[$i]:-} ]] || continue
        new_lines "${LOG[$i]}" "${OFFSET[$i]}" "${JOB_ID[i]}"
        lines+=$NEW_TEXT$'\n'
        OFFSET[$i]=$NEW_OFFSET
    done
    lines=$(printf '%s' "$lines" | grep -v '^$' || true)
    [[ $OUTPUT_MODE != both ]] || lines=$(printf '%s' "$lines" | grep -E 'ERROR|Error|error:| WARNING |final |epoch [0-9]+:|Epoch [0-9]+' || true)
    [[ $OUTPUT_MODE != bars ]] || lines=""
    if [[ -n $RAY_LIVE_LOG ]]; then  # the driver's own lines, in every mode: few, and about every job
        local driver
        new_lines "$RAY_LIVE_LOG" "$RAY_OFFSET" ray
        RAY_OFFSET=$NEW_OFFSET
        driver=$(printf '%s' "$NEW_TEXT" | grep -v '^\[ray\] \[20[0-9-]* [0-9:,]* [A-Z]' || true)
        lines=$(printf '%s\n%s' "$driver" "$lines" | grep -v '^$' || true)
    fi
    if [[ -t 1 ]]; then
        ((DRAWN == 0)) || printf '\033[%dA\033[J' "$DRAWN"
        [[ -z $lines ]] || printf '%s\n' "$lines"
        DRAWN=0
        if [[ $OUTPUT_MODE != logs ]]; then
            for i in "${ALL_JOBS[@]}"; do bar_line "$i"; DRAWN=$((DRAWN + 1)); done
        fi
        return
    fi
    [[ -z $lines ]] || printf '%s\n' "$lines"
    if [[ $OUTPUT_MODE != logs ]] && { $final || ((SECONDS - LAST_PLAIN >= 10)); }; then
        echo "-- progress after ${SECONDS}s"
        for i in "${ALL_JOBS[@]}"; do bar_line "$i"; done
        LAST_PLAIN=$SECONDS
    fi
}

# -- Ctrl-C / SIGTERM, or any other end: stop every job, keep what they wrote -------------------
# SIGTERM to the running jobs (and the Ray driver, which passes it on), time for train.py to record the
# interruption (15 s; the driver's tasks 15 s more), then SIGKILL.
stop_jobs() {
    local i pid pids=("${PID[@]}") tenths=150
    [[ -z $RAY_PID ]] || { pids+=("$RAY_PID"); tenths=300; }
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 "$tenths"); do
        local alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for i in "${!PID[@]}"; do wait "${PID[$i]}" 2>/dev/null || true; unset "PID[$i]"; done
    [[ -z $RAY_PID ]] || { wait "$RAY_PID" 2>/dev/null || true; RAY_PID=""; }
}
running_ids() {
    local i ids=()
    for i in "${!PID[@]}"; do ids+=("${JOB_ID[i]}"); done
    [[ -z $RAY_PID ]] || ids+=("the Ray driver and its tasks")
    echo "${ids[*]}"
}
stop_all() {
    trap - INT TERM
    echo
    echo "stopping: $(running_ids)" >&2
    stop_jobs
    echo "stopped; finished epochs stay in the results_*/ folders of $OUTPUT_DIR (metadata status 'interrupted')" >&2
    exit "$1"
}
on_exit() {  # a failure of this script itself must not leave its jobs running
    local code=$?
    if ((${#PID[@]} > 0)) || [[ -n $RAY_PID && $RAY_GIVEN == true ]]; then
        echo "run_experiments.sh is ending (status $code); stopping the jobs still running: $(running_ids)" >&2
        stop_jobs
    fi
    stop_idle_ray
    [[ $RAY_GIVEN == false ]] || cp "$RAY_LIVE_LOG" "$RAY_LOG" || true
    rm -rf "$CHECK_DIR"
}
set -E  # the ERR trap also fires inside functions
trap 'echo "error: run_experiments.sh line $LINENO: \"$BASH_COMMAND\" failed with status $?" >&2' ERR
trap on_exit EXIT
trap 'stop_all 130' INT
trap 'stop_all 143' TERM

# -- What each job's folder already holds: with -resume, or for a grid (whose finished jobs never run again) ----
declare -A RUN_STATE=()  # completed, unfinished (has a resume state) or new
if [[ $RESUME == true || $GRID == true ]]; then
    while read -r i state; do RUN_STATE[$i]=$state; done < <(
        for i in "${ALL_JOBS[@]}"; do printf '%s\t%s\t%s\t%s\n' "$i" "${JOB_DIR[i]}" "${JOB_METHOD[i]}" "${JOB_TASK[i]}"
        done | "$PYTHON" -c '
import glob, json, os, sys

for line in sys.stdin:
    i, out, method, task = line.rstrip("\n").split("\t")
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
    print(i, state)
')
    for i in "${ALL_JOBS[@]}"; do
        case ${RUN_STATE[$i]}:$RESUME in
            completed:*) echo "${JOB_ID[i]}: its latest run completed; not run again" ;;
            unfinished:true) echo "${JOB_ID[i]}: resuming its unfinished run" ;;
            unfinished:false) echo "${JOB_ID[i]}: its folder holds an unfinished run; starting a new one beside it" \
                "(-resume continues it)" ;;
            *) [[ $RESUME == false ]] || echo "${JOB_ID[i]}: no run to continue; starting a new one" ;;
        esac
    done
fi

mkdir -p "$LOG_DIR"
STARTED_MARK=$LOG_DIR/.started_$STAMP
touch "$STARTED_MARK"
QUEUE=()
for i in "${ALL_JOBS[@]}"; do
    if [[ ${RUN_STATE[$i]:-new} == completed ]]; then
        STATUS[$i]="done (earlier)"
        SECONDS_TAKEN[$i]=0
    else
        QUEUE+=("$i")
    fi
done
if [[ $BACKEND == ray ]]; then
    if ((${#QUEUE[@]} > 0)); then start_ray_jobs; else stop_idle_ray; fi
    while ray_jobs_left; do
        sleep 0.5
        poll_ray_jobs
        show_progress
    done
else
    while ((${#QUEUE[@]} > 0 || ${#PID[@]} > 0)); do
        while ((${#QUEUE[@]} > 0 && ${#PID[@]} < JOBS)); do
            start_job "${QUEUE[0]}"
            QUEUE=("${QUEUE[@]:1}")
        done
        sleep 0.5
        for i in "${!PID[@]}"; do
            kill -0 "${PID[$i]}" 2>/dev/null || finish_job "$i"
        done
        show_progress
    done
fi
show_progress true

# -- Summary ------------------------------------------------------------------
FAILED=()
for i in "${ALL_JOBS[@]}"; do
    if [[ ${STATUS[$i]} != done* ]]; then
        FAILED+=("${JOB_ID[i]}")
        echo
        if [[ -s ${LOG[$i]:-} ]]; then
            echo "FAILED: ${JOB_ID[i]}, ${STATUS[$i]}; last lines of ${LOG[$i]}:"
            tail -n 15 "${LOG[$i]}" | sed 's/^/    /'
        else
            echo "FAILED: ${JOB_ID[i]}, ${STATUS[$i]}; it wrote nothing${RAY_LOG:+ (see the log of the Ray driver, $RAY_LOG)}"
        fi
    fi
done
echo
for i in "${ALL_JOBS[@]}"; do
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "${JOB_ID[i]}" "${STATUS[$i]}" "${SECONDS_TAKEN[$i]}" "${JOB_DIR[i]}" \
        "${JOB_METHOD[i]}" "${JOB_TASK[i]}" "${JOB_GROUP[i]}" "${NODE[$i]:--}"
done >"$CHECK_DIR/summary.tsv"
"$PYTHON" - "$CHECK_DIR/summary.tsv" "$STARTED_MARK" "$GRID" "$BACKEND" "$ID_WIDTH" <<'PY' || true
import glob, json, os, statistics, sys

table, mark, grid, ray, width = sys.argv[1], sys.argv[2], sys.argv[3] == "true", sys.argv[4] == "ray", int(sys.argv[5])
since = os.path.getmtime(mark)
node_header = f" {'node':<30}" if ray else ""
print(f"{'job':<{width}} {'status':<18} {'best dev':>9} {'final sparsity':>15}{node_header} {'wall time':>10}")
groups = {}
with open(table, encoding="utf-8") as handle:
    jobs = [line.rstrip("\n").split("\t") for line in handle]
for job, status, seconds, out, method, task, group, node in jobs:
    files = [f for f in glob.glob(os.path.join(out, f"results_{method}_{task}", "metadata_*.json"))
             if os.path.getmtime(f) >= since or status == "done (earlier)"]
    best = sparsity = "-"
    if files:
        with open(max(files, key=os.path.getmtime), encoding="utf-8") as handle:
            meta = json.load(handle)
        row, final = meta.get("best") or {}, meta.get("final") or {}
        if meta["primary_metric"] in row:
            best = f"{row[meta['primary_metric']]:.4f}"
            if status.startswith("done"):
                groups.setdefault(group, []).append((row[meta["primary_metric"]], final.get("global_sparsity", 0.0)))
        sparsity = f"{final['global_sparsity']:.4f}" if "global_sparsity" in final else "-"
    node_cell = f" {node:<30}" if ray else ""
    print(f"{job:<{width}} {status:<18} {best:>9} {sparsity:>15}{node_cell} "
          f"{int(seconds) // 60:>7}m{int(seconds) % 60:02d}s")
if grid and groups:  # the grid's settings: mean and standard deviation over seeds
    print(f"\n{'method':<13} {'task':<6} {'setting':<14} {'seeds':>5} {'best dev mean ± std':>20} {'final sparsity':>15}")
    for group, values in groups.items():
        method, task, setting = group.split(" ")
        best = [value for value, _ in values]
        spread = statistics.stdev(best) if len(best) > 1 else float("nan")
        sparsity = statistics.fmean(value for _, value in values)
        print(f"{method:<13} {task:<6} {setting:<14} {len(best):>5} {statistics.fmean(best):>11.4f} ± {spread:<6.4f} "
              f"{sparsity:>15.4f}")
PY
rm -f "$STARTED_MARK"
if ((${#FAILED[@]} < ${#ALL_JOBS[@]})); then
    for task in "${RUN_TASKS[@]}"; do
        "$PYTHON" "$ROOT/plot_comparison.py" --results_dir "$OUTPUT_DIR" --task "$task" --methods "${METHODS[@]}" \
            --pareto || echo "warning: plot_comparison.py failed for $task; the results folders are complete" >&2
    done
fi
if [[ -n $RAY_PID ]]; then  # the driver has been stopping its Ray instance while the summary was made
    wait "$RAY_PID" || echo "warning: the Ray driver ended with status $?; see $RAY_LOG" >&2
    RAY_PID=""
fi
if ((${#FAILED[@]} > 0)); then
    echo "failed jobs: ${FAILED[*]}" >&2
    exit 1
fi
