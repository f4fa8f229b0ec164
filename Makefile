# shoal: `make test` and `make serve` work on a fresh machine with Python 3.11.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NATIVE_SRC := $(wildcard shoal/_native/*.c shoal/_native/*.h shoal/_native/build.py)
STAMP := $(VENV)/.shoal-installed
NATIVE_STAMP := shoal/_native/.built

.PHONY: all venv build test test-fast serve clean bench bench-quick

all: build

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,server,cluster]'
	touch $@

venv: $(STAMP)

# Editable installs do not rebuild C when it changes: rebuild here whenever a
# native source is newer than the last build.
$(NATIVE_STAMP): $(STAMP) $(NATIVE_SRC)
	$(PY) setup.py -q build_ext --inplace
	touch $@

build: $(NATIVE_STAMP)

test: build
	$(PY) -m pytest -q tests

test-fast: build
	$(PY) -m pytest -q -m "not slow and not crash" tests

# Benchmarks beside their peers (benchmarks/README.md): tables on stdout,
# JSON in benchmarks/results/. bench: ~3 minutes on 2 cores; bench-quick: ~30 s.
BENCH_STAMP := $(VENV)/.shoal-bench-installed

# The peers benchmarks/counts.py measures shoal beside (DuckDB, Tantivy, chdb).
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	touch $@

bench: build $(BENCH_STAMP)
	$(PY) benchmarks/suite.py

bench-quick: build $(BENCH_STAMP)
	$(PY) benchmarks/suite.py --quick

# The HTTP API on 127.0.0.1:8765 over ./shoal-data (created if absent,
# recovered if present). Extra options (shoal serve --help):
# make serve SERVE_ARGS="--port 9000 --memory 4GiB"
SERVE_ARGS ?=
serve: build
	$(VENV)/bin/shoal serve --data ./shoal-data $(SERVE_ARGS)

clean:
	rm -rf build $(NATIVE_STAMP) shoal/_native/_lib*.so shoal/_native/_records*.so shoal/_native/_lib.c shoal/_native/_lib.o
