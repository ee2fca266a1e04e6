# handpos: `make run` starts the simulator, `make test` runs every test.
VENV ?= .venv
PY := $(VENV)/bin/python
FONT := /usr/share/fonts/X11/misc/wenquanyi_9pt.pcf
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup run test test-py test-mpy bench chaos fonts clean

setup: $(VENV)/.installed fonts

$(VENV)/.installed: pyproject.toml | fonts
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian packages: the 12 px CJK bitmap font (display, receipt previews); pcscd with the
# vsmartcard virtual reader (the simulator's chip reader); what pyscard builds against.
DEBS := xfonts-wqy pcscd vsmartcard-vpcd libpcsclite-dev swig swtpm tpm2-tools
fonts:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	[ -z "$$missing" ] || { echo "installing Debian packages: $$missing"; \
	  $(SUDO) apt-get install -y $$missing >/dev/null || \
	  { $(SUDO) apt-get update >/dev/null && $(SUDO) apt-get install -y $$missing >/dev/null; }; }

run: setup
	$(PY) -m tools sim

# pytest runs in WORKERS processes (pytest-xdist; 2 by default, WORKERS=0 for one): the
# suite mostly waits on sockets, timers and child processes, so two workers take about
# half the time on two cores. Each pytest process has a pcscd of its own (tests/conftest.py);
# the tests that start simulators on the configuration's fixed ports share one worker
# (tests/conftest.py SHARED)
WORKERS ?= 2
XDIST := $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist loadgroup)
test: setup node_modules/.installed
	node tools/mpy_runner.mjs
	$(PY) -m pytest -q $(XDIST)

test-mpy: node_modules/.installed
	node tools/mpy_runner.mjs

# then the X/Z reports over a 100,000-record journal and a sale's bytes and fsyncs
# (tools/bench/reports.py; the fsyncs are counted by strace, installed here when missing)
bench: setup
	@command -v strace >/dev/null || $(SUDO) apt-get install -y strace >/dev/null || \
	  echo "no strace: the bench will not count fsyncs"
	rc=0; $(PY) -m tools.bench || rc=1; $(PY) -m tools.bench.reports || rc=1; \
	  $(PY) -m tools.bench.promotions || rc=1; exit $$rc

# the chaos driver with its phases (host kills, full disk, flipped bytes), then a half
# hour of the random-event storm (90 seeds of 1500 events, about 20 s each); HANDPOS_STORM_SEEDS and
# HANDPOS_STORM_EVENTS resize it; both always run, and either failing fails the target
chaos: setup
	rc=0; $(PY) -m tools.host.chaos --long || rc=1; \
	HANDPOS_STORM_SEEDS=$${HANDPOS_STORM_SEEDS:-90} HANDPOS_STORM_EVENTS=$${HANDPOS_STORM_EVENTS:-1500} \
	  $(PY) -m pytest -q -p no:cacheprovider tests/test_storm.py -k storm_leaves || rc=1; \
	exit $$rc

clean:
	rm -rf $(VENV) node_modules .sim .pytest_cache .hypothesis
