# Two commands on a fresh machine: `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The reference CLIP code (OpenAI's model.py and simple_tokenizer.py) for parity tests; no deps
# because it declares torchvision, which does not import beside torch 2.13.0.
REFERENCE := clip-anytorch==2.6.0

.PHONY: demo test test-slow bench bench-avx2 parity-open-clip browser-deps clean

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

# The browser test (tests/test_browser.py) drives Debian's headless Chromium through chromium-driver; it is never
# skipped, so `make test` installs both when missing (apt-get, as root: ~25 s here). Without root this fails loudly.
browser-deps:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		echo "installing chromium and chromium-driver for the browser test (apt-get, needs root)"; \
		apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
		|| { echo "error: could not install chromium + chromium-driver; run as root: apt-get install -y chromium chromium-driver" >&2; exit 1; }; \
	fi

# pytest exits 5 when no test ran; that is a failure here, as any non-zero exit is.
test: $(STAMP) browser-deps
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# Benchmarks against open_clip need torchvision, which here means the torch 2.14.1 CUDA stack (~5.5 GB, from local
# disk): a separate venv, never the test one.
BENCH := .venv-bench
$(BENCH)/.installed: pyproject.toml Makefile
	test -x $(BENCH)/bin/python || $(PYTHON) -m venv $(BENCH)
	$(BENCH)/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BENCH)/bin/pip install --quiet open_clip_torch==3.3.0 transformers webdataset onnx onnxruntime onnxscript -e .
	$(BENCH)/bin/pip install --quiet --no-deps $(REFERENCE)
	touch $(BENCH)/.installed

# Every figure names the CPU class it was measured on (the first line printed). To measure the AVX2 class on an
# AVX-512 machine: make bench-avx2.
bench: $(BENCH)/.installed
	$(BENCH)/bin/python bench/timing.py
	$(BENCH)/bin/python bench/kernels.py
	$(BENCH)/bin/python bench/compare.py
	$(BENCH)/bin/python bench/train_step.py
	$(BENCH)/bin/python bench/data_loading.py
	$(BENCH)/bin/python bench/loss_memory.py
	$(BENCH)/bin/python bench/time_to_accuracy.py

# open_clip's LAION/DataComp architectures (up to ViT-bigG-14, 10 GB of fp32 weights shared by both models) against
# open_clip's own modules, and its eval transforms against ours: ~7 min, 11 GB of memory at peak.
parity-open-clip: $(BENCH)/.installed
	$(BENCH)/bin/python bench/open_clip_parity.py

AVX2 := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2
bench-avx2:
	$(AVX2) $(MAKE) bench

clean:
	rm -rf $(VENV) $(BENCH) runs .pytest_cache
