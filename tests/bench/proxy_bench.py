#!/usr/bin/env python3
"""range_proxy against nginx serving the same bytes from a file (docs/performance.md).

Usage: proxy_bench.py RANGE_PROXY [--smoke] [--runs N] [--size-mib M] [--clients C]

Needs the nginx that tests/servers/with-servers.sh --nginx starts
(CACHESTORE_NGINX_ENDPOINT, CACHESTORE_NGINX_BUCKET). nginx is the baseline
and also the proxy's origin: the object is PUT into it, range_proxy (a POSIX
store in a temp dir, 8 MiB chunks) reads it once through (cold: the origin's
request count is printed), then the same client, curl, reads it from both,
alternately, in the same run:

  warm GET of the whole object, C clients at once     MiB/s, proxy / nginx
  warm 4 KiB ranged GETs, one client, kept-alive      requests/s, proxy / nginx

Prints one Markdown row per measure with the median of N alternating runs and
the range. --smoke: one short run of each, checking only that every byte
arrived (CI); it asserts no timing. Python standard library and curl only.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from range_proxy_process import Proxy, s3_origin_url  # noqa: E402


def curl_time(args):
    """Runs curl; returns (seconds, bytes downloaded in total)."""
    t0 = time.perf_counter()
    r = subprocess.run(["curl", "-sS", "--fail", *args], capture_output=True, text=True, timeout=600)
    t = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError("curl failed: " + r.stderr)
    return t, sum(int(x) for x in r.stdout.split())


def whole_gets(url, clients, size):
    args = ["--parallel", "--parallel-max", str(clients)]
    for _ in range(clients):
        args += ["-o", "/dev/null", "-w", "%{size_download}\n", url]
    t, got = curl_time(args)
    if got != clients * size:
        raise RuntimeError("short reads from %s: %d of %d bytes" % (url, got, clients * size))
    return clients * size / t / (1 << 20)


def small_gets(url, n, size):
    args = []
    for i in range(n):
        first = (i * 7919 * 4096) % (size - 4096)
        args += ["-r", "%d-%d" % (first, first + 4095), "-o", "/dev/null", "-w", "%{size_download}\n", url]
        if i != n - 1:
            args.append("--next")
    t, got = curl_time(args)
    if got != n * 4096:
        raise RuntimeError("short ranged reads from %s: %d of %d bytes" % (url, got, n * 4096))
    return n / t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("range_proxy")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--clients", type=int, default=4)
    a = ap.parse_args()
    if a.smoke:
        a.runs, a.size_mib = 1, 16
    endpoint = os.environ.get("CACHESTORE_NGINX_ENDPOINT", "")
    if not endpoint:
        msg = "CACHESTORE_NGINX_ENDPOINT is not set: run through tests/servers/with-servers.sh --nginx"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            print("ERROR: " + msg, file=sys.stderr)
            return 1
        print("WARNING: %s; skipped" % msg, file=sys.stderr)
        return 77
    bucket = os.environ.get("CACHESTORE_NGINX_BUCKET", "bench")
    tmp = tempfile.mkdtemp(prefix="proxy-bench-")
    proxy = None
    try:
        size = a.size_mib << 20
        key = "proxy-bench/object-%d.bin" % os.getpid()
        path = os.path.join(tmp, "object.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        subprocess.run(["curl", "-sS", "--fail", "-T", path, "%s/%s/%s" % (endpoint, bucket, key)], check=True,
                       capture_output=True)
        proxy = Proxy(a.range_proxy, s3_origin_url(bucket, endpoint), "file://%s/chunks?create=1&fsync=0" % tmp,
                      "bench", "bench-secret", ("--chunk-size", "8M", "--quiet"))
        direct = "%s/%s/%s" % (endpoint, bucket, key)
        through = proxy.url("/%s/%s" % (bucket, key))

        t, got = curl_time(["-o", "/dev/null", "-w", "%{size_download}\n", through])
        chunks = -(-size // (8 << 20))
        heads = proxy.metric('range_proxy_origin_requests_total{method="HEAD"}')
        gets = proxy.metric('range_proxy_origin_requests_total{method="GET"}')
        print("cold: %d MiB through the proxy in %.2f s (%.0f MiB/s); origin: %d HEAD + %d GET for %d chunks"
              % (a.size_mib, t, a.size_mib / t, heads, gets, chunks))
        for _ in range(200):  # the commits land after the bytes were served
            if (proxy.metric('cachestore_fill_commits_total{engine="range_proxy",outcome="ok"}') or 0) >= chunks:
                break
            time.sleep(0.05)

        small_n = 50 if a.smoke else 500
        rows = {"whole": ([], []), "small": ([], [])}
        for _ in range(a.runs):
            for side, url in ((0, through), (1, direct)):
                rows["whole"][side].append(whole_gets(url, a.clients, size))
                rows["small"][side].append(small_gets(url, small_n, size))
        if proxy.metric('range_proxy_origin_requests_total{method="GET"}') != gets:
            raise RuntimeError("a warm read went to the origin")

        def row(label, unit, pair):
            ours, base = pair
            ratios = [o / b for o, b in zip(ours, base)]
            print("| %s | %s %.0f %s | nginx %.0f %s | %.2f (%.2f-%.2f over %d runs) |"
                  % (label, "range_proxy", statistics.median(ours), unit, statistics.median(base), unit,
                     statistics.median(ratios), min(ratios), max(ratios), len(ratios)))

        print("| row | ours | baseline | ratio |")
        print("|---|---|---|---|")
        row("warm GET of a %d MiB object, %d clients at once (curl --parallel)" % (a.size_mib, a.clients), "MiB/s",
            rows["whole"])
        row("warm 4 KiB ranged GETs, one client, kept-alive (%d per run)" % small_n, "req/s", rows["small"])
        if a.smoke:
            print("smoke: every byte arrived; timings not asserted")
        return 0
    finally:
        if proxy is not None:
            proxy.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
