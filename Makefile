# seqnrl: two commands do all the set-up.
#   make demo   -> creates .venv if missing, installs seqnrl, then fit -> score -> summarise:
#                  trains the normative spatiotemporal transformer on synthetic echo
#                  (configs/demo.yaml), scores held-out recordings (outputs/demo/scores/),
#                  summarises one of them and a real lung-ultrasound clip, prints a table
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
	@echo "[demo 1/3] fit: normative spatiotemporal transformer on synthetic echo (configs/demo.yaml)"
	$(VENV)/bin/seqnrl fit --config configs/demo.yaml
	@echo "[demo 2/3] score the held-out synthetic recordings with calibrated per-frame scores"
	$(VENV)/bin/seqnrl predict --config configs/demo.yaml --ckpt_path runs/demo/checkpoints/best.ckpt
	$(PY) scripts/demo.py

test: install-pose
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check seqnrl data_modules scripts tests

clean:
	rm -rf runs outputs .pytest_cache
