#!/usr/bin/python3
"""Fault-injecting stand-in for the parts of kube-apiserver the daemon uses.

It runs beside the real apiserver (tests/e2e/run.sh) for what a real server
cannot do on demand: a 429 with Retry-After, an event torn into tiny chunks,
an ERROR 410 at a chosen moment, an HTTP 410, an oversized event, a 401 after
the token rotated. Python standard library only; HTTPS on 127.0.0.1.

Usage: fakeapi.py --cert C --key K --state DIR --ca-secret NAME --tls-secret NAME --ns NS
DIR holds: port (written at start), requests.jsonl (one line per request),
token (the bearer token accepted; re-read on every request), secrets/<name>.json
(the "data" map of each Secret, base64 values), and control files the test
creates: "flip" (the CA watch in step 'hold_until_flip' ends; the token file is
then read again, so the old token gets 401).

The CA Secret follows a fixed script, one step per request:
  1 LIST  -> 429, Retry-After: 1
  2 LIST  -> 200, list RV 100
  3 WATCH -> MODIFIED (secrets/<ca>-next.json, RV 101) written 1-7 bytes per
             chunk, then ERROR 410, end
  4 LIST  -> 200, list RV 200
  5 WATCH -> one 3 MiB line (oversized), then hold
  6 LIST  -> 200, list RV 300
  7 WATCH -> HTTP 410 (Status)
  8 LIST  -> 200, list RV 400
  9 WATCH -> bookmarks every 0.5 s until the file "flip" exists, then end
 10 WATCH -> MODIFIED (secrets/<ca>-last.json, RV 402), then bookmarks
Any other request for it is answered 500 and logged as unexpected. The
serving Secret is listed (RV 100) and then watched with bookmarks forever.
"""
import argparse
import json
import os
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None
LOCK = threading.Lock()
CA_STEP = [0]
STOP = threading.Event()


def state(*p):
    return os.path.join(ARGS.state, *p)


def log_request(rec):
    rec["t"] = time.time()
    with LOCK, open(state("requests.jsonl"), "a") as f:
        f.write(json.dumps(rec) + "\n")


def secret(name, rv, data_file=None):
    with open(state("secrets", (data_file or name) + ".json")) as f:
        data = json.load(f)
    return {"kind": "Secret", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": ARGS.ns, "resourceVersion": str(rv),
                         "uid": "00000000-0000-4000-8000-00000000000" + ("1" if name == ARGS.ca_secret else "2")},
            "type": "Opaque", "data": data}


def status(code, reason, msg):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": msg, "reason": reason, "code": code}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send_json(self, code, obj, extra=None):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def start_stream(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def chunk(self, b):
        self.wfile.write(b"%x\r\n" % len(b) + b + b"\r\n")
        self.wfile.flush()

    def end_stream(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def event(self, typ, obj):
        self.chunk((json.dumps({"type": typ, "object": obj}) + "\n").encode())

    def bookmark(self, rv):
        self.event("BOOKMARK", {"kind": "Secret", "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)}})

    def hold(self, rv, until=None, limit=120):
        end = time.time() + limit
        while time.time() < end and not STOP.is_set():
            if until is not None and until():
                return
            self.bookmark(rv)
            time.sleep(0.5)

    def do_GET(self):
        try:
            self.serve()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the daemon hung up (shutdown, or it refused an oversized event)

    def serve(self):
        u = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        parts = u.path.strip("/").split("/")
        with open(state("token")) as f:
            want = f.read().strip()
        auth = self.headers.get("Authorization", "")
        sel = q.get("fieldSelector", "")
        name = sel.split("=", 1)[1] if sel.startswith("metadata.name=") else ""
        watch = q.get("watch") in ("1", "true")
        rec = {"path": u.path, "name": name, "watch": watch, "rv": q.get("resourceVersion"),
               "timeoutSeconds": q.get("timeoutSeconds"), "bookmarks": q.get("allowWatchBookmarks"),
               "auth": "ok" if auth == "Bearer " + want else "bad"}
        if parts[:4] != ["api", "v1", "namespaces", ARGS.ns] or parts[4:] != ["secrets"] or not name:
            rec["status"] = 404
            log_request(rec)
            return self.send_json(404, status(404, "NotFound", "not served by fakeapi"))
        if rec["auth"] != "ok":
            rec["status"] = 401
            log_request(rec)
            return self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
        if name == ARGS.ca_secret:
            return self.ca_script(rec, watch)
        if name == ARGS.tls_secret:
            rec["status"] = 200
            log_request(rec)
            if not watch:
                return self.send_json(200, {"kind": "SecretList", "apiVersion": "v1",
                                            "metadata": {"resourceVersion": "100"},
                                            "items": [secret(name, 50)]})
            self.start_stream()
            self.hold(100)
            return self.end_stream()
        rec["status"] = 404
        log_request(rec)
        self.send_json(404, status(404, "NotFound", "no such Secret"))

    def ca_list(self, rv):
        self.send_json(200, {"kind": "SecretList", "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)},
                             "items": [secret(ARGS.ca_secret, rv - 1, ARGS.ca_secret + ("" if rv == 100 else "-next"))]})

    def ca_script(self, rec, watch):
        with LOCK:
            CA_STEP[0] += 1
            step = CA_STEP[0]
        rec["step"] = step
        expect_watch = step in (3, 5, 7, 9, 10)
        if step > 10 or watch != expect_watch:
            rec["status"] = 500
            rec["unexpected"] = True
            log_request(rec)
            return self.send_json(500, status(500, "InternalError", "unexpected request in step %d" % step))
        rec["status"] = {1: 429, 7: 410}.get(step, 200)
        log_request(rec)
        if step == 1:
            return self.send_json(429, status(429, "TooManyRequests", "slow down"), {"Retry-After": "1"})
        if step in (2, 4, 6, 8):
            return self.ca_list({2: 100, 4: 200, 6: 300, 8: 400}[step])
        if step == 7:
            return self.send_json(410, status(410, "Gone", "too old resource version"))
        self.start_stream()
        if step == 3:
            line = (json.dumps({"type": "MODIFIED",
                                "object": secret(ARGS.ca_secret, 101, ARGS.ca_secret + "-next")}) + "\n").encode()
            i, n = 0, 1
            while i < len(line):
                self.chunk(line[i:i + n])
                i += n
                n = n % 7 + 1
                if i % 97 == 0:
                    time.sleep(0.001)
            self.event("ERROR", status(410, "Expired", "too old resource version: 101 (150)"))
            return self.end_stream()
        if step == 5:
            big = b'{"type":"MODIFIED","object":{"kind":"Secret","metadata":{"resourceVersion":"201"},"data":{"x":"'
            self.chunk(big)
            filler = b"A" * 65536
            for _ in range(48):  # 3 MiB, more than the daemon's 2 MiB line limit
                try:
                    self.chunk(filler)
                except OSError:
                    return  # the daemon hung up, as it should
            self.chunk(b'"}}}\n')
            self.hold(201, limit=30)
            return self.end_stream()
        if step == 9:
            self.hold(400, until=lambda: os.path.exists(state("flip")))
            return self.end_stream()
        if step == 10:
            self.event("MODIFIED", secret(ARGS.ca_secret, 402, ARGS.ca_secret + "-last"))
            self.hold(402, limit=600)
            return self.end_stream()


def main():
    global ARGS
    p = argparse.ArgumentParser()
    for a in ("--cert", "--key", "--state", "--ca-secret", "--tls-secret", "--ns"):
        p.add_argument(a, required=True)
    ARGS = p.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(ARGS.cert, ARGS.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    with open(state("port.tmp"), "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(state("port.tmp"), state("port"))
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        STOP.set()


if __name__ == "__main__":
    main()
