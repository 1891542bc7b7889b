# Two commands on a fresh machine: `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The reference CLIP code (OpenAI's model.py and simple_tokenizer.py) for parity tests; no deps
# because it declares torchvision, which does not import beside torch 2.13.0.
REFERENCE := clip-anytorch==2.6.0

.PHONY: demo test test-slow clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: the local CPU wheel; a range would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps $(REFERENCE)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/clipworks demo

# pytest exits 5 when no test ran; that is a failure here, as any non-zero exit is.
test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) runs .pytest_cache
