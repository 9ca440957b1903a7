#!/usr/bin/env python3
"""Replaces the generated sections of BENCHMARKS.md with a run's sections.

Usage: splice.py BENCHMARKS.md DIR

Each DIR/<part>.md becomes the text between `<!-- bench/run.sh: PART -->` and
`<!-- /bench/run.sh: PART -->` in BENCHMARKS.md; a part without markers yet
is appended at the end with them. Text outside the markers (explanations,
profiles of missed targets) is kept as it is.
"""
import pathlib
import sys

doc_path = pathlib.Path(sys.argv[1])
doc = doc_path.read_text()
for section in sorted(pathlib.Path(sys.argv[2]).glob("*.md")):
    part = section.stem
    begin, end = f"<!-- bench/run.sh: {part} -->", f"<!-- /bench/run.sh: {part} -->"
    body = section.read_text().strip() + "\n"
    if begin in doc and end in doc:
        head, rest = doc.split(begin, 1)
        _, tail = rest.split(end, 1)
        doc = f"{head}{begin}\n{body}{end}{tail}"
    else:
        doc = f"{doc.rstrip()}\n\n{begin}\n{body}{end}\n"
doc_path.write_text(doc)
