#!/usr/bin/env bash
# The fault suite: builds the debug binaries and the orchestrator (tests/src/bin/ehealth-faults), then runs
# the real ehealth-api, ehealth-worker and ehealth-admin against a PostgreSQL cluster and a RabbitMQ node of
# the suite's own (on free ports, in a temporary directory), kills and restarts processes and servers under
# load, and checks from the database that every accepted command ended exactly once.
#
#   scripts/faults.sh [--ci|--full] [scenario…]     (default --full; --list names the scenarios)
#   FAULTS_PROFILE=release scripts/faults.sh --full backlog   (the service's binaries from target/release)
#
# The machine's shared PostgreSQL and RabbitMQ are never touched. Logs: target/faults/<scenario>/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

args=("$@")
[[ " ${args[*]-} " == *" --ci "* || " ${args[*]-} " == *" --full "* ]] || args=(--full "${args[@]}")

if ! command -v pg_ctl >/dev/null 2>&1; then
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
    export PG_BIN_DIR=$dir
    break
  done
fi
command -v pg_ctl >/dev/null 2>&1 || [[ -n ${PG_BIN_DIR:-} ]] || { say "pg_ctl not found (PATH, /usr/lib/postgresql/*/bin)"; exit 2; }
[[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || command -v rabbitmq-server >/dev/null 2>&1 \
  || { say "rabbitmq-server not found"; exit 2; }

# The profile of the service's binaries under test (the suite's own orchestrator is always debug).
profile=${FAULTS_PROFILE:-debug}
case $profile in
  debug) profile_flag=() ;;
  release) profile_flag=(--release) ;;
  *) say "FAULTS_PROFILE must be debug or release, not $profile"; exit 2 ;;
esac

say "building the binaries ($profile) and the fault suite"
cargo build --locked "${profile_flag[@]}" --bin ehealth-api --bin ehealth-worker --bin ehealth-admin
cargo build --locked -p ehealth-tests --bin ehealth-faults

target=${CARGO_TARGET_DIR:-target}
say "running the fault suite ${args[*]} against $target/$profile"
exec "$target/debug/ehealth-faults" --bin-dir "$target/$profile" --logs "$target/faults" "${args[@]}"
