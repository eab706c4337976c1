#!/usr/bin/env bash
# Benchmark of the service against what PostgreSQL itself (pgbench) and a job queue on the same database
# (Graphile Worker) do with the same work on this machine (issue 11; results in docs/PERFORMANCE.md). Not run in
# CI. Builds release (or takes BENCH_BIN_DIR), starts ehealth-api (with the embedded S3 store) and
# ehealth-worker on a database (ehealth_bench), RabbitMQ vhost, queue prefix, ports and data directory of their
# own, and measures, each path in BENCH_REPS interleaved repetitions (service, baseline, service, …) with the
# load average before each run:
#   intake    POST create, 64 connections, BENCH_DURATION s, worker stopped (wrk, bench/intake.lua)
#             vs pgbench -M prepared running the intake's SQL (bench/intake.sql), and the intake's SQL
#             before issue 11 (bench/intake_da85656.sql, a fixed reference)
#   e2e       BENCH_E2E_JOBS queued creates drained by one worker with the default configuration
#             vs pgbench running the worker's per-job SQL at 16 clients (bench/worker.sql; and the SQL before
#             issue 11, bench/worker_da85656.sql, a fixed reference), and vs Graphile
#             Worker (bench/graphile, its own database) with a comparable task and with a no-op task
#   poll      GET /Jobs/{id}, 64 connections (bench/poll.lua) vs pgbench select-by-pk (bench/poll.sql)
#   rebuild   ehealth-admin projections rebuild over BENCH_REBUILD_EVENTS events (bench/seed_events.sql)
#             vs \copy (select * from events) to /dev/null
# then the peak RSS of the api and the worker, and prints one table (bench/report.py) plus the CPU split of
# every run (bench/cpu.py). Stops everything it started and drops its databases and vhost on exit; the
# machine's PostgreSQL and RabbitMQ keep running. wrk is installed from Debian's packages when missing, Graphile
# Worker from npm (bench/graphile/package-lock.json) into target/bench/graphile. About 25 minutes on 2 cores
# once built; BENCH_QUICK=1 is a smoke run of about 3 minutes.
#
# Knobs (environment):
#   BENCH_REPS (3)  BENCH_DURATION (20 s)  BENCH_CONNECTIONS (64)  BENCH_E2E_JOBS (20000)
#   BENCH_REBUILD_EVENTS (100000; e.g. 1000000)  BENCH_PATHS ("intake e2e poll rebuild")
#   BENCH_QUICK=1 (1 repetition, 5 s, 2,000 jobs, 20,000 events unless set)
#   BENCH_BIN_DIR (directory with release binaries of another commit; no build, and the schema is migrated by
#     that commit's ehealth-admin)   BENCH_WORKER_ENV (extra environment of the drained worker, e.g.
#     "DB_POOL_SIZE=34")   BENCH_E2E_TIMEOUT (600 s per drain)   BENCH_RUST_LOG (info)
#   BENCH_HTTP_PORT (18180) BENCH_WORKER_PORT (18181) BENCH_S3_PORT (18190)   BENCH_OUT (target/bench)
#   BENCH_DB (ehealth_bench; the Graphile database is its name + _graphile)   BENCH_VHOST (BENCH_DB): two
#     benchmarks at once need their own database, vhost, ports and BENCH_OUT
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

QUICK=${BENCH_QUICK:-0}
quick() { [[ $QUICK == 1 ]] && printf '%s' "$1" || printf '%s' "$2"; }
REPS=${BENCH_REPS:-$(quick 1 3)}
DURATION=${BENCH_DURATION:-$(quick 5 20)}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
E2E_JOBS=${BENCH_E2E_JOBS:-$(quick 2000 20000)}
E2E_CONCURRENCY=16
E2E_TIMEOUT=${BENCH_E2E_TIMEOUT:-600}
REBUILD_EVENTS=${BENCH_REBUILD_EVENTS:-$(quick 20000 100000)}
PATHS=${BENCH_PATHS:-intake e2e poll rebuild}
HTTP_PORT=${BENCH_HTTP_PORT:-18180}
WORKER_PORT=${BENCH_WORKER_PORT:-18181}
S3_PORT=${BENCH_S3_PORT:-18190}
OUT=${BENCH_OUT:-target/bench}

PG=postgres://127.0.0.1:5432
DB=${BENCH_DB:-ehealth_bench}
GRAPHILE_DB=${DB}_graphile
OWNER_URL=postgres://postgres@127.0.0.1:5432/$DB
APP_URL=postgres://ehealth_app@127.0.0.1:5432/$DB
ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres
GRAPHILE_URL=postgres://postgres@127.0.0.1:5432/$GRAPHILE_DB
VHOST=${BENCH_VHOST:-$DB}
BASE=http://127.0.0.1:$HTTP_PORT

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RESULTS=$OUT/results.txt
: >"$RESULTS"
rm -rf "$OUT/data" "$OUT"/pgbench_log.* "$OUT"/*.log

# The service's environment (README "Configuration"); the worker's configuration is the default one.
service_env=(
  DATABASE_URL="$APP_URL" MIGRATION_DATABASE_URL="$OWNER_URL" AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$VHOST"
  HTTP_ADDR="127.0.0.1:$HTTP_PORT" WORKER_HTTP_ADDR="127.0.0.1:$WORKER_PORT" S3_EMBEDDED_ADDR="127.0.0.1:$S3_PORT"
  QUEUE_PREFIX=bench DATA_DIR="$OUT/data" EVENT_CHAIN_KEY="bench-only-chain-key-0123456789abcdef"
  RUST_LOG="${BENCH_RUST_LOG:-info}"
)

# --- processes and cleanup ------------------------------------------------------------------------------------

api_pid='' worker_pid='' graphile_pid='' sampler_pid=''
worker_hwm=0 api_hwm=0
stop_pid() { # pid
  [[ -n $1 ]] || return 0
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  stop_pid "$sampler_pid"; stop_pid "$graphile_pid"; stop_pid "$worker_pid"; stop_pid "$api_pid"
  admin_sql -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  admin_sql -c "DROP DATABASE IF EXISTS $GRAPHILE_DB WITH (FORCE)" >/dev/null 2>&1 || true
  rabbitmqctl -q delete_vhost "$VHOST" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sql() { psql -qAtX -v ON_ERROR_STOP=1 "$OWNER_URL" "$@"; }
admin_sql() { PGOPTIONS='-c client_min_messages=warning' psql -qAtX -v ON_ERROR_STOP=1 "$ADMIN_URL" "$@"; }
load_avg() { cut -d' ' -f1 /proc/loadavg; }
record() { echo "$*" >>"$RESULTS"; }
now() { date +%s.%N; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

start_api() {
  [[ -z $api_pid ]] || return 0
  env "${service_env[@]}" "$BIN/ehealth-api" >>"$OUT/api.log" 2>&1 &
  api_pid=$!
  wait_for_tcp 127.0.0.1 "$HTTP_PORT" 60 ehealth-api || { tail -20 "$OUT/api.log" >&2; exit 1; }
}
# The api is stopped while pgbench runs 64 clients: the machine's PostgreSQL has 100 connections in all, shared
# with other work, and the api's idle pool would hold 16 of them.
stop_api() {
  [[ -n $api_pid ]] || return 0
  local hwm
  hwm=$(hwm_kib "$api_pid")
  ((hwm > api_hwm)) && api_hwm=$hwm
  stop_pid "$api_pid"
  api_pid=''
}
start_worker() {
  # shellcheck disable=SC2086 # BENCH_WORKER_ENV is a list of NAME=value words
  env "${service_env[@]}" ${BENCH_WORKER_ENV:-} "$BIN/ehealth-worker" >>"$OUT/worker.log" 2>&1 &
  worker_pid=$!
}
stop_worker() {
  [[ -n $worker_pid ]] || return 0
  local hwm
  hwm=$(hwm_kib "$worker_pid")
  ((hwm > worker_hwm)) && worker_hwm=$hwm
  stop_pid "$worker_pid"
  worker_pid=''
}

# CPU split of one run: cpu_start before it, cpu_stop <key> <rep> <units of work> after it.
cpu_start() {
  rm -f "$OUT/cpu.txt" "$OUT/cpu.txt.ready"
  python3 bench/cpu.py "$OUT/cpu.txt" "$DB,$GRAPHILE_DB" &
  sampler_pid=$!
  local i
  for ((i = 0; i < 200; i++)); do
    [[ -e $OUT/cpu.txt.ready ]] && return 0
    sleep 0.05
  done
  say "warning: the CPU sampler did not start"
}
cpu_stop() {
  stop_pid "$sampler_pid"
  sampler_pid=''
  [[ -s $OUT/cpu.txt ]] && record "cpu.$1 $2 $3 $(cat "$OUT/cpu.txt")"
  return 0
}

# --- setup ----------------------------------------------------------------------------------------------------

setup() {
  bash scripts/ensure-services.sh
  command -v wrk >/dev/null || apt_install wrk
  command -v pgbench >/dev/null || apt_install postgresql-client
  command -v jq >/dev/null || apt_install jq
  if [[ -n ${BENCH_BIN_DIR:-} ]]; then
    BIN=$(cd "$BENCH_BIN_DIR" && pwd)
    say "benchmarking the binaries in $BIN"
  else
    say "building (release)"
    cargo build --release --locked --bin ehealth-api --bin ehealth-worker --bin ehealth-admin
    BIN=$PWD/target/release
  fi
  local max used
  max=$(admin_sql -c "SHOW max_connections")
  used=$(admin_sql -c "SELECT count(*) FROM pg_stat_activity")
  if ((max - used < CONNECTIONS + 5)); then
    say "warning: PostgreSQL has $((max - used)) of $max connections free; pgbench needs $CONNECTIONS"
  fi

  say "database $DB, vhost $VHOST, api on $BASE"
  admin_sql -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
  env "${service_env[@]}" "$BIN/ehealth-admin" migrate >/dev/null 2>>"$OUT/admin.log"
  rabbitmqctl -q delete_vhost "$VHOST" >/dev/null 2>&1 || true
  rabbitmqctl -q add_vhost "$VHOST" >/dev/null
  rabbitmqctl -q set_permissions -p "$VHOST" guest '.*' '.*' '.*' >/dev/null

  local admin=("env" "${service_env[@]}" "$BIN/ehealth-admin") le user
  le=$("${admin[@]}" legal-entity create --name "Bench clinic" --edrpou 12345678 --type MSP | jq -r .id)
  user=$("${admin[@]}" user create --legal-entity "$le" --employee-type DOCTOR --employee-status APPROVED | jq -r .id)
  TOKEN=$("${admin[@]}" token issue --user "$user" --client-type MSP --ttl-seconds 86400 \
    --scopes "service_request:write service_request:use service_request:read job:read" | jq -r .token)
  KEY=$("${admin[@]}" api-key issue --name "bench" | jq -r .api_key)
  LE=$le
  ACTOR=$(jq -cn --arg u "$user" --arg le "$le" '{user_id: $u, client_type: "MSP", legal_entity_id: $le}')
  KEY_HASH='\x'$(sql -c "SELECT encode(key_hash, 'hex') FROM api_clients")
  TOKEN_HASH='\x'$(sql -c "SELECT encode(token_hash, 'hex') FROM tokens")
  start_api
}

# --- helpers of the paths -------------------------------------------------------------------------------------

uuid_prefix() { # a random "xxxxxxxx-xxxx-4xxx-": bench/intake.lua appends the thread and its counter
  local h
  h=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  printf '%s-%s-4%s-' "${h:0:8}" "${h:8:4}" "${h:12:3}"
}
wrk_field() { sed -n "s/.*RESULT.* $1=\([0-9.]*\).*/\1/p" "$2"; }
pgbench_tps() { sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$1"; }
pgbench_percentile() { # <percentile> : latency in ms from pgbench's per-transaction logs (-l)
  cat "$OUT"/pgbench_log.* | awk '{print $3}' | sort -n |
    awk -v p="$1" '{v[NR] = $1} END {i = int(NR * p / 100); if (i < 1) i = 1; printf "%.2f", v[i] / 1000}'
}
check_wrk() { # <output> <label>
  local bad
  bad=$(($(wrk_field unexpected_status "$1") + $(wrk_field socket_errors "$1")))
  ((bad == 0)) || say "warning: $2: $bad responses were not the expected status or failed (see $1)"
}
pending_jobs() { sql -c "SELECT count(*) FROM jobs WHERE status = 'pending'"; }
reset_jobs() { # an empty jobs table, outbox and command queue between runs of the end-to-end path
  sql -c "TRUNCATE jobs, outbox" >/dev/null
  rabbitmqctl -q purge_queue -p "$VHOST" bench.commands >/dev/null 2>&1 || true
}
run_pgbench() { # <label> <pgbench args…>: output in $OUT/<label>.out, transaction logs in $OUT/pgbench_log.*
  local label=$1
  shift
  local attempt
  # The machine's PostgreSQL is shared (100 connections): when other work holds too many for pgbench's
  # clients, wait and try again.
  for ((attempt = 1; ; attempt++)); do
    rm -f "$OUT"/pgbench_log.*
    pgbench -n -M prepared -j 2 -l --log-prefix "$OUT/pgbench_log" "$@" "$APP_URL" >"$OUT/$label.out" 2>&1 && break
    if ((attempt < 12)) && grep -q 'could not create connection\|connection slots are reserved' "$OUT/$label.out"; then
      say "pgbench could not get its connections (other work holds them); again in 5 s"
      sleep 5
      continue
    fi
    cat "$OUT/$label.out" >&2
    exit 1
  done
  grep -q 'failed transactions: 0 ' "$OUT/$label.out" || say "warning: $label: pgbench reports failed transactions"
}

# Measures a drain: waits until <count query> (run against <url>) falls below <queued>, then until it is 0.
# Prints "<jobs/s> <stalled 0|1>": the jobs done between the first and the last sample over that time.
drain_rate() { # <url> <count query> <queued>
  local url=$1 query=$2 queued=$3 deadline t0 t1 left first
  deadline=$(($(date +%s) + E2E_TIMEOUT))
  left=$queued
  while ((left >= queued)); do
    left=$(psql -qAtX "$url" -c "$query")
    (($(date +%s) > deadline)) && { echo "0 1"; return; }
    ((left >= queued)) && sleep 0.05
  done
  t0=$(now) first=$left
  while ((left > 0)); do
    sleep 0.1
    left=$(psql -qAtX "$url" -c "$query")
    if (($(date +%s) > deadline)); then
      t1=$(now)
      awk -v n="$((first - left))" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f 1\n", n / (b - a)}'
      return
    fi
  done
  t1=$(now)
  awk -v n="$first" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f 0\n", n / (b - a)}'
}

# Queues about <n> create commands through the api (worker stopped); prints how many jobs are pending. wrk's
# threads stop after their share of responses (bench/intake.lua); wrk itself ends on SIGINT.
queue_commands() { # <n>
  local per_thread=$((($1 + 1) / 2)) wrk_pid deadline
  wrk -t2 -c"$CONNECTIONS" -d 600s --timeout 10s -s bench/intake.lua "$BASE" \
    -- "$TOKEN" "$KEY" "$(uuid_prefix)" "$per_thread" >"$OUT/queue.out" 2>&1 &
  wrk_pid=$!
  deadline=$(($(date +%s) + 600))
  while (($(pending_jobs) < $1)) && (($(date +%s) < deadline)) && kill -0 "$wrk_pid" 2>/dev/null; do
    sleep 0.2
  done
  kill -INT "$wrk_pid" 2>/dev/null || true
  wait "$wrk_pid" 2>/dev/null || true
  # Requests still in flight when wrk stopped may yet commit: wait until the count holds still.
  local before=-1 after
  after=$(pending_jobs)
  while ((after != before)); do
    before=$after
    sleep 0.3
    after=$(pending_jobs)
  done
  echo "$after"
}

# --- the paths ------------------------------------------------------------------------------------------------

bench_intake() {
  local rep out tps answered=0 created
  for ((rep = 1; rep <= REPS; rep++)); do
    say "intake $rep/$REPS: service (wrk, $CONNECTIONS connections, $DURATION s)"
    start_api
    out=$OUT/intake.$rep.out
    record "load.intake $rep $(load_avg)"
    cpu_start
    wrk -t2 -c"$CONNECTIONS" -d "${DURATION}s" --timeout 10s -s bench/intake.lua "$BASE" \
      -- "$TOKEN" "$KEY" "$(uuid_prefix)" >"$out" 2>&1
    cpu_stop intake "$rep" "$(wrk_field requests "$out")"
    check_wrk "$out" intake
    answered=$((answered + $(wrk_field requests "$out") - $(wrk_field unexpected_status "$out")))
    record "intake.rps $rep $(awk -v n="$(wrk_field requests "$out")" -v s="$(wrk_field seconds "$out")" 'BEGIN {print n / s}')"
    record "intake.p50 $rep $(wrk_field p50_ms "$out")"
    record "intake.p99 $rep $(wrk_field p99_ms "$out")"

    stop_api
    say "intake $rep/$REPS: pgbench (bench/intake.sql, $CONNECTIONS clients, $DURATION s)"
    record "load.pgb_intake $rep $(load_avg)"
    cpu_start
    run_pgbench "pgb_intake.$rep" -c "$CONNECTIONS" -T "$DURATION" -f bench/intake.sql -D k=0 \
      -D base=$((rep * 2000000000)) -D le="$LE" -D actor="$ACTOR"
    tps=$(pgbench_tps "$OUT/pgb_intake.$rep.out")
    cpu_stop pgb_intake "$rep" "$(awk -v t="$tps" -v d="$DURATION" 'BEGIN {print int(t * d)}')"
    record "pgb_intake.tps $rep $tps"
    record "pgb_intake.p50 $rep $(pgbench_percentile 50)"
    record "pgb_intake.p99 $rep $(pgbench_percentile 99)"

    say "intake $rep/$REPS: pgbench (bench/intake_da85656.sql: the intake's SQL before issue 11)"
    record "load.pgb_intake0 $rep $(load_avg)"
    cpu_start
    run_pgbench "pgb_intake0.$rep" -c "$CONNECTIONS" -T "$DURATION" -f bench/intake_da85656.sql -D k=0 \
      -D base=$((rep * 2000000000 + 1000000000)) -D le="$LE" -D keyhash="$KEY_HASH" -D tokenhash="$TOKEN_HASH" \
      -D actor="$ACTOR"
    tps=$(pgbench_tps "$OUT/pgb_intake0.$rep.out")
    cpu_stop pgb_intake0 "$rep" "$(awk -v t="$tps" -v d="$DURATION" 'BEGIN {print int(t * d)}')"
    record "pgb_intake0.tps $rep $tps"
    record "pgb_intake0.p99 $rep $(pgbench_percentile 99)"
  done
  start_api
  # Every 202 must have been a new job, not the replay of an identical command.
  created=$(sql -c "SELECT count(*) FROM jobs WHERE request_id <> 'c0ffee00-0000-4000-8000-000000000000'")
  ((created >= answered)) || say "warning: intake: $answered requests answered 202 but only $created jobs were created"
  reset_jobs
}

graphile_setup() {
  local dir=target/bench/graphile
  if ! cmp -s bench/graphile/package-lock.json "$dir/package-lock.json" || [[ ! -x $dir/node_modules/.bin/graphile-worker ]]; then
    say "installing Graphile Worker into $dir (npm ci)"
    mkdir -p "$dir"
    cp bench/graphile/package.json bench/graphile/package-lock.json "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  rm -rf "$dir/tasks"
  cp -r bench/graphile/tasks "$dir/tasks"
  admin_sql -c "DROP DATABASE IF EXISTS $GRAPHILE_DB WITH (FORCE)" -c "CREATE DATABASE $GRAPHILE_DB" >/dev/null
  psql -qX -v ON_ERROR_STOP=1 "$GRAPHILE_URL" -f bench/graphile/setup.sql >/dev/null
  (cd "$dir" && node_modules/.bin/graphile-worker -c "$GRAPHILE_URL" --schema-only >/dev/null 2>&1)
}

# One Graphile Worker drain: <task> (noop|work) <key> <rep>.
graphile_run() {
  local task=$1 key=$2 rep=$3 result
  psql -qX -v ON_ERROR_STOP=1 "$GRAPHILE_URL" >/dev/null <<SQL
TRUNCATE bench_events, bench_projection;
SELECT graphile_worker.add_jobs(ARRAY(
  SELECT ROW('$task', json_build_object('id', gen_random_uuid(), 'code', 'LAB-001', 'category', 'laboratory_procedure',
    'patient_id', gen_random_uuid(), 'program_id', gen_random_uuid(), 'status', 'active'),
    NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec
  FROM generate_series(1, $E2E_JOBS)));
SQL
  record "load.$key $rep $(load_avg)"
  cpu_start
  (cd target/bench/graphile && exec node_modules/.bin/graphile-worker -c "$GRAPHILE_URL" \
    --jobs "$E2E_CONCURRENCY" --max-pool-size $((E2E_CONCURRENCY + 4)) >>"$OUT/graphile.log" 2>&1) &
  graphile_pid=$!
  result=$(drain_rate "$GRAPHILE_URL" "SELECT count(*) FROM graphile_worker._private_jobs" "$E2E_JOBS")
  stop_pid "$graphile_pid"
  graphile_pid=''
  cpu_stop "$key" "$rep" "$E2E_JOBS"
  record "$key.jps $rep ${result% *}"
  ((${result#* } == 0)) || say "warning: Graphile Worker ($task) did not drain within $E2E_TIMEOUT s"
}

# pgbench over E2E_JOBS seeded pending jobs: <script> <key> <rep> <base of the seeded range>.
pgbench_worker() {
  local script=$1 key=$2 rep=$3 base=$4 per_client left
  say "end-to-end $rep/$REPS: pgbench ($script, $E2E_CONCURRENCY clients, $E2E_JOBS jobs)"
  reset_jobs
  per_client=$(((E2E_JOBS + E2E_CONCURRENCY - 1) / E2E_CONCURRENCY))
  sql -v base="$base" -v clients=$E2E_CONCURRENCY -v per_client="$per_client" -v le="$LE" \
    -f bench/seed_worker_jobs.sql >/dev/null
  sql -c "ANALYZE jobs" >/dev/null
  record "load.$key $rep $(load_avg)"
  cpu_start
  run_pgbench "$key.$rep" -c "$E2E_CONCURRENCY" -t "$per_client" -f "$script" -D k=0 -D base="$base"
  cpu_stop "$key" "$rep" $((per_client * E2E_CONCURRENCY))
  record "$key.tps $rep $(pgbench_tps "$OUT/$key.$rep.out")"
  left=$(sql -c "SELECT count(*) FROM jobs WHERE status = 'pending'")
  ((left == 0)) || say "warning: pgbench end-to-end ($script) left $left seeded jobs pending"
}

bench_e2e() {
  local rep queued result failed
  graphile_setup
  for ((rep = 1; rep <= REPS; rep++)); do
    say "end-to-end $rep/$REPS: service (queue $E2E_JOBS creates, then one worker drains them)"
    reset_jobs
    queued=$(queue_commands "$E2E_JOBS")
    record "load.e2e $rep $(load_avg)"
    cpu_start
    start_worker
    result=$(drain_rate "$OWNER_URL" "SELECT count(*) FROM jobs WHERE status = 'pending'" "$queued")
    stop_worker
    cpu_stop e2e "$rep" "$queued"
    record "e2e.jps $rep ${result% *}"
    record "e2e.stalled $rep ${result#* }"
    failed=$(sql -c "SELECT count(*) FROM jobs WHERE status NOT IN ('pending', 'processed')")
    ((failed == 0)) || say "warning: end-to-end: $failed jobs did not end processed"
    ((${result#* } == 0)) || say "warning: end-to-end: the worker did not drain $queued jobs within $E2E_TIMEOUT s"

    pgbench_worker bench/worker.sql pgb_worker "$rep" $((rep * 1000000000))
    pgbench_worker bench/worker_da85656.sql pgb_worker0 "$rep" $((rep * 1000000000 + 500000000))

    say "end-to-end $rep/$REPS: Graphile Worker, comparable task"
    graphile_run work gw_work "$rep"
    say "end-to-end $rep/$REPS: Graphile Worker, no-op task"
    graphile_run noop gw_noop "$rep"
  done
  reset_jobs
}

# A finished job to poll (one create drained by the worker), and so at least one event to clone for rebuild.
ensure_processed_job() {
  local job
  job=$(sql -c "SELECT id FROM jobs WHERE status = 'processed' LIMIT 1")
  if [[ -z $job ]]; then
    curl -fsS -o /dev/null -X POST "$BASE/api/patients/$(cat /proc/sys/kernel/random/uuid)/service_requests" \
      -H "Authorization: Bearer $TOKEN" -H "api-key: $KEY" -H 'Content-Type: application/json' \
      -d '{"category":"laboratory_procedure","code":"LAB-001","program_id":"4bee8fab-2a99-43ce-9dc5-c0adf13141bf"}'
    start_worker
    drain_rate "$OWNER_URL" "SELECT count(*) FROM jobs WHERE status = 'pending'" 1 >/dev/null
    stop_worker
    job=$(sql -c "SELECT id FROM jobs WHERE status = 'processed' LIMIT 1")
  fi
  printf '%s' "$job"
}

bench_poll() {
  local rep out job tps
  job=$(ensure_processed_job)
  for ((rep = 1; rep <= REPS; rep++)); do
    say "poll $rep/$REPS: service (wrk, $CONNECTIONS connections, $DURATION s)"
    start_api
    out=$OUT/poll.$rep.out
    record "load.poll $rep $(load_avg)"
    cpu_start
    wrk -t2 -c"$CONNECTIONS" -d "${DURATION}s" --timeout 10s -s bench/poll.lua "$BASE" -- "$TOKEN" "$job" >"$out" 2>&1
    cpu_stop poll "$rep" "$(wrk_field requests "$out")"
    check_wrk "$out" poll
    record "poll.rps $rep $(awk -v n="$(wrk_field requests "$out")" -v s="$(wrk_field seconds "$out")" 'BEGIN {print n / s}')"
    record "poll.p99 $rep $(wrk_field p99_ms "$out")"

    stop_api
    say "poll $rep/$REPS: pgbench (bench/poll.sql, $CONNECTIONS clients, $DURATION s)"
    record "load.pgb_poll $rep $(load_avg)"
    cpu_start
    run_pgbench "pgb_poll.$rep" -c "$CONNECTIONS" -T "$DURATION" -f bench/poll.sql -D job="$job"
    tps=$(pgbench_tps "$OUT/pgb_poll.$rep.out")
    cpu_stop pgb_poll "$rep" "$(awk -v t="$tps" -v d="$DURATION" 'BEGIN {print int(t * d)}')"
    record "pgb_poll.tps $rep $tps"
    record "pgb_poll.p99 $rep $(pgbench_percentile 99)"
  done
  start_api
}

bench_rebuild() {
  local rep have chunk events t0 t1 rows
  ensure_processed_job >/dev/null
  have=$(sql -c "SELECT count(*) FROM events")
  say "rebuild: seeding $((REBUILD_EVENTS > have ? REBUILD_EVENTS - have : 0)) events ($have there)"
  while ((have < REBUILD_EVENTS)); do
    chunk=$((REBUILD_EVENTS - have < 100000 ? REBUILD_EVENTS - have : 100000))
    sql -v count="$chunk" -f bench/seed_events.sql >/dev/null
    have=$((have + chunk))
  done
  sql -c "VACUUM ANALYZE events" -c "VACUUM ANALYZE streams" >/dev/null
  for ((rep = 1; rep <= REPS; rep++)); do
    say "rebuild $rep/$REPS: ehealth-admin projections rebuild ($have events)"
    record "load.rebuild $rep $(load_avg)"
    cpu_start
    t0=$(now)
    env "${service_env[@]}" "$BIN/ehealth-admin" projections rebuild >"$OUT/rebuild.$rep.out" 2>"$OUT/rebuild.$rep.err"
    t1=$(now)
    events=$(jq -r .events "$OUT/rebuild.$rep.out")
    cpu_stop rebuild "$rep" "$events"
    record "rebuild.eps $rep $(awk -v n="$events" -v a="$t0" -v b="$t1" 'BEGIN {print n / (b - a)}')"

    say "rebuild $rep/$REPS: \\copy (select * from events) to /dev/null"
    record "load.copy $rep $(load_avg)"
    cpu_start
    t0=$(now)
    rows=$(psql -AtX "$OWNER_URL" -c "\\copy (select * from events) to /dev/null" | sed -n 's/^COPY \([0-9]*\)$/\1/p')
    [[ -n $rows ]] || rows=$have
    t1=$(now)
    cpu_stop copy "$rep" "$rows"
    record "copy.rps $rep $(awk -v n="$rows" -v a="$t0" -v b="$t1" 'BEGIN {print n / (b - a)}')"
  done
}

# --- main -----------------------------------------------------------------------------------------------------

setup
for path in $PATHS; do
  case $path in
    intake) bench_intake ;;
    e2e) bench_e2e ;;
    poll) bench_poll ;;
    rebuild) bench_rebuild ;;
    *) say "unknown path $path (BENCH_PATHS: intake e2e poll rebuild)"; exit 2 ;;
  esac
done
stop_worker
stop_api
record "rss.api 1 $api_hwm"
record "rss.worker 1 $worker_hwm"

{
  echo
  echo "scripts/bench.sh on $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC'), binaries: ${BENCH_BIN_DIR:-target/release ($(git rev-parse --short HEAD 2>/dev/null || echo '?'))}"
  echo "reps $REPS, $DURATION s per timed run, $CONNECTIONS connections, $E2E_JOBS jobs per drain, $(sql -c 'SELECT count(*) FROM events') events rebuilt"
  echo
  python3 bench/report.py "$RESULTS" "$(nproc)"
} | tee "$OUT/report.md"
say "raw results in $RESULTS, logs in $OUT"
