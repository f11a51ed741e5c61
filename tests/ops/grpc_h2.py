#!/usr/bin/env python3
"""Minimal gRPC-over-HTTP/2 client and fake servers for tests/ops/run.sh.

Why not a gRPC library: the rate-limit tests need the client socket bound
to a chosen loopback source address (127.0.0.2, 127.1.x.y, ...), which no
gRPC client exposes. This speaks just enough gRPC (unary call, TLS with
ALPN h2, the server certificate verified against a CA with the dialed IP as
the name) on top of the `h2` package from PyPI.

  call   --target IP:PORT --ca FILE [--source IP] [--token-file F] --csr F [--count N]
         one connection, N sequential Certificate calls; prints each grpc-status
  spray  --target IP:PORT --ca FILE --first I --count N [--threads T]
         N connections, each from its own source address 127.(1+..).x.y, one
         call without a token each; prints {"status": count, ...} as JSON
  serve  --cert F --key F --ca F --mode silent|badcrt|noalpn --port-file F
         a fake signer on 127.0.0.1: silent never answers, badcrt answers with
         a certificate that does not match the request's key, noalpn completes
         TLS without selecting h2. Runs until killed.
"""

import argparse
import json
import socket
import ssl
import sys
import threading

import h2.config
import h2.connection
import h2.events

METHOD = "/securityapi.SecurityService/Certificate"


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_bytes(field, data):
    return bytes([(field << 3) | 2]) + varint(len(data)) + data


def grpc_frame(msg):
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


def client_context(ca):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["h2"])
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def connect(ctx, host, port, source, timeout=10.0):
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.settimeout(timeout)
    if source:
        sock.bind((source, 0))
    sock.connect((host, port))
    tls = ctx.wrap_socket(sock, server_hostname=host)
    if tls.selected_alpn_protocol() != "h2":
        raise RuntimeError("server did not select h2")
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    tls.sendall(conn.data_to_send())
    return tls, conn


def call(tls, conn, authority, stream_id, token, csr):
    headers = [
        (":method", "POST"), (":scheme", "https"), (":path", METHOD),
        (":authority", authority), ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    if token is not None:
        headers.append(("token", token))
    conn.send_headers(stream_id, headers)
    conn.send_data(stream_id, grpc_frame(pb_bytes(1, csr)), end_stream=True)
    tls.sendall(conn.data_to_send())
    status = None
    while True:
        data = tls.recv(65536)
        if not data:
            raise RuntimeError("connection closed before the status")
        for ev in conn.receive_data(data):
            if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                for k, v in ev.headers:
                    if k in (b"grpc-status", "grpc-status"):
                        status = int(v)
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == stream_id:
                raise RuntimeError("stream reset (error %s)" % ev.error_code)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == stream_id:
                out = conn.data_to_send()
                if out:
                    tls.sendall(out)
                if status is None:
                    raise RuntimeError("no grpc-status")
                return status
        out = conn.data_to_send()
        if out:
            tls.sendall(out)


def split_target(t):
    host, _, port = t.rpartition(":")
    return host.strip("[]"), int(port)


def cmd_call(a):
    host, port = split_target(a.target)
    token = None
    if a.token_file:
        with open(a.token_file) as f:
            token = f.read().strip()
    with open(a.csr, "rb") as f:
        csr = f.read()
    tls, conn = connect(client_context(a.ca), host, port, a.source)
    try:
        for i in range(a.count):
            print(call(tls, conn, a.target, 1 + 2 * i, token, csr), flush=True)
    finally:
        tls.close()


def source_for(i):
    # 127.1.0.1 upwards; 255 * 254 addresses per second octet step.
    return "127.%d.%d.%d" % (1 + i // (255 * 254), (i // 254) % 255, 1 + i % 254)


def cmd_spray(a):
    host, port = split_target(a.target)
    ctx = client_context(a.ca)
    counts = {}
    lock = threading.Lock()
    idx = iter(range(a.first, a.first + a.count))

    def worker():
        while True:
            with lock:
                i = next(idx, None)
            if i is None:
                return
            try:
                tls, conn = connect(ctx, host, port, source_for(i))
                try:
                    st = str(call(tls, conn, a.target, 1, None, b"x"))
                finally:
                    tls.close()
            except Exception as e:  # counted, reported, asserted by the caller
                st = "error:" + type(e).__name__
            with lock:
                counts[st] = counts.get(st, 0) + 1

    threads = [threading.Thread(target=worker) for _ in range(a.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(counts, sort_keys=True))


def serve_conn(tls, a):
    if a.mode in ("silent", "noalpn"):
        try:
            while tls.recv(65536):
                pass
        except OSError:
            pass
        return
    with open(a.ca, "rb") as f:
        ca = f.read()
    with open(a.cert, "rb") as f:
        crt = f.read()  # the server's own certificate: not the requester's key
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    tls.sendall(conn.data_to_send())
    while True:
        data = tls.recv(65536)
        if not data:
            return
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                sid = ev.stream_id
                conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
                conn.send_data(sid, grpc_frame(pb_bytes(1, ca) + pb_bytes(2, crt)))
                conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
        out = conn.data_to_send()
        if out:
            tls.sendall(out)


def cmd_serve(a):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    if a.mode != "noalpn":
        ctx.set_alpn_protocols(["h2"])
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(ls.getsockname()[1]))
    import os
    os.rename(a.port_file + ".tmp", a.port_file)

    def handle(raw):
        try:
            with ctx.wrap_socket(raw, server_side=True) as tls:
                serve_conn(tls, a)
        except (OSError, ssl.SSLError):
            pass

    while True:
        raw, _ = ls.accept()
        threading.Thread(target=handle, args=(raw,), daemon=True).start()


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("call")
    c.add_argument("--target", required=True)
    c.add_argument("--ca", required=True)
    c.add_argument("--source")
    c.add_argument("--token-file")
    c.add_argument("--csr", required=True)
    c.add_argument("--count", type=int, default=1)
    s = sub.add_parser("spray")
    s.add_argument("--target", required=True)
    s.add_argument("--ca", required=True)
    s.add_argument("--first", type=int, default=0)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--threads", type=int, default=4)
    v = sub.add_parser("serve")
    v.add_argument("--cert", required=True)
    v.add_argument("--key", required=True)
    v.add_argument("--ca", required=True)
    v.add_argument("--mode", choices=["silent", "badcrt", "noalpn"], required=True)
    v.add_argument("--port-file", required=True)
    a = p.parse_args()
    {"call": cmd_call, "spray": cmd_spray, "serve": cmd_serve}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
