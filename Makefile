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
# The demo's working directory and store; override to use your own.
DEMO_DIR ?= var/demo
DEMO_STORE ?= sqlite:///$(DEMO_DIR)/shop.db
# Bring your own data: `make demo ITEMS=my/items.csv EVENTS=my/events.csv`.
ITEMS ?= $(DEMO_DIR)/scientific/items.csv
EVENTS ?= $(DEMO_DIR)/scientific/events.csv
# The demo's fast training setting: minutes of training at most (the best epoch is kept).
DEMO_TRAIN_MINUTES ?= 3
DEMO_MODEL := $(DEMO_DIR)/models/recommend
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install demo test services bench clean help

help:
	@echo "make demo   install; convert + ingest Amazon Scientific (or ITEMS=/EVENTS=) into $(DEMO_STORE);"
	@echo "            train (or reuse) the recommendation model; evaluate; serve http://$(HOST):$(PORT)"
	@echo "make test   install if needed, start PostgreSQL and install chromium if missing, run the whole test suite"
	@echo "make bench  encoder, ANN, service, ingest, ads, storefront and 1M-facet benchmarks -> bench/RESULTS.md (BENCH_ARGS=--only ann ...)"
	@echo "make clean  remove $(DEMO_DIR) (keeps .venv)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,ray]'
	touch $(STAMP)

install: $(STAMP)

$(DEMO_DIR)/scientific/events.csv: | $(STAMP)
	$(SHOPLM) data convert amazon-recbole $(SHOPLM_DATA_DIR)/amazon-scientific $(DEMO_DIR)/scientific

demo: $(STAMP) $(if $(filter $(DEMO_DIR)/scientific/%,$(EVENTS)),$(DEMO_DIR)/scientific/events.csv)
	$(SHOPLM) ingest --items $(ITEMS) --events $(EVENTS) --store $(DEMO_STORE)
	$(SHOPLM) data stats --store $(DEMO_STORE)
	test -f $(DEMO_MODEL)/params.json || SHOPLM_RECOMMEND_MAX_MINUTES=$(DEMO_TRAIN_MINUTES) \
	    $(SHOPLM) train recommend --items $(ITEMS) --events $(EVENTS) --out $(DEMO_MODEL)
	test -f $(DEMO_DIR)/eval/report.md || $(SHOPLM) eval recommend --items $(ITEMS) --events $(EVENTS) \
	    --model $(DEMO_MODEL) --json $(DEMO_DIR)/eval/recommend.json --report $(DEMO_DIR)/eval
	@sed -n '1,40p' $(DEMO_DIR)/eval/report.md
	@echo "storefront: http://$(HOST):$(PORT)   (API docs: http://$(HOST):$(PORT)/docs; Ctrl-C stops)"
	SHOPLM_RECOMMEND_MODEL=$(DEMO_MODEL) SHOPLM_MODELS_DIR=$(DEMO_DIR)/models SHOPLM_SEARCH_INDEX_DIR=$(DEMO_DIR)/index \
	    $(SHOPLM) serve --store $(DEMO_STORE) --host $(HOST) --port $(PORT)

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
