# Every target sets up its own virtual environment first, so each works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch that this kind of machine keeps on disk; override for a GPU build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install test lint demo envs-demo bench clean

$(BIN)/metarl: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(BIN)/metarl

install: $(BIN)/metarl

# ruff, then the import contracts of pyproject.toml (DESIGN.md's layers).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q

# The main job: a short meta-training run on 2-D navigation that shows one-step
# adaptation being learned (about a minute on 2 cores); prints where the results are.
demo: install
	$(BIN)/metarl train experiments/configs/navigation2d.yaml --iterations 50

# Step every environment with the batched engine and print steps per second.
envs-demo: install
	$(BIN)/metarl demo

bench: install
	$(BIN)/metarl benchmark sampler --env metarl/HalfCheetahVel-v0
	$(BIN)/metarl benchmark sampler --env metarl/AntVel-v0
	$(BIN)/metarl benchmark iteration --config experiments/configs/halfcheetah-vel.yaml

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
