#!/usr/bin/env python3
"""A fault-injecting S3 server for the cachestore fault tests (stdlib only).

    python3 fault_server.py [--watch-stdin]

Listens on 127.0.0.1 on a free port (one from CACHESTORE_PORT_RANGE=LOW-HIGH
when that is set, see tests/servers/README.md) and prints "PORT <n>" as the
first line of stdout. With --watch-stdin it exits when its standard input
reaches end of file (the test holds the other end of a pipe, so a crashed test
leaves no server behind). Speaks enough path-style S3 to be a working object store:

    PUT /bucket/key           (If-None-Match: * -> 412 when the key exists)
    GET /bucket/key           (Range: bytes=a-b, a-, -n; 206 / 416 InvalidRange)
    HEAD /bucket/key          (no body)
    DELETE /bucket/key        (204, also when absent)
    GET /bucket?versioning    (VersioningConfiguration, empty unless scripted)

HTTP/1.1 keep-alive, one thread per connection. Signatures are not checked.
With --tls-cert/--tls-key it speaks https instead (python's ssl module), for
the TLS cases a real server cannot be configured into (an expired certificate).
An object is stored only after its whole body arrived.

Control endpoints (never logged, never faulted):

    POST /_fault/script   body: JSON list of rules (replaces the current ones)
    POST /_fault/reset    forget rules, objects and the log
    POST /_fault/clearlog forget the log only
    GET  /_fault/log      JSON list of the S3 requests that arrived (method, key,
                          target as sent, range, access_key, token, conn, ...)
    GET  /_fault/object?key=K   the stored bytes of K (404 when absent)

A rule:

    {"method": "GET",              # optional; absent or "*" = any
     "key": "substring",           # optional; matched against the decoded key
     "query": "versioning",        # optional; substring of the raw query
     "absent_only": false,         # only when the key is not stored
     "count": "once" | N | "always",
     "action": "...", ...parameters}

The first rule that matches and has count left is applied (and its count
decremented). Actions:

    status            status (int), code (S3 Code, optional), message,
                      headers ({name: value} or [[name, value], ...], added),
                      body: xml (default) | html | empty |
                            truncated_xml (ends `cut` characters into the
                            Code, default 4) |
                            huge (huge_bytes, default 50 MB) | entities |
                            billion_laughs
                      The request body is read first (so "500 after reading
                      the PUT body" is a status rule on PUT), unless
                      early: true (answer at once, then drain and close).
    reset_before_status   read the request, then RST without answering
    close_before_status   read the request, then FIN without answering
    commit_then_reset     PUT: store the object, then RST without answering
    head_with_body        HEAD: status (default 404) and an error document body
                          `delay` s later (which HEAD must not have)
    garbage               answer `text` (default an SSH banner) instead of HTTP
    reset_mid_body        GET: headers + `after` body bytes, then RST
                          (`after` may be "all" here and for chunked_cut: the
                          whole range, then the fault)
    short_body            GET: Content-Length of the full range, `after` bytes, FIN
    short_body_nolength   GET: 206 without Content-Length, `after` bytes, FIN
    long_body             GET: the range plus `extra` bytes; mode:
                          length (Content-Length counts them) | chunked | close
                          | trailing (Content-Length does not count them: they
                          follow the body, `delay` s later if given)
    bad_content_range     GET: mode: shifted (honest header, data from start+1)
                          | garbage | missing | wrong_total
    whole_object          GET: 200 with the whole object
    chunked_cut           GET: chunked encoding, `after` bytes, close with no
                          terminating chunk
    stall                 phase "headers" (default, GET): send the headers then
                          sleep `seconds`; phase "status" (any method): sleep
                          before the status line; then close
    drip                  GET: headers, then one body byte every `interval` s
    close_mid_upload      PUT: read `after` body bytes, then RST
    stall_mid_upload      PUT: read `after` body bytes, sleep `seconds`, RST
    respond_then_close    answer normally (keep-alive), then FIN `delay` s later
    versioning            GET ?versioning: <Status>`status`</Status>
    store_raw             PUT: store the body as received, aws-chunked framing
                          included (a server that does not know aws-chunked;
                          by default such bodies are decoded, and a broken
                          framing is 400 IncompleteBody)

Proxy mode (the soak run behind faults, tests/soak/run-fault-soak.sh):

    python3 fault_server.py --upstream http://127.0.0.1:PORT --fault-rate 0.03
                            [--seed N] [--faults k1,k2,...] [--stall-seconds 0.5]
                            [--drip-seconds 0.2] [--port P] [--watch-stdin]

Every S3 request is forwarded to the upstream unchanged: the request line and
every header line byte for byte (Host included, so a SigV4 signature made for
the proxy's host:port verifies at the upstream), and the body. Each client
connection gets its own kept-alive upstream connection. With probability
--fault-rate a request gets instead one fault kind, drawn uniformly (seeded)
among those that apply to its method:

    slowdown_503, internal_500    any: not forwarded; 503 SlowDown / 500 InternalError
    reset_before_status           any: request read, not forwarded, RST
    close_before_status           any: request read, not forwarded, FIN
    stall                         any: --stall-seconds, then forwarded normally
    reset_mid_body, short_body    GET: forwarded; headers + half the body, RST / FIN
    drip                          GET: forwarded; the body in 8 pieces over --drip-seconds
    commit_then_reset             PUT: forwarded (committed upstream), then RST
    reset_mid_upload              PUT: half the body read, not forwarded, RST
    upstream_cut_mid_upload       PUT: headers + half the body forwarded, then
                                  both connections RST (the upstream must not
                                  commit a partial object)

A body fault drawn for an answer without a body (a 404) is not applied (counted
as not_applicable). Control endpoints in proxy mode (never faulted):

    GET  /_fault/stats        JSON: requests, requests.<METHOD>, forwarded, injected,
                              fault.<kind> counts, not_applicable,
                              upstream_errors (answered 502), upstream_reconnects,
                              committed_then_reset, fault_rate, paused
    POST /_fault/stats/reset  zero the counters
    POST /_fault/pause        no faults until /_fault/resume (e.g. during setup)
    POST /_fault/resume
"""

import email.utils
import json
import os
import socket
import struct
import sys
import threading
import time
import urllib.parse

LOCK = threading.Lock()
OBJECTS = {}   # key -> (bytes, last_modified_epoch)
RULES = []     # dicts with a "left" count (-1 = always)
LOG = []
SEQ = [0]
CONN_SEQ = [0]

XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'


class ClientGone(Exception):
    pass


def http_date(t=None):
    return email.utils.formatdate(t if t is not None else time.time(), usegmt=True)


def request_id():
    with LOCK:
        SEQ[0] += 1
        return "FAULT%010d" % SEQ[0]


def error_xml(code, message, rid, resource=""):
    return (XML_HEAD + "<Error><Code>%s</Code><Message>%s</Message><Resource>%s</Resource>"
            "<RequestId>%s</RequestId><HostId>fault-host</HostId></Error>" %
            (code, message, resource, rid)).encode()


def reason_phrase(status):
    return {200: "OK", 204: "No Content", 206: "Partial Content", 400: "Bad Request", 403: "Forbidden",
            404: "Not Found", 409: "Conflict", 412: "Precondition Failed", 416: "Range Not Satisfiable",
            429: "Too Many Requests", 500: "Internal Server Error", 501: "Not Implemented",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}.get(status, "Status")


def rst(sock):
    """Closes with a TCP RST (SO_LINGER 0)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def fin(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        with LOCK:
            CONN_SEQ[0] += 1
            self.id = CONN_SEQ[0]

    def _fill(self):
        try:
            data = self.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            raise ClientGone()
        self.buf += data

    def readline(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 65536:
                raise ClientGone()
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            raise ClientGone()


class Request:
    pass


def read_request(conn):
    try:
        line = conn.readline()
    except ClientGone:
        return None
    while line == b"":
        line = conn.readline()
    parts = line.decode("latin-1").split(" ")
    if len(parts) != 3:
        raise ClientGone()
    r = Request()
    r.method, r.target, r.version = parts
    r.headers = {}
    r.head = [line]  # the raw request line and header lines, as received (proxy mode)
    while True:
        h = conn.readline()
        if h == b"":
            break
        r.head.append(h)
        name, _, value = h.decode("latin-1").partition(":")
        r.headers[name.strip().lower()] = value.strip()
    u = urllib.parse.urlsplit(r.target)
    r.path = urllib.parse.unquote(u.path)
    r.query = u.query
    segs = r.path.lstrip("/").split("/", 1)
    r.bucket = segs[0]
    r.key = segs[1] if len(segs) > 1 else ""
    r.body = b""
    r.raw_body = b""
    r.body_len = int(r.headers.get("content-length", "0") or "0")
    return r


def read_body(conn, r):
    if r.headers.get("transfer-encoding", "").lower() == "chunked":
        out = b""
        while True:
            size = int(conn.readline().split(b";")[0], 16)
            if size == 0:
                while conn.readline() != b"":
                    pass
                break
            out += conn.read(size)
            conn.read(2)
        r.body = out
    else:
        r.body = conn.read(r.body_len)
    r.raw_body = r.body
    if "aws-chunked" in r.headers.get("content-encoding", "") or \
            r.headers.get("x-amz-content-sha256", "").startswith("STREAMING-"):
        r.body = decode_aws_chunked(r.body, int(r.headers.get("x-amz-decoded-content-length", "-1")))


def decode_aws_chunked(raw, decoded_length):
    """The payload of an aws-chunked body (frame signatures are not checked,
    like everything about signing here); None when the framing is broken or
    the payload is not x-amz-decoded-content-length long."""
    out, at = b"", 0
    while True:
        eol = raw.find(b"\r\n", at)
        if eol < 0:
            return None
        head = raw[at:eol].split(b";")
        if len(head) != 2 or not head[1].startswith(b"chunk-signature=") or len(head[1]) != 16 + 64:
            return None
        try:
            size = int(head[0], 16)
        except ValueError:
            return None
        data = raw[eol + 2:eol + 2 + size]
        if len(data) != size or raw[eol + 2 + size:eol + 4 + size] != b"\r\n":
            return None
        out += data
        at = eol + 4 + size
        if size == 0:
            break
    if at != len(raw) or (decoded_length >= 0 and len(out) != decoded_length):
        return None
    return out


def response_head(status, headers, rid):
    lines = ["HTTP/1.1 %d %s" % (status, reason_phrase(status)),
             "Date: " + http_date(),
             "Server: cachestore-fault",
             "x-amz-request-id: " + rid]
    for k, v in headers:
        lines.append("%s: %s" % (k, v))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def send_simple(conn, r, status, headers, body, rid, send_body=True):
    headers = list(headers) + [("Content-Length", str(len(body)))]
    conn.send(response_head(status, headers, rid))
    if send_body and r.method != "HEAD" and body:
        conn.send(body)


def match_rule(r):
    with LOCK:
        present = r.key in OBJECTS
        for rule in RULES:
            if rule["left"] == 0:
                continue
            m = rule.get("method", "*")
            if m not in ("*", "", None) and m != r.method:
                continue
            if "key" in rule and rule["key"] not in r.key:
                continue
            if "query" in rule and rule["query"] not in r.query:
                continue
            if rule.get("absent_only") and present:
                continue
            if rule["left"] > 0:
                rule["left"] -= 1
            return dict(rule)
    return None


def parse_range(header, size):
    """(first, last) or None for no/ignored Range; "invalid" when unsatisfiable."""
    if not header or not header.startswith("bytes="):
        return None
    spec = header[6:]
    if "," in spec:
        return None
    a, _, b = spec.partition("-")
    try:
        if a == "":
            n = int(b)
            if n <= 0 or size == 0:
                return "invalid"
            return (max(0, size - n), size - 1)
        first = int(a)
        last = int(b) if b != "" else size - 1
    except ValueError:
        return None
    if last < first:
        return None
    if first >= size:
        return "invalid"
    return (first, min(last, size - 1))


def error_body(rule, status, rid, resource):
    kind = rule.get("body", "xml")
    code = rule.get("code", "")
    message = rule.get("message", "injected fault")
    if kind == "xml":
        if not code:
            return b""
        return error_xml(code, message, rid, resource)
    if kind == "truncated_xml":
        full = error_xml(code or "SlowDown", message, rid, resource)
        return full[: full.find(b"<Code>") + len(b"<Code>") + int(rule.get("cut", 4))]
    if kind == "html":
        return ("<html><head><title>%d %s</title></head><body><h1>%s</h1><p>upstream said no</p>"
                "</body></html>" % (status, reason_phrase(status), reason_phrase(status))).encode()
    if kind == "empty":
        return b""
    if kind == "entities":
        return (XML_HEAD + '<!DOCTYPE Error [<!ENTITY code "AccessDenied">'
                '<!ENTITY ext SYSTEM "file:///etc/passwd">]>'
                "<Error><Code>&code;</Code><Message>&ext;</Message><RequestId>%s</RequestId></Error>"
                % rid).encode()
    if kind == "billion_laughs":
        ents = '<!ENTITY lol "lol">'
        for i in range(1, 10):
            prev = "lol" if i == 1 else "lol%d" % (i - 1)
            ents += '<!ENTITY lol%d "%s">' % (i, ("&%s;" % prev) * 10)
        return (XML_HEAD + "<!DOCTYPE Error [%s]><Error><Code>&lol9;</Code><Message>&lol9;&lol9;</Message>"
                "<RequestId>%s</RequestId></Error>" % (ents, rid)).encode()
    raise ValueError("unknown body kind " + kind)


def access_key_of(r):
    """The access key id in the request's SigV4 Authorization header ("" if none)."""
    auth = r.headers.get("authorization", "")
    at = auth.find("Credential=")
    return auth[at + 11:].split("/", 1)[0] if at >= 0 else ""


def log_request(conn, r, action, received=None):
    entry = {
        "conn": conn.id,
        "method": r.method,
        "bucket": r.bucket,
        "key": r.key,
        "query": r.query,
        "range": r.headers.get("range", ""),
        "target": r.target,
        "access_key": access_key_of(r),
        "token": r.headers.get("x-amz-security-token", ""),
        "content_sha256": r.headers.get("x-amz-content-sha256", ""),
        "if_none_match": r.headers.get("if-none-match", ""),
        "content_length": r.body_len,
        "received": len(r.body) if received is None else received,
        "action": action,
        "time": time.time(),
    }
    with LOCK:
        LOG.append(entry)


# ---- control -------------------------------------------------------------

def handle_control(conn, r):
    read_body(conn, r)
    rid = request_id()
    if r.path == "/_fault/script" and r.method == "POST":
        try:
            rules = json.loads(r.body.decode() or "[]")
            assert isinstance(rules, list)
            for rule in rules:
                c = rule.get("count", "once")
                rule["left"] = 1 if c == "once" else (-1 if c == "always" else int(c))
                assert "action" in rule
        except Exception as e:  # noqa: BLE001 - report any bad script
            send_simple(conn, r, 400, [("Content-Type", "text/plain")], ("bad script: %s" % e).encode(), rid)
            return
        with LOCK:
            RULES[:] = rules
        send_simple(conn, r, 200, [("Content-Type", "text/plain")], b"ok", rid)
    elif r.path == "/_fault/reset" and r.method == "POST":
        with LOCK:
            RULES.clear()
            OBJECTS.clear()
            LOG.clear()
        send_simple(conn, r, 200, [("Content-Type", "text/plain")], b"ok", rid)
    elif r.path == "/_fault/clearlog" and r.method == "POST":
        with LOCK:
            LOG.clear()
        send_simple(conn, r, 200, [("Content-Type", "text/plain")], b"ok", rid)
    elif r.path == "/_fault/log" and r.method == "GET":
        with LOCK:
            body = json.dumps(LOG).encode()
        send_simple(conn, r, 200, [("Content-Type", "application/json")], body, rid)
    elif r.path == "/_fault/object" and r.method == "GET":
        key = urllib.parse.parse_qs(r.query).get("key", [""])[0]
        with LOCK:
            obj = OBJECTS.get(key)
        if obj is None:
            send_simple(conn, r, 404, [], b"", rid)
        else:
            send_simple(conn, r, 200, [("Content-Type", "application/octet-stream")], obj[0], rid)
    else:
        send_simple(conn, r, 404, [], b"no such control endpoint", rid)


# ---- S3 --------------------------------------------------------------------

def object_headers(data, mtime):
    return [("Last-Modified", http_date(mtime)), ("ETag", '"%08x%d"' % (hash(data) & 0xffffffff, len(data))),
            ("Accept-Ranges", "bytes")]


def serve_s3(conn, r, rule):
    """Normal S3 behaviour. Returns False when the connection must close."""
    rid = request_id()
    resource = r.path
    if r.key == "":
        if r.method == "GET" and "versioning" in r.query:
            status = rule.get("status", "") if rule and rule["action"] == "versioning" else ""
            inner = "<Status>%s</Status>" % status if status else ""
            body = (XML_HEAD + '<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">%s'
                    "</VersioningConfiguration>" % inner).encode()
            send_simple(conn, r, 200, [("Content-Type", "application/xml")], body, rid)
            return True
        if r.method in ("HEAD", "PUT"):
            send_simple(conn, r, 200, [], b"", rid)
            return True
        send_simple(conn, r, 501, [("Content-Type", "application/xml")],
                    error_xml("NotImplemented", "not supported by the fault server", rid, resource), rid)
        return True
    if r.method == "PUT" and r.body is None:
        send_simple(conn, r, 400, [("Content-Type", "application/xml")],
                    error_xml("IncompleteBody", "aws-chunked framing is broken or short", rid, resource), rid)
        return True
    if r.method == "PUT" and rule is not None and rule.get("action") == "store_raw":
        r.body = r.raw_body  # a server that does not know aws-chunked stores the framing as data
    if r.method == "PUT":
        with LOCK:
            exists = r.key in OBJECTS
            if r.headers.get("if-none-match", "") == "*" and exists:
                conflict = True
            else:
                conflict = False
                OBJECTS[r.key] = (r.body, time.time())
        if conflict:
            send_simple(conn, r, 412, [("Content-Type", "application/xml")],
                        error_xml("PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                                  rid, resource), rid)
        else:
            send_simple(conn, r, 200, [("ETag", '"%d"' % len(r.body))], b"", rid)
        return True
    if r.method == "DELETE":
        with LOCK:
            OBJECTS.pop(r.key, None)
        conn.send(response_head(204, [], rid))
        return True
    if r.method in ("GET", "HEAD"):
        with LOCK:
            obj = OBJECTS.get(r.key)
        if obj is None:
            send_simple(conn, r, 404, [("Content-Type", "application/xml")],
                        error_xml("NoSuchKey", "The specified key does not exist.", rid, resource), rid)
            return True
        data, mtime = obj
        rng = parse_range(r.headers.get("range", ""), len(data)) if r.method == "GET" else None
        if rng == "invalid":
            send_simple(conn, r, 416, [("Content-Type", "application/xml"), ("Content-Range", "bytes */%d" % len(data))],
                        error_xml("InvalidRange", "The requested range is not satisfiable", rid, resource), rid)
            return True
        headers = object_headers(data, mtime) + [("Content-Type", "application/octet-stream")]
        if rng is None:
            send_simple(conn, r, 200, headers, data, rid)
        else:
            first, last = rng
            headers.append(("Content-Range", "bytes %d-%d/%d" % (first, last, len(data))))
            send_simple(conn, r, 206, headers, data[first:last + 1], rid)
        return True
    send_simple(conn, r, 405, [], b"", rid)
    return True


def range_of(r, data):
    rng = parse_range(r.headers.get("range", ""), len(data))
    if rng is None or rng == "invalid":
        return 0, len(data) - 1
    return rng


def apply_fault(conn, r, rule):
    """Applies `rule` to request `r`. Returns False when the connection is gone."""
    action = rule["action"]
    rid = request_id()
    sock = conn.sock

    if action == "close_mid_upload":
        after = int(rule.get("after", r.body_len // 2))
        got = conn.read(min(after, r.body_len)) if after > 0 else b""
        log_request(conn, r, action, received=len(got))
        rst(sock)
        return False
    if action == "stall_mid_upload":
        after = int(rule.get("after", r.body_len // 2))
        got = conn.read(min(after, r.body_len)) if after > 0 else b""
        log_request(conn, r, action, received=len(got))
        time.sleep(float(rule.get("seconds", 30)))
        rst(sock)
        return False
    if action == "respond_then_close":
        # A normal answer that keeps the connection "alive", then the server
        # closes it `delay` s later, as idle-timeout reapers do.
        read_body(conn, r)
        log_request(conn, r, action)
        serve_s3(conn, r, None)
        time.sleep(float(rule.get("delay", 0)))
        fin(sock)
        return False

    if action == "status" and rule.get("early"):
        # Answer before reading the body (as servers do for a refused
        # upload), then drain whatever the client still sends.
        log_request(conn, r, "status(early)", received=0)
        status = int(rule.get("status", 500))
        body = error_body(rule, status, rid, r.path)
        send_simple(conn, r, status, [("Content-Type", "application/xml"), ("Connection", "close")], body, rid)
        sock.settimeout(2.0)
        try:
            read_body(conn, r)
        except (ClientGone, OSError):
            pass
        fin(sock)
        return False

    # Every other action reads the whole request first.
    read_body(conn, r)

    if action in ("reset_before_status", "close_before_status"):
        log_request(conn, r, action)
        time.sleep(0.02)
        if action == "reset_before_status":
            rst(sock)
        else:
            fin(sock)
        return False
    if action == "head_with_body":
        # A HEAD answered with a body (a common proxy / server bug), sent in
        # a separate segment `delay` s after the headers.
        log_request(conn, r, action)
        status = int(rule.get("status", 404))
        body = error_xml(rule.get("code", "NoSuchKey"), "HEAD answered with a body", rid, r.path)
        conn.send(response_head(status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))], rid))
        time.sleep(float(rule.get("delay", 0.02)))
        conn.send(body)
        return True
    if action == "garbage":
        log_request(conn, r, action)
        conn.send(rule.get("text", "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n").encode("latin-1"))
        time.sleep(0.02)
        fin(sock)
        return False
    if action == "commit_then_reset":
        with LOCK:
            OBJECTS[r.key] = (r.body, time.time())
        log_request(conn, r, action)
        time.sleep(0.02)
        rst(sock)
        return False
    if action == "status":
        log_request(conn, r, action)
        status = int(rule.get("status", 500))
        body_kind = rule.get("body", "xml")
        if body_kind == "huge":
            total = int(rule.get("huge_bytes", 50 * 1024 * 1024))
            head = [("Content-Type", "application/xml"), ("Content-Length", str(total))]
            conn.send(response_head(status, head, rid))
            if r.method != "HEAD":
                block = (b"<Error><Code>" + rule.get("code", "SlowDown").encode() + b"</Code><Message>" +
                         b"x" * 65000 + b"</Message></Error>\n")
                block = (block * (1024 * 1024 // len(block) + 1))[: 1024 * 1024]
                sent = 0
                while sent < total:
                    n = min(len(block), total - sent)
                    conn.send(block[:n])
                    sent += n
            return True
        body = error_body(rule, status, rid, r.path)
        ctype = "text/html" if body_kind == "html" else "application/xml"
        hs = rule.get("headers", [])
        extra = list(hs.items() if isinstance(hs, dict) else ((k, v) for k, v in hs))
        send_simple(conn, r, status, ([("Content-Type", ctype)] if body else []) + extra, body, rid)
        return True
    if action in ("versioning", "store_raw"):
        if action == "store_raw":
            read_body(conn, r)
        log_request(conn, r, action)
        return serve_s3(conn, r, rule)
    if action == "stall" and rule.get("phase", "headers") == "status":
        log_request(conn, r, action)
        time.sleep(float(rule.get("seconds", 30)))
        fin(sock)
        return False

    # Actions that need the stored object: without one, behave normally.
    with LOCK:
        obj = OBJECTS.get(r.key)
    if obj is None or r.method not in ("GET", "HEAD"):
        log_request(conn, r, "none(" + action + ": no object)")
        return serve_s3(conn, r, None)
    data, mtime = obj
    first, last = range_of(r, data)
    part = data[first:last + 1]
    total = len(data)
    # A cut point inside the body (so a cut really cuts), 0 for a 1-byte body.
    # after="all": every byte of the range, then the fault (the end of the body is what breaks).
    cut = len(part) if rule.get("after") == "all" else max(0, min(int(rule.get("after", len(part) // 2)), len(part) - 1))
    base = object_headers(data, mtime) + [("Content-Type", "application/octet-stream")]
    cr = ("Content-Range", "bytes %d-%d/%d" % (first, last, total))
    log_request(conn, r, action)

    if action == "stall":
        conn.send(response_head(206, base + [cr, ("Content-Length", str(len(part)))], rid))
        time.sleep(float(rule.get("seconds", 30)))
        fin(sock)
        return False
    if action == "drip":
        conn.send(response_head(206, base + [cr, ("Content-Length", str(len(part)))], rid))
        interval = float(rule.get("interval", 1.0))
        for i in range(len(part)):
            conn.send(part[i:i + 1])
            time.sleep(interval)
        return True
    if action == "reset_mid_body":
        conn.send(response_head(206, base + [cr, ("Content-Length", str(len(part)))], rid))
        conn.send(part[:cut])
        time.sleep(0.1)  # let the client read what was sent before the RST discards it
        rst(sock)
        return False
    if action == "short_body":
        conn.send(response_head(206, base + [cr, ("Content-Length", str(len(part)))], rid))
        conn.send(part[:cut])
        fin(sock)
        return False
    if action == "short_body_nolength":
        conn.send(response_head(206, base + [cr, ("Connection", "close")], rid))
        conn.send(part[:cut])
        fin(sock)
        return False
    if action == "long_body":
        extra = b"\xee" * int(rule.get("extra", 100))
        mode = rule.get("mode", "length")
        if mode == "length":
            conn.send(response_head(206, base + [cr, ("Content-Length", str(len(part) + len(extra)))], rid))
            conn.send(part + extra)
            return True
        if mode == "trailing":
            # Honest headers for the range, then stray bytes after the body
            # (at once, or `delay` seconds later) on the kept-alive connection.
            conn.send(response_head(206, base + [cr, ("Content-Length", str(len(part)))], rid))
            delay = float(rule.get("delay", 0))
            if delay <= 0:
                conn.send(part + extra)
            else:
                conn.send(part)
                time.sleep(delay)
                conn.send(extra)
            return True
        if mode == "chunked":
            conn.send(response_head(206, base + [cr, ("Transfer-Encoding", "chunked")], rid))
            payload = part + extra
            step = 16384
            for i in range(0, len(payload), step):
                piece = payload[i:i + step]
                conn.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
            conn.send(b"0\r\n\r\n")
            return True
        conn.send(response_head(206, base + [cr, ("Connection", "close")], rid))
        conn.send(part + extra)
        fin(sock)
        return False
    if action == "bad_content_range":
        mode = rule.get("mode", "shifted")
        if mode == "shifted":
            s_first = min(first + 1, total - 1)
            s_last = min(last + 1, total - 1)
            body = data[s_first:s_last + 1]
            hdr = [("Content-Range", "bytes %d-%d/%d" % (s_first, s_last, total))]
        elif mode == "garbage":
            body = part
            hdr = [("Content-Range", "bytes %d+%d of %d" % (first, last, total))]
        elif mode == "wrong_total":
            body = part
            hdr = [("Content-Range", "bytes %d-%d/%d" % (first, last, last))]
        else:  # missing
            body = part
            hdr = []
        send_simple(conn, r, 206, base + hdr, body, rid)
        return True
    if action == "whole_object":
        send_simple(conn, r, 200, base, data, rid)
        return True
    if action == "chunked_cut":
        conn.send(response_head(206, base + [cr, ("Transfer-Encoding", "chunked")], rid))
        sent = 0
        while sent < cut:
            piece = part[sent:min(cut, sent + 8192)]
            conn.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
            sent += len(piece)
        time.sleep(0.05)
        fin(sock)
        return False
    raise ValueError("unknown action " + action)


# ---- proxy mode ------------------------------------------------------------
#
# With --upstream every S3 request is forwarded unchanged (request line, every
# header byte for byte, body) to a real server over one kept-alive upstream
# connection per client connection, and the answer is relayed back unchanged.
# With probability --fault-rate a request gets one fault instead, drawn
# uniformly from the kinds that apply to its method (PROXY_FAULTS).

PROXY_FAULTS = {
    # kind: (methods it applies to, what happens)
    "slowdown_503": (None, "not forwarded; 503 SlowDown"),
    "internal_500": (None, "not forwarded; 500 InternalError"),
    "reset_before_status": (None, "request read, not forwarded; RST"),
    "close_before_status": (None, "request read, not forwarded; FIN"),
    "stall": (None, "sleep --stall-seconds, then forwarded normally"),
    "reset_mid_body": ({"GET"}, "forwarded; headers + half the body, then RST"),
    "short_body": ({"GET"}, "forwarded; headers + half the body, then FIN"),
    "drip": ({"GET"}, "forwarded; the body in 8 pieces, --drip-seconds in all"),
    "commit_then_reset": ({"PUT"}, "forwarded and committed upstream, then RST (answer lost)"),
    "reset_mid_upload": ({"PUT"}, "half the body read, not forwarded; RST"),
    "upstream_cut_mid_upload": ({"PUT"}, "headers + half the body forwarded, then both connections RST"),
}


class Proxy:
    def __init__(self, upstream, rate, seed, kinds, stall_seconds, drip_seconds):
        import random
        u = urllib.parse.urlsplit(upstream)
        if u.scheme != "http" or not u.hostname:
            raise SystemExit("fault_server: --upstream must be http://HOST[:PORT]")
        self.addr = (u.hostname, u.port or 80)
        self.rate = rate
        self.rng = random.Random(seed)
        self.kinds = kinds
        self.stall_seconds = stall_seconds
        self.drip_seconds = drip_seconds
        self.paused = False
        self.zero()

    def zero(self):
        with LOCK:
            self.stats = {"requests": 0, "forwarded": 0, "injected": 0, "not_applicable": 0,
                          "upstream_errors": 0, "upstream_reconnects": 0, "committed_then_reset": 0}
            self.faults = {k: 0 for k in self.kinds}

    def draw(self, method):
        with LOCK:
            self.stats["requests"] += 1
            self.stats["requests." + method] = self.stats.get("requests." + method, 0) + 1
            if self.paused or self.rng.random() >= self.rate:
                return None
            fit = [k for k in self.kinds if PROXY_FAULTS[k][0] is None or method in PROXY_FAULTS[k][0]]
            return self.rng.choice(fit) if fit else None

    def count(self, name, kind=None):
        with LOCK:
            if kind is not None:
                self.faults[kind] += 1
            self.stats[name] += 1

    def snapshot(self):
        with LOCK:
            d = dict(self.stats)
            for k, v in self.faults.items():
                d["fault." + k] = v
            d["fault_rate"] = self.rate
            d["paused"] = self.paused
            return d


PROXY = [None]


class Upstream:
    """One kept-alive connection to the upstream server."""

    def __init__(self, proxy):
        self.proxy = proxy
        self.conn = None
        self.used = False

    def close(self, hard=False):
        if self.conn is not None:
            (rst if hard else fin)(self.conn.sock)
            self.conn = None

    def connect(self):
        s = socket.create_connection(self.proxy.addr, timeout=60)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = Conn(s)
        self.used = False

    def send(self, data):
        if self.conn is None:
            self.connect()
        self.conn.send(data)

    def exchange(self, head, body, method):
        """Sends a whole request, returns (status, raw head bytes, body bytes,
        close). A kept-alive connection that fails before any answer byte is
        replaced and the request sent once more (as HTTP clients do)."""
        for attempt in (1, 2):
            fresh = self.conn is None or not self.used
            try:
                self.send(head + body)
                return self.read_response(method)
            except (ClientGone, OSError):
                self.close(hard=True)
                if fresh or attempt == 2:
                    raise
                self.proxy.count("upstream_reconnects")
        raise ClientGone()

    def read_response(self, method):
        c = self.conn
        while True:
            line = c.readline()
            lines = [line]
            while True:
                h = c.readline()
                lines.append(h)
                if h == b"":
                    break
            parts = line.split(b" ", 2)
            status = int(parts[1])
            if 100 <= status < 200:
                continue  # we never send Expect; skip any interim answer
            break
        self.used = True
        headers = {}
        for h in lines[1:-1]:
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        close = headers.get("connection", "").lower() == "close"
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            raw = []
            while True:
                size_line = c.readline()
                raw.append(size_line + b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while True:
                        t = c.readline()
                        raw.append(t + b"\r\n")
                        if t == b"":
                            break
                    break
                raw.append(c.read(size + 2))
            body = b"".join(raw)
        elif "content-length" in headers:
            body = c.read(int(headers["content-length"]))
        else:
            chunks = [c.buf]
            c.buf = b""
            while True:
                try:
                    c._fill()
                except ClientGone:
                    break
                chunks.append(c.buf)
                c.buf = b""
            body = b"".join(chunks)
            close = True
        if close:
            self.close()
        return status, b"\r\n".join(lines) + b"\r\n", body, close, headers


def proxy_error(conn, r, status, code, message):
    rid = request_id()
    body = error_xml(code, message, rid, r.path)
    send_simple(conn, r, status, [("Content-Type", "application/xml")], body, rid)


def proxy_request(conn, r, up):
    """Forwards `r`, maybe with a fault. Returns False when the client
    connection must close."""
    proxy = PROXY[0]
    kind = proxy.draw(r.method)
    head = b"\r\n".join(r.head) + b"\r\n\r\n"
    sock = conn.sock

    if kind == "reset_mid_upload" and r.body_len >= 2:
        conn.read(r.body_len // 2)
        proxy.count("injected", kind)
        rst(sock)
        return False
    if kind == "upstream_cut_mid_upload" and r.body_len >= 2:
        half = conn.read(r.body_len // 2)
        try:
            if up.conn is None or up.used:
                up.close()
                up.connect()
            up.send(head + half)
            time.sleep(0.02)
        except (ClientGone, OSError):
            pass
        up.close(hard=True)
        proxy.count("injected", kind)
        rst(sock)
        return False
    read_body(conn, r)
    body = r.raw_body  # forwarded as received (aws-chunked framing included)
    if kind in ("reset_mid_upload", "upstream_cut_mid_upload"):
        proxy.count("not_applicable")  # an empty body: forwarded as it is
        kind = None

    if kind in ("slowdown_503", "internal_500"):
        proxy.count("injected", kind)
        if kind == "slowdown_503":
            proxy_error(conn, r, 503, "SlowDown", "Please reduce your request rate.")
        else:
            proxy_error(conn, r, 500, "InternalError", "We encountered an internal error. Please try again.")
        return True
    if kind in ("reset_before_status", "close_before_status"):
        proxy.count("injected", kind)
        time.sleep(0.01)
        (rst if kind == "reset_before_status" else fin)(sock)
        return False
    if kind == "stall":
        proxy.count("injected", kind)
        time.sleep(proxy.stall_seconds)

    try:
        status, rhead, rbody, close, rh = up.exchange(head, body, r.method)
    except (ClientGone, OSError, ValueError, IndexError) as e:
        # The upstream failed on its own: tell the client as a gateway would.
        proxy.count("upstream_errors")
        print("fault_server: upstream: %r" % (e,), file=sys.stderr)
        up.close(hard=True)
        proxy_error(conn, r, 502, "BadGateway", "upstream failed")
        return True
    proxy.count("forwarded")

    if kind == "commit_then_reset":
        proxy.count("injected", kind)
        if 200 <= status < 300:
            proxy.count("committed_then_reset")
        rst(sock)
        return False
    body_kind = kind in ("reset_mid_body", "short_body", "drip")
    if body_kind and not (status in (200, 206) and "content-length" in rh and len(rbody) >= 2):
        proxy.count("not_applicable")  # e.g. a 404: relayed as it is
        body_kind = False
    if body_kind:
        proxy.count("injected", kind)
        conn.send(rhead)
        if kind == "drip":
            step = (len(rbody) + 7) // 8
            for i in range(0, len(rbody), step):
                conn.send(rbody[i:i + step])
                time.sleep(proxy.drip_seconds / 8)
            return not close
        conn.send(rbody[:len(rbody) // 2])
        if kind == "reset_mid_body":
            time.sleep(0.02)  # let the client read what was sent before the RST discards it
            rst(sock)
        else:
            fin(sock)
        return False
    conn.send(rhead + rbody)
    return not close


def proxy_control(conn, r):
    """Proxy-mode control endpoints; False when `r` is not one of them."""
    proxy = PROXY[0]
    if r.path == "/_fault/stats" and r.method == "GET":
        read_body(conn, r)
        rid = request_id()
        send_simple(conn, r, 200, [("Content-Type", "application/json")],
                    json.dumps(proxy.snapshot(), sort_keys=True).encode(), rid)
        return True
    if r.method == "POST" and r.path in ("/_fault/stats/reset", "/_fault/pause", "/_fault/resume"):
        read_body(conn, r)
        if r.path == "/_fault/stats/reset":
            proxy.zero()
        else:
            with LOCK:
                proxy.paused = r.path == "/_fault/pause"
        send_simple(conn, r, 200, [("Content-Type", "text/plain")], b"ok", request_id())
        return True
    return False


def handle_conn(sock):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = Conn(sock)
    up = Upstream(PROXY[0]) if PROXY[0] is not None else None
    try:
        while True:
            r = read_request(conn)
            if r is None:
                break
            if r.path.startswith("/_fault/"):
                if up is None or not proxy_control(conn, r):
                    handle_control(conn, r)
            elif up is not None:
                if not proxy_request(conn, r, up):
                    return
            else:
                rule = match_rule(r)
                if rule is None or rule["action"] == "versioning" and not (r.key == "" and "versioning" in r.query):
                    read_body(conn, r)
                    log_request(conn, r, "none")
                    ok = serve_s3(conn, r, None)
                else:
                    ok = apply_fault(conn, r, rule)
                if not ok:
                    return
            if r.headers.get("connection", "").lower() == "close":
                break
    except ClientGone:
        pass
    except Exception as e:  # noqa: BLE001 - keep serving other connections
        print("fault_server: %r" % (e,), file=sys.stderr)
    finally:
        if up is not None:
            up.close()
    fin(sock)


def exit_when_stdin_closes():
    """With --watch-stdin: exit as soon as the parent (the test) goes away,
    even if it crashed and never sent a signal."""
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except OSError:
        pass
    os._exit(0)


def parse_args(argv):
    import argparse
    p = argparse.ArgumentParser(description="A fault-injecting S3 server, or with --upstream a fault-injecting "
                                "proxy in front of a real one (see the module docstring).")
    p.add_argument("--watch-stdin", action="store_true", help="exit when stdin reaches end of file")
    p.add_argument("--port", type=int, default=0,
                   help="listen port (default: a free one, from CACHESTORE_PORT_RANGE=LOW-HIGH when set)")
    p.add_argument("--upstream", help="proxy mode: forward to this http://HOST:PORT")
    p.add_argument("--fault-rate", type=float, default=0.0, help="proxy mode: probability of a fault per request")
    p.add_argument("--seed", type=int, default=1, help="proxy mode: seed of the fault draws")
    p.add_argument("--faults", default=",".join(PROXY_FAULTS),
                   help="proxy mode: comma-separated fault kinds (default: all)")
    p.add_argument("--stall-seconds", type=float, default=0.5, help="proxy mode: length of a stall")
    p.add_argument("--drip-seconds", type=float, default=0.2, help="proxy mode: length of a drip")
    p.add_argument("--tls-cert", help="serve https with this PEM certificate (and --tls-key)")
    p.add_argument("--tls-key", help="the private key of --tls-cert")
    a = p.parse_args(argv)
    kinds = [k for k in a.faults.split(",") if k]
    bad = [k for k in kinds if k not in PROXY_FAULTS]
    if bad:
        p.error("unknown fault kind(s) %s; known: %s" % (",".join(bad), ",".join(PROXY_FAULTS)))
    if not 0.0 <= a.fault_rate <= 1.0:
        p.error("--fault-rate must be between 0 and 1")
    a.kinds = kinds
    return a


def listen_socket(port):
    """A socket listening on 127.0.0.1:port; port 0 is a free port, drawn from
    CACHESTORE_PORT_RANGE=LOW-HIGH (inclusive) when that is set."""
    def try_listen(p, must):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", p))
            s.listen(128)
            return s
        except OSError:
            s.close()
            if must:
                raise
            return None
    spec = os.environ.get("CACHESTORE_PORT_RANGE", "")
    if port or not spec:
        return try_listen(port, True)
    def die(msg):
        # os._exit: the --watch-stdin thread may be blocked reading stdin.
        sys.stderr.write("fault_server.py: %s\n" % msg)
        sys.stderr.flush()
        os._exit(2)
    import random
    import re
    m = re.fullmatch(r"([0-9]{1,5})-([0-9]{1,5})", spec)
    lo, hi = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    if not m or not 1 <= lo <= hi <= 65535:
        die("CACHESTORE_PORT_RANGE=%r is not LOW-HIGH (ports 1-65535, LOW <= HIGH)" % spec)
    ports = list(range(lo, hi + 1))
    random.shuffle(ports)
    for p in ports:
        s = try_listen(p, False)
        if s is not None:
            return s
    die("no free port on 127.0.0.1 in CACHESTORE_PORT_RANGE=%s; widen the range" % spec)


def main():
    args = parse_args(sys.argv[1:])
    if args.watch_stdin:
        threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    if args.upstream:
        PROXY[0] = Proxy(args.upstream, args.fault_rate, args.seed, args.kinds, args.stall_seconds,
                         args.drip_seconds)
    srv = listen_socket(args.port)
    print("PORT %d" % srv.getsockname()[1], flush=True)
    tls = None
    if args.tls_cert:
        import ssl
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    while True:
        s, _ = srv.accept()
        threading.Thread(target=handle_tls_conn if tls else handle_conn, args=(s, tls) if tls else (s,),
                         daemon=True).start()


def handle_tls_conn(sock, tls):
    """The TLS handshake on the connection's own thread (a failed one, e.g.
    a client refusing the certificate, only ends this connection)."""
    try:
        sock = tls.wrap_socket(sock, server_side=True)
    except OSError:
        sock.close()
        return
    handle_conn(sock)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
