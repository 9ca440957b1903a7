#!/usr/bin/env python3
"""Turns a criterion bench's terminal output (stdin) into its BENCHMARKS.md section.

Usage: criterion_table.py BENCH [--quick] < log

Criterion prints each benchmark as its id followed by
`time:   [low median high]` (the line may wrap after a long id); the median is
the middle figure.
"""
import re
import sys

bench = sys.argv[1]
quick = "--quick" in sys.argv[2:]
rows = []
last_id = None
for line in sys.stdin:
    line = line.rstrip("\n")
    m = re.match(r"^(\S.*?)\s+time:\s+\[(\S+ \S+) (\S+ \S+) (\S+ \S+)\]", line)
    if m:
        rows.append((m.group(1).strip(), m.group(3)))
        last_id = None
        continue
    m = re.match(r"^\s+time:\s+\[(\S+ \S+) (\S+ \S+) (\S+ \S+)\]", line)
    if m and last_id:
        rows.append((last_id, m.group(2)))
        last_id = None
        continue
    if line and not line[0].isspace() and not line.startswith(("Benchmarking", "Found", "Gnuplot", "Warning", "   ", "Running", "Finished", "Compiling")):
        last_id = line.strip()

if not rows:
    sys.exit(f"criterion_table.py: no criterion results in the output of bench {bench}")
print(f"## Criterion: `{bench}`\n")
print(f"`cargo bench --bench {bench}`{' (quick)' if quick else ''}, median of criterion's samples:\n")
print("| benchmark | median |")
print("|---|---|")
for name, median in rows:
    print(f"| {name} | {median} |")
print()
