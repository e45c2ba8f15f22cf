# make up              installs what is missing, then starts a local cluster in the foreground.
# make test            installs what is missing, then runs the whole suite (skips counted in its summary,
#                      the 25 slowest tests listed).
# make test-fast       unit + integration only: no root, no containers, no cluster.
# make kubectl-compat  rewrites docs/kubectl-compat.md from a run of every installed kubectl.
# make fuzz            the long fuzz run of the apiserver (bench/fuzz.py; ~20 min).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup system-deps bytecode helpers launcher up test test-fast kubectl-compat test-unit test-integration test-system test-e2e bench fuzz clean

setup: system-deps $(STAMP) bytecode helpers launcher

system-deps:
	@bash scripts/install-system-deps.sh

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# Editable installs are not byte-compiled, and PYTHONDONTWRITEBYTECODE (set on some
# machines) would make every pdocker/pkubectl call compile its modules again.
bytecode: $(STAMP)
	@$(PY) -m compileall -q -j 0 pkube

# The runtime's C helpers (shim, pause) in pkube/runtime/bin/, as a wheel ships them
# (pkube/runtime/helpers.py): containers then start without a compiler at run time.
helpers: $(STAMP)
	@$(PY) -m pkube.runtime.helpers

# pdocker through a bare interpreter (pkube/pdocker/launcher.py): pip's console script costs
# ~15 ms of site/.pth processing on every command. Written after every install.
launcher: $(STAMP)
	@$(PY) -m pkube.pdocker.launcher $(VENV)/bin/pdocker

up: setup
	$(VENV)/bin/pkube up

test: setup
	$(PY) -m pytest -q -ra --durations=25 tests

# unit + integration: the edit-run loop (no root, no containers, no cluster)
test-fast: setup
	$(PY) -m pytest -q -ra tests/unit tests/integration

# docs/kubectl-compat.md from a run of every installed kubectl and pkubectl against `pkube up`
# (the suite compares the file with its own run and never writes it)
kubectl-compat: setup
	PKUBE_WRITE_KUBECTL_COMPAT=1 $(PY) -m pytest -q -ra tests/e2e/test_kubectl_compat.py

test-unit: setup
	$(PY) -m pytest -q -ra tests/unit

test-integration: setup
	$(PY) -m pytest -q -ra tests/integration

test-system: setup
	$(PY) -m pytest -q -ra tests/system

test-e2e: setup
	$(PY) -m pytest -q -ra tests/e2e

# the long fuzz run of the apiserver (`make test` runs a short one): hypothesis requests, then
# schemathesis cases from its served OpenAPI, then raw bytes; prints what it sent and found
fuzz: setup
	$(PY) -m bench.fuzz

clean:
	rm -rf $(VENV) *.egg-info pkube/runtime/bin
