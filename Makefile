# make demo: train the tiny preset on SST-2 (2 epochs, ~4 min on 2 cores).  make test: lint and test.
# Both create .venv and install the project into it when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Offline data beside the repository, when present (override on the command line).
GLUE_DIR ?= $(wildcard ../shared/data/glue)
TOKENIZER ?= $(or $(wildcard ../shared/data/tokenizers/bert-base-uncased),bert-base-uncased)
export GLUE_DIR TOKENIZER

.PHONY: demo test install bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed

# The recommended from-scratch recipe (README, bench/sst2_accuracy.py).
demo: install
	$(BIN)/python train.py --model_size tiny --task sst2 --epochs 2 --batch_size 96 \
		--learning_rate 1e-3 --warmup_ratio 0.1 --weight_decay 0.01 --dropout_rate 0.1

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

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

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
