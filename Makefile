# seqnrl: two commands do all the set-up.
#   make demo   -> creates .venv if missing, installs seqnrl, trains the baseline normative
#                  model on synthetic echo, writes per-frame scores and plots to outputs/demo/
#   make test   -> same install plus the pose extra (mmpose metrics), then the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.seqnrl-installed
POSE_STAMP := $(VENV)/.seqnrl-pose-installed

.PHONY: install install-pose demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[dev]"
	@touch $(STAMP)

# the pose extra: mmpose evaluation functions for pose metrics (the core and `make demo` do
# not need it; `make test` installs it so that CI checks this install and the mmpose tests)
install-pose: $(POSE_STAMP)

$(POSE_STAMP): $(STAMP)
	$(PY) -m pip install "setuptools>=68" wheel "cython>=3"
	$(PY) -m pip install --no-build-isolation "chumpy==0.70"
	$(PY) -m pip install --no-cache-dir --no-build-isolation --no-binary xtcocotools "xtcocotools>=1.12"
	$(PY) -m pip install -e ".[dev,pose]"
	$(PY) -c "import mmpose.evaluation.functional"
	@touch $(POSE_STAMP)

demo: install
	$(VENV)/bin/seqnrl fit --config configs/demo.yaml
	$(VENV)/bin/seqnrl predict --config configs/demo.yaml --ckpt_path runs/demo/checkpoints/best.ckpt
	@echo "per-frame scores (CSV/JSON) and score timelines (PNG): outputs/demo/"

test: install-pose
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check seqnrl data_modules scripts tests

clean:
	rm -rf runs outputs .pytest_cache
