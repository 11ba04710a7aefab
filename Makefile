# Two commands for a new machine: `make demo` runs the whole system, `make test` the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench bench-suite up status clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/itinerary demo

test: $(BIN)/.installed
	scripts/ensure_redis.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy itinerary actors channels config supervisors

bench: $(BIN)/.installed
	$(BIN)/python scripts/bench_pipeline.py

bench-suite: $(BIN)/.installed
	$(BIN)/python scripts/bench_suite.py

up: $(BIN)/.installed
	ITINERARY_DEMO_TOKEN=$${ITINERARY_DEMO_TOKEN:-demo-token} ITINERARY_INGEST_KEY=$${ITINERARY_INGEST_KEY:-ingest-key} \
	ITINERARY_ADMIN_KEY=$${ITINERARY_ADMIN_KEY:-admin-key} $(BIN)/itinerary up --config config/examples/demo.yaml

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache results
