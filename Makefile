# recflow: `make demo` runs the whole pipeline; `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export RECFLOW_HOME ?= $(CURDIR)/.recflow

.PHONY: venv spark-venv spark-up spark-down setup demo up down test test-services lint typecheck unit lock docs-config bench-quality bench-pipeline bench-overhead bench-scale clean

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-r requirements.txt -r requirements-dev.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

venv: $(STAMP)

# the Spark engine's packages (pyspark is 455 MB): only the Spark targets and the services suite need them
SPARK_STAMP := $(VENV)/.spark-installed-stamp

$(SPARK_STAMP): $(STAMP) requirements-spark.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-spark.txt -c constraints.txt
	touch $@

spark-venv: $(SPARK_STAMP)

# a Spark standalone master, two workers and the Thrift server on 127.0.0.1, under $$RECFLOW_HOME/spark
spark-up: $(SPARK_STAMP)
	$(BIN)/recflow spark up

spark-down: venv
	$(BIN)/recflow spark down

setup: venv
	$(BIN)/recflow setup

demo: venv
	$(BIN)/recflow demo

up: setup
	$(BIN)/recflow up

down: venv
	$(BIN)/recflow down

# ruff, then the architecture's contracts (layers, Airflow only in recflow.airflow, ml/ standalone)
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: venv
	$(BIN)/mypy plugins ml dags tests bench

unit: venv
	$(BIN)/pytest -m "not integration and not e2e and not production and not services"

# the suite in TEST_WORKERS pytest-xdist processes, a test file to a process (a module's Airflow serves
# all its tests; each process's Airflow has its own ports, tests/conftest.py). TEST_WORKERS=0: one process
TEST_WORKERS ?= 2

# --durations: CI's log names the slowest tests, so a suite that grows slower says where
test: venv lint typecheck
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --durations=10

# the production profile on PostgreSQL, Celery workers and moto's server (S3, SageMaker, its registry),
# and the warehouse on a two-worker Spark cluster
test-services: venv $(SPARK_STAMP)
	$(BIN)/pytest -m services tests/services --durations=10

lock: venv
	( echo "# The full resolved set of packages (Python 3.11, Linux x86_64): pip's -c file."; \
	  echo "# Regenerate with \`make lock\` after changing requirements*.txt."; \
	  $(BIN)/pip freeze --exclude-editable | grep -v '^recflow' ) > constraints.txt

docs-config: venv
	$(BIN)/python -m recflow.core.config_docs docs/configuration.md

# SASRec's rectools needs numpy<2 and pandas<3: it gets its own venv, so the main one keeps its pins
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed-stamp

$(BENCH_STAMP): requirements-bench.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $@

bench-quality: venv $(BENCH_STAMP)
	nice -n 10 $(BIN)/python -m bench.quality --bench-python $(BENCH_VENV)/bin/python

bench-pipeline: venv
	$(BIN)/recflow benchmark movielens --data-dir ../shared/data/ml-100k \
		--out bench/results/pipeline-movielens-100k.json

# one warehouse day, a 30-day backfill and a training run, bare and through the scheduler (~30 min on 2 cores)
bench-overhead: venv
	$(BIN)/python -m bench.overhead --days 30

# the warehouse steps at 1M, 10M and 100M events, then one epoch of training on 10M and on 100M
# interactions over 1M pins (about 3 hours on 2 cores, 1.5 of them the 100M run; ~30 GB of disk
# under $$RECFLOW_HOME/benchmarks/scale while it runs). Only the training runs, into the report:
# .venv/bin/python -m bench.scale --train-interactions=100000000 training
# ENGINES="duckdb spark": instead, the warehouse steps at 1M and 10M events on DuckDB and on a two-worker
# Spark cluster side by side (~30 min), into the same results and section
bench-scale: venv $(if $(findstring spark,$(ENGINES)),$(SPARK_STAMP))
	$(BIN)/python -m bench.scale $(if $(ENGINES),engines --engines $(ENGINES))

clean:
	rm -rf .recflow dbt/target dbt/logs
