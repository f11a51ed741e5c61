/*
 * certpipe.h: one Certificate call as a pure pipeline, without gRPC:
 * token, decode, sign, status.
 *
 * The gRPC server (grpcsrv.c) only collects what a call carries (the
 * `token` metadata values, whether a message arrived and its bytes, the
 * peer address) and sends back what certpipe_run() decided (a status code
 * number, a message, the packed response). Everything between is here, with
 * one table mapping each outcome to its gRPC status, its message and its
 * audit kind.
 *
 * The sign step goes through an issuer hook (struct certpipe_issuer): in
 * process, certpipe_issue_local() calls signer_issue() against the snapshot
 * (unit tests, fuzzing, `check`); in the daemon the hook asks the keeper
 * process (keeperc.h), which alone holds the CA key, without waiting: the
 * gRPC server runs certpipe_begin() on its worker, submits the CSR, and
 * certpipe_end() runs when the keeper's answer arrives.
 */
#ifndef TCS_CERTPIPE_H
#define TCS_CERTPIPE_H

#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "signer.h"

struct creds;
struct ratelimit;

/* What happened to one call; each has one row in the status table. */
enum certpipe_outcome {
	CP_OK,
	CP_RESET,       /* ended before its message without a valid token: summarised */
	CP_UNAVAILABLE, /* no credentials yet */
	CP_KEEPER_DOWN, /* the keeper did not answer */
	CP_MISSING_TOKEN,
	CP_INVALID_TOKEN,
	CP_RATE_LIMITED,
	CP_BAD_MESSAGE, /* the protobuf did not decode */
	CP_BAD_DECODE,  /* signer: no PEM block */
	CP_BAD_PARSE,   /* signer: not a CSR, bad signature */
	CP_DENIED,      /* signer: policy */
	CP_INTERNAL,    /* signer: our failure */
	CP__MAX
};

/* gRPC status code numbers (the wire values, shared by every gRPC). */
enum certpipe_code {
	CPC_OK = 0,
	CPC_CANCELLED = 1,
	CPC_INVALID_ARGUMENT = 3,
	CPC_PERMISSION_DENIED = 7,
	CPC_RESOURCE_EXHAUSTED = 8,
	CPC_INTERNAL = 13,
	CPC_UNAVAILABLE = 14,
	CPC_UNAUTHENTICATED = 16,
};

/*
 * What an issuer reports beside the signer result (zeroed by the caller).
 * `ca`: the CA bundle of the snapshot that signed (malloc'd; the response's
 * `ca` field), or NULL to use the bundle of the snapshot the token was
 * checked against (the same snapshot in process). The keeper's snapshot may
 * be one generation ahead of the network side's during a rotation, so the
 * keeper sends the bundle it signed with, and certificate and `ca` always
 * agree. `audited`: the issuer already wrote the audit record.
 */
struct certpipe_signed {
	unsigned char *ca;
	size_t         ca_len;
	int            audited;
};

/*
 * The sign step, in one of two shapes.
 *
 * issue() fills `res` (initialised by the caller) for the CSR bytes and
 * returns its status; it must never leave res->status unset. `cr` is the
 * snapshot the token was checked against (the in-process issuer signs with
 * it; the keeper signs with its own, the same generation or a newer one).
 * Called on the call's thread; may block. Returns 0, or -1 when the issuer
 * could not be reached at all (CP_KEEPER_DOWN); then res is left as
 * initialised and sig ignored.
 *
 * submit(), when set, starts the same step without waiting: it copies the
 * CSR and the peer, and returns 0 if done(ctx, rc) will be called exactly
 * once, later, on another thread (rc as issue() returns it, with `res` and
 * `sig` filled as issue() fills them; they must stay valid until then), or
 * -1 if the issuer could not be reached (done is never called). done may
 * run before submit() returns: the caller must not touch what ctx owns
 * after a successful submit().
 */
typedef void (*certpipe_done_fn)(void *ctx, int rc);

struct certpipe_issuer {
	int (*issue)(void *arg, const struct creds *cr, const unsigned char *csr, size_t len,
	    const char *peer_ip, struct signer_result *res, struct certpipe_signed *sig);
	int (*submit)(void *arg, const unsigned char *csr, size_t len, const char *peer_ip,
	    struct signer_result *res, struct certpipe_signed *sig, certpipe_done_fn done,
	    void *ctx);
	void *arg;
};

/* Issuance parameters the in-process issuer uses (copied). */
struct certpipe_local {
	struct signer_params params; /* now and peer_ip are set per call */
};

/* certpipe_issuer.issue for signing in this process; `arg` is a struct certpipe_local. */
int certpipe_issue_local(void *arg, const struct creds *cr, const unsigned char *csr, size_t len,
    const char *peer_ip, struct signer_result *res, struct certpipe_signed *sig);

/* What a call carried, as the transport collected it. Nothing is owned. */
struct certpipe_call {
	const char          *peer_ip; /* text form, or "unknown" */
	size_t               ntokens; /* `token` metadata entries */
	const char          *token;   /* the first one's value (not NUL-terminated) */
	size_t               token_len;
	int                  has_message;
	const unsigned char *message; /* the serialised CertificateRequest */
	size_t               message_len;
};

/* The decision, for the transport. Free with certpipe_result_free(). */
struct certpipe_result {
	enum certpipe_outcome outcome;
	int                   code;     /* gRPC status code number */
	const char           *message;  /* status message (static or in res) */
	unsigned char        *response; /* packed CertificateResponse (CP_OK only), malloc'd */
	size_t                response_len;
	struct signer_result  res;
};

/*
 * Runs the pipeline on one call: the rate limit (`rl` may be NULL), the
 * snapshot (`cr` may be NULL: not serving yet), the token in constant time,
 * the protobuf decode, the issuer (its blocking issue()), the response
 * packing; then counts the request (metrics_request) and writes the audit
 * record unless the issuer did. Fills `out` (initialised here). Any thread;
 * `cr` must stay referenced. It is certpipe_begin(), issue(), certpipe_end().
 */
void certpipe_run(const struct certpipe_call *call, const struct creds *cr, struct ratelimit *rl,
    const struct certpipe_issuer *iss, struct certpipe_result *out);

/*
 * The same pipeline in two halves around the sign step, for a transport that
 * does not wait for the issuer (issuer.submit). Between the halves the
 * caller keeps `call` (only its peer_ip is read again), `cr`, `out` and `p`.
 */
struct certpipe_pending {
	void                  *request; /* the decoded CertificateRequest */
	const unsigned char   *csr;     /* the bytes to sign, inside `request` */
	size_t                 csr_len;
	struct certpipe_signed sig; /* what the issuer reports beside the result */
	int64_t                t0;  /* monotonic µs at the sign step's start */
};

/*
 * Everything before the sign step. Returns 0 when the call is decided
 * (`out` is final, as certpipe_run() leaves it), or 1 when it needs signing
 * p->csr: then sign it, certpipe_free_request(p) once the CSR bytes are no
 * longer needed, and finish with certpipe_end().
 */
int certpipe_begin(const struct certpipe_call *call, const struct creds *cr, struct ratelimit *rl,
    struct certpipe_result *out, struct certpipe_pending *p);
/* Frees the decoded request (p->csr is invalid after). Idempotent. */
void certpipe_free_request(struct certpipe_pending *p);
/*
 * Everything after the sign step, whose issuer returned `rc` (0, or -1:
 * unreachable) and filled out->res and p->sig: the response, the metric, the
 * audit record, the status. Frees what `p` still holds.
 */
void certpipe_end(const struct certpipe_call *call, const struct creds *cr,
    struct certpipe_pending *p, int rc, struct certpipe_result *out);

void certpipe_result_free(struct certpipe_result *);

/*
 * Writes the audit record of a sign step's outcome, as certpipe_run() would:
 * for an issuer that audits itself (the keeper, which alone has the subject,
 * SANs and serial at hand). Any thread.
 */
void certpipe_audit_signed(const char *peer_ip, const struct signer_result *res);

/* The table's row for an outcome: gRPC code, fixed message (NULL: the signer's), audit kind. */
int             certpipe_code(enum certpipe_outcome);
const char     *certpipe_message(enum certpipe_outcome);
enum audit_kind certpipe_audit(enum certpipe_outcome);
/* The outcome a signer status maps to. */
enum certpipe_outcome certpipe_from_signer(enum signer_status);

#endif /* TCS_CERTPIPE_H */
