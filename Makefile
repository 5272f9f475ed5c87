# The two commands: `make run` and `make test`. Both install what they need first.
VENV ?= .venv
PY := $(VENV)/bin/python
MANIFESTS ?= manifests
URI ?= test:///default

.PHONY: run test test-fast test-systemd soak lint demo bootstrap-run bootstrap-test clean

run: bootstrap-run
	$(VENV)/bin/reconcile --once -m $(MANIFESTS) -c $(URI)

test: bootstrap-test
	scripts/libvirtd-up.sh
	scripts/guest-image.sh
	$(PY) -m pytest -q -m "not systemd"

# Unit and test:///default integration tests only: no daemon needed.
test-fast: bootstrap-test
	$(PY) -m pytest -q -m "not e2e"

# The unit file under a real systemd (tests/systemd): a Debian 12 container booted by
# systemd-nspawn (its tree cached by scripts/systemd-tree.sh), `make install` in it, a
# private libvirtd bound at its /run/libvirt. Root; ~3-5 min. `.ci/run` runs it when
# `python -m tests.systemd.container` says the machine can.
test-systemd: bootstrap-test
	scripts/systemd-tree.sh >/dev/null
	$(PY) -m pytest -q -m systemd tests/systemd

# The soak under chaos (tests/soak): the service over SOAK_VMS tiny guests on a private
# libvirtd while a seeded schedule injects faults; invariants checked all along, figures
# at the end. Root. SOAK_MINUTES of chaos, then the convergence after the last fault.
SOAK_MINUTES ?= 30
SOAK_VMS ?= 50
SOAK_SEED ?= 20
SOAK_ARGS ?=
soak: bootstrap-test
	$(PY) -m tests.soak --minutes $(SOAK_MINUTES) --vms $(SOAK_VMS) --seed $(SOAK_SEED) $(SOAK_ARGS)

# ruff (its rule set in pyproject.toml), mypy strict over the code and the tests, and
# import-linter's contracts: the layers, libvirt only in controller/virt, a pure core.
lint: bootstrap-test
	$(VENV)/bin/ruff check controller tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bootstrap-run:
	scripts/bootstrap.sh run

bootstrap-test:
	scripts/bootstrap.sh test

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# A dry run against a whole simulated host (libvirt's test driver): every kind of plan.
demo: bootstrap-run
	$(VENV)/bin/reconcile --once --dry-run --prune -m $(MANIFESTS) -c test:///$(CURDIR)/examples/demo-host.xml || test $$? -eq 3

# --- install: the service under systemd ---------------------------------------------
# `make install` (as root): a virtualenv in $(INSTALL_VENV) with reconcile in it,
# $(BINDIR)/reconcile, the systemd unit, and /etc/reconcile/reconcile.env (an example,
# copied once, never overwritten) with an empty manifests/ folder next to it. Then:
#   edit /etc/reconcile/reconcile.env, put manifests in /etc/reconcile/manifests/,
#   systemctl enable --now reconcile
INSTALL_VENV ?= /opt/reconcile
BINDIR ?= /usr/local/bin
UNITDIR ?= /etc/systemd/system
CONFDIR ?= /etc/reconcile

.PHONY: install
install: bootstrap-run
	python3 -m venv $(INSTALL_VENV)
	$(INSTALL_VENV)/bin/pip install -q --disable-pip-version-check .
	install -d $(BINDIR) $(UNITDIR) $(CONFDIR)/manifests
	ln -sf $(INSTALL_VENV)/bin/reconcile $(BINDIR)/reconcile
	sed -e 's|/usr/local/bin/reconcile|$(BINDIR)/reconcile|' \
	    -e 's|/etc/reconcile/|$(CONFDIR)/|g' packaging/reconcile.service \
	    > $(UNITDIR)/reconcile.service
	chmod 0644 $(UNITDIR)/reconcile.service
	test -e $(CONFDIR)/reconcile.env || \
	    sed -e 's|/etc/reconcile/|$(CONFDIR)/|g' packaging/reconcile.env > $(CONFDIR)/reconcile.env
	if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "installed; next: edit $(CONFDIR)/reconcile.env, then: systemctl enable --now reconcile"

# The performance benchmark (benchmarks/README.md): root, libvirtd and /dev/kvm like
# `make test`; matplotlib (the plot) and py-spy (the profiles) are optional extras.
.PHONY: bench bench-multihost
BENCH_ARGS ?=
bench: bootstrap-test
	scripts/libvirtd-up.sh
	@$(PY) -c "import matplotlib" 2>/dev/null && test -x $(VENV)/bin/py-spy || \
		$(VENV)/bin/pip install -q --disable-pip-version-check matplotlib py-spy || \
		echo "bench: matplotlib/py-spy did not install: no plot, no profiles" >&2
	$(PY) benchmarks/bench.py $(BENCH_ARGS)

# Storage and seeds (issues 13, 14): images, overlays, seeds, booted guests vs their floors.
.PHONY: bench-storage
bench-storage: bootstrap-test
	scripts/libvirtd-up.sh
	scripts/guest-image.sh
	$(PY) benchmarks/storage_bench.py $(BENCH_ARGS)

# Many hosts (issue 7): 3 real test hosts x 10 VMs together vs the slowest host alone.
bench-multihost: bootstrap-test
	$(PY) benchmarks/multihost.py --state stopped $(BENCH_ARGS)
	$(PY) benchmarks/multihost.py --state running $(BENCH_ARGS)
