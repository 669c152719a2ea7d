#!/usr/bin/env python3
"""range_proxy end to end, with Ceph RGW as the origin (docs/fill.md).

Usage: range_proxy_test.py RANGE_PROXY

Puts objects into the RGW bucket with the AWS CLI, starts range_proxy in
front of it (a POSIX store in a temp dir, 256 KiB chunks) and reads through
it with curl (ranges at every chunk edge, suffixes, past the end, HEAD),
Python's http.client and the AWS CLI (s3api get-object --range, s3 cp of a
13-chunk object): statuses 200/206/404/405/416, Content-Length,
Content-Range, ETag, Accept-Ranges, Last-Modified and S3 error documents;
every byte compared with the origin's. Then 32 clients at once on a cold
object: the origin's request count (the proxy's /metrics) is one HEAD and
one GET per chunk. An object rewritten under the proxy is served in its new
version; an unreachable origin is a 502/504 with an S3 error document;
SIGTERM stops the proxy (exit 143). Over a tiered store (a near directory
in front of a prefix of the RGW bucket): a second proxy whose near tier was
emptied serves the object without an origin GET. Without RGW: fails when CI=true,
otherwise warns and exits 77. Python standard library only.
"""
import http.client
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from range_proxy_process import Proxy, s3_origin_url  # noqa: E402
from run_examples import no_rgw_exit, rgw_from_env  # noqa: E402

CHUNK = 256 * 1024
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)
    return cond


def start_proxy(exe, rgw, store, extra=(), endpoint=None):
    """range_proxy in front of the RGW bucket (or `endpoint`), 256 KiB chunks."""
    origin = s3_origin_url(rgw["bucket"], endpoint or rgw["endpoint"], rgw["region"])
    return Proxy(exe, origin, store, rgw["access_key"], rgw["secret_key"], ("--chunk-size", str(CHUNK), *extra))


def aws(rgw, home, *args, check_rc=True):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=rgw["access_key"], AWS_SECRET_ACCESS_KEY=rgw["secret_key"],
               AWS_DEFAULT_REGION=rgw["region"], AWS_CONFIG_FILE=os.path.join(home, "aws-config"),
               AWS_SHARED_CREDENTIALS_FILE=os.path.join(home, "none"), HOME=home)
    r = subprocess.run([shutil.which("aws"), *args], capture_output=True, text=True, env=env, timeout=120)
    if check_rc and r.returncode != 0:
        raise RuntimeError("aws " + " ".join(args) + ": " + r.stderr)
    return r


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    exe = sys.argv[1]
    rgw = rgw_from_env()
    if rgw is None:
        return no_rgw_exit("the range_proxy tests")
    if shutil.which("aws") is None or shutil.which("curl") is None:
        print("ERROR: the AWS CLI and curl are needed (scripts/install-deps.sh installs them)", file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix="range-proxy-test-")
    try:
        return run(exe, rgw, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(exe, rgw, tmp):
    with open(os.path.join(tmp, "aws-config"), "w") as f:
        f.write("[default]\ns3 =\n    addressing_style = path\n")
    rnd = random.Random(18)
    # The bytes are the same every run; the keys are not: a far tier prefix left by an earlier run (the
    # same RGW serves the plain and the sanitizer builds) would turn the tiered store's cold round warm.
    run_id = "%08x" % random.SystemRandom().getrandbits(32)
    bucket = rgw["bucket"]
    objects = {
        "big": ("range-proxy/%s/big.bin" % run_id, rnd.randbytes(3 * 1024 * 1024 + 123)),
        "herd": ("range-proxy/%s/herd.bin" % run_id, rnd.randbytes(16 * CHUNK)),
        "empty": ("range-proxy/%s/empty.bin" % run_id, b""),
        "odd": ("range-proxy/%s/odd key+(1)é.bin" % run_id, rnd.randbytes(1000)),
        "changing": ("range-proxy/%s/changing.bin" % run_id, rnd.randbytes(2 * CHUNK)),
    }
    etags = {}
    for name, (key, body) in objects.items():
        path = os.path.join(tmp, name)
        with open(path, "wb") as f:
            f.write(body)
        aws(rgw, tmp, "--endpoint-url", rgw["endpoint"], "s3api", "put-object", "--bucket", bucket, "--key", key,
            "--body", path)
        head = aws(rgw, tmp, "--endpoint-url", rgw["endpoint"], "s3api", "head-object", "--bucket", bucket,
                   "--key", key)
        etags[name] = re.search(r'"ETag": "(.*)"', head.stdout).group(1).replace('\\"', '"')

    store = "file://" + os.path.join(tmp, "chunks") + "?create=1"
    px = start_proxy(exe, rgw, store)
    try:
        check_reads(px, bucket, objects, etags)
        check_aws_cli(px, rgw, tmp, bucket, objects)
        check_herd(px, bucket, objects["herd"])
        check_changed(px, rgw, tmp, bucket, objects["changing"])
    finally:
        rc, out, err = px.stop()
    check(rc == 128 + signal.SIGTERM, "SIGTERM stops the proxy with exit 143 (got %d)" % rc)
    check("range_proxy: stopped" in out, "it prints what it did when it stops")
    check(rgw["secret_key"] not in out + err, "the origin's secret key is never printed")

    check_tiered(exe, rgw, tmp, bucket, objects["big"], run_id)

    # An origin that refuses connections: a clean error status and document, quickly.
    dead = start_proxy(exe, rgw, "mem:", extra=("--timeout", "5", "--quiet"), endpoint="http://127.0.0.1:9")
    try:
        status, headers, body = dead.request("GET", "/%s/%s" % (bucket, objects["big"][0]))
        check(status in (502, 504) and b"<Code>" in body and headers.get("content-type") == "application/xml",
              "an unreachable origin: %d with an S3 error document (%r)" % (status, body[:120]))
    finally:
        dead.stop()
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


def check_reads(px, bucket, objects, etags):
    key, body = objects["big"]
    size = len(body)
    path = "/%s/%s" % (bucket, key)
    status, h, got = px.request("GET", path)
    check(status == 200 and got == body, "GET: 200 and every byte of a %d-byte object" % size)
    check(h.get("content-length") == str(size), "GET: Content-Length")
    check(h.get("etag") == etags["big"], "GET: the origin's ETag (%s)" % h.get("etag"))
    check(h.get("accept-ranges") == "bytes", "GET: Accept-Ranges: bytes")
    check(bool(h.get("last-modified")), "GET: Last-Modified from the origin")
    check(bool(h.get("x-amz-request-id")), "GET: an x-amz-request-id")
    status, h, got = px.request("HEAD", path)
    check(status == 200 and got == b"" and h.get("content-length") == str(size) and h.get("etag") == etags["big"],
          "HEAD: 200, Content-Length and ETag, no body")
    cases = [
        ("bytes=0-0", 0, 1), ("bytes=100-199", 100, 100), ("bytes=%d-%d" % (CHUNK - 10, CHUNK + 9), CHUNK - 10, 20),
        ("bytes=%d-" % (size - 10), size - 10, 10), ("bytes=-500", size - 500, 500),
        ("bytes=-%d" % (size + 5), 0, size), ("bytes=%d-%d" % (size - 3, size + 1000), size - 3, 3),
        ("bytes=%d-%d" % (CHUNK, 3 * CHUNK - 1), CHUNK, 2 * CHUNK),
    ]
    for rng, first, n in cases:
        status, h, got = px.request("GET", path, {"Range": rng})
        check(status == 206 and got == body[first:first + n] and h.get("content-length") == str(n) and
              h.get("content-range") == "bytes %d-%d/%d" % (first, first + n - 1, size),
              "Range %s: 206, Content-Range bytes %d-%d/%d, the bytes" % (rng, first, first + n - 1, size))
    for rng in ("bytes=%d-" % size, "bytes=-0"):
        status, h, got = px.request("GET", path, {"Range": rng})
        check(status == 416 and b"<Code>InvalidRange</Code>" in got and h.get("content-range") == "bytes */%d" % size,
              "Range %s: 416 InvalidRange, Content-Range bytes */%d" % (rng, size))
    status, h, got = px.request("GET", path, {"Range": "bytes=0-1,5-6"})
    check(status == 200 and got == body, "several ranges: ignored, the whole object (as S3)")
    status, h, got = px.request("HEAD", path, {"Range": "bytes=10-19"})
    check(status == 206 and h.get("content-length") == "10" and got == b"", "HEAD with a Range: 206, its length")

    missing = "/%s/%s" % (bucket, key + ".missing")
    status, h, got = px.request("GET", missing)
    check(status == 404 and b"<Code>NoSuchKey</Code>" in got, "a missing key: 404 NoSuchKey")
    status, h, got = px.request("HEAD", missing)
    check(status == 404 and got == b"", "HEAD of a missing key: 404, no body")
    status, h, got = px.request("GET", "/not-%s/%s" % (bucket, key))
    check(status == 404 and b"<Code>NoSuchBucket</Code>" in got, "another bucket: 404 NoSuchBucket")
    status, h, got = px.request("PUT", path)
    check(status == 405 and b"MethodNotAllowed" in got, "PUT: 405 (read-only)")
    status, h, got = px.request("GET", "/%s" % bucket)
    check(status == 400 and b"<Code>InvalidRequest</Code>" in got, "a bucket listing: 400 InvalidRequest")

    ekey, _ = objects["empty"]
    status, h, got = px.request("GET", "/%s/%s" % (bucket, ekey))
    check(status == 200 and got == b"" and h.get("content-length") == "0", "an empty object: 200, Content-Length 0")
    okey, obody = objects["odd"]
    status, h, got = px.request("GET", "/%s/%s" % (bucket, okey), {"Range": "bytes=10-"})
    check(status == 206 and got == obody[10:], "a key with a space, +, () and é: served")

    # curl itself, as a user would: one curl run, a transfer per range, every
    # chunk edge of the object (ending at it, starting at it, across it),
    # suffix ranges, past the end, and a HEAD.
    chunks = (size + CHUNK - 1) // CHUNK
    want = []
    for b in range(CHUNK, chunks * CHUNK, CHUNK):
        want += [(b - 1, b - 1), (b, min(b + 99, size - 1)), (b - 50, min(b + 49, size - 1))]
    want += [(size - 1, size - 1)]
    specs = ["%d-%d" % w for w in want] + ["-1", "-%d" % (CHUNK + 7), "%d-" % size]
    args = ["curl", "-sS"]
    for i, spec in enumerate(specs):
        if i:
            args.append("--next")
        args += ["-r", spec, "-o", os.path.join(px.tmp, "r%d" % i), "-w", "%{http_code} %{size_download}\n",
                 "http://127.0.0.1:%d/%s/%s" % (px.port, bucket, urllib.parse.quote(key))]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    lines = r.stdout.split("\n")
    bad = []
    for i, spec in enumerate(specs):
        code = lines[i].split()[0] if i < len(lines) and lines[i] else "?"
        got = open(os.path.join(px.tmp, "r%d" % i), "rb").read() if os.path.exists(os.path.join(px.tmp, "r%d" % i)) else b""
        if i < len(want):
            first, last = want[i]
            ok = code == "206" and got == body[first:last + 1]
        elif spec == "%d-" % size:
            ok = code == "416" and b"InvalidRange" in got
        else:
            n = int(spec[1:])
            ok = code == "206" and got == body[size - n:]
        if not ok:
            bad.append("%s -> %s" % (spec, code))
    check(r.returncode == 0 and not bad,
          "curl: %d ranges at every one of the %d chunk edges, suffixes, past the end: statuses and bytes right %s"
          % (len(specs), chunks - 1, bad[:5]))
    r = subprocess.run(["curl", "-sS", "-I", "http://127.0.0.1:%d/%s/%s" % (px.port, bucket, urllib.parse.quote(key))],
                       capture_output=True, text=True, timeout=60)
    heads = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in r.stdout.splitlines() if ":" in l}
    check(r.stdout.startswith("HTTP/1.1 200") and heads.get("content-length") == str(size) and
          heads.get("accept-ranges") == "bytes" and heads.get("etag") == etags["big"], "curl -I: 200, size, ETag")
    # curl itself, as a user would.
    r = subprocess.run(["curl", "-sS", "-r", "1000-2999", "-o", "-", "-w", "\n%{http_code}",
                        "http://127.0.0.1:%d/%s/%s" % (px.port, bucket, urllib.parse.quote(key))],
                       capture_output=True, timeout=60)
    check(r.returncode == 0 and r.stdout.endswith(b"\n206") and r.stdout[:-4] == body[1000:3000],
          "curl -r 1000-2999: 206 and the bytes")


def check_aws_cli(px, rgw, tmp, bucket, objects):
    key, body = objects["big"]
    ep = "http://127.0.0.1:%d" % px.port
    out = os.path.join(tmp, "aws-range.out")
    aws(rgw, tmp, "--endpoint-url", ep, "s3api", "get-object", "--bucket", bucket, "--key", key,
        "--range", "bytes=5000-70000", out)
    with open(out, "rb") as f:
        check(f.read() == body[5000:70001], "aws s3api get-object --range bytes=5000-70000: the bytes")
    out = os.path.join(tmp, "aws-cp.out")
    aws(rgw, tmp, "--endpoint-url", ep, "s3", "cp", "s3://%s/%s" % (bucket, key), out)
    with open(out, "rb") as f:
        check(f.read() == body, "aws s3 cp through the proxy: the whole object")


def check_herd(px, bucket, obj):
    key, body = obj
    chunks = (len(body) + CHUNK - 1) // CHUNK
    heads0 = px.metric("range_proxy_origin_requests_total", '{method="HEAD"}')
    gets0 = px.metric("range_proxy_origin_requests_total", '{method="GET"}')
    results = []
    go = threading.Event()

    def client():
        go.wait()
        try:
            status, _, got = px.request("GET", "/%s/%s" % (bucket, key))
            results.append(status == 200 and got == body)
        except Exception as e:  # noqa: BLE001 - counted as a wrong answer
            print("client failed: %r" % e)
            results.append(False)

    threads = [threading.Thread(target=client) for _ in range(32)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join()
    heads = px.metric("range_proxy_origin_requests_total", '{method="HEAD"}') - heads0
    gets = px.metric("range_proxy_origin_requests_total", '{method="GET"}') - gets0
    check(results.count(True) == 32, "32 clients at once on a cold %d-chunk object: every byte right" % chunks)
    check(heads == 1 and gets == chunks,
          "... the origin saw %d HEAD and %d GETs (want 1 and %d: one per chunk)" % (heads, gets, chunks))
    print("herd: 32 clients x %d bytes; origin requests: %d HEAD + %d GET" % (len(body), heads, gets))


def fill_commits(px):
    """The engine's successful commits so far (cachestore_fill_commits_total{...,outcome="ok"})."""
    c = http.client.HTTPConnection("127.0.0.1", px.metrics_port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    m = re.search(r'^cachestore_fill_commits_total\{[^}]*outcome="ok"\} (\d+)$', text, re.M)
    return int(m.group(1)) if m else 0


def check_tiered(exe, rgw, tmp, bucket, obj, run_id):
    """--store tiered:file://NEAR|s3://...: a near directory in front of a far prefix in the RGW bucket. A
    second proxy, its near tier emptied, serves the object from the far tier without a GET to the origin."""
    key, body = obj
    path = "/%s/%s" % (bucket, key)
    near = os.path.join(tmp, "tiered-near")
    far = "s3://%s/range-proxy-tiered-%s/?endpoint=%s&region=%s" % (
        bucket, run_id, urllib.parse.quote(rgw["endpoint"], safe=""), rgw["region"])
    store = "tiered:file://%s?create=1&max_bytes=64M|%s" % (near, far)
    for round_ in ("cold", "near tier emptied"):
        px = start_proxy(exe, rgw, store)
        try:
            status, _, got = px.request("GET", path)
            check(status == 200 and got == body, "tiered store, %s: the whole object through the proxy" % round_)
            status, _, got = px.request("GET", path, {"Range": "bytes=300000-700000"})
            check(status == 206 and got == body[300000:700001], "tiered store, %s: a range" % round_)
            gets = px.metric("range_proxy_origin_requests_total", '{method="GET"}')
            far_hits = px.metric("cachestore_tier_hits_total", '{store="tiered",op="get_chunk",tier="far"}')
            chunks = (len(body) + CHUNK - 1) // CHUNK
            if round_ == "cold":
                check(gets == chunks, "tiered store, cold: one origin GET per chunk (%s of %d)" % (gets, chunks))
                # The engine commits after it serves: wait for every commit before the proxy stops.
                commits, deadline = 0, time.monotonic() + 60
                while commits < chunks and time.monotonic() < deadline:
                    commits = fill_commits(px)
                    if commits < chunks:
                        time.sleep(0.1)
                check(commits == chunks, "tiered store, cold: every chunk committed (%d of %d)" % (commits, chunks))
            else:
                check(gets == 0 and far_hits is not None and far_hits >= chunks,
                      "tiered store, near tier emptied: no origin GET (%s), the far tier served (%s far hits)"
                      % (gets, far_hits))
        finally:
            rc, out, err = px.stop()
        check(rc == 128 + signal.SIGTERM, "tiered store, %s: SIGTERM stops the proxy (got %d: %s)" % (round_, rc, err[-300:]))
        shutil.rmtree(near, ignore_errors=True)


def check_changed(px, rgw, tmp, bucket, obj):
    key, body = obj
    path = "/%s/%s" % (bucket, key)
    status, h, _ = px.request("HEAD", path)  # the metadata is cached; no chunk is
    old_etag = h.get("etag")
    new_body = bytes(b ^ 0xFF for b in body)
    new_file = os.path.join(tmp, "changing.new")
    with open(new_file, "wb") as f:
        f.write(new_body)
    aws(rgw, tmp, "--endpoint-url", rgw["endpoint"], "s3api", "put-object", "--bucket", bucket, "--key", key,
        "--body", new_file)
    status, h, got = px.request("GET", path)
    check(status == 200 and got == new_body and h.get("etag") != old_etag,
          "an object rewritten under the proxy: its first fill gets 412, the proxy asks again, serves the new version")


if __name__ == "__main__":
    sys.exit(main())
