#!/usr/bin/env bash
# Sets up and runs the service on this machine: PostgreSQL and RabbitMQ (started if down), a release build,
# migrations, then ehealth-worker in the background and ehealth-api (with the embedded S3 endpoint) in the
# foreground. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

# Two roles: the owner migrates and administers; the services run as the least-privilege runtime role that
# `ehealth-admin migrate` creates and grants (README, "Database roles").
export MIGRATION_DATABASE_URL=${MIGRATION_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ehealth}
export DATABASE_URL=${DATABASE_URL:-postgres://ehealth_app@127.0.0.1:5432/ehealth}
export AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
export HTTP_ADDR=${HTTP_ADDR:-127.0.0.1:8080}
export RUST_LOG=${RUST_LOG:-info}

DATABASE_URL=$MIGRATION_DATABASE_URL bash scripts/ensure-services.sh

say "building (release)"
cargo build --release --locked --bin ehealth-api --bin ehealth-worker --bin ehealth-admin
say "migrating $MIGRATION_DATABASE_URL (runtime role of $DATABASE_URL)"
target/release/ehealth-admin migrate >/dev/null

target/release/ehealth-worker &
worker=$!
target/release/ehealth-api &
api=$!
stop() { kill -TERM "$api" "$worker" 2>/dev/null || true; wait "$api" "$worker" 2>/dev/null || true; }
trap stop INT TERM EXIT
say "api on http://$HTTP_ADDR, embedded S3 on ${S3_EMBEDDED_ADDR:-127.0.0.1:9000} unless S3_ENDPOINT is set (worker pid $worker); Ctrl-C stops both"
wait -n "$api" "$worker" || true
