#!/usr/bin/env python3
"""Memory per idle open connection of a running daemon.

Opens N connections to HOST:PORT, each a complete TLS handshake with ALPN h2,
the HTTP/2 client preface and an empty SETTINGS frame, then sends nothing
more; reads the daemon's VmRSS (/proc/PID/status) before and after, and prints
the growth per connection. Sources are spread over 127.0.0.0/8 (127.0.0.2,
127.0.0.3, ...) so that the per-source cap is not what is measured; start
the daemon with FIRST_REQUEST_TIMEOUT and MAX_CONNECTIONS large enough.

Usage: bench/idle_conns.py PID HOST PORT N [PER_SOURCE]
"""
import resource
import socket
import ssl
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS")


def main():
    pid, host, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    per_source = int(sys.argv[5]) if len(sys.argv) > 5 else 100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    time.sleep(0.5)
    before = rss_kib(pid)
    conns = []
    for i in range(n):
        src = "127.0.%d.%d" % ((2 + i // per_source) // 250, 2 + (i // per_source) % 250)
        raw = socket.create_connection((host, port), timeout=10, source_address=(src, 0))
        s = ctx.wrap_socket(raw)
        if s.selected_alpn_protocol() != "h2":
            raise SystemExit("no h2")
        s.sendall(PREFACE)
        conns.append(s)
    time.sleep(2)
    after = rss_kib(pid)
    print(f"connections {n} rss_before_kib {before} rss_after_kib {after} "
          f"per_connection_kib {(after - before) / n:.1f}")
    for s in conns:
        s.close()


if __name__ == "__main__":
    main()
