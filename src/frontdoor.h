/*
 * frontdoor.h: the daemon's front door on the gRPC port.
 *
 * It owns the listening sockets and every client connection: admission
 * (an EMFILE-safe accept loop, a global and a per-source connection cap,
 * handshake, first-request and lifetime deadlines), TLS termination
 * (tlsterm.h), the HTTP/2 frame guard (h2guard.h), and the handoff of the
 * guarded plaintext to the gRPC core over a private AF_UNIX socketpair
 * (grpcsrv_add_fd()). The gRPC core itself never sees the network.
 *
 * One thread of its own runs the event loop. The functions below are for
 * main only.
 */
#ifndef TCS_FRONTDOOR_H
#define TCS_FRONTDOOR_H

#include <stddef.h>
#include <stdint.h>

struct config;
struct credstore;
struct frontdoor;
struct grpcsrv;

/*
 * Raises RLIMIT_NOFILE to its hard limit, builds the first TLS context from
 * the store's snapshot, binds PORT on LISTEN_ADDRESS (every address when
 * empty), logs "listening" per address and starts the thread. Returns NULL
 * with a one-line reason in err.
 */
struct frontdoor *frontdoor_start(
    const struct config *, struct credstore *, struct grpcsrv *, char *err, size_t errlen);
/* The bound port (useful with PORT=0). */
int frontdoor_port(const struct frontdoor *);
/*
 * Shutdown step 1 (see frontdoor.c): closes the listeners and drains every
 * connection, with gRPC still serving; waits up to `ms` for all of them to
 * be quiet or gone, then does frontdoor_stop_accepting(). 1 if all were
 * quiet, 0 if time ran out.
 */
int frontdoor_drain(struct frontdoor *, int64_t ms);
/*
 * Closes the listeners: open connections keep being relayed, new
 * handshakes are no longer handed to gRPC. Returns once done; from then on
 * the front door never calls grpcsrv_add_fd(), so gRPC may be shut down.
 */
void frontdoor_stop_accepting(struct frontdoor *);
/*
 * Stops the thread and frees everything: connections first get FD_FLUSH_MS
 * to deliver what gRPC sent before it closed them. NULL is fine.
 */
void frontdoor_free(struct frontdoor *);

#endif /* TCS_FRONTDOOR_H */
