# Milepost: the developer's and CI's entry points. `make help` lists them.
#
#   make up / down / status / logs    the whole stack on this machine, no Docker (deploy/local)
#   make test                         install, lint, then the whole suite with e2e (.ci/run)
#
# Every MILEPOST_* variable in the environment reaches the stack (ports, MILEPOST_STATE_DIR);
# `make logs FOLLOW=1` keeps following.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# The uv running us (`uv run` sets UV: under it `python3` is the project's, without uv), else
# uv from PATH, else the module (`pip install --user` may put the script off PATH).
UV ?= $(shell command -v uv 2>/dev/null || echo python3 -m uv)
# From the committed lockfile as is: nothing re-locked or fetched behind the developer's back.
RUN := $(UV) run --frozen
PYTEST_WORKERS ?= 2
MYPY_TARGETS := libs/common/src services/api/src services/admin/src services/ingest/src \
	services/worker/src deploy/local/src tools/sim/src
# Debian packages the stack, the suite and the benchmarks need, as command=package: installed
# when the command is missing (Postgres's server by its path: its binaries are off PATH).
SYSTEM_PACKAGES := /usr/lib/postgresql/15/bin/postgres=postgresql-15 redis-server=redis-server \
	wrk=wrk chromium=chromium promtool=prometheus

.PHONY: help install system-packages lint test up down status logs demo demo-stop \
	bench-ingest bench-worker bench-api bench-storage bench-scale openapi fuzz

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

install: ## uv (via pip if missing), the locked workspace, Debian packages when root
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 \
		|| python3 -m pip install --quiet --user uv \
		|| python3 -m pip install --quiet --user --break-system-packages uv
	$(UV) sync --all-packages --frozen
	@$(MAKE) system-packages

system-packages: ## apt-get install Postgres 15, Redis, wrk, Chromium and promtool when missing (root only)
	@missing=""; \
	for pair in $(SYSTEM_PACKAGES); do \
		command -v "$${pair%%=*}" >/dev/null 2>&1 || missing="$$missing $${pair#*=}"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" -ne 0 ]; then \
		echo "make: missing Debian packages:$$missing (install them as root)" >&2; exit 0; \
	fi; \
	echo "make: apt-get install$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing

lint: ## ruff, ruff format --check, mypy (cached in .cache/mypy), import-linter
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy $(MYPY_TARGETS)
	$(RUN) lint-imports

# Exit status 5 (nothing collected) fails like any other: a suite that ran nothing passed nothing.
test: install lint ## the whole suite, e2e included (pytest -n 2; hypothesis CI profile)
	@CI="$${CI:-true}" $(RUN) pytest -n $(PYTEST_WORKERS) --dist loadgroup || { \
		status=$$?; \
		if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
		exit $$status; \
	}

up: install ## install as `make test` does, then start the stack (Traefik on :8080)
	$(RUN) milepost-stack up

# The demo's fleet first: left running, it would retry against a stack that is gone, forever.
# Whatever becomes of that (`-`), the stack is stopped.
down: ## stop the demo's fleet, then every process `make up` started; data is kept
	-$(RUN) milepost-sim demo-stop
	$(RUN) milepost-stack down

status: ## each component's pid and health
	$(RUN) milepost-stack status

# The logs are in <state>/logs; one over 50 MB becomes <name>.log.1 when its process starts.
logs: ## the last lines of every log (FOLLOW=1 to keep following)
	$(RUN) milepost-stack logs $(if $(FOLLOW),--follow)

demo: ## after `make up`: a demo organization and its fleet moving (DEMO_ARGS="--vehicles 20")
	$(RUN) milepost-sim demo $(DEMO_ARGS)

demo-stop: ## stop the demo's fleet (the organization and its data are kept)
	$(RUN) milepost-sim demo-stop

bench-ingest: ## ingest through the gateway vs the direct asyncpg write (starts what it measures)
	$(RUN) python -m bench.ingest

bench-worker: ## worker through Celery vs its handlers in-process (starts what it measures)
	$(RUN) python -m bench.worker

bench-api: ## the api's reads, each against its own floor (starts what it measures)
	$(RUN) python -m bench.api

bench-storage: ## bytes and WAL per stored fix on a scratch database (docs/capacity.md)
	$(RUN) python -m bench.storage

VEHICLES ?= 12000
bench-scale: ## on a running `make up`: VEHICLES every 10 s for 5 minutes, the lag sampled
	$(RUN) python -m bench.scale --vehicles $(VEHICLES) --duration 300

.PHONY: bench
bench: ## the three benchmarks, then bench/results/README.md and latest.json (SMOKE=1: small)
	$(RUN) python -m bench $(if $(SMOKE),--smoke)

openapi: ## export each app's OpenAPI document to docs/openapi/ (a test fails when one is stale)
	@for app in api admin ingest; do $(RUN) python -m milepost_$$app.openapi_export; done

# The fuzz tests `make test` runs with a few examples per operation, here with many. The
# OpenAPI fuzzing's requests derive from a seed (MILEPOST_FUZZ_SEED, testing/fuzz.py): 0 in
# `make test` (the same requests on every run: a landing never depends on a draw), a new one
# each `make fuzz` (the nightly-style random run), printed first; `make fuzz FUZZ_SEED=<seed>`
# sends the same requests again.
FUZZ_EXAMPLES ?= 200
FUZZ_SEED ?=
FUZZ_TESTS := services/api/tests/test_openapi.py services/admin/tests/test_openapi.py \
	services/ingest/tests/test_openapi.py services/ingest/tests/test_fuzz_bodies.py \
	services/admin/tests/console/test_fuzz.py
fuzz: install ## fuzz the three apps' OpenAPI, the console and the ingest parsers at length (FUZZ_EXAMPLES=200, a new FUZZ_SEED)
	@seed="$(FUZZ_SEED)"; seed="$${seed:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"; \
	echo "make fuzz: FUZZ_SEED=$$seed FUZZ_EXAMPLES=$(FUZZ_EXAMPLES)"; \
	MILEPOST_FUZZ_SEED=$$seed MILEPOST_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) CI="$${CI:-true}" \
		$(RUN) pytest -n $(PYTEST_WORKERS) --dist loadfile $(FUZZ_TESTS)
