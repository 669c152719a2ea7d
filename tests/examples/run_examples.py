#!/usr/bin/env python3
"""End-to-end tests of the example programs (cachestore, read_through, fill_race).

Usage: run_examples.py MODE CACHESTORE READ_THROUGH FILL_RACE
  MODE posix: against a file:// store in a temp dir (and mem: where it makes sense)
  MODE rgw:   against the Ceph RGW that tests/servers/with-servers.sh started
              (CACHESTORE_RGW_*). Without it: fails when CI=true, otherwise
              prints a loud warning and exits 77 (skipped).

Checks outputs and exit codes: usage 2, not found 3, auth 4, commit lost 6,
misconfigured 7; --help present and accurate (every flag it lists is
accepted); --json parseable; read_through cold-then-warm hit counts and
--verify; fill_race winner counts; tiered:NEAR|FAR store URLs (each error
naming its tier; every program over a near directory in front of the mode's
store, the far tier serving what the near one lost); config= files that are not regular files
or are over 1 MiB refused at once; every store URL parameter the parser
accepts listed by --help and docs/operations.md; a missing POSIX root named
with create=1; a weak ETag refused by put (2); a self-test against an S3
endpoint that never answers is misconfigured and names it (7); the secret
key never printed.
Python standard library only.
"""
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

GOLDEN = {
    "args": ["--origin", "aws-us-east-1-prod", "--bucket", "datasets", "--key", "shards/train-00001.tar",
             "--etag", '"9b2cf535f27731c974343645a3985328"', "--chunk-size", "8388608", "--index", "3"],
    "path": "aws-us-east-1-prod/ff89713af401c8a03bfbc660db0bb49338d90c7090954f4e50af080bcff24b82/3",
}


def ci_is_true():
    """CI=true (or 1/yes): a missing server is a failure, not a skip."""
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def isolated_env(home):
    """os.environ without AWS_* or CACHESTORE_URL, with HOME (and so ~/.aws) at `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "CACHESTORE_URL"}
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.path.join(home, "no-such-credentials-file")
    env["HOME"] = home
    return env


def rgw_from_env():
    """The Ceph RGW that tests/servers/with-servers.sh --rgw started (its CACHESTORE_RGW_*
    variables), as {endpoint, access_key, secret_key, region, bucket}; None without it."""
    ep = os.environ.get("CACHESTORE_RGW_ENDPOINT", "")
    if not ep:
        return None
    return {"endpoint": ep,
            "access_key": os.environ["CACHESTORE_RGW_ACCESS_KEY"],
            "secret_key": os.environ["CACHESTORE_RGW_SECRET_KEY"],
            "region": os.environ.get("CACHESTORE_RGW_REGION", "us-east-1"),
            "bucket": os.environ["CACHESTORE_RGW_BUCKET"]}


def no_rgw_exit(what):
    """The exit status of a test that needs the RGW and has none: 1 under CI=true,
    otherwise a loud warning and 77 (meson's "skipped")."""
    msg = (f"CACHESTORE_RGW_ENDPOINT is not set: {what} against Ceph RGW did not run. "
           "Run them through tests/servers/with-servers.sh --rgw -- meson test ...")
    if ci_is_true():
        print(f"ERROR: {msg} (CI={os.environ['CI']}: failing)", file=sys.stderr)
        return 1
    bar = "!" * 78
    print(f"{bar}\n!!! WARNING: {msg}\n!!! Skipping (exit 77).\n{bar}", file=sys.stderr)
    return 77


class Runner:
    def __init__(self, mode, cli, rt, fr):
        self.mode, self.cli, self.rt, self.fr = mode, cli, rt, fr
        self.failures, self.passed = [], 0
        self.outputs = []  # every stdout/stderr, for the secret scan
        self.secrets = []
        self.tmp = tempfile.mkdtemp(prefix="cachestore-examples-test-")
        self.env = isolated_env(self.tmp)

    # ---- plumbing -------------------------------------------------------------------

    def run(self, argv, stdin=None, env=None, timeout=180):
        e = dict(self.env)
        if env:
            e.update(env)
        p = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e,
                           timeout=timeout)
        self.outputs.append((argv, p.stdout, p.stderr))
        return p.returncode, p.stdout, p.stderr.decode(errors="replace")

    def check(self, cond, what, detail=""):
        if cond:
            self.passed += 1
        else:
            self.failures.append(what)
            print(f"FAIL: {what}" + (f"\n      {detail}" if detail else ""), flush=True)
        return cond

    def expect_rc(self, argv, rc_want, what, **kw):
        rc, out, err = self.run(argv, **kw)
        self.check(rc == rc_want, f"{what}: exit {rc_want}", f"got {rc}; stderr: {err.strip()[:600]}")
        return rc, out, err

    def json_of(self, out, what):
        try:
            return json.loads(out.decode())
        except ValueError as e:
            self.check(False, f"{what}: --json output parses", f"{e}: {out[:300]!r}")
            return {}

    def file(self, name, data):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    # ---- the stores --------------------------------------------------------------------

    def setup_store(self):
        run_id = f"{os.getpid()}-{random.randrange(1 << 32):08x}"
        self.origin = f"ex-{run_id}"
        if self.mode == "posix":
            os.mkdir(os.path.join(self.tmp, "store"), 0o700)  # a missing root is not created without create=1
            self.store = "file://" + os.path.join(self.tmp, "store")
            return True
        rgw = rgw_from_env()
        if rgw is None:
            return False
        self.secret = rgw["secret_key"]
        self.secrets.append(self.secret)
        self.env.update({"AWS_ACCESS_KEY_ID": rgw["access_key"],
                         "AWS_SECRET_ACCESS_KEY": self.secret,
                         "AWS_REGION": rgw["region"]})
        self.bucket = rgw["bucket"]
        self.endpoint = ep = rgw["endpoint"]
        self.ep_enc = urllib.parse.quote(ep, safe="")
        self.store = f"s3://{self.bucket}/examples-test-{run_id}/?endpoint={self.ep_enc}"
        return True

    def key(self, **over):
        k = {"--origin": self.origin, "--bucket": "b", "--key": "obj/one", "--etag": '"e1"',
             "--chunk-size": "1K", "--index": "0"}
        k.update({f"--{a.replace('_', '-')}": str(v) for a, v in over.items()})
        return [x for kv in k.items() for x in kv]

    # ---- help and usage -------------------------------------------------------------------

    def help_flags(self, text):
        return sorted({m[1] for m in re.finditer(r"^\s{2}(--[a-z][a-z0-9-]*)", text, re.M)} - {"--help"})

    def check_help_accurate(self, prog, sub, name):
        rc, out, err = self.expect_rc([prog] + sub + ["--help"], 0, f"{name} --help")
        text = out.decode()
        self.check(text.startswith("usage: "), f"{name} --help starts with a usage line")
        self.check("Exit codes:" in text and "3  not_found" in text and "7  misconfigured" in text,
                   f"{name} --help lists the exit codes")
        flags = self.help_flags(text)
        self.check(len(flags) > 0, f"{name} --help lists flags")
        for f in flags:
            takes_value = re.search(rf"^\s{{2}}{re.escape(f)} [A-Z]", text, re.M) is not None
            argv = [prog] + sub + [f] + (["1"] if takes_value else [])
            rc, out, err = self.run(argv, env={"CACHESTORE_URL": ""})
            self.check("unknown option" not in err, f"{name}: the flag {f} that --help lists is accepted", err.strip())
        rc, out, err = self.run([prog] + sub + ["--no-such-flag"])
        self.check(rc == 2 and "unknown option --no-such-flag" in err, f"{name}: an unknown flag is exit 2", err)
        return text

    def test_help_and_usage(self):
        rc, out, err = self.expect_rc([self.cli, "--help"], 0, "cachestore --help")
        top = out.decode()
        for cmd in ["put", "get", "stat", "rm", "selftest", "du", "sweep", "path"]:
            self.check(f"  {cmd} " in top, f"cachestore --help lists {cmd}")
        self.check("CACHESTORE_URL" in top and "s3://" in top, "cachestore --help explains store URLs")
        self.expect_rc([self.cli], 2, "cachestore without a command")
        self.expect_rc([self.cli, "frobnicate"], 2, "unknown command")
        for cmd in ["put", "get", "stat", "rm", "selftest", "du", "sweep", "path"]:
            text = self.check_help_accurate(self.cli, [cmd], f"cachestore {cmd}")
            self.check(f"usage: cachestore {cmd}" in text, f"cachestore {cmd} --help names the command")
        self.check_help_accurate(self.rt, [], "read_through")
        self.check_help_accurate(self.fr, [], "fill_race")

        s = ["--store", self.store]
        self.expect_rc([self.cli, "stat"] + s + ["--origin", "o", "--key", "k", "--chunk-size", "1K"], 2,
                       "missing --etag")
        self.expect_rc([self.cli, "stat"] + s + self.key(origin="a/b"), 2, "origin_id with '/'")
        self.expect_rc([self.cli, "stat"] + s + self.key(chunk_size="0"), 2, "chunk size 0")
        self.expect_rc([self.cli, "stat"] + s + self.key(chunk_size="lots"), 2, "chunk size not a size")
        self.expect_rc([self.cli, "stat"] + self.key(), 2, "no store given", env={"CACHESTORE_URL": ""})
        rc, out, err = self.expect_rc([self.cli, "stat", "--json", "--store", "file:///x"] + self.key(origin=".."), 2,
                                      "invalid key with --json")
        j = self.json_of(out, "usage error --json")
        self.check(j.get("ok") is False and j.get("exit_code") == 2 and j.get("error", {}).get("code") == "invalid_argument",
                   "usage error as JSON", str(j))
        bad_urls = ["ftp://host/x", "/tmp/relative-to-nothing", "file:relative/path", "file://otherhost/x",
                    "s3:///prefix", "s3://bucket/x?foo=1", "s3://bucket/x?endpoint=%zz", "s3://bucket:99/x",
                    "s3://bucket/x?region=a&region=b", "mem:extra", "s3://bucket/x#frag", ""]
        for url in bad_urls:
            rc, out, err = self.run([self.cli, "stat", "--store", url] + self.key(), env={"CACHESTORE_URL": ""})
            self.check(rc == 2, f"bad store URL {url!r}: exit 2", f"got {rc}: {err.strip()}")
        rc, out, err = self.run([self.cli, "stat", "--store", "s3://AKIAEXAMPLE:s3cr3tv4lue@bucket/x"] + self.key())
        self.check(rc == 2 and "s3cr3tv4lue" not in err and "user info" in err,
                   "credentials in an s3 URL are refused without echoing them", err)
        self.check_url_params_documented(top)

    def known_url_params(self, url):
        """The parameters the URL parser accepts, from its "unknown parameter" message."""
        rc, out, err = self.run([self.cli, "selftest", "--store", url], env={"CACHESTORE_URL": ""})
        m = re.search(r"\(known: ([a-z_, ]+)[;)]", err)
        self.check(rc == 2 and m is not None, f"{url}: an unknown parameter lists the known ones", err.strip())
        return m[1].split(", ") if m else []

    def check_url_params_documented(self, top_help):
        # --help, docs/operations.md and the parser (store_url.hpp) name the same parameters.
        docs = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "operations.md")).read()
        helped = set(re.findall(r"^ {4}([a-z_]+)=", top_help, re.M))
        known = set()
        for url in ["file:///tmp/x?no_such_param=1", "s3://bucket/x?no_such_param=1"]:
            params = self.known_url_params(url)
            self.check(len(params) >= 5, f"{url}: the parser knows parameters", str(params))
            known |= set(params)
            for name in params:
                self.check(name in helped, f"cachestore --help lists the URL parameter {name}=")
                self.check(f"| `{name}=" in docs, f"docs/operations.md's URL table lists the parameter {name}=")
        self.check(helped == known, "cachestore --help lists no URL parameter the parser refuses",
                   f"help: {sorted(helped)}, parser: {sorted(known)}")

    # ---- path --------------------------------------------------------------------------

    def test_path(self):
        rc, out, err = self.expect_rc([self.cli, "path"] + GOLDEN["args"], 0, "path (golden vector)")
        self.check(out.decode() == GOLDEN["path"] + "\n", "path prints the SPEC golden vector", out.decode())
        rc, out, err = self.expect_rc([self.cli, "path", "--json", "--object-size", "26214400"] + GOLDEN["args"], 0,
                                      "path --json")
        j = self.json_of(out, "path --json")
        self.check(j.get("path") == GOLDEN["path"] and j.get("expected_len") == 26214400 - 3 * 8388608,
                   "path --json: path and expected_len", str(j))

    # ---- the CLI against the store ---------------------------------------------------------

    def test_cli_store(self):
        s = ["--store", self.store]
        data = os.urandom(1000)
        f = self.file("chunk0.bin", data)
        rc, out, err = self.expect_rc([self.cli, "put"] + s + self.key() + [f], 0, "put a file")
        self.check(b"committed " in out, "put says committed", out.decode(errors="replace"))
        self.expect_rc([self.cli, "put"] + s + self.key() + [f], 6, "put again: commit_lost")
        rc, out, err = self.expect_rc([self.cli, "put", "--json"] + s + self.key() + [f], 6, "put again --json")
        j = self.json_of(out, "put again --json")
        self.check(j.get("error", {}).get("code") == "commit_lost" and j.get("exit_code") == 6,
                   "commit_lost in JSON", str(j))
        rc, out, err = self.expect_rc([self.cli, "get"] + s + self.key(), 0, "get to stdout")
        self.check(out == data, "get returns the bytes put")
        rc, out, err = self.expect_rc([self.cli, "get"] + s + self.key() + ["--offset", "10", "--length", "100"], 0,
                                      "get a range")
        self.check(out == data[10:110], "get --offset/--length returns the slice")
        outf = os.path.join(self.tmp, "got.bin")
        rc, out, err = self.expect_rc([self.cli, "get", "--json", "--out", outf] + s + self.key(), 0, "get --out --json")
        j = self.json_of(out, "get --json")
        self.check(j.get("ok") is True and j.get("length") == 1000, "get --json fields", str(j))
        self.check(open(outf, "rb").read() == data, "get --out writes the bytes")
        self.expect_rc([self.cli, "get", "--json"] + s + self.key(), 2, "get --json without --out")
        self.expect_rc([self.cli, "get"] + s + self.key() + ["--offset", "990", "--length", "100"], 1,
                       "get past the stored end (out_of_range)")
        rc, out, err = self.expect_rc([self.cli, "stat", "--json"] + s + self.key(), 0, "stat --json")
        j = self.json_of(out, "stat --json")
        self.check(j.get("size") == 1000 and re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", j.get("committed", "")),
                   "stat --json size and commit time", str(j))
        self.expect_rc([self.cli, "stat"] + self.key(), 0, "the store from CACHESTORE_URL", env={"CACHESTORE_URL": self.store})
        # stdin, limits
        data1 = os.urandom(700)
        self.expect_rc([self.cli, "put"] + s + self.key(index=1), 0, "put from stdin", stdin=data1)
        rc, out, err = self.expect_rc([self.cli, "get"] + s + self.key(index=1), 0, "get the stdin chunk")
        self.check(out == data1, "stdin chunk round-trips")
        self.expect_rc([self.cli, "put"] + s + self.key(index=2) + ["-"], 2, "put of empty stdin", stdin=b"")
        self.expect_rc([self.cli, "put"] + s + self.key(index=2) + [self.file("big.bin", os.urandom(1025))], 2,
                       "put of more than --chunk-size")
        self.expect_rc([self.cli, "put"] + s + self.key(index=2), 2, "put of more than --chunk-size from stdin",
                       stdin=os.urandom(5000))
        self.expect_rc([self.cli, "put"] + s + self.key(index=2) + ["--object-size", "3000", f], 2,
                       "put whose length is not expected_len")
        self.expect_rc([self.cli, "put"] + s + self.key(index=2) + ["--object-size", "3048", f], 0,
                       "put whose length is expected_len")
        self.expect_rc([self.cli, "put"] + s + self.key() + ["/no/such/file"], 2, "put of a missing file")
        # A weak ETag: read_range refuses such objects (invalid_argument, exit 2), so put does too.
        rc, out, err = self.expect_rc([self.cli, "put"] + s + self.key(etag='W/"e1"', index=3) + [f], 2,
                                      "put with a weak ETag")
        self.check("weak ETag" in err, "put with a weak ETag says why", err.strip())
        self.expect_rc([self.cli, "stat"] + s + self.key(etag='W/"e1"', index=3), 3, "a refused weak-ETag put stored nothing")
        self.expect_rc([self.rt, "--store", self.store, "--no-progress", "--origin-file", f, "--etag", 'W/"e1"'], 2,
                       "read_through with a weak ETag: the same exit code")
        # rm, not found
        self.expect_rc([self.cli, "rm"] + s + self.key(), 0, "rm")
        self.expect_rc([self.cli, "rm"] + s + self.key(), 0, "rm of an absent chunk succeeds")
        rc, out, err = self.expect_rc([self.cli, "stat", "--json"] + s + self.key(), 3, "stat after rm: not found")
        j = self.json_of(out, "stat not found --json")
        self.check(j.get("error", {}).get("code") == "not_found" and j.get("exit_code") == 3, "not_found in JSON", str(j))
        self.expect_rc([self.cli, "get"] + s + self.key(), 3, "get after rm: not found")
        self.expect_rc([self.cli, "get"] + s + self.key() + ["--length", "10"], 3, "ranged get after rm: not found")
        for i in (1, 2):
            self.run([self.cli, "rm"] + s + self.key(index=i))
        # selftest
        rc, out, err = self.expect_rc([self.cli, "selftest"] + s, 0, "selftest")
        self.check(b"self-test passed" in out, "selftest says passed")
        rc, out, err = self.expect_rc([self.cli, "selftest", "--json"] + s, 0, "selftest --json")
        j = self.json_of(out, "selftest --json")
        self.check(j.get("ok") is True and j.get("store") == ("posix" if self.mode == "posix" else "s3"),
                   "selftest --json fields", str(j))
        if self.mode == "rgw":
            self.check(j.get("conditional_put_enforced") is True and j.get("atomic_commit") is True,
                       "RGW enforces If-None-Match (selftest --json)", str(j))

    def test_progress(self):
        script = shutil.which("script")
        if not script:
            print("note: 'script' (util-linux) not found: progress bar check skipped")
            return
        s = ["--store", self.store]
        big = self.file("big5m.bin", os.urandom(5 << 20))
        k = self.key(chunk_size="8M", index=7)
        rc, out, err = self.expect_rc([self.cli, "put"] + s + k + [big], 0, "put 5 MiB (stderr not a terminal)")
        self.check(err == "", "no progress bar when stderr is not a terminal", repr(err[:200]))
        outf = os.path.join(self.tmp, "big-out.bin")
        cmd = " ".join(shlex_quote(x) for x in [self.cli, "get"] + s + k + ["--out", outf])
        rc, out, err = self.run([script, "-qec", cmd, "/dev/null"])
        self.check(rc == 0 and b"\r" in out and b"100%" in out and b"get [" in out,
                   "a progress bar on a terminal", repr(out[-300:]))
        self.check(open(outf, "rb").read() == open(big, "rb").read(), "get --out of 5 MiB under a terminal")
        rc, out, err = self.run([script, "-qec", cmd + " --no-progress", "/dev/null"])
        self.check(rc == 0 and b"100%" not in out, "--no-progress on a terminal", repr(out[-300:]))
        self.run([self.cli, "rm"] + s + k)

    # ---- read_through ------------------------------------------------------------------------

    def rt_json(self, args, what, rc_want=0):
        rc, out, err = self.expect_rc([self.rt, "--json", "--store", self.store, "--no-progress"] + args, rc_want, what)
        return self.json_of(out, what)

    def test_read_through(self):
        data = os.urandom((5 << 20) + 123)
        origin = self.file("origin.bin", data)
        common = ["--origin-file", origin, "--chunk-size", "1M", "--origin", self.origin, "--verify"]
        cold = self.rt_json(common + ["--threads", "3"], "read_through cold")
        self.check(cold.get("chunks") == 6 and cold.get("hits") == 0 and cold.get("misses") == 6 and
                   cold.get("commits_won") == 6 and cold.get("commits_lost") == 0, "cold: 0 hits, 6 misses, 6 won", str(cold))
        self.check(cold.get("verified_bytes") == len(data) and cold.get("bytes_from_origin") == len(data),
                   "cold: every byte verified, all from the origin", str(cold))
        warm = self.rt_json(common + ["--threads", "3"], "read_through warm")
        self.check(warm.get("hits") == 6 and warm.get("misses") == 0 and warm.get("bytes_from_origin") == 0 and
                   warm.get("bytes_from_store") == len(data) and warm.get("hit_rate") == 1.0,
                   "warm: 6 hits, nothing from the origin", str(warm))
        # --metrics writes the Prometheus text of what the run did; --hedge reads through cachestore::hedged.
        for extra in ([], ["--hedge"]):
            prom_path = os.path.join(self.tmp, "metrics.prom")
            m = self.rt_json(common + ["--threads", "3", "--metrics", prom_path] + extra, "read_through --metrics " + " ".join(extra))
            prom = open(prom_path).read() if os.path.exists(prom_path) else ""
            ok_gets = [float(line.rsplit(" ", 1)[1]) for line in prom.splitlines()
                       if line.startswith("cachestore_operations_total{") and 'op="get_chunk"' in line and 'outcome="ok"' in line]
            self.check(m.get("hits") == 6 and ok_gets and sum(ok_gets) >= 6,
                       "--metrics " + " ".join(extra) + ": get_chunk ok counted for the 6 hits", prom[:800])
            self.check("# TYPE cachestore_operation_duration_seconds histogram" in prom and
                       "cachestore_get_first_byte_seconds_bucket" in prom,
                       "--metrics: latency and first-byte histograms", prom[:400])
            if extra:
                self.check("hedge" in prom, "--hedge: the hedged layer's metrics are written too", prom[-800:])
        out_path = os.path.join(self.tmp, "slice.bin")
        sl = self.rt_json(common + ["--offset", "1000000", "--length", "2500000", "--out", out_path], "read_through slice")
        self.check(sl.get("chunks") == 4 and sl.get("hits") == 4 and sl.get("bytes_served") == 2500000,
                   "slice: 4 chunks, all hits", str(sl))
        self.check(open(out_path, "rb").read() == data[1000000:3500000], "slice: --out holds exactly the range")
        rc, out, err = self.expect_rc([self.rt, "--store", self.store, "--no-progress", "--out", "-"] + common +
                                      ["--offset", "5", "--length", "7"], 0, "read_through --out -")
        self.check(out == data[5:12], "read_through --out - writes only the bytes to stdout", repr(out[:40]))
        self.check("hits 1" in err, "read_through --out -: the report goes to stderr", err)
        text_rc, text, err = self.run([self.rt, "--store", self.store, "--no-progress"] + common)
        self.check(text_rc == 0 and b"hit rate 100%" in text and b"MiB/s" in text, "read_through text report",
                   text.decode(errors="replace"))
        ev = self.rt_json(common + ["--evict"], "read_through --evict")
        self.check(ev.get("misses") == 6 and ev.get("commits_won") == 6, "--evict: cold again", str(ev))
        # Two cold runs at once on a new ETag: one commit per chunk in total; a lost commit is served.
        etag = f'"concurrent-{random.randrange(1 << 30)}"'
        argv = [self.rt, "--json", "--store", self.store, "--no-progress", "--etag", etag, "--threads", "4",
                "--origin-latency-ms", "20"] + common
        procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env) for _ in range(3)]
        results = []
        for p in procs:
            out, err = p.communicate(timeout=180)
            self.outputs.append((argv, out, err))
            self.check(p.returncode == 0, "concurrent read_through exit 0", err.decode(errors="replace"))
            results.append(self.json_of(out, "concurrent read_through"))
        won = sum(r.get("commits_won", 0) for r in results)
        self.check(won == 6, "3 concurrent cold runs: exactly 6 commits won in total", str([(r.get("hits"), r.get("misses"), r.get("commits_won"), r.get("commits_lost")) for r in results]))
        self.check(all(r.get("hits", 0) + r.get("misses", 0) == 6 and
                       r.get("commits_won", 0) + r.get("commits_lost", 0) == r.get("misses", -1) and
                       r.get("verified_bytes") == len(data) for r in results),
                   "concurrent runs: every miss committed or lost, every byte verified", str(results))
        # --verify catches a store that serves other bytes than the origin's.
        changed = bytearray(data)
        changed[2 * 1048576 + 17] ^= 0xFF
        origin2 = self.file("origin-changed.bin", bytes(changed))
        bad = self.rt_json(["--origin-file", origin2, "--chunk-size", "1M", "--origin", self.origin, "--verify",
                            "--key", cold.get("object_key", ""), "--etag", cold.get("etag", "")],
                           "read_through --verify on a mismatch", rc_want=1)
        self.check(bad.get("ok") is False and "2097169" in bad.get("verify_failure", ""),
                   "--verify names the first differing byte", str(bad.get("verify_failure")))
        self.expect_rc([self.rt, "--store", self.store, "--origin-file", "/no/such/file"], 2, "read_through: missing origin")
        self.expect_rc([self.rt, "--store", self.store, "--origin-file", origin, "--offset", str(len(data))], 2,
                       "read_through: range outside the object")
        self.expect_rc([self.rt, "--origin-file", origin], 2, "read_through: no store", env={"CACHESTORE_URL": ""})

    # ---- fill_race -----------------------------------------------------------------------------

    def fr_json(self, args, what, rc_want=0, store=None):
        rc, out, err = self.expect_rc([self.fr, "--json", "--store", store or self.store, "--origin", self.origin] + args,
                                      rc_want, what)
        return self.json_of(out, what)

    def check_race(self, j, writers, chunks, what, atomic=True):
        cs = j.get("chunks", [])
        self.check(j.get("ok") is True and j.get("writers") == writers and len(cs) == chunks and not j.get("violations"),
                   f"{what}: ok, {writers} writers, {chunks} chunks", str(j.get("violations")))
        self.check(j.get("atomic_commit") is atomic, f"{what}: atomic_commit is {atomic}")
        if atomic:
            self.check(all(c["winners"] == 1 and c["commit_lost"] == writers - 1 for c in cs),
                       f"{what}: exactly one winner per chunk", str(cs))
        else:
            self.check(all(c["winners"] >= 1 and c["winners"] + c["commit_lost"] == writers for c in cs),
                       f"{what}: at least one writer per chunk, the rest commit_lost", str(cs))
        self.check(all(c["readers_identical"] == writers and c["errors"] == 0 for c in cs),
                   f"{what}: every reader saw identical bytes", str(cs))

    def test_fill_race(self):
        j = self.fr_json(["--threads", "8", "--chunks", "3"], "fill_race threads")
        self.check_race(j, 8, 3, "fill_race 8 threads")
        j = self.fr_json(["--threads", "4", "--processes", "3", "--chunks", "2", "--rounds", "2", "--chunk-size", "100K"],
                         "fill_race processes")
        self.check_race(j, 12, 4, "fill_race 3 processes x 4 threads")
        rc, out, err = self.expect_rc([self.fr, "--store", self.store, "--threads", "4", "--chunks", "2"], 0,
                                      "fill_race text")
        self.check(b"OK: exactly one writer won each of the 2 chunks" in out, "fill_race text verdict",
                   out.decode(errors="replace"))
        self.expect_rc([self.fr, "--store", self.store, "--threads", "0"], 2, "fill_race --threads 0")
        if self.mode == "posix":
            j = self.fr_json(["--threads", "8"], "fill_race mem:", store="mem:")
            self.check_race(j, 8, 4, "fill_race mem:")
            self.expect_rc([self.fr, "--store", "mem:", "--processes", "2"], 2, "fill_race mem: --processes")
        else:
            j = self.fr_json(["--threads", "8", "--chunks", "3"], "fill_race stat-then-put",
                             store=self.store + "&commit=stat_then_put")
            self.check_race(j, 8, 3, "fill_race S3 stat-then-put", atomic=False)

    # ---- config= files that are not one -----------------------------------------------------------

    def test_config_file_refused(self):
        # Refused before a byte is read, naming the path and never the content:
        # /dev/zero never ends, a FIFO has no writer, a directory, a file over 1 MiB.
        marker = "NotPrintedC0ntent"
        big = self.file("big.json", ('{"secret_access_key": "' + marker + '"' + " " * (1 << 20) + "}").encode())
        fifo = os.path.join(self.tmp, "config.fifo")
        os.mkfifo(fifo)
        cases = [("/dev/zero", "not a regular file (a character device)"),
                 (fifo, "not a regular file (a FIFO)"),
                 (self.tmp, "not a regular file (a directory)"),
                 (big, "larger than 1 MiB")]
        for path, why in cases:
            url = f"s3://bucket/x?config={urllib.parse.quote(path, safe='')}"
            for prog in ([self.cli, "selftest"], [self.rt, "--origin-file", big], [self.fr]):
                name = f"{os.path.basename(prog[0])} config={path}"
                try:
                    rc, out, err = self.run(prog + ["--store", url], timeout=30)
                except subprocess.TimeoutExpired:
                    self.check(False, f"{name}: refused at once", "still running after 30 s")
                    continue
                self.check(rc == 7 and path in err and why in err, f"{name}: misconfigured, naming the path",
                           f"exit {rc}: {err.strip()[:300]}")
                self.check(marker not in err and marker.encode() not in out, f"{name}: the content is not printed")
        rc, out, err = self.expect_rc([self.cli, "selftest", "--json", "--store",
                                       "s3://bucket/x?config=%2Fdev%2Fzero"], 7, "config=/dev/zero --json", timeout=30)
        j = self.json_of(out, "config=/dev/zero --json")
        self.check(j.get("error", {}).get("code") == "misconfigured" and "/dev/zero" in j.get("error", {}).get("message", ""),
                   "config=/dev/zero as JSON: misconfigured, naming the path", str(j))

    # ---- tiered stores: tiered:NEAR|FAR ----------------------------------------------------------

    def test_tiered_urls(self):
        """The tiered URL form's errors: each refused with the right exit code and says why (and which tier)."""
        top = self.run([self.cli, "--help"])[1].decode()
        self.check("tiered:NEAR|FAR" in top, "cachestore --help describes tiered:NEAR|FAR")
        for prog in (self.rt, self.fr):
            self.check("tiered:NEAR|FAR" in self.run([prog, "--help"])[1].decode(),
                       f"{os.path.basename(prog)} --help names the tiered form")
        far = "file://" + os.path.join(self.tmp, "tiered-far")
        cases = [  # (URL, exit code, what the message says)
            ("tiered:", 2, "no '|' found"),
            ("tiered:file:///tmp/x", 2, "no '|' found"),
            ("tiered:|" + far, 2, "the near tier of the tiered store URL is empty"),
            ("tiered:mem:|", 2, "the far tier of the tiered store URL is empty"),
            ("tiered:ftp://host/x|" + far, 2, "near tier: unsupported store URL scheme"),
            ("tiered:mem:|gopher://host/x", 2, "far tier: unsupported store URL scheme"),
            ("tiered:file:///tmp/x?size=1|" + far, 2, "near tier: unknown parameter"),
            ("tiered:mem:|file:///tmp/x?create=maybe", 2, "far tier: parameter create takes 1 or 0"),
            ("tiered:mem:extra|" + far, 2, "near tier: a memory store URL is just mem:"),
            ("tiered:tiered:mem:|" + far, 2, "near tier: a tiered store cannot be a tier of another"),
            ("tiered:mem:|tiered:mem:|" + far, 2, "far tier: a tiered store cannot be a tier of another"),
            ("tiered:mem:|" + far + "|" + far + "2", 2, "exactly two tiers"),
            ("tiered:s3://bucket/x|" + far, 2, "near tier: an s3 store cannot be the near tier"),
            ("tiered:" + far + "|mem:", 2, "far tier: a memory store cannot be the far tier"),
            ("tiered:" + far + "/|" + far, 2, "the same directory"),
            ("file:///tmp/a|s3://bucket/x", 2, "a '|' joins the two tiers"),
            ("tiered:mem:|s3://bucket/x?region=a&region=b", 2, "far tier: parameter region is given twice"),
            ("tiered:mem:|s3://AKIAEXAMPLE:s3cr3tv4lue@bucket/x", 2, "far tier: the s3 URL contains user info"),
            ("tiered:mem:|" + far + "/missing", 7, "far tier: the root directory"),
        ]
        if self.mode == "posix":  # no credentials in this environment
            cases.append(("tiered:mem:|s3://bucket/x", 7, "far tier: AWS_SHARED_CREDENTIALS_FILE"))
        for url, rc_want, why in cases:
            rc, out, err = self.run([self.cli, "stat", "--store", url] + self.key(), env={"CACHESTORE_URL": ""})
            self.check(rc == rc_want and why in err and "s3cr3tv4lue" not in err,
                       f"tiered URL {url!r}: exit {rc_want}, says {why!r}", f"got {rc}: {err.strip()}")
        rc, out, err = self.run([self.cli, "stat", "--json", "--store", "tiered:mem:|ftp://x"] + self.key())
        j = self.json_of(out, "tiered URL error --json")
        self.check(rc == 2 and j.get("error", {}).get("message", "").startswith("far tier: "),
                   "a tier's error as JSON names the tier", str(j))
        for prog in ([self.rt, "--origin-file", "/dev/null"], [self.fr]):
            rc, out, err = self.run(prog + ["--store", "tiered:mem:|"])
            self.check(rc == 2 and "far tier" in err, f"{os.path.basename(prog[0])}: a bad tiered URL is a usage error",
                       f"got {rc}: {err.strip()}")

    def test_tiered(self):
        """The programs over tiered:file://NEAR|FAR, FAR being this mode's store (a second directory, or RGW)."""
        near_root = os.path.join(self.tmp, "tiered-near")
        near = "file://" + near_root
        if self.mode == "posix":
            far_root = os.path.join(self.tmp, "tiered-far")
            os.mkdir(far_root, 0o700)
            far = "file://" + far_root
        else:
            far = self.store
        url = f"tiered:{near}?create=1&max_bytes=64M|{far}"
        t = ["--store", url]
        data = os.urandom(1000)
        f = self.file("tiered0.bin", data)
        self.expect_rc([self.cli, "put"] + t + self.key() + [f], 0, "tiered: put")
        self.expect_rc([self.cli, "stat", "--store", near] + self.key(), 0, "tiered: put reached the near tier")
        self.expect_rc([self.cli, "stat", "--store", far] + self.key(), 0, "tiered: put reached the far tier")
        rc, out, err = self.expect_rc([self.cli, "put", "--json"] + t + self.key() + [f], 6,
                                      "tiered: put again: commit_lost (the far tier's answer)")
        rc, out, err = self.expect_rc([self.cli, "get"] + t + self.key(), 0, "tiered: get (a near hit)")
        self.check(out == data, "tiered: get returns the bytes put")
        rc, out, err = self.expect_rc([self.cli, "get"] + t + self.key() + ["--offset", "10", "--length", "100"], 0,
                                      "tiered: get a range")
        self.check(out == data[10:110], "tiered: a range returns the slice")
        rc, out, err = self.expect_rc([self.cli, "stat", "--json"] + t + self.key(), 0, "tiered: stat --json")
        self.check(self.json_of(out, "tiered stat").get("size") == 1000, "tiered: stat size", out.decode(errors="replace"))
        # Without its near copy the chunk comes from the far tier.
        self.expect_rc([self.cli, "rm", "--store", near] + self.key(), 0, "tiered: remove the near copy alone")
        rc, out, err = self.expect_rc([self.cli, "get"] + t + self.key(), 0, "tiered: get without the near copy")
        self.check(out == data, "tiered: the far tier serves what the near tier lost")
        self.expect_rc([self.cli, "stat"] + t + self.key(), 0, "tiered: stat without the near copy (far)")
        rc, out, err = self.expect_rc([self.cli, "selftest", "--json"] + t, 0, "tiered: selftest --json")
        j = self.json_of(out, "tiered selftest")
        far_kind = "posix" if self.mode == "posix" else "s3"
        self.check(j.get("store") == "tiered" and j.get("near") == "posix" and j.get("far") == far_kind
                   and j.get("atomic_commit") is True and "near tier posix store at " + near_root in j.get("description", ""),
                   "tiered: selftest --json names the store and its tiers", str(j))
        if self.mode == "rgw":
            self.check(j.get("conditional_put_enforced") is True, "tiered: the S3 far tier's If-None-Match (selftest)", str(j))
        rc, out, err = self.expect_rc([self.cli, "du", "--json"] + t, 0, "tiered: du works on the near tier")
        self.check(self.json_of(out, "tiered du").get("root") == near_root, "tiered: du names the near root",
                   out.decode(errors="replace"))
        self.expect_rc([self.cli, "du", "--store", f"tiered:mem:|{far}"], 2, "tiered: du needs a POSIX near tier")
        self.expect_rc([self.cli, "rm"] + t + self.key(), 0, "tiered: rm")
        self.expect_rc([self.cli, "stat", "--store", near] + self.key(), 3, "tiered: rm removed the near copy")
        self.expect_rc([self.cli, "stat", "--store", far] + self.key(), 3, "tiered: rm removed the far copy")
        # A memory near tier: each process starts with it empty, so the far tier serves.
        self.expect_rc([self.cli, "put", "--store", f"tiered:mem:|{far}"] + self.key(index=1), 0, "tiered mem:|far: put",
                       stdin=data)
        rc, out, err = self.expect_rc([self.cli, "get", "--store", f"tiered:mem:|{far}"] + self.key(index=1), 0,
                                      "tiered mem:|far: get in another process")
        self.check(out == data, "tiered mem:|far: the far tier serves the bytes")
        self.run([self.cli, "rm", "--store", far] + self.key(index=1))

        # read_through: cold, warm from the near tier, then from the far tier once the near one is emptied.
        body = os.urandom((5 << 20) + 77)
        origin = self.file("tiered-origin.bin", body)
        common = ["--json", "--store", url, "--no-progress", "--origin-file", origin, "--chunk-size", "1M",
                  "--origin", self.origin, "--verify"]
        rc, out, err = self.expect_rc([self.rt] + common, 0, "tiered read_through cold")
        cold = self.json_of(out, "tiered read_through cold")
        self.check(cold.get("store") == "tiered" and cold.get("misses") == 6 and cold.get("commits_won") == 6,
                   "tiered read_through cold: 6 misses, 6 commits", str(cold))
        rc, out, err = self.expect_rc([self.rt] + common, 0, "tiered read_through warm")
        warm = self.json_of(out, "tiered read_through warm")
        self.check(warm.get("hits") == 6 and warm.get("tiers", {}).get("near_hits") == 6
                   and warm.get("bytes_from_origin") == 0, "tiered read_through warm: 6 near hits", str(warm))
        shutil.rmtree(near_root)  # a new, empty near tier (create=1 makes it again)
        prom_path = os.path.join(self.tmp, "tiered.prom")
        rc, out, err = self.expect_rc([self.rt] + common + ["--metrics", prom_path], 0, "tiered read_through, near emptied")
        far_run = self.json_of(out, "tiered read_through far")
        self.check(far_run.get("hits") == 6 and far_run.get("tiers", {}).get("far_hits") == 6
                   and far_run.get("tiers", {}).get("near_hits") == 0 and far_run.get("bytes_from_origin") == 0
                   and far_run.get("verified_bytes") == len(body),
                   "tiered read_through, near tier emptied: 6 far hits, nothing from the origin", str(far_run))
        prom = open(prom_path).read() if os.path.exists(prom_path) else ""
        self.check('cachestore_tier_hits_total{store="tiered",op="get_chunk",tier="far"} 6' in prom
                   and 'cachestore_tier_promotions_total{store="tiered",result="done"}' in prom,
                   "tiered read_through --metrics: the tiered store's counters", prom[:600])
        # fill_race: the far tier decides each commit, so exactly one winner per chunk.
        rc, out, err = self.expect_rc([self.fr, "--json", "--store", url, "--origin", self.origin, "--threads", "8",
                                       "--chunks", "2"], 0, "tiered fill_race")
        self.check_race(self.json_of(out, "tiered fill_race"), 8, 2, "tiered fill_race 8 threads")
        rc, out, err = self.expect_rc([self.fr, "--json", "--store", url, "--origin", self.origin, "--threads", "3",
                                       "--processes", "2", "--chunks", "2", "--chunk-size", "100K"], 0,
                                      "tiered fill_race processes")
        self.check_race(self.json_of(out, "tiered fill_race processes"), 6, 2, "tiered fill_race 2 processes x 3 threads")

    # ---- driver-specific failures ----------------------------------------------------------------

    def test_posix_specific(self):
        self.expect_rc([self.cli, "selftest", "--store", "file:///etc/passwd"], 7, "a file as the POSIX root: misconfigured")
        self.expect_rc([self.cli, "put", "--store", "mem:"] + self.key() + [self.file("m.bin", b"x" * 10)], 0, "mem: put")
        self.expect_rc([self.cli, "stat", "--store", "mem:"] + self.key(), 3, "mem: lives in one process")
        self.expect_rc([self.cli, "selftest", "--store", "file:///tmp/x%41y%zz"], 2, "bad escape in a file URL")
        enc = os.path.join(self.tmp, "a b+c")
        self.expect_rc([self.cli, "selftest", "--store", "file://" + os.path.join(self.tmp, "a%20b+c") + "?create=1"], 0,
                       "a percent-encoded file URL")
        self.check(os.path.isdir(enc), "file URL decoded: %20 is a space, '+' stays '+'")
        # A missing root is misconfigured and is not created, unless create=1 asks for it (mode 0700).
        missing = os.path.join(self.tmp, "no-such-root", "chunks")
        rc, out, err = self.expect_rc([self.cli, "selftest", "--json", "--store", "file://" + missing], 7,
                                      "a missing POSIX root: misconfigured")
        j = self.json_of(out, "missing root --json")
        msg = j.get("error", {}).get("message", "")
        self.check("does not exist" in msg and missing in msg and not os.path.exists(missing),
                   "a missing root is named and not created", str(j))
        self.check("create=1" in msg and "posix_options" not in msg,
                   "a missing root: the message names the URL's create=1, not posix_options::create_root", msg)
        self.expect_rc([self.cli, "selftest", "--store", "file://" + missing + "?create=1&fsync=0"], 0,
                       "create=1 creates the root")
        self.check(os.path.isdir(missing) and (os.stat(missing).st_mode & 0o777) == 0o700
                   and (os.stat(os.path.dirname(missing)).st_mode & 0o777) == 0o700,
                   "the created root and its parent are 0700")
        self.test_du_sweep()
        for url, why in [("file:///tmp/x?size=1", "unknown parameter"), ("file:///tmp/x?create=maybe", "takes 1 or 0"),
                         ("file:///tmp/x?max_bytes=lots", "takes a size"), ("file:///tmp/x?low_water=0.1", "0.5 to 1"),
                         ("file:///tmp/x?orphan_age=-1", "whole seconds"),
                         ("file:///tmp/x?create=1&create=1", "given twice"), ("file:///tmp/x#frag", "fragment")]:
            rc, out, err = self.expect_rc([self.cli, "selftest", "--store", url], 2, f"bad file URL {url!r}")
            self.check(why in err, f"bad file URL {url!r} says why", err.strip())

    def test_s3_endpoint_stalls(self):
        # An endpoint that accepts connections and never answers: self-test is
        # misconfigured (exit 7) naming it, not a nameless deadline_exceeded (exit 1).
        listener = subprocess.Popen(
            [sys.executable, "-c", "import socket, sys, time\n"
             "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(8)\n"
             "print(s.getsockname()[1], flush=True)\n"
             "held = []\n"
             "while True: held.append(s.accept()[0])\n"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            port = int(listener.stdout.readline())
            url = f"s3://bucket/x?endpoint=http%3A%2F%2F127.0.0.1%3A{port}"
            creds = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLESTALL", "AWS_SECRET_ACCESS_KEY": "stall-test-secret"}
            t0 = time.monotonic()
            rc, out, err = self.expect_rc([self.cli, "selftest", "--timeout", "2", "--store", url], 7,
                                          "selftest against an endpoint that never answers: misconfigured", env=creds)
            self.check(time.monotonic() - t0 < 10, "the stalled endpoint is given up at the timeout")
            self.check(f"127.0.0.1:{port}" in err and "accepted the connection but did not answer within the timeout" in err,
                       "the stalled endpoint is named, and what it did", err.strip())
            rc, out, err = self.expect_rc([self.cli, "selftest", "--json", "--timeout", "2", "--store", url], 7,
                                          "selftest --json against a stalled endpoint", env=creds)
            e = self.json_of(out, "stalled endpoint --json").get("error", {})
            self.check(e.get("code") == "misconfigured" and f"127.0.0.1:{port}" in e.get("message", ""),
                       "stalled endpoint as JSON: misconfigured, naming it", str(e))
        finally:
            listener.kill()
            listener.wait()

    def test_du_sweep(self):
        root = os.path.join(self.tmp, "bounded")
        url = "file://" + root
        for i in range(6):
            self.expect_rc([self.cli, "put", "--store", url + "?create=1&fsync=0"] + self.key(index=i)
                           + [self.file(f"c{i}.bin", bytes([i]) * 1000)], 0, f"put chunk {i} into the du root")
        rc, out, err = self.expect_rc([self.cli, "du", "--json", "--store", url], 0, "du --json")
        j = self.json_of(out, "du --json")
        self.check(j.get("chunks") == 6 and j.get("bytes") == 6000 and j.get("temp_files") == 0
                   and isinstance(j.get("oldest_use_unix"), int) and j.get("oldest_use_unix") <= j.get("newest_use_unix"),
                   "du counts chunks, bytes and the oldest/newest use", str(j))
        rc, out, err = self.expect_rc([self.cli, "du", "--store", url], 0, "du (text)")
        self.check("6 chunks" in out.decode() and "oldest use" in out.decode(), "du prints usage and uses", out.decode())
        # An orphan temp file of a dead put, two hours old; chunk i last used 10 - i minutes ago.
        chunk_dir = None
        for d, _, files in os.walk(root):
            if "0" in files and len(os.path.basename(d)) == 64:
                chunk_dir = d
        if not self.check(chunk_dir is not None, "the chunks' directory is found"):
            return
        orphan = os.path.join(chunk_dir, ".tmp-9-00000000deadbeef")
        with open(orphan, "wb") as f:
            f.write(b"x" * 100)
        os.utime(orphan, (time.time() - 7200, time.time() - 7200))
        for i in range(6):
            os.utime(os.path.join(chunk_dir, str(i)), (time.time() - 600 + i * 60, time.time() - 600))
        self.expect_rc([self.cli, "get", "--store", url, "--out", os.path.join(self.tmp, "g.bin")] + self.key(index=0), 0,
                       "a read marks chunk 0 used")
        rc, out, err = self.expect_rc([self.cli, "sweep", "--json", "--store", url + "?max_bytes=4000"], 0, "sweep --json")
        j = self.json_of(out, "sweep --json")
        self.check(j.get("chunks_evicted") == 3 and j.get("bytes") == 3000 and j.get("orphans_removed") == 1
                   and j.get("over_bound") is False and j.get("max_bytes") == 4000,
                   "sweep evicts down to low_water x max_bytes and removes the orphan", str(j))
        left = sorted(n for n in os.listdir(chunk_dir))
        self.check(left == ["0", "4", "5"], "the least recently used chunks went; the one just read stayed", str(left))
        rc, out, err = self.expect_rc([self.cli, "sweep", "--store", url + "?max_bytes=4000"], 0, "sweep (text)")
        self.check("evicted     0 chunks" in out.decode(), "a second sweep has nothing to do", out.decode())
        self.expect_rc([self.cli, "du", "--store", "mem:"], 2, "du needs a POSIX store")
        rc, out, err = self.expect_rc([self.cli, "sweep", "--store", url + "/missing"], 7,
                                      "sweep of a missing root: misconfigured")
        self.check("create=1" in err and "posix_options" not in err, "sweep of a missing root names create=1", err.strip())

    def test_rgw_specific(self):
        k = self.key()
        rc, out, err = self.expect_rc([self.cli, "stat", "--store", self.store] + k, 4, "wrong secret: auth",
                                      env={"AWS_SECRET_ACCESS_KEY": "wrong-secret-value-xyz"})
        self.check("wrong-secret-value-xyz" not in err, "a wrong secret is not echoed")
        self.expect_rc([self.cli, "selftest", "--store", self.store], 7, "no credentials: misconfigured",
                       env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
        nb = f"s3://no-such-bucket-{random.randrange(1 << 30)}/?endpoint={self.ep_enc}"
        self.expect_rc([self.cli, "selftest", "--store", nb], 7, "selftest on a missing bucket: misconfigured")
        # (get --length: a GET, whose error document names NoSuchBucket; a HEAD cannot)
        self.expect_rc([self.cli, "get", "--store", nb, "--length", "10"] + k, 7, "get from a missing bucket: misconfigured")
        self.expect_rc([self.cli, "stat", "--store", nb] + k, 3, "stat (HEAD) on a missing bucket: not_found, as documented")
        self.expect_rc([self.cli, "selftest", "--store", self.store + "&addressing=virtual"], 7,
                       "virtual addressing with an IP endpoint: misconfigured")
        # A wrong endpoint is loud: nothing listening, and a web server that is not S3.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]
        rc, out, err = self.expect_rc(
            [self.cli, "selftest", "--store", f"s3://{self.bucket}/?endpoint=http%3A%2F%2F127.0.0.1%3A{dead}"], 7,
            "selftest against a closed port: misconfigured")
        self.check(f"127.0.0.1:{dead}" in err and "refuses connections" in err, "the closed endpoint is named", err)
        web = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "0"], cwd=self.tmp,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            line = web.stdout.readline().decode()
            port = int(line.split("port ")[1].split()[0])
            rc, out, err = self.expect_rc(
                [self.cli, "selftest", "--store", f"s3://{self.bucket}/?endpoint=http%3A%2F%2F127.0.0.1%3A{port}"], 7,
                "selftest against a web server that is not S3: misconfigured")
            self.check("does not look like an S3 server" in err, "says it is not S3", err)
        finally:
            web.kill()
            web.wait()
        rc, out, err = self.expect_rc([self.cli, "selftest", "--json", "--store",
                                       f"s3://{self.bucket}/enc%2Fded%20x?endpoint={self.ep_enc}"], 0, "encoded prefix")
        self.check("prefix=enc/ded x/ " in self.json_of(out, "encoded prefix").get("description", ""),
                   "s3 URL prefix decoded, and a folder", out.decode(errors="replace"))
        self.expect_rc([self.cli, "selftest", "--store", self.store + "&addressing=sideways"], 2,
                       "a bad addressing value is a usage error")
        # A JSON config file holding the credentials; the URL overrides bucket and prefix.
        cfg = self.file("s3.json", json.dumps({
            "endpoint": self.endpoint, "bucket": "overridden-by-the-url",
            "access_key_id": os.environ["CACHESTORE_RGW_ACCESS_KEY"], "secret_access_key": self.secret,
            "retry": {"max_attempts": 2}}).encode())
        url = f"s3://{self.bucket}/examples-cfg-{os.getpid()}/?config={urllib.parse.quote(cfg, safe='')}"
        rc, out, err = self.expect_rc([self.cli, "selftest", "--json", "--store", url], 0, "config= file",
                                      env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
        j = self.json_of(out, "selftest with config=")
        self.check(f"bucket={self.bucket} " in j.get("description", "") and "max_attempts=2" in j.get("description", ""),
                   "config= file read, URL bucket wins", j.get("description", ""))
        # Exactly 1 MiB is still read (white space pads the same document).
        with open(cfg, "rb") as f:
            doc = f.read()
        full = self.file("s3-1mib.json", doc[:-1] + b" " * ((1 << 20) - len(doc)) + b"}")
        url = f"s3://{self.bucket}/examples-cfg-{os.getpid()}/?config={urllib.parse.quote(full, safe='')}"
        self.expect_rc([self.cli, "selftest", "--store", url], 0, "a config file of exactly 1 MiB",
                       env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
        broken = self.file("broken.json", ('{"secret_access_key": "' + self.secret + '", "bucket": ').encode())
        url = f"s3://{self.bucket}/x/?config={urllib.parse.quote(broken, safe='')}"
        rc, out, err = self.expect_rc([self.cli, "selftest", "--store", url], 7, "malformed config file: misconfigured")
        self.check("line 1" in err, "malformed config file: the position is named", err)
        self.expect_rc([self.cli, "selftest", "--store", f"s3://{self.bucket}/x/?config=/no/such.json"], 7,
                       "missing config file: misconfigured")

    def test_any_region(self):
        # RGW signs and checks with whatever region it is given: a wrong region
        # passes the self-test there (AWS refuses it; docs/operations.md says which does what).
        rc, out, err = self.expect_rc([self.cli, "selftest", "--store", self.store + "&region=eu-west-3"], 0,
                                      "RGW: selftest with another signing region passes (as documented)")

    def test_no_secret_printed(self):
        for argv, out, err in self.outputs:
            for s in self.secrets:
                if s.encode() in out or s.encode() in err:
                    self.check(False, f"the secret key is never printed (found in the output of {argv[:3]})")
                    return
        self.check(True, "no secret printed")


def shlex_quote(s):
    import shlex
    return shlex.quote(s)


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("posix", "rgw"):
        print(__doc__, file=sys.stderr)
        return 2
    mode = sys.argv[1]
    r = Runner(mode, *sys.argv[2:])
    try:
        if not r.setup_store():
            return no_rgw_exit("the example tests")
        print(f"examples against {mode}: store {r.store}", flush=True)
        t0 = time.monotonic()
        tests = [r.test_help_and_usage, r.test_path, r.test_cli_store, r.test_progress, r.test_read_through,
                 r.test_fill_race, r.test_tiered_urls, r.test_tiered, r.test_config_file_refused,
                 r.test_posix_specific if mode == "posix" else r.test_rgw_specific,
                 r.test_s3_endpoint_stalls if mode == "posix" else r.test_any_region,
                 r.test_no_secret_printed]
        for t in tests:
            before = len(r.failures)
            t1 = time.monotonic()
            t()
            print(f"{'ok  ' if len(r.failures) == before else 'FAIL'} {t.__name__} ({time.monotonic() - t1:.1f} s)", flush=True)
        print(f"{r.passed} checks passed, {len(r.failures)} failed in {time.monotonic() - t0:.1f} s")
        return 1 if r.failures else 0
    finally:
        shutil.rmtree(r.tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
