/*
 * certpipe.c: the Certificate call's decisions, without gRPC.
 *
 * DESIGN
 * certpipe_run() is the whole call between "a message arrived" and "send this
 * status": reset summary, rate limit, snapshot present, token (exactly one
 * `token` value, compared in constant time by creds_token_ok()), protobuf
 * decode, sign through the issuer hook, response packing, one metric and one
 * audit record. The status table below is the only place that says which
 * gRPC code and message an outcome gets, and which audit kind it is.
 * certpipe_begin() and certpipe_end() are that pipeline cut at the sign step,
 * for a transport that lets the keeper answer later; certpipe_run() joins
 * them around the issuer's blocking issue().
 *
 * Threads: any; no state of its own. The issuer's issue() may block on the
 * calling thread; certpipe_end() may run on another thread than
 * certpipe_begin().
 * Owns: nothing beyond the result it fills (the packed response and the
 * signer result, freed by certpipe_result_free()).
 */
#include "certpipe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <protobuf-c/protobuf-c.h>

#include "security.pb-c.h"

#include "creds.h"
#include "metrics.h"
#include "ratelimit.h"
#include "util.h"

/* The one status table: outcome -> gRPC code, message, audit kind. */
static const struct {
	int             code;
	const char     *message; /* NULL: the signer's own message */
	enum audit_kind audit;
} table[CP__MAX] = {
	[CP_OK] = { CPC_OK, "", AK_ISSUED },
	[CP_RESET] = { CPC_CANCELLED, "request ended before its message", AK_AUTH_FAILED },
	[CP_UNAVAILABLE] = { CPC_UNAVAILABLE, "no credentials loaded yet", AK_UNAVAILABLE },
	[CP_KEEPER_DOWN] = { CPC_UNAVAILABLE, "signer unavailable, retry later", AK_UNAVAILABLE },
	[CP_MISSING_TOKEN] = { CPC_UNAUTHENTICATED, "missing token", AK_AUTH_FAILED },
	[CP_INVALID_TOKEN] = { CPC_UNAUTHENTICATED, "invalid token", AK_AUTH_FAILED },
	[CP_RATE_LIMITED] = { CPC_RESOURCE_EXHAUSTED,
	    "too many requests from this address, retry later", AK_RATE_LIMITED },
	[CP_BAD_MESSAGE] = { CPC_INVALID_ARGUMENT, "failed to decode request message",
	    AK_INVALID_CSR },
	[CP_BAD_DECODE] = { CPC_INVALID_ARGUMENT, NULL, AK_INVALID_CSR },
	[CP_BAD_PARSE] = { CPC_INVALID_ARGUMENT, NULL, AK_INVALID_CSR },
	[CP_DENIED] = { CPC_PERMISSION_DENIED, NULL, AK_POLICY_DENIED },
	[CP_INTERNAL] = { CPC_INTERNAL, NULL, AK_INTERNAL },
};

static const enum certpipe_outcome from_signer[SIGNER__MAX] = {
	[SIGNER_OK] = CP_OK,
	[SIGNER_BAD_DECODE] = CP_BAD_DECODE,
	[SIGNER_BAD_PARSE] = CP_BAD_PARSE,
	[SIGNER_DENIED] = CP_DENIED,
	[SIGNER_INTERNAL] = CP_INTERNAL,
};

int
certpipe_code(enum certpipe_outcome o)
{
	return o < CP__MAX ? table[o].code : CPC_INTERNAL;
}

const char *
certpipe_message(enum certpipe_outcome o)
{
	return o < CP__MAX ? table[o].message : "internal error";
}

enum audit_kind
certpipe_audit(enum certpipe_outcome o)
{
	return o < CP__MAX ? table[o].audit : AK_INTERNAL;
}

enum certpipe_outcome
certpipe_from_signer(enum signer_status s)
{
	return (unsigned)s < SIGNER__MAX ? from_signer[s] : CP_INTERNAL;
}

int
certpipe_issue_local(void *arg, const struct creds *cr, const unsigned char *csr, size_t len,
    const char *peer_ip, struct signer_result *res, struct certpipe_signed *sig)
{
	const struct certpipe_local *l = arg;
	struct signer_params         sp = l->params;

	(void)sig; /* same snapshot: its bundle; certpipe_run() audits */
	sp.now = (long long)time(NULL);
	sp.peer_ip = peer_ip;
	signer_issue(cr, csr, len, &sp, res);
	return 0;
}

static enum certpipe_outcome
check_token(const struct certpipe_call *call, const struct creds *cr)
{
	if (call->ntokens == 0)
		return CP_MISSING_TOKEN;
	if (call->ntokens > 1)
		return CP_INVALID_TOKEN; /* never guess which value counts */
	if (!creds_token_ok(cr, call->token, call->token_len))
		return CP_INVALID_TOKEN;
	return CP_OK;
}

static int
pack_response(
    const struct creds *cr, const struct certpipe_signed *sig, struct certpipe_result *out)
{
	Securityapi__CertificateResponse resp = SECURITYAPI__CERTIFICATE_RESPONSE__INIT;
	size_t                           len;

	resp.ca.data = sig->ca != NULL ? sig->ca : cr->ca_bundle;
	resp.ca.len = sig->ca != NULL ? sig->ca_len : cr->ca_bundle_len;
	resp.crt.data = out->res.crt_pem;
	resp.crt.len = out->res.crt_len;
	len = securityapi__certificate_response__get_packed_size(&resp);
	if ((out->response = malloc(len ? len : 1)) == NULL)
		return -1;
	out->response_len = securityapi__certificate_response__pack(&resp, out->response);
	return 0;
}

static int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * After the sign step: the outcome of the issuer's answer, with the response
 * packed for CP_OK. *audited: the issuer wrote the audit record.
 */
static enum certpipe_outcome
signed_outcome(const struct creds *cr, struct certpipe_pending *p, int rc,
    struct certpipe_result *out, int *audited)
{
	enum certpipe_outcome o;

	metrics_sign_latency_us(mono_us() - p->t0);
	*audited = 0;
	if (rc == -1)
		return CP_KEEPER_DOWN;
	*audited = p->sig.audited;
	o = certpipe_from_signer(out->res.status);
	if (o == CP_OK && pack_response(cr, &p->sig, out) == -1) {
		snprintf(out->res.message, sizeof(out->res.message), "out of memory");
		out->res.status = SIGNER_INTERNAL;
		*audited = 0;
		o = CP_INTERNAL;
	}
	return o;
}

/* The call's one audit record. */
static void
emit(enum audit_kind kind, const char *peer, const struct signer_result *res, const char *msg)
{
	struct audit_rec ar;

	memset(&ar, 0, sizeof(ar));
	ar.kind = kind;
	ar.peer = peer;
	ar.cn = res->cn;
	ar.sans = res->sans;
	ar.nsans = res->nsans;
	ar.serial = res->serial;
	ar.key_type = res->key_type;
	ar.org_removed = res->org_removed;
	ar.message = msg;
	audit_emit(&ar);
}

void
certpipe_audit_signed(const char *peer_ip, const struct signer_result *res)
{
	enum certpipe_outcome o = certpipe_from_signer(res->status);

	emit(table[o].audit, peer_ip, res, o == CP_OK ? "certificate issued" : res->message);
}

/* The status, the metric and the audit record of a decided call. */
static void
decide(const struct certpipe_call *call, enum certpipe_outcome o, int audited,
    struct certpipe_result *out)
{
	enum audit_kind kind = table[o].audit;

	out->message = table[o].message != NULL ? table[o].message : out->res.message;
	metrics_request(kind);
	if (!audited)
		emit(kind, call->peer_ip, &out->res,
		    o == CP_OK ? "certificate issued" : out->message);
	out->outcome = o;
	out->code = table[o].code;
}

int
certpipe_begin(const struct certpipe_call *call, const struct creds *cr, struct ratelimit *rl,
    struct certpipe_result *out, struct certpipe_pending *p)
{
	Securityapi__CertificateRequest *req;
	enum certpipe_outcome            o;

	memset(out, 0, sizeof(*out));
	memset(p, 0, sizeof(*p));
	if (!call->has_message && cr != NULL && check_token(call, cr) != CP_OK) {
		/* Ended before its message, unauthenticated: a summary, not a record. */
		audit_note_reset(call->peer_ip);
		out->outcome = CP_RESET;
		out->code = table[CP_RESET].code;
		out->message = table[CP_RESET].message;
		return 0;
	}
	if (rl != NULL && !ratelimit_allow(rl, call->peer_ip))
		o = CP_RATE_LIMITED;
	else if (cr == NULL)
		o = CP_UNAVAILABLE;
	else if ((o = check_token(call, cr)) == CP_OK) {
		if (call->has_message &&
		    (req = securityapi__certificate_request__unpack(
			 NULL, call->message_len, call->message)) != NULL) {
			p->request = req;
			p->csr = req->csr.data;
			p->csr_len = req->csr.len;
			p->t0 = mono_us();
			return 1;
		}
		o = CP_BAD_MESSAGE;
	}
	decide(call, o, 0, out);
	return 0;
}

void
certpipe_free_request(struct certpipe_pending *p)
{
	if (p->request != NULL)
		securityapi__certificate_request__free_unpacked(p->request, NULL);
	p->request = NULL;
	p->csr = NULL;
	p->csr_len = 0;
}

void
certpipe_end(const struct certpipe_call *call, const struct creds *cr, struct certpipe_pending *p,
    int rc, struct certpipe_result *out)
{
	enum certpipe_outcome o;
	int                   audited;

	certpipe_free_request(p);
	o = signed_outcome(cr, p, rc, out, &audited);
	free(p->sig.ca);
	p->sig.ca = NULL;
	decide(call, o, audited, out);
}

void
certpipe_run(const struct certpipe_call *call, const struct creds *cr, struct ratelimit *rl,
    const struct certpipe_issuer *iss, struct certpipe_result *out)
{
	struct certpipe_pending p;
	int                     rc;

	if (certpipe_begin(call, cr, rl, out, &p) == 0)
		return;
	rc = iss->issue(iss->arg, cr, p.csr, p.csr_len, call->peer_ip, &out->res, &p.sig);
	certpipe_end(call, cr, &p, rc, out);
}

void
certpipe_result_free(struct certpipe_result *r)
{
	free(r->response);
	r->response = NULL;
	signer_result_free(&r->res);
}
