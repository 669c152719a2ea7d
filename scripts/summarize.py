#!/usr/bin/env python3
"""Sums test results over Meson test logs: Catch2 test cases where a test
printed Catch2's summary, one per test otherwise. Prints per-test lines and,
last, 'N passed, N failed'. Usage: summarize.py testlog.json [...]"""
import json
import re
import sys

ALL = re.compile(r"All tests passed \((\d+) assertions? in (\d+) test cases?\)")
SOME = re.compile(r"test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed")
ONLY_FAILED = re.compile(r"test cases:\s*(\d+)\s*\|\s*(\d+) failed")

passed = failed = 0
for path in sys.argv[1:]:
    try:
        lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    except OSError as e:
        print(f"summarize: cannot read {path}: {e}")
        failed += 1
        continue
    for line in lines:
        if not line.strip():
            continue
        t = json.loads(line)
        ok = t.get("result") in ("OK", "EXPECTEDFAIL")
        skipped = t.get("result") == "SKIP"
        out = t.get("stdout") or ""
        p = f = 0
        m = ALL.findall(out)
        s = SOME.findall(out)
        o = ONLY_FAILED.findall(out)
        if m:
            p = int(m[-1][1])
        elif s:
            p, f = int(s[-1][1]), int(s[-1][2])
        elif o:
            f = int(o[-1][1])
        elif not skipped:
            p, f = (1, 0) if ok else (0, 1)
        if not ok and not skipped and f == 0:
            f = 1  # crashed, timed out or a sanitizer report after Catch2's summary
        passed += p
        failed += f
        print(f"  {t.get('result', '?'):8} {t.get('name')}: {p} passed, {f} failed  [{path}]")
print(f"{passed} passed, {failed} failed")
