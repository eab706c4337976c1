#!/usr/bin/env python3
"""Prints the tables of scripts/bench.sh from its results file.

Usage: report.py <results file>

The results file has one measurement per line, `<key> <rep> <value>`: `intake.rps 1 1123.4`, `load.intake 1 1.52`
(the 1-minute load average before that run), `cpu.intake 1 <units> postgres=… api=… …` (bench/cpu.py over a run
that did <units> requests or jobs). A row shows min / median / max over the repetitions, the ratio of the
medians, service / baseline, and the range of the ratios of each repetition's pair of runs.
"""
import collections
import statistics
import sys

ROWS = [
    # label, service key, baseline label, baseline key, unit
    ("intake: POST create, 64 connections, worker stopped", "intake.rps",
     "pgbench -M prepared, the same SQL (bench/intake.sql), 64 clients", "pgb_intake.tps", "req/s"),
    ("intake p50", "intake.p50", "pgbench p50", "pgb_intake.p50", "ms"),
    ("intake p99", "intake.p99", "pgbench p99", "pgb_intake.p99", "ms"),
    ("intake (same runs)", "intake.rps", "pgbench, the intake's SQL at da85656 (bench/intake_da85656.sql)",
     "pgb_intake0.tps", "req/s"),
    ("intake p99 (same runs)", "intake.p99", "pgbench p99, the intake's SQL at da85656", "pgb_intake0.p99", "ms"),
    ("end-to-end: queued creates drained by one worker, default config", "e2e.jps",
     "pgbench, the worker's per-job SQL (bench/worker.sql), 16 clients", "pgb_worker.tps", "jobs/s"),
    ("end-to-end (same runs)", "e2e.jps", "pgbench, the worker's SQL at da85656 (bench/worker_da85656.sql)",
     "pgb_worker0.tps", "jobs/s"),
    ("end-to-end (same runs)", "e2e.jps",
     "Graphile Worker, concurrency 16, event insert + projection upsert", "gw_work.jps", "jobs/s"),
    ("end-to-end (same runs)", "e2e.jps", "Graphile Worker, concurrency 16, no-op task", "gw_noop.jps", "jobs/s"),
    ("poll: GET /Jobs/{id}, 64 connections", "poll.rps",
     "pgbench -M prepared select-by-pk on jobs, 64 clients", "pgb_poll.tps", "req/s"),
    ("poll p99", "poll.p99", "pgbench p99", "pgb_poll.p99", "ms"),
    ("rebuild: ehealth-admin projections rebuild", "rebuild.eps",
     "\\copy (select * from events) to /dev/null", "copy.rps", "events/s"),
]
LOADS = {
    "intake.rps": "intake", "intake.p50": "intake", "intake.p99": "intake", "e2e.jps": "e2e", "poll.rps": "poll",
    "poll.p99": "poll", "rebuild.eps": "rebuild", "pgb_intake.tps": "pgb_intake", "pgb_intake.p50": "pgb_intake",
    "pgb_intake.p99": "pgb_intake", "pgb_intake0.tps": "pgb_intake0", "pgb_intake0.p99": "pgb_intake0",
    "pgb_worker.tps": "pgb_worker", "pgb_worker0.tps": "pgb_worker0", "gw_work.jps": "gw_work",
    "gw_noop.jps": "gw_noop", "pgb_poll.tps": "pgb_poll", "pgb_poll.p99": "pgb_poll", "copy.rps": "copy",
}
CPU_RUNS = [
    ("intake", "intake (service)", "req"), ("pgb_intake", "intake (pgbench)", "tx"),
    ("pgb_intake0", "intake (pgbench, SQL at da85656)", "tx"),
    ("e2e", "end-to-end drain (service)", "job"), ("pgb_worker", "end-to-end (pgbench)", "job"),
    ("pgb_worker0", "end-to-end (pgbench, SQL at da85656)", "job"),
    ("gw_work", "Graphile Worker, comparable task", "job"), ("gw_noop", "Graphile Worker, no-op", "job"),
    ("poll", "poll (service)", "req"), ("pgb_poll", "poll (pgbench)", "tx"),
    ("rebuild", "rebuild (service)", "event"), ("copy", "\\copy to /dev/null", "row"),
]


def fmt(value, unit):
    if value is None:
        return "—"
    if unit == "ms":
        return f"{value:.1f}"
    return f"{value:,.0f}"


def spread(values, unit):
    if not values:
        return "—"
    return " / ".join(fmt(v, unit) for v in (min(values), statistics.median(values), max(values)))


def loads(values):
    return "–".join(f"{v:.1f}" for v in (min(values), max(values))) if values else "—"


def main():
    data = collections.defaultdict(list)
    cpu = collections.defaultdict(list)
    with open(sys.argv[1]) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if parts[0].startswith("cpu."):
                units = float(parts[2])
                fields = dict(p.split("=") for p in parts[3:])
                cpu[parts[0][4:]].append((units, {k: float(v) for k, v in fields.items()}))
            else:
                data[parts[0]].append(float(parts[2]))

    print("| path | this service: min / median / max | baseline in the same run: min / median / max | ratio of medians (per repetition) | load before (service; baseline) |")
    print("| --- | --- | --- | --- | --- |")
    for label, key, base_label, base_key, unit in ROWS:
        if not data.get(key) and not data.get(base_key):
            continue
        service, base = data.get(key, []), data.get(base_key, [])
        ratio = (f"{statistics.median(service) / statistics.median(base):.2f}"
                 if service and base and statistics.median(base) else "—")
        if len(service) == len(base) > 1 and all(base):
            paired = [a / b for a, b in zip(service, base)]
            ratio += f" ({min(paired):.2f}–{max(paired):.2f})"
        print(f"| {label} | {spread(service, unit)} {unit} | {base_label}: {spread(base, unit)} {unit} | {ratio} | "
              f"{loads(data.get('load.' + LOADS[key], []))}; {loads(data.get('load.' + LOADS[base_key], []))} |")
    if data.get("rss.api") or data.get("rss.worker"):
        api = max(data.get("rss.api", [0])) / 1024
        worker = max(data.get("rss.worker", [0])) / 1024
        print(f"| peak RSS (VmHWM) after all of the above | api {api:.0f} MiB, worker {worker:.0f} MiB | — | — | — |")
    for key in ("e2e.stalled",):
        if data.get(key) and max(data[key]) > 0:
            print(f"\nend-to-end: {int(sum(data[key]))} drain(s) did not finish within BENCH_E2E_TIMEOUT "
                  "(their figure is the jobs finished / the time waited)")

    if cpu:
        print()
        print("CPU per unit of work, ms (median over the repetitions; bench/cpu.py; `others` = the machine's busy "
              "CPU minus the processes listed, i.e. other work on the machine; busy = share of all cores):")
        print()
        print("| run | per | postgres backends | api / admin | worker | wrk / pgbench / node / psql | others | machine busy |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for key, label, per in CPU_RUNS:
            runs = cpu.get(key)
            if not runs:
                continue
            def med(name):
                return statistics.median(1000 * r[name] / units for units, r in runs if units > 0)
            others = statistics.median(
                1000 * (r["machine"] - r["postgres"] - r["api"] - r["worker"] - r["client"]) / units
                for units, r in runs if units > 0)
            cores = int(sys.argv[2]) if len(sys.argv) > 2 else 1
            busy = statistics.median(100 * r["machine"] / (r["wall"] * cores) for _, r in runs if r["wall"] > 0)
            print(f"| {label} | {per} | {med('postgres'):.3f} | {med('api'):.3f} | {med('worker'):.3f} | "
                  f"{med('client'):.3f} | {others:.3f} | {busy:.0f} % |")


if __name__ == "__main__":
    main()
