#!/usr/bin/env python3
"""Groups one process's perf samples by crate (issue 11, docs/PERFORMANCE.md "Where the remaining gap goes").

Usage: bench/perf_crates.py PERF_DATA (--pid PID | --comm COMM)

Reads `perf script` of the samples of one process (or thread name), takes each sample's leaf symbol and
counts it under the crate its name starts with (kernel, libc's allocator, tokio, hyper, serde_json, …), and
prints the shares, largest first.
"""
import collections
import re
import subprocess
import sys

RULES = [
    ("tokio_postgres", "tokio-postgres"), ("postgres_protocol", "tokio-postgres"),
    ("postgres_types", "tokio-postgres"), ("deadpool", "deadpool"), ("lapin", "lapin (AMQP)"),
    ("amq_protocol", "lapin (AMQP)"), ("hyper", "hyper"), ("axum", "axum/tower"), ("tower", "axum/tower"),
    ("tokio", "tokio runtime"), ("mio", "tokio runtime"), ("serde_json", "serde_json"), ("serde", "serde_json"),
    ("tracing", "tracing/logging"), ("sha2", "sha2/hmac"), ("hmac", "sha2/hmac"), ("prometheus", "metrics"),
    ("metrics", "metrics"), ("ehealth", "ehealth code"), ("alloc::", "alloc (Vec/String/maps)"),
    ("core::fmt", "core::fmt"), ("uuid", "uuid"), ("chrono", "chrono"), ("http::", "http"), ("bytes", "bytes"),
    ("futures", "futures"), ("std::", "std"),
]
ALLOCATOR = re.compile(r"malloc|free|_int_|realloc|memalign|tcache")


def crate(sym: str, dso: str) -> str:
    if "kernel" in dso:
        return "kernel (sockets, scheduling, syscalls)"
    if "libc" in dso:
        return "libc malloc/free" if ALLOCATOR.search(sym) else "libc other (memcpy, …)"
    for key, name in RULES:
        if key in sym:
            return name
    return "other: " + dso.rsplit("/", 1)[-1]


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[2] not in ("--pid", "--comm"):
        sys.exit(__doc__)
    data, flag, value = sys.argv[1:]
    script = subprocess.run(
        ["perf", "script", "-i", data, flag, value, "-F", "ip,sym,dso", "-G"],
        capture_output=True, text=True, check=True,
    ).stdout
    counts: collections.Counter = collections.Counter()
    for line in script.splitlines():
        line = line.strip()
        if not line:
            continue
        m = re.match(r"\S+\s+(.*)\s+\((.*)\)$", line)
        counts[crate(*(m.groups() if m else (line, "?")))] += 1
    total = sum(counts.values()) or 1
    for name, n in counts.most_common():
        print(f"{100 * n / total:5.1f} %  {name}")
    print(f"{total} samples")


if __name__ == "__main__":
    main()
