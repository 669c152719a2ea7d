"""A running examples/range_proxy, for its test (range_proxy_test.py) and its
benchmark (tests/bench/proxy_bench.py): started on free ports, its address
and metrics port read from its first lines; requests, metrics, SIGTERM.
Python standard library only."""
import http.client
import os
import re
import shutil
import signal
import subprocess
import tempfile
import urllib.parse


def s3_origin_url(bucket, endpoint, region=None):
    """range_proxy's --origin for `bucket` at `endpoint`."""
    url = "s3://%s?endpoint=%s" % (bucket, urllib.parse.quote(endpoint, safe=""))
    return url + ("&region=" + region if region else "")


class Proxy:
    """range_proxy EXE --listen 127.0.0.1:0 --metrics-port 0 --origin ORIGIN
    --store STORE EXTRA..., the origin's credentials in its environment."""

    def __init__(self, exe, origin, store, access_key, secret_key, extra=()):
        args = [exe, "--listen", "127.0.0.1:0", "--metrics-port", "0", "--origin", origin, "--store", store, *extra]
        env = dict(os.environ, AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key)
        self.tmp = tempfile.mkdtemp(prefix="range-proxy-")
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.port = self.metrics_port = None
        for _ in range(2):
            line = self.p.stdout.readline()
            m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", line)
            if m:
                self.metrics_port = int(m.group(1))
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
        if self.port is None:
            self.p.kill()
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise RuntimeError("range_proxy did not start: " + self.p.stderr.read())

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, urllib.parse.quote(path))

    def request(self, method, path, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.request(method, urllib.parse.quote(path), headers=headers or {})
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body

    def metric(self, name, labels=""):
        """The value of the sample NAME{LABELS} on /metrics, or None."""
        c = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
        m = re.search(r"^" + re.escape(name + labels) + r" (\d+)$", text, re.M)
        return int(m.group(1)) if m else None

    def stop(self):
        """SIGTERM; (exit status, stdout, stderr)."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.p.send_signal(signal.SIGTERM)
        try:
            out, err = self.p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate()
        return self.p.returncode, out, err
