# The two commands of the README:
#   make demo   set up everything and run qctl against local brokers
#   make test   set up everything and run the whole test suite against real brokers
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install bytecode fmt lint typecheck docs docs-check brokers-up brokers-down clean

$(BIN)/.installed: pyproject.toml plugins/qctl-orders/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "qctl needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet -e plugins/qctl-orders
	@touch $@

install: $(BIN)/.installed

# Compiled modules, as a regular pip install has them: an editable install does not write
# them when PYTHONDONTWRITEBYTECODE is set, and every qctl process would compile again.
bytecode: install
	$(BIN)/python -m compileall -q qctl plugins/qctl-orders/qctl_orders

brokers-up:
	QCTL_PYTHON=$(BIN)/python dev/brokers up --secure

brokers-down:
	dev/brokers down

# The order pipeline on local brokers: topology, both backends, lag, DLQs (dev/demo).
demo: install bytecode brokers-up
	QCTL_BIN=$(abspath $(BIN)) dev/demo

LINTED := qctl tests benchmarks plugins/qctl-orders

lint: install
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: install
	$(BIN)/mypy qctl plugins/qctl-orders/qctl_orders

docs: install
	QCTL_PYTHON=$(BIN)/python dev/gen-docs

docs-check: install
	QCTL_PYTHON=$(BIN)/python dev/gen-docs --check

# Tests that restart or kill a broker run alone, after the parallel phase, so they never
# pull a broker away from another test.
test: install bytecode brokers-up lint typecheck docs-check
	QCTL_REQUIRE_BROKERS=1 PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -n 3 --timeout 600 -m "not disruptive"
	QCTL_REQUIRE_BROKERS=1 PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest --timeout 900 -m disruptive; \
	  rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]  # 5: no disruptive tests collected

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

fmt: install
	$(BIN)/ruff format $(LINTED)
	$(BIN)/ruff check --fix $(LINTED)
