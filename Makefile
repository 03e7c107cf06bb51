# seqnrl: two commands do all the set-up.
#   make demo   -> creates .venv if missing, installs seqnrl, trains the baseline normative
#                  model on synthetic echo, writes per-frame scores and plots to outputs/demo/
#   make test   -> same install, then the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.seqnrl-installed

.PHONY: install install-pose demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[dev]"
	@touch $(STAMP)

# optional: mmpose evaluation functions for pose metrics (tests skip without them)
install-pose: install
	$(PY) -m pip install "setuptools>=68" wheel "cython>=3"
	$(PY) -m pip install --no-build-isolation "chumpy==0.70"
	$(PY) -m pip install --no-cache-dir --no-build-isolation --no-binary xtcocotools "xtcocotools>=1.12"
	$(PY) -m pip install -e ".[dev,pose]"

demo: install
	$(VENV)/bin/seqnrl fit --config configs/demo.yaml
	$(VENV)/bin/seqnrl predict --config configs/demo.yaml --ckpt_path runs/demo/checkpoints/best.ckpt
	@echo "per-frame scores (CSV/JSON) and score timelines (PNG): outputs/demo/"

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check seqnrl data_modules scripts tests

clean:
	rm -rf runs outputs .pytest_cache
