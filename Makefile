# Marquee — the two commands are `make run` and `make test`; `make help` lists the rest.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
UV := .tools/bin/uv
PROTO_OUT := packages/marquee-protos/src

.PHONY: help env lock run test lint typecheck pytest proto check-proto buf-lint bench bench-instructions soak test-dragonfly security audit clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

env: ## bootstrap uv and sync .venv to requirements.lock, only when it or a member's pyproject.toml changed (MARQUEE_FORCE_SYNC=1 forces)
	@scripts/bootstrap.sh

lock: ## re-resolve requirements.lock after a dependency change, keeping existing pins (names, versions, hashes only)
	@scripts/lock.sh

run: env ## start the whole suite locally with embedded defaults (Ctrl-C stops it)
	@$(VENV)/bin/marquee up $(RUN_ARGS)

test: env lint typecheck pytest ## ruff, mypy and the test suite against real servers

lint: env ## ruff (lint + format check) and buf lint
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(MAKE) --no-print-directory buf-lint

typecheck: env ## mypy --strict over every package, service, test and bench
	@$(VENV)/bin/mypy packages/*/src services/*/src tests bench
	@# Each tests/ folder is its own module root (their helper modules import by bare name).
	@for d in packages/*/tests services/*/tests; do \
	  ls $$d/*.py >/dev/null 2>&1 || continue; \
	  MYPYPATH=$$d $(VENV)/bin/mypy $$d || exit 1; \
	done

pytest: env ## the test suite (servers are started by the harness)
	@$(VENV)/bin/pytest $(PYTEST_ARGS)

buf-lint:
	@cd protos && ../$(VENV)/bin/buf lint

proto: env ## regenerate Python code and .pyi stubs from protos/
	@scripts/gen_protos.sh

check-proto: env ## fail if generated code differs from protos/
	@scripts/gen_protos.sh --check

bench: env ## run every benchmark under bench/ (installs etcd, the coordinator's peer, if missing)
	@scripts/ensure_bench_tools.sh
	@for b in bench/*/run.py; do echo "== $$b"; $(PY) $$b || exit 1; done

bench-instructions: env ## server instructions per call under callgrind (~6 min; needs valgrind)
	@$(PY) bench/service_stack/instructions.py

test-dragonfly: env ## the cache's Dragonfly tests (needs a container engine or MARQUEE_TEST_DRAGONFLY_URL)
	@$(VENV)/bin/pytest -m dragonfly $(PYTEST_ARGS)

soak: env ## long fault runs and soaks
	@$(VENV)/bin/pytest -m soak --timeout=3600 $(PYTEST_ARGS)

security: env ## bandit over all first-party code (generated code excluded)
	@$(VENV)/bin/bandit -q -r packages/*/src services/*/src -x packages/marquee-protos -c pyproject.toml

audit: env ## pip-audit of requirements.lock (needs the PyPI JSON API or OSV; not reachable here)
	@$(VENV)/bin/pip-audit --strict --disable-pip --no-deps -r requirements.lock --progress-spinner off

clean: ## remove environments and caches
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache
