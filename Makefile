# Every target bootstraps .venv itself, so a fresh clone needs only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test unit services lint drills fuzz bench kafka kafka-fetch lock clean

# The exact versions of requirements-dev.lock, each checked against its hash; then the
# package itself (its dependencies are all in the lock already).
$(STAMP): pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# After a change to the dependencies in pyproject.toml: both lock files again, with the
# hashes of every file PyPI has for each version (any platform, Python 3.11 and later).
lock: $(STAMP)
	$(BIN)/pip install --quiet 'uv>=0.5,<1'
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes -q -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 --generate-hashes -q -o requirements-dev.lock

demo: $(STAMP)
	$(BIN)/intilery-bridge demo

lint: $(STAMP)
	$(BIN)/ruff check bridge tests bench
	$(BIN)/ruff format --check bridge tests bench
	$(BIN)/mypy bridge
	$(BIN)/mypy --follow-imports=silent tests/recordpath.py tests/unit/test_record_path.py  # fakes fit the ports
	$(BIN)/lint-imports

# Java and Maven, promtool and redis-server: installed from Debian's packages when missing
# (as root), else one line saying what to install.
services:
	.ci/services

test: services lint kafka-fetch
	$(BIN)/pytest -m "not slow" -n 3 --durations=12 tests

# The unit tier only: needs nothing but Python (no broker, no promtool, no Redis).
unit: lint
	$(BIN)/pytest -n 3 tests/unit

drills: kafka-fetch
	DRILL_FIGURES=docs/figures/drills.md $(BIN)/pytest -m slow tests/drills

# The record path's fuzzing harness for FUZZ_SECONDS (600): coverage-guided with atheris
# (installed here; hypothesis where it does not install); failing inputs go to tests/corpus/.
fuzz: $(STAMP)
	$(BIN)/pip install --quiet 'atheris>=2.3,<4' || echo "atheris does not install here: hypothesis instead"
	$(BIN)/python -m tests.fuzz --seconds $(or $(FUZZ_SECONDS),600) --figures docs/figures/hostile.md

# A real Apache Kafka (KRaft, from Maven Central via kafka/pom.xml; needs Java 17 and
# Maven) on free loopback ports until Ctrl-C; NODES=3 for a three-node cluster.
kafka: $(STAMP)
	$(BIN)/python -m bridge.devtools.kafka --nodes $(or $(NODES),1)

kafka-fetch: $(STAMP)
	$(BIN)/python -m bridge.devtools.kafka --fetch-only

bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/decode.py --figures
	$(BIN)/python bench/diff.py --figures
	$(BIN)/python bench/shadow.py --figures
	$(BIN)/python bench/tracing.py --figures
	$(BIN)/python bench/safety.py --figures

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .cache
