#!/usr/bin/env bash
# The whole test suite: formatting, lints, schemathesis against the running service, the fault suite's CI
# form, then unit and integration tests against the real PostgreSQL and RabbitMQ (started if they are down).
# An optional argument filters the unit and integration tests by name (and skips schemathesis and faults).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

export TEST_DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
export RUST_LOG=${RUST_LOG:-warn}

bash scripts/ensure-services.sh

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
if [[ -z ${1:-} ]]; then
  # The real service from outside, before the unit and integration tests so that nextest's summary stays the
  # closing line: its OpenAPI document against schemathesis, then the short form of the fault suite.
  say "schemathesis against /openapi.json"
  bash scripts/schemathesis.sh
  say "fault suite (CI form)"
  bash scripts/faults.sh --ci
fi
say "tests"
if cargo nextest --version >/dev/null 2>&1; then
  # Doc-tests first: nextest's summary is the closing line CI reads.
  cargo test --workspace --doc --locked --quiet ${1:+"$1"}
  cargo nextest run --workspace --locked --no-fail-fast ${1:+"$1"}
else
  cargo test --workspace --locked --no-fail-fast ${1:+"$1"}
fi
