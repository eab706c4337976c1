#!/usr/bin/env bash
# Helpers sourced by the other scripts. Nothing here runs on its own.

say() { printf '==> %s\n' "$*" >&2; }

# host:port of a URL such as postgres://user@host:5432/db or amqp://u:p@host:5672/%2f
url_host() { local rest=${1#*://}; rest=${rest#*@}; rest=${rest%%/*}; printf '%s' "${rest%%:*}"; }
url_port() { local rest=${1#*://}; rest=${rest#*@}; rest=${rest%%/*}; [[ $rest == *:* ]] && printf '%s' "${rest##*:}" || printf '%s' "$2"; }

is_local() { [[ $1 == 127.0.0.1 || $1 == localhost || $1 == ::1 || -z $1 ]]; }

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for_tcp() { # host port seconds name
  local i
  for ((i = 0; i < $3 * 4; i++)); do
    tcp_open "$1" "$2" && return 0
    sleep 0.25
  done
  say "$4 did not come up on $1:$2 within $3 s"
  return 1
}

apt_install() {
  if [[ $(id -u) != 0 ]]; then say "need root to install $*"; return 1; fi
  say "installing $* (apt)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
