#!/usr/bin/env bash
# Makes sure PostgreSQL and RabbitMQ answer on the addresses of DATABASE_URL / TEST_DATABASE_URL and
# AMQP_URL. Local services that are down are started (and installed from Debian's packages if missing);
# remote ones are only waited for.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

pg_url=${TEST_DATABASE_URL:-${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}}
amqp_url=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
pg_host=$(url_host "$pg_url"); pg_port=$(url_port "$pg_url" 5432)
mq_host=$(url_host "$amqp_url"); mq_port=$(url_port "$amqp_url" 5672)

if ! tcp_open "${pg_host:-127.0.0.1}" "$pg_port"; then
  if is_local "$pg_host"; then
    command -v pg_ctlcluster >/dev/null || apt_install postgresql
    version=$(ls /etc/postgresql | sort -V | tail -1)
    say "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  wait_for_tcp "${pg_host:-127.0.0.1}" "$pg_port" 60 PostgreSQL
fi

if ! tcp_open "${mq_host:-127.0.0.1}" "$mq_port"; then
  if is_local "$mq_host"; then
    command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
    say "starting RabbitMQ"
    rabbitmq-server -detached || true
  fi
  wait_for_tcp "${mq_host:-127.0.0.1}" "$mq_port" 90 RabbitMQ
  if is_local "$mq_host" && command -v rabbitmqctl >/dev/null; then
    rabbitmqctl -q await_startup >/dev/null 2>&1 || true
  fi
fi
# RabbitMQ 3.10's supervisor of quorum-queue dead-lettering (rabbit_fifo_dlx_sup) can stop for good when
# queues with at-least-once dead-lettering are deleted while their dead-letter worker starts: the worker
# crashes ({badmatch,{error,not_found}}) until the supervisor's restart intensity is spent, and from then on
# declaring such a queue (our command queue) closes the connection with INTERNAL_ERROR. Tests declare and
# delete many of them in parallel (seen once, 2026-11-26, with several test runs at once): bring it back.
if is_local "$mq_host" && command -v rabbitmqctl >/dev/null \
  && [[ $(rabbitmqctl eval 'whereis(rabbit_fifo_dlx_sup).' 2>/dev/null) == undefined ]]; then
  say "RabbitMQ's quorum-queue dead-letter supervisor had stopped: restarting it"
  rabbitmqctl eval 'supervisor:restart_child(rabbit_sup, rabbit_fifo_dlx_sup).' >/dev/null || true
fi
# It stops because it allows its workers 1 restart in 5 s, and one test run deletes dozens of such queues:
# on the local broker, allow it 1,000, so that the harmless crashes of workers whose queue is gone no longer
# stop it in the middle of a run (seen again 2026-11-26 09:06, 12 tests failed with INTERNAL_ERROR). Only
# the supervisor's restart intensity changes (field 6 of OTP's supervisor state); nothing is restarted.
if is_local "$mq_host" && command -v rabbitmqctl >/dev/null; then
  rabbitmqctl eval 'case whereis(rabbit_fifo_dlx_sup) of undefined -> skipped; _ -> sys:replace_state(rabbit_fifo_dlx_sup, fun(S) when element(1, S) =:= state, is_integer(element(6, S)) -> setelement(6, S, 1000); (S) -> S end), ok end.' >/dev/null 2>&1 || true
fi

say "PostgreSQL on ${pg_host:-127.0.0.1}:$pg_port and RabbitMQ on ${mq_host:-127.0.0.1}:$mq_port are up"
