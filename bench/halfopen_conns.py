#!/usr/bin/env python3
"""Memory per half-open TLS handshake of a running daemon.

Opens N TCP connections to 127.0.0.1:PORT and sends each the same TLS
ClientHello (ALPN h2), then never answers the server's flight: the daemon
holds N handshakes in progress. Prints the growth of the daemon's VmRSS per
connection. Sources are spread over 127.0.0.0/8; start the daemon with
HANDSHAKE_TIMEOUT and MAX_CONNECTIONS large enough.

Usage: bench/halfopen_conns.py PID PORT N
"""
import resource, socket, ssl, sys, time
pid, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],)*2)
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"): return int(l.split()[1])
ctx = ssl.create_default_context(); ctx.check_hostname=False; ctx.verify_mode=ssl.CERT_NONE; ctx.set_alpn_protocols(["h2"])
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
o = ctx.wrap_bio(inc, out)
try: o.do_handshake()
except ssl.SSLWantReadError: pass
hello = out.read()
time.sleep(0.5); a = rss(); socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), source_address=("127.0.%d.%d" % (3 + i // 25000, 2 + (i // 100) % 250), 0))
    s.sendall(hello); socks.append(s)
time.sleep(2); b = rss()
print(f"half-open {n} rss_before_kib {a} rss_after_kib {b} per_connection_kib {(b-a)/n:.1f}")
