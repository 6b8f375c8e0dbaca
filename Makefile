# shoplm — two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv on first use and install everything (torch pinned to the CPU build).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHOPLM := $(VENV)/bin/shoplm
STAMP := $(VENV)/.installed-stamp

# Where the real data sets live (see ../shared/data/README.md); override with SHOPLM_DATA_DIR.
SHOPLM_DATA_DIR ?= ../shared/data
export SHOPLM_DATA_DIR
# The demo's working directory; each input is served from DEMO_DIR/NAME/run-KEY/ (its own
# SQLite store unless DEMO_STORE names one).
DEMO_DIR ?= var/demo
DEMO_STORE ?=
# Bring your own data: `make demo ITEMS=my/items.csv EVENTS=my/events.csv`, or a shop export
# as it is: `make demo ITEMS=feed.xml` (Merchant Center), `ITEMS=products_export.csv` (Shopify,
# WooCommerce); FORMAT= names the format when it cannot be detected. Default: Amazon Scientific.
ITEMS ?=
EVENTS ?=
JUDGMENTS ?=
FORMAT ?=
# The demo's fast settings: minutes of recommendation training and of search fine-tuning.
DEMO_TRAIN_MINUTES ?= 3
DEMO_SEARCH_MINUTES ?= 5
# More `shoplm demo` options, e.g. DEMO_ARGS=--no-serve.
DEMO_ARGS ?=
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install demo test services bench clean help

help:
	@echo "make demo   install; convert + ingest Amazon Scientific (or ITEMS=/EVENTS=/JUDGMENTS=, FORMAT=) under $(DEMO_DIR);"
	@echo "            train (or reuse) and evaluate what is served; serve http://$(HOST):$(PORT)"
	@echo "make test   install if needed, start PostgreSQL and install chromium if missing, run the whole test suite"
	@echo "make bench  encoder, ANN, service (zero-shot and trained models), ingest, ads, storefront, 1M facets and a 1M-item shop -> bench/RESULTS.md (BENCH_ARGS=--only ann ...)"
	@echo "make clean  remove $(DEMO_DIR) (keeps .venv)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,ray]'
	touch $(STAMP)

install: $(STAMP)

# `shoplm demo` converts, ingests, trains, evaluates, prints what it serves and serves (shoplm/cli/demo.py).
demo: $(STAMP)
	$(SHOPLM) demo --dir $(DEMO_DIR) $(if $(ITEMS),--items $(ITEMS)) $(if $(EVENTS),--events $(EVENTS)) \
	    $(if $(JUDGMENTS),--judgments $(JUDGMENTS)) $(if $(FORMAT),--format $(FORMAT)) \
	    $(if $(DEMO_STORE),--store $(DEMO_STORE)) --train-minutes $(DEMO_TRAIN_MINUTES) \
	    --search-minutes $(DEMO_SEARCH_MINUTES) --host $(HOST) --port $(PORT) $(DEMO_ARGS)

# What the tests need besides .venv: PostgreSQL running on 127.0.0.1:5432 (the store contract
# suite runs against it) and Debian's chromium (the storefront test drives it headless).
services:
	@pg_isready -h 127.0.0.1 -p 5432 -q || { pg_ctlcluster --skip-systemctl-redirect "$$(ls /etc/postgresql | head -n 1)" main start && \
	  for i in $$(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done; } || \
	  echo "the store tests need PostgreSQL on 127.0.0.1:5432 (trust auth, database test)"
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || \
	  echo "the storefront test needs chromium (apt-get install chromium)"

test: $(STAMP) services
	$(PY) -m pytest

# Timings, not tests: run on a quiet machine. Results: bench/RESULTS.md and bench/results.json.
bench: $(STAMP)
	@command -v wrk >/dev/null || apt-get install -y --no-install-recommends wrk || \
	  echo "the service benchmark needs wrk (apt-get install wrk / brew install wrk)"
	$(PY) bench/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(DEMO_DIR)
