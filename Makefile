# The two commands: `make run` and `make test`. Both install what they need first.
VENV ?= .venv
PY := $(VENV)/bin/python
MANIFESTS ?= manifests
URI ?= test:///default

.PHONY: run test test-fast lint demo bootstrap-run bootstrap-test clean

run: bootstrap-run
	$(VENV)/bin/reconcile --once -m $(MANIFESTS) -c $(URI)

test: bootstrap-test
	scripts/libvirtd-up.sh
	$(PY) -m pytest -q

# Unit and test:///default integration tests only: no daemon needed.
test-fast: bootstrap-test
	$(PY) -m pytest -q -m "not e2e"

lint: bootstrap-test
	$(VENV)/bin/ruff check controller tests
	$(VENV)/bin/mypy

bootstrap-run:
	scripts/bootstrap.sh run

bootstrap-test:
	scripts/bootstrap.sh test

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# A dry run against a whole simulated host (libvirt's test driver): every kind of plan.
demo: bootstrap-run
	$(VENV)/bin/reconcile --once --dry-run --prune -m $(MANIFESTS) -c test:///$(CURDIR)/examples/demo-host.xml || test $$? -eq 3
