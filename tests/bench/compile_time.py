#!/usr/bin/env python3
"""Compile cost of a TU that uses the S3 driver (issue 21, docs/performance.md
"Compile cost"): tests/bench/compile/uses_s3.cpp compiled header-only and with
CACHESTORE_SEPARATE_COMPILATION, against tests/bench/compile/std_only.cpp (the
same work on the standard headers the driver's declarations include). The
variants alternate, ROUNDS times per optimisation level; the compiler's user +
system CPU seconds (steadier than wall time on a loaded machine), medians
and ratios are printed. --check R fails when the separately compiled TU takes more than
R times the baseline at -O2 (the deterministic guard is tests/consumer/
compiled.cpp, which refuses to compile if curl's or OpenSSL's headers leak).

usage: compile_time.py SOURCE_ROOT [--cxx C++] [--rounds N] [--levels=-O2,-O0]
                       [--include DIR]... [--check R]
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--cxx", default=os.environ.get("CXX", "c++"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--levels", default="-O2,-O0")
    ap.add_argument("--check", type=float)
    a = ap.parse_args()
    src = os.path.join(a.root, "tests", "bench", "compile")
    inc = "-I" + os.path.join(a.root, "include")
    variants = [
        ("std_only", "std_only.cpp", []),
        ("header_only", "uses_s3.cpp", [inc]),
        ("separate", "uses_s3.cpp", [inc, "-DCACHESTORE_SEPARATE_COMPILATION"]),
    ]
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for level in a.levels.split(","):
            times = {name: [] for name, _, _ in variants}
            for r in range(a.rounds):
                order = variants if r % 2 == 0 else list(reversed(variants))
                for name, f, args in order:
                    cmd = [a.cxx, "-std=c++2b", level, *args, "-c", os.path.join(src, f), "-o",
                           os.path.join(tmp, name + ".o")]
                    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    p = subprocess.run(cmd, capture_output=True, text=True)
                    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    dt = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
                    if p.returncode != 0:
                        print(" ".join(cmd) + "\n" + p.stderr, file=sys.stderr)
                        return 1
                    times[name].append(dt)
            med = {k: statistics.median(v) for k, v in times.items()}
            base = med["std_only"]
            for name, _, _ in variants:
                print(f"compile {level} {name:12s} median {med[name]:6.2f} s CPU  ({', '.join(f'{t:.2f}' for t in times[name])})"
                      f"  ratio to std_only {med[name] / base:5.2f}")
            print(f"compile {level} separate vs header_only: {med['header_only'] / med['separate']:.2f}x faster")
            if level == "-O2":
                worst = med["separate"] / base
    if a.check is not None:
        ok = worst <= a.check
        print(f"compile-time check: separate / std_only at -O2 = {worst:.2f} ({'<=' if ok else '>'} {a.check})")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
