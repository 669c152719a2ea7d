#!/usr/bin/env python3
"""A fault-injecting S3 server for the cachestore fault tests (stdlib only).

    python3 fault_server.py [--watch-stdin]

Listens on 127.0.0.1 on a free port and prints "PORT <n>" as the first line of
stdout. With --watch-stdin it exits when its standard input reaches end of
file (the test holds the other end of a pipe, so a crashed test leaves no
server behind). Speaks enough path-style S3 to be a working object store:

    PUT /bucket/key           (If-None-Match: * -> 412 when the key exists)
    GET /bucket/key           (Range: bytes=a-b, a-, -n; 206 / 416 InvalidRange)
    HEAD /bucket/key          (no body)
    DELETE /bucket/key        (204, also when absent)
    GET /bucket?versioning    (VersioningConfiguration, empty unless scripted)

HTTP/1.1 keep-alive, one thread per connection. Signatures are not checked.
An object is stored only after its whole body arrived.

Control endpoints (never logged, never faulted):

    POST /_fault/script   body: JSON list of rules (replaces the current ones)
    POST /_fault/reset    forget rules, objects and the log
    POST /_fault/clearlog forget the log only
    GET  /_fault/log      JSON list of the S3 requests that arrived
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
    while True:
        h = conn.readline()
        if h == b"":
            break
        name, _, value = h.decode("latin-1").partition(":")
        r.headers[name.strip().lower()] = value.strip()
    u = urllib.parse.urlsplit(r.target)
    r.path = urllib.parse.unquote(u.path)
    r.query = u.query
    segs = r.path.lstrip("/").split("/", 1)
    r.bucket = segs[0]
    r.key = segs[1] if len(segs) > 1 else ""
    r.body = b""
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


def log_request(conn, r, action, received=None):
    entry = {
        "conn": conn.id,
        "method": r.method,
        "bucket": r.bucket,
        "key": r.key,
        "query": r.query,
        "range": r.headers.get("range", ""),
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
        send_simple(conn, r, status, [("Content-Type", ctype)] if body else [], body, rid)
        return True
    if action == "versioning":
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
    cut = max(0, min(int(rule.get("after", len(part) // 2)), len(part) - 1))
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


def handle_conn(sock):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = Conn(sock)
    try:
        while True:
            r = read_request(conn)
            if r is None:
                break
            if r.path.startswith("/_fault/"):
                handle_control(conn, r)
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


def main():
    if "--watch-stdin" in sys.argv[1:]:
        threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)
    print("PORT %d" % srv.getsockname()[1], flush=True)
    while True:
        s, _ = srv.accept()
        threading.Thread(target=handle_conn, args=(s,), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
