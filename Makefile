# make demo: every method on the tiny preset, in parallel, then their comparison (~2 min on 2 cores).
# make test: lint and test.
# Both create .venv and install the project into it when needed.
PYTHON ?= python3
# pytest workers (pytest-xdist); each test file runs whole on one worker, so its module fixtures are built once;
# files go out in collection order, the heavy ones first (tests/conftest.py).
TEST_WORKERS ?= 2
VENV ?= .venv
BIN := $(VENV)/bin
# Offline data beside the repository, when present, as absolute paths (tests run the drivers from other
# directories); override on the command line.
GLUE_DIR ?= $(abspath $(wildcard ../shared/data/glue))
TOKENIZER ?= $(or $(abspath $(wildcard ../shared/data/tokenizers/bert-base-uncased)),bert-base-uncased)
export GLUE_DIR TOKENIZER

.PHONY: demo test install bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed

# The main job on a subset that finishes in minutes: the first 4,000 SST-2 rows, 3 epochs, pruning to 90%
# over epochs 1-2, gumbel masks at a 50% target (masks_lr 0.1: a short run). run_experiments.sh ends with
# plot_comparison.py (figures and table in demo/).
demo: install
	./run_experiments.sh -parallel -m tiny -e 3 -ps 0 -pe 2 -f 0.9 -ts 0.5 -l 1e-3 -o bars -d demo -- \
		--max_train_samples 4000 --dropout_rate 0.1 --masks_lr 0.1

test: install
	$(BIN)/ruff check .
	$(BIN)/shellcheck run_experiments.sh
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

bench: install
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/padding_throughput.py
	$(BIN)/python bench/sst2_accuracy.py
	$(BIN)/python bench/pruning_overhead.py
	$(BIN)/python bench/tfmot_comparison.py
	$(BIN)/python bench/pruning_accuracy.py
	$(BIN)/python bench/gumbel_overhead.py
	$(BIN)/python bench/gumbel_accuracy.py
	$(BIN)/python bench/parallel_wall_time.py
	$(BIN)/python bench/fisher_pruning.py
	$(BIN)/python bench/latency_estimate.py
	$(BIN)/python bench/kprune_vs_fisher.py
	$(BIN)/python bench/vs_transformers.py
	$(BIN)/python bench/finetune_pretrained.py
	$(BIN)/python bench/pretrained_pruning.py
	$(BIN)/python bench/compaction_speedup.py
	$(BIN)/python bench/composability.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
