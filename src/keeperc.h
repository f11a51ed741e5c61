/*
 * keeperc.h: the network side's end of the keeper (keeper.h), the process
 * that alone holds the CA key.
 *
 * The network side keeps its own credential store, filled only with what
 * serving needs (serving certificate and key, token digests, the public CA
 * bundle, the expiry dates): a reader thread applies every KP_CREDS and
 * KP_WAITING the keeper sends. Each Certificate call's sign step goes to the
 * keeper through keeperc_submit() (a certpipe issuer's submit hook): the
 * request is written on one of the request channels, one per keeper signing
 * thread, in turn, and the channel's reader thread answers the call when the
 * reply comes; many calls can be in flight on a channel. Network-side audit
 * records (refused tokens, rate limits) go to the keeper through
 * keeperc_audit_sink(), which posts them as Events.
 *
 * When the keeper goes away (end of file, reset, a protocol error) every
 * pending and later call is answered -1 (UNAVAILABLE), /readyz says why,
 * and main, woken by SIGCHLD, exits non-zero. A reply that does not come
 * within the timeout is -1 for that call; its late reply is dropped by
 * request id.
 */
#ifndef TCS_KEEPERC_H
#define TCS_KEEPERC_H

#include <stddef.h>

#include "certpipe.h"

struct audit_rec;
struct creds;
struct credstore;
struct keeperc;
struct signer_result;

#define KEEPERC_REPLY_TIMEOUT_MS 10000
#define KEEPERC_MAX_PENDING      128 /* calls in flight per request channel */

/*
 * Takes the control descriptor and `n` request descriptors (stream sockets
 * to the keeper; owned from now on). `store` receives the serving
 * credentials. Returns NULL on ENOMEM (the descriptors are closed).
 */
struct keeperc *keeperc_new(
    int ctrl, const int *req, int n, struct credstore *store, int reply_timeout_ms);
/* Starts the reader threads (control, and one per request channel). 0 or -1. Main thread. */
int keeperc_start(struct keeperc *);
/*
 * certpipe_issuer.submit: sends the CSR to the keeper and returns; done(ctx,
 * rc) follows on a channel reader thread (or at once for a CSR over the
 * protocol's limit), with res and sig filled. arg is the keeperc. -1: the
 * keeper is gone (done is not called). Any thread.
 */
int keeperc_submit(void *arg, const unsigned char *csr, size_t len, const char *peer_ip,
    struct signer_result *res, struct certpipe_signed *sig, certpipe_done_fn done, void *ctx);
/* certpipe_issuer.issue: keeperc_submit(), then waits for the answer. Any thread. */
int keeperc_issue(void *arg, const struct creds *cr, const unsigned char *csr, size_t len,
    const char *peer_ip, struct signer_result *res, struct certpipe_signed *sig);
/* audit_sink_fn: forwards a record to the keeper (best effort). Any thread. */
void keeperc_audit_sink(const struct audit_rec *, void *arg);
/* Asks the keeper to re-read its credential sources (SIGHUP). Any thread. */
void keeperc_reload(struct keeperc *);
/* 1 once the keeper is gone. Any thread. */
int keeperc_dead(struct keeperc *);
/*
 * Closes every channel (the keeper sees end of file and exits), joins the
 * reader and frees. After the gRPC server has stopped. Main thread.
 */
void keeperc_free(struct keeperc *);

#endif /* TCS_KEEPERC_H */
