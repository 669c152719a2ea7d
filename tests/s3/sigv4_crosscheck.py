#!/usr/bin/env python3
"""Cross-check cachestore's SigV4 signer against botocore's S3SigV4Auth.

Usage: sigv4_crosscheck.py PATH_TO_SIGV4_CLI [COUNT]

Generates COUNT (default 1500) random S3 requests from a fixed seed -- awkward
object keys, query strings and header values -- signs each with botocore and
with the sigv4_cli program, and compares the Authorization headers.

How the comparison is kept apples to apples (see botocore/auth.py):
- Path: for S3, botocore serialises an object key with
  botocore.utils.percent_encode(key, safe='/~') and S3SigV4Auth signs the URL
  path exactly as given (its _normalize_url_path returns it unchanged). So the
  URL handed to botocore is built that way, while the CLI gets the RAW path
  and encodes it with cachestore's own uri_encode(path, false). The two
  encoders are independent.
- Query: botocore gets the RAW parameters as request.params (a list of pairs,
  so repeated names survive) and encodes/sorts them itself
  (_canonical_query_string_params); the CLI gets the same raw pairs.
- Headers: S3SigV4Auth always (re)sets X-Amz-Date, X-Amz-Content-SHA256 and,
  with a session token, X-Amz-Security-Token; the CLI is given the same three
  (it adds the token header itself, as the S3 driver must). Names botocore
  never signs (user-agent, expect, ...) and Date (which makes botocore drop
  X-Amz-Date) are not generated. Host is sometimes passed explicitly and
  sometimes left for botocore to derive from the URL (host, plus :port when
  not the scheme's default); the CLI is always given that same value.
- Payload: botocore hashes the body itself, or uses UNSIGNED-PAYLOAD when the
  request context's client_config says payload signing is off; the CLI gets
  hashlib's digest or the literal. A few requests use
  STREAMING-AWS4-HMAC-SHA256-PAYLOAD through a subclass whose payload() returns
  that literal (botocore has no other way to select it for header signing).
- Time: botocore.auth.get_current_datetime is patched to the request's fixed
  timestamp.

Prints `crosscheck: N requests, M mismatches` and exits non-zero on any
mismatch, printing the first few differences (access key ids and signatures
only; secrets and session tokens are never printed).
"""

import datetime
import hashlib
import json
import os
import random
import subprocess
import sys
import types
from unittest import mock

try:
    import botocore.auth
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from botocore.utils import percent_encode
except ImportError as exc:  # pragma: no cover - depends on the machine
    # 77 is Meson's "skipped". Set CACHESTORE_REQUIRE_BOTOCORE=1 to fail instead.
    print(f"crosscheck: SKIPPED, botocore is not importable ({exc}); "
          "install it (pip install botocore) to run this test")
    required = os.environ.get("CACHESTORE_REQUIRE_BOTOCORE") == "1" or os.environ.get("CI") == "true"
    sys.exit(1 if required else 77)

SEED = 0x5164_0004
DEFAULT_COUNT = 1500
STREAMING = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
UNSIGNED = "UNSIGNED-PAYLOAD"


class StreamingS3SigV4Auth(S3SigV4Auth):
    """S3SigV4Auth with the payload hash pinned to the aws-chunked literal."""

    def payload(self, request):
        return STREAMING


# --------------------------------------------------------------------------
# Random request generation
# --------------------------------------------------------------------------

KEY_PIECES = [
    "a", "b", "data", "chunk-0001", "x_y", "file.txt", "v1.2.3", "~user", "tilde~",
    " ", "  ", "with space", "+", "a+b", "%", "%20", "%2F", "100%", "=", "k=v", "~",
    "!", "*", "'", "(", ")", ";", ":", "@", "&", "$", ",", "!*'();:@&$,", "?", "#",
    "[x]", "{y}", "\"q\"", "<>", "^", "`", "|", "\\", "\t", "\x7f", "\x01",
    "ü", "é", "日本語", "ሴ", "😀", "ñandú", "Ω",
    "..", ".", "...", ".hidden", "trailing.",
]
QUERY_NAMES = [
    "prefix", "delimiter", "max-keys", "list-type", "continuation-token", "start-after",
    "uploadId", "partNumber", "versionId", "lifecycle", "acl", "uploads", "tagging",
    "X-Custom", "a b", "x+y", "ü", "%", "na=me", "a&b", "sl/ash", "~t", "", "Zeta", "alpha",
]
QUERY_VALUES = [
    "", "", "1", "2", "1000", "J", "photos/2024/", "a b", "a+b", "a%20b", "=", "&", "/",
    "~", "ü", "日本", "x" * 40, "v.1-2_3~", "!*'();:@&$,", " lead", "trail ", "\t",
]
HEADER_NAMES = [
    "Range", "range", "Content-Type", "content-type", "Content-MD5", "Content-Length",
    "x-amz-meta-foo", "X-Amz-Meta-Foo", "X-AMZ-META-BAR", "x-amz-meta-empty",
    "If-None-Match", "If-Match", "x-amz-storage-class", "x-amz-acl", "Cache-Control",
    "Content-Encoding", "x-amz-decoded-content-length", "My-Header", "zz-last", "A-First",
]
HEADER_VALUES = [
    "bytes=0-9", "application/octet-stream", "  leading", "trailing  ", "  both  ",
    "inner   run", "tab\tinside", "\t tabs and spaces \t", "a  b   c    d", "", "   ",
    "\"quoted   value\"", "a,b,c", "a, b ,c", "*", "REDUCED_REDUNDANCY", "private",
    "max-age=0, no-cache", "aws-chunked", "66560", "ü-value", "日本  語", "x" * 60,
]
REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1", "auto", "garage"]
ACCESS_KEYS = ["AKIAIOSFODNN7EXAMPLE", "AKIDEXAMPLE", "GK31c2f218a2e44f485b94239e", "minioadmin"]
SECRETS = [
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "b892c0986f1a7a1c5ba4b8d1f0c1e6c1/+/+/+==",
    "minioadmin+/",
    "+/" * 40,  # longer than one HMAC block once "AWS4" is prepended
]
HOSTS = [
    ("https", "examplebucket.s3.amazonaws.com", None),
    ("https", "s3.us-west-2.amazonaws.com", None),
    ("http", "localhost", 9000),
    ("http", "127.0.0.1", 9000),
    ("https", "s3.example.com", 8443),
    ("https", "s3.example.com", 443),  # default port: not part of Host
    ("http", "minio.internal", 80),  # default port: not part of Host
]


def random_timestamps(rng, n):
    """A pool of instants, so that the signer's key cache both hits and misses."""
    fixed = [
        datetime.datetime(2013, 5, 24, 0, 0, 0),
        datetime.datetime(2015, 8, 30, 12, 36, 0),
        datetime.datetime(2000, 2, 29, 23, 59, 59),
        datetime.datetime(1999, 12, 31, 23, 59, 59),
        datetime.datetime(2038, 1, 19, 3, 14, 8),
        datetime.datetime(2100, 3, 1, 0, 0, 0),
    ]
    epoch = datetime.datetime(1990, 1, 1)
    span = int((datetime.datetime(2099, 12, 31) - epoch).total_seconds())
    extra = [epoch + datetime.timedelta(seconds=rng.randrange(span)) for _ in range(n)]
    return fixed + extra


def random_key(rng):
    parts = []
    for _ in range(rng.randint(1, 6)):
        seg = "".join(rng.choice(KEY_PIECES) for _ in range(rng.randint(0, 3)))
        parts.append(seg)  # an empty segment makes a '//'
    path = "/" + "/".join(parts)
    r = rng.random()
    if r < 0.15:
        path += "/"
    elif r < 0.25:
        path = "/" + path  # leading '//'
    if rng.random() < 0.3:
        path = "/bucket-name" + path  # path-style addressing
    return path


def random_header_value(rng):
    v = rng.choice(HEADER_VALUES)
    if rng.random() < 0.3:
        v = rng.choice([" ", "  ", "\t", ""]) + v + rng.choice([" ", "   ", "\t", ""])
    return v


def host_header(scheme, host, port):
    if port is None or port == {"http": 80, "https": 443}[scheme]:
        return host
    return f"{host}:{port}"


def make_case(rng, i, timestamps):
    method = rng.choice(["GET", "PUT", "HEAD", "DELETE"])
    path = random_key(rng)
    scheme, host, port = rng.choice(HOSTS)
    hostval = host_header(scheme, host, port)
    netloc = host if port is None else f"{host}:{port}"

    query = []
    for _ in range(rng.choice([0, 0, 1, 2, 3, 5])):
        name = rng.choice(QUERY_NAMES)
        if query and rng.random() < 0.25:
            name = rng.choice(query)[0]  # repeated name
        query.append((name, rng.choice(QUERY_VALUES)))

    headers = []
    explicit_host = rng.random() < 0.6
    if explicit_host:
        headers.append((rng.choice(["Host", "host", "HOST"]), hostval))
    for _ in range(rng.randint(0, 5)):
        name = rng.choice(HEADER_NAMES)
        if headers and rng.random() < 0.2:
            prev = rng.choice(headers)[0]
            if prev.lower() != "host":
                name = rng.choice([prev, prev.upper(), prev.lower()])  # repeated name
        headers.append((name, random_header_value(rng)))

    body = b""
    if method == "PUT":
        body = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 21, 64, 1000])))
    r = rng.random()
    mode = "signed" if r < 0.55 else ("unsigned" if r < 0.9 else "streaming")

    when = rng.choice(timestamps)
    akid = rng.choice(ACCESS_KEYS)
    secret = rng.choice(SECRETS)
    token = ""
    if rng.random() < 0.2:
        token = "FQoGZXIvYXdzE" + "".join(rng.choice("abcXYZ019+/=") for _ in range(rng.randint(10, 60)))
    return {
        "i": i, "method": method, "path": path, "scheme": scheme, "netloc": netloc,
        "hostval": hostval, "explicit_host": explicit_host, "query": query,
        "headers": headers, "body": body, "mode": mode, "when": when,
        "region": rng.choice(REGIONS), "akid": akid, "secret": secret, "token": token,
    }


# --------------------------------------------------------------------------
# Signing with botocore
# --------------------------------------------------------------------------

def botocore_sign(case):
    url = f"{case['scheme']}://{case['netloc']}{percent_encode(case['path'], safe='/~')}"
    req = AWSRequest(method=case["method"], url=url, data=case["body"], params=list(case["query"]))
    for name, value in case["headers"]:
        req.headers[name] = value  # HTTPHeaders appends: repeated names are kept in order
    req.context["client_config"] = types.SimpleNamespace(
        s3={"payload_signing_enabled": case["mode"] == "signed"})
    creds = Credentials(case["akid"], case["secret"], case["token"] or None)
    cls = StreamingS3SigV4Auth if case["mode"] == "streaming" else S3SigV4Auth
    auth = cls(creds, "s3", case["region"])
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=case["when"]):
        auth.add_auth(req)
    return req.headers["Authorization"], req.headers["X-Amz-Content-SHA256"]


def cli_line(case, payload_hash):
    amz_date = case["when"].strftime("%Y%m%dT%H%M%SZ")
    headers = [list(h) for h in case["headers"]]
    if not case["explicit_host"]:
        headers.append(["Host", case["hostval"]])
    headers.append(["X-Amz-Date", amz_date])
    headers.append(["X-Amz-Content-SHA256", payload_hash])
    line = {
        "method": case["method"], "path": case["path"],
        "query": [list(q) for q in case["query"]], "headers": headers,
        "payload_hash": payload_hash, "amz_date": amz_date, "region": case["region"],
        "access_key": case["akid"], "secret_key": case["secret"],
    }
    if case["token"]:
        line["session_token"] = case["token"]
    return json.dumps(line, ensure_ascii=False)


def expected_payload_hash(case):
    if case["mode"] == "signed":
        return hashlib.sha256(case["body"]).hexdigest()
    return UNSIGNED if case["mode"] == "unsigned" else STREAMING


def main(argv):
    if len(argv) < 2:
        print("usage: sigv4_crosscheck.py PATH_TO_SIGV4_CLI [COUNT]", file=sys.stderr)
        return 2
    cli = argv[1]
    count = int(argv[2]) if len(argv) > 2 else DEFAULT_COUNT
    rng = random.Random(SEED)
    timestamps = random_timestamps(rng, 12)
    cases = [make_case(rng, i, timestamps) for i in range(count)]

    expected, lines, setup_errors = [], [], []
    for case in cases:
        auth, sent_hash = botocore_sign(case)
        want_hash = expected_payload_hash(case)
        if sent_hash != want_hash:  # the harness itself would be wrong
            setup_errors.append(f"case {case['i']}: botocore used payload hash {sent_hash!r}, "
                                f"expected {want_hash!r}")
        expected.append(auth)
        lines.append(cli_line(case, want_hash))
    if setup_errors:
        print("crosscheck: harness error:\n  " + "\n  ".join(setup_errors[:5]))
        return 2

    proc = subprocess.run([cli], input="\n".join(lines) + "\n", capture_output=True,
                          text=True, encoding="utf-8", check=False)
    got = proc.stdout.splitlines()
    if proc.returncode != 0 or len(got) != len(expected):
        print(f"crosscheck: sigv4_cli exited {proc.returncode} with {len(got)} of "
              f"{len(expected)} lines; stderr: {proc.stderr.strip()[:500]}")
        print(f"crosscheck: {len(expected)} requests, {len(expected)} mismatches")
        return 1

    mismatches = [(c, e, g) for c, e, g in zip(cases, expected, got) if e != g]
    for case, want, have in mismatches[:5]:
        print(f"MISMATCH case {case['i']}: {case['method']} path={case['path']!r} "
              f"query={case['query']!r} headers={case['headers']!r} mode={case['mode']} "
              f"region={case['region']} token={'yes' if case['token'] else 'no'}")
        print(f"  botocore:  {want}")
        print(f"  cachestore: {have}")
    modes = {m: sum(1 for c in cases if c["mode"] == m) for m in ("signed", "unsigned", "streaming")}
    print(f"crosscheck: {len(cases)} requests ({modes['signed']} signed payload, "
          f"{modes['unsigned']} unsigned, {modes['streaming']} streaming; "
          f"{sum(1 for c in cases if c['token'])} with a session token)")
    print(f"crosscheck: {len(cases)} requests, {len(mismatches)} mismatches")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
