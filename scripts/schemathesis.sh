#!/usr/bin/env bash
# Property-based tests of the running service against its own OpenAPI description (schemathesis): builds the
# debug binaries, starts ehealth-worker and ehealth-api on a database, queue prefix, ports and data directory
# of their own, issues credentials with ehealth-admin, and runs schemathesis against /openapi.json with the
# checks not_a_server_error, status_code_conformance, content_type_conformance and
# response_schema_conformance. The document is first validated as OpenAPI 3.1 (openapi-spec-validator).
# Stops everything it started; exits non-zero on any failure. Bounded: ST_MAX_EXAMPLES per operation and
# ST_MAX_TIME seconds for the run (about 3 minutes in all on 2 cores once built). ST_CHECKS=all runs every
# check of schemathesis by hand (some, such as positive_data_acceptance, flag business rules: a reused
# Idempotency-Key, a bare feed position).
#
# schemathesis and openapi-spec-validator are installed from PyPI into target/schemathesis-venv once (kept
# between runs; delete the directory to upgrade).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

# ehealth-admin migrates and administers as the owner role; the api and the worker run as the runtime role
# (which `ehealth-admin migrate` creates). Both name the script's own database.
MIGRATION_DATABASE_URL=${SCHEMATHESIS_MIGRATION_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ehealth_schemathesis}
DATABASE_URL=${SCHEMATHESIS_DATABASE_URL:-postgres://ehealth_app@127.0.0.1:5432/ehealth_schemathesis}
# An admin connection that may drop and create the database above (a clean one every run).
ADMIN_DATABASE_URL=${ADMIN_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
QUEUE_PREFIX=${SCHEMATHESIS_QUEUE_PREFIX:-schemathesis}
ST_MAX_EXAMPLES=${ST_MAX_EXAMPLES:-25}
ST_MAX_TIME=${ST_MAX_TIME:-150}
ST_WORKERS=${ST_WORKERS:-2}
ST_CHECKS=${ST_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance}
SCHEMATHESIS_VERSION=4.32.5
VALIDATOR_VERSION=0.9.0

work=target/schemathesis
venv=target/schemathesis-venv
mkdir -p "$work"
rm -rf "$work/data" "$work/report"

# Three free ports at once, each probe held open until all are chosen: one after the other, the kernel could
# hand the same free port out twice.
free_ports() {
  python3 -c 'import socket; s = [socket.socket() for _ in range(3)]; [x.bind(("127.0.0.1", 0)) for x in s]; print(*(x.getsockname()[1] for x in s))'
}
db_name() { local rest=${1##*/}; printf '%s' "${rest%%\?*}"; }
read -r free_http free_s3 free_worker < <(free_ports)
HTTP_PORT=${SCHEMATHESIS_HTTP_PORT:-$free_http}
S3_PORT=${SCHEMATHESIS_S3_PORT:-$free_s3}
WORKER_PORT=${SCHEMATHESIS_WORKER_PORT:-$free_worker}
base=http://127.0.0.1:$HTTP_PORT

# The service's environment (README "Configuration").
service_env=(
  DATABASE_URL="$DATABASE_URL" MIGRATION_DATABASE_URL="$MIGRATION_DATABASE_URL" AMQP_URL="$AMQP_URL"
  HTTP_ADDR="127.0.0.1:$HTTP_PORT" WORKER_HTTP_ADDR="127.0.0.1:$WORKER_PORT" QUEUE_PREFIX="$QUEUE_PREFIX" S3_EMBEDDED_ADDR="127.0.0.1:$S3_PORT"
  DATA_DIR="$work/data" EVENT_CHAIN_KEY="schemathesis-only-chain-key-0123456789"
  RUST_LOG="${RUST_LOG:-warn}" WORKER_MAX_ATTEMPTS=3 RETRY_DELAY_MS=200
)

pids=()
stop() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
  if command -v psql >/dev/null; then
    psql -q "$ADMIN_DATABASE_URL" -c "DROP DATABASE IF EXISTS \"$(db_name "$MIGRATION_DATABASE_URL")\" WITH (FORCE)" \
      >/dev/null 2>&1 || true
  fi
}
trap stop EXIT
trap 'exit 130' INT TERM

bash scripts/ensure-services.sh

# The venv's interpreter. CPython before 3.11.8 and 3.12.2 shares one AST recursion counter between threads
# (gh-106905): when two of schemathesis's worker threads parse source at once (hypothesis reads a `.filter`
# lambda's source to name it), one fails with "SystemError: AST constructor recursion depth mismatch" and
# schemathesis reports an error on whatever operation it was generating for. SCHEMATHESIS_PYTHON, else the
# first fixed one of python3.13, python3.12, python3 and pyenv's installed versions.
fixed_python() { "$1" -c 'import sys; v = sys.version_info[:3]; sys.exit(not (v >= (3, 12, 2) or (3, 11, 8) <= v < (3, 12)))' 2>/dev/null; }
py=${SCHEMATHESIS_PYTHON:-}
if [[ -z $py ]]; then
  candidates=(python3.13 python3.12 python3)
  if command -v pyenv >/dev/null; then
    candidates+=($(pyenv versions --bare 2>/dev/null | grep -E '^3\.[0-9]+\.[0-9]+$' | sort -rV | sed "s|^|$(pyenv root)/versions/|; s|$|/bin/python3|"))
  fi
  for candidate in "${candidates[@]}"; do
    if fixed_python "$candidate"; then py=$candidate; break; fi
  done
  if [[ -z $py ]]; then
    say "no Python 3.11.8+ or 3.12.2+ found (gh-106905): schemathesis runs with one worker"
    py=python3 ST_WORKERS=1
  fi
fi
py_version=$("$py" -c 'import platform; print(platform.python_version())')
if [[ ! -x $venv/bin/st ]] || ! "$venv/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION" \
  || [[ $("$venv/bin/python" -c 'import platform; print(platform.python_version())' 2>/dev/null) != "$py_version" ]]; then
  say "installing schemathesis $SCHEMATHESIS_VERSION into $venv (PyPI, Python $py_version)"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION" "openapi-spec-validator==$VALIDATOR_VERSION"
fi

say "building (debug)"
cargo build --locked --quiet --bin ehealth-api --bin ehealth-worker --bin ehealth-admin
admin=target/debug/ehealth-admin

if command -v psql >/dev/null; then
  psql -q "$ADMIN_DATABASE_URL" -c "DROP DATABASE IF EXISTS \"$(db_name "$MIGRATION_DATABASE_URL")\" WITH (FORCE)" >/dev/null
fi
say "migrating $MIGRATION_DATABASE_URL"
env "${service_env[@]}" "$admin" migrate >/dev/null

say "starting ehealth-worker and ehealth-api on $base (queue prefix $QUEUE_PREFIX)"
env "${service_env[@]}" target/debug/ehealth-worker >"$work/worker.log" 2>&1 &
pids+=($!)
env "${service_env[@]}" target/debug/ehealth-api >"$work/api.log" 2>&1 &
pids+=($!)
wait_for_tcp 127.0.0.1 "$HTTP_PORT" 60 ehealth-api || { tail -20 "$work/api.log" >&2; exit 1; }

json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
le=$(env "${service_env[@]}" "$admin" legal-entity create --name "Schemathesis clinic" --edrpou 12345678 --type MSP | json_field id)
user=$(env "${service_env[@]}" "$admin" user create --legal-entity "$le" --employee-type DOCTOR --employee-status APPROVED | json_field id)
token=$(env "${service_env[@]}" "$admin" token issue --user "$user" --client-type MSP --ttl-seconds 3600 \
  --scopes "service_request:write service_request:use service_request:read job:read gambit:erp audit:read private_contracts:write patient_attachment:read patient_attachment:write contract_request:create contract_request:read contract_request:update contract_request:approve contract_request:sign contract_request:terminate" | json_field token)
key=$(env "${service_env[@]}" "$admin" api-key issue --name "schemathesis" | json_field api_key)

say "validating $base/openapi.json as OpenAPI 3.1"
curl -fsS "$base/openapi.json" -o "$work/openapi.json"
"$venv/bin/python" - "$work/openapi.json" <<'PY'
import json, sys
from openapi_spec_validator import validate
from openapi_spec_validator.validation.validators import OpenAPIV31SpecValidator
with open(sys.argv[1]) as f:
    spec = json.load(f)
assert spec["openapi"].startswith("3.1"), spec["openapi"]
validate(spec, cls=OpenAPIV31SpecValidator)
print(f"valid OpenAPI {spec['openapi']}: {len(spec['paths'])} paths", file=sys.stderr)
PY

say "schemathesis: at most $ST_MAX_EXAMPLES examples per operation, $ST_MAX_TIME s"
status=0
# From $work, so that schemathesis keeps its cache there rather than in the repository.
root=$PWD
(cd "$work" && "$root/$venv/bin/st" run "$base/openapi.json" \
  --checks "$ST_CHECKS" \
  --header "Authorization: Bearer $token" --header "api-key: $key" \
  --max-examples "$ST_MAX_EXAMPLES" --max-time "$ST_MAX_TIME" --workers "$ST_WORKERS" \
  --phases examples,coverage,fuzzing --request-timeout 35 --seed "${ST_SEED:-1}" \
  --suppress-health-check all --warnings off --no-color --generation-database none \
  --report "${ST_REPORT:-junit}" --report-dir "$root/$work/report") || status=$?

if grep -q "panicked" "$work/api.log" "$work/worker.log"; then
  say "a service panicked: see $work/api.log and $work/worker.log"
  status=1
fi
[[ $status == 0 ]] && say "schemathesis: no failures" || say "schemathesis failed (logs and report in $work)"
exit "$status"
