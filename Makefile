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

.PHONY: install demo test clean help

help:
	@echo "make demo   install, convert + ingest Amazon Scientific into $(DEMO_STORE), print stats"
	@echo "make test   install if needed and run the whole test suite"
	@echo "make clean  remove $(DEMO_DIR) (keeps .venv)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

$(DEMO_DIR)/scientific/events.csv: | $(STAMP)
	$(SHOPLM) data convert amazon-recbole $(SHOPLM_DATA_DIR)/amazon-scientific $(DEMO_DIR)/scientific

demo: $(STAMP) $(if $(filter $(DEMO_DIR)/scientific/%,$(EVENTS)),$(DEMO_DIR)/scientific/events.csv)
	$(SHOPLM) ingest --items $(ITEMS) --events $(EVENTS) --store $(DEMO_STORE)
	$(SHOPLM) data stats --store $(DEMO_STORE)

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(DEMO_DIR)
