/*
 * tlsterm.h: TLS termination contexts for the front door (OpenSSL 3).
 *
 * One SSL_CTX per credentials generation, built once from the snapshot's
 * serving certificate and key when the store's generation moves, then
 * swapped in; connections already handed an SSL keep the context they
 * started with (SSL objects hold a reference). The chain is built once per
 * context, never per handshake. Policy: TLS 1.2 and 1.3, gRPC's cipher
 * list, groups X25519 then P-256 then P-384, ALPN "h2" required, no client
 * certificate, no SNI, no session tickets or cache (workers never resume).
 */
#ifndef TCS_TLSTERM_H
#define TCS_TLSTERM_H

#include <stddef.h>

#include <openssl/ssl.h>

struct creds;
struct credstore;
struct tlsterm;

/*
 * Builds a server context from a snapshot. Returns a new SSL_CTX (free with
 * SSL_CTX_free) or NULL with a one-line reason in err. Any thread.
 */
SSL_CTX *tlsterm_build(const struct creds *, char *err, size_t errlen);

/*
 * A holder of the current context, built from the store's current snapshot.
 * Returns NULL with a reason in err (no snapshot, or it does not build).
 */
struct tlsterm *tlsterm_new(struct credstore *, char *err, size_t errlen);
void            tlsterm_free(struct tlsterm *);

/*
 * The context for a new connection, with one reference for the caller
 * (SSL_CTX_free it after SSL_new). Rebuilds first when the generation moved
 * and the serving pair changed; a context that fails to build is logged and
 * the previous one stays. Any thread.
 */
SSL_CTX *tlsterm_acquire(struct tlsterm *);

/* 1 if the handshake of `ssl` negotiated ALPN "h2". */
int tlsterm_is_h2(const SSL *);

#endif /* TCS_TLSTERM_H */
