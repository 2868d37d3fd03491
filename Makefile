# The two commands: `make run` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup clean schema manifest bench bench-profile bench-billing bench-live bench-export lint

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/revampd-bff migrate
	$(BIN)/revampd-bff seed-demo
	$(BIN)/revampd-bff demo-tokens
	$(BIN)/revampd-bff serve

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

schema: $(STAMP)
	$(BIN)/revampd-bff export-schema > schema.graphql

# The trusted documents (TRUSTED_DOCUMENTS=only): Apollo's persisted query manifest of operations/.
manifest: $(STAMP)
	$(BIN)/revampd-bff export-manifest > operations/manifest.json.tmp
	mv operations/manifest.json.tmp operations/manifest.json

lint: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,lint]'
	$(BIN)/ruff check .
	$(BIN)/mypy --strict db services schema resolvers server tests

# BENCH_ARGS="--markdown --first 10 --connections 8" (or --quick: under a minute); PostgreSQL too when TEST_DATABASE_URL or
# BENCH_DATABASE_URL names a server (a database revampd_bench is made on it and dropped after).
bench: $(STAMP)
	$(BIN)/python -m tests.bench.dashboard $(BENCH_ARGS)

# Where the server's CPU goes (py-spy samples it under load): BENCH_ARGS="--first 100 --only sqlite"
bench-profile: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,bench]'
	$(BIN)/python -m tests.bench.where $(BENCH_ARGS)

# BENCH_ARGS="--database-url postgresql+asyncpg://postgres@127.0.0.1:5432/bench --connections 10000"
bench-billing: $(STAMP)
	$(BIN)/python -m tests.bench.billing $(BENCH_ARGS)

# Subscriptions on two `serve` processes sharing Redis (BENCH_REDIS_URL, else 127.0.0.1:6379): fan-out latency, memory
# per open subscription, idle CPU; PostgreSQL too as for `bench`. BENCH_ARGS="--quick" (under a minute) or "--markdown"
bench-live: $(STAMP)
	$(BIN)/python -m tests.bench.live $(BENCH_ARGS)

# A wallet statement of 100,000 entries exported as CSV: rows/s and peak memory while streaming.
# BENCH_ARGS="--database-url postgresql+asyncpg://postgres@127.0.0.1:5432/revampd_bench_export" for PostgreSQL.
bench-export: $(STAMP)
	$(BIN)/python -m tests.bench.export $(BENCH_ARGS)

clean:
	rm -rf $(VENV) revampd.db*
