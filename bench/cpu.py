#!/usr/bin/env python3
"""CPU split of one benchmark run, read from /proc (scripts/bench.sh).

Usage: cpu.py <output file> <database>[,<database>…]

Samples every 0.25 s (creating <output file>.ready after the first sample) until SIGTERM, then writes one line of CPU seconds used during the run:
  postgres=<backends of the named databases> api=<ehealth-api, ehealth-admin> worker=<ehealth-worker>
  client=<wrk, pgbench, node, psql> machine=<every CPU of the machine, busy> wall=<seconds>
A process counts from its first sample (or from 0 if it started during the run) to its last one, so a
backend that exits between two samples loses at most 0.25 s. `machine` minus the rest is what other work on
the machine (other builds, the broker) took.
"""
import os
import signal
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")
CLIENTS = {"wrk", "pgbench", "node", "graphile-worker", "psql"}


def classify(pid, databases):
    try:
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().strip()
        if comm in ("ehealth-api", "ehealth-admin"):
            return "api"
        if comm == "ehealth-worker":
            return "worker"
        if comm in CLIENTS:
            return "client"
        if comm == "postgres":
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read().replace(b"\0", b" ").decode(errors="replace").split()
            # "postgres: 15/main: <user> <database> <host(port)> <state>"
            if len(title) >= 4 and title[3] in databases:
                return "postgres"
    except OSError:
        pass
    return None


def cpu_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def machine_busy():
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICK  # all but idle and iowait


def main():
    out, databases = sys.argv[1], set(sys.argv[2].split(","))
    first, last, kind = {}, {}, {}
    started, busy0 = time.monotonic(), machine_busy()
    initial = True
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while True:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            if pid not in kind:
                kind[pid] = classify(pid, databases)
            if kind[pid] is None:
                continue
            try:
                value = cpu_of(pid)
            except OSError:
                continue
            first.setdefault(pid, value if initial else 0.0)
            last[pid] = value
        if initial:
            # The caller starts the measured run once the first sample is taken.
            open(out + ".ready", "w").close()
            initial = False
        if stop:
            break
        time.sleep(0.25)
    totals = {"postgres": 0.0, "api": 0.0, "worker": 0.0, "client": 0.0}
    for pid, value in last.items():
        totals[kind[pid]] += value - first[pid]
    totals["machine"] = machine_busy() - busy0
    totals["wall"] = time.monotonic() - started
    with open(out, "w") as f:
        f.write(" ".join(f"{k}={v:.2f}" for k, v in totals.items()) + "\n")


if __name__ == "__main__":
    main()
