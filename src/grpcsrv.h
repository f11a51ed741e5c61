/*
 * grpcsrv.h: the Talos SecurityService over gRPC C core (TLS, ALPN h2).
 *
 * gRPC is confined to this server and its client twin grpccli.c (the
 * `request` subcommand); no other file includes <grpc/...>. It owns
 * the gRPC server, its completion queue and the threads that drain it (one
 * per core by default). Each Certificate call runs entirely on the CQ thread
 * that received it: acquire the credential snapshot, run the certpipe.h
 * pipeline (token, decode, sign through the issuer hook, status), reply,
 * release. Unknown methods are answered
 * UNIMPLEMENTED at once. It listens on nothing and terminates no TLS: the
 * front door (frontdoor.h) accepts, terminates TLS, guards the HTTP/2 stream
 * and hands the plaintext over with grpcsrv_add_fd().
 */
#ifndef TCS_GRPCSRV_H
#define TCS_GRPCSRV_H

#include <stddef.h>
#include <stdint.h>

struct certpipe_issuer;
struct config;
struct credstore;
struct grpcsrv;
struct ratelimit;

/*
 * Initialises gRPC and starts serving connections handed over with
 * grpcsrv_add_fd(). `rl` may be NULL (no rate limit). Each Certificate call
 * goes through certpipe_run() with `issuer` (copied) as its sign step.
 * Returns NULL with a one-line reason in err.
 */
struct grpcsrv *grpcsrv_start(const struct config *, struct credstore *, struct ratelimit *rl,
    const struct certpipe_issuer *issuer, char *err, size_t errlen);
/* The number of completion-queue workers grpcsrv_start() will run. */
int grpcsrv_nthreads(const struct config *);
/*
 * Hands a connected plaintext HTTP/2 descriptor to gRPC, which owns it from
 * now on (on failure it is closed here). `peer_ip` is the client's real
 * address as text, used for the audit record, the rate limit and the
 * peer-IP policy. 0, or -1 once shutting down. Any thread.
 */
int grpcsrv_add_fd(struct grpcsrv *, int fd, const char *peer_ip);
/*
 * Stops accepting, lets in-flight calls finish for up to grace_ms, cancels
 * the rest, joins the threads and frees everything (including gRPC's global
 * state). Main thread only.
 */
void grpcsrv_shutdown(struct grpcsrv *, int64_t grace_ms);

/* Versions of the libraries this module uses, for --version. */
const char *grpcsrv_grpc_version(void);
const char *grpcsrv_protobuf_c_version(void);

/* Exposed for tests: "ipv4:1.2.3.4:5" / "ipv6:%5B::1%5D:5" -> "1.2.3.4" / "::1". */
int grpcsrv_peer_ip(const char *peer, char *out, size_t outlen);

#endif /* TCS_GRPCSRV_H */
