/*
 * audit.h: one record per Certificate request and per credential change.
 *
 * Every record goes to the structured log; when a sink is installed (the
 * Kubernetes events module), it also goes there. audit_emit() never blocks
 * for long: the sink must only enqueue. No record carries a secret: peer,
 * subject CN, SANs, serial, key type, outcome and reason only.
 */
#ifndef TCS_AUDIT_H
#define TCS_AUDIT_H

#include <stddef.h>

enum audit_kind {
	AK_ISSUED,        /* Normal  CertificateIssued */
	AK_AUTH_FAILED,   /* Warning AuthenticationFailed */
	AK_INVALID_CSR,   /* Warning InvalidCSR */
	AK_POLICY_DENIED, /* Warning PolicyDenied */
	AK_RATE_LIMITED,  /* Warning RateLimited */
	AK_UNAVAILABLE,   /* no credentials yet (log only) */
	AK_INTERNAL,      /* our failure (log only) */
	AK_CREDS_ROTATED, /* Normal  CredentialsRotated */
	AK_CREDS_INVALID, /* Warning CredentialsInvalid */
	AK_CREDS_WARNING, /* Warning CredentialsWarning: served, but look (e.g. token format) */
	AK_SECRET_ACCESS, /* Warning SecretAccessFailed: a Secret read got 403 or 404 */
	AK__MAX
};

struct audit_rec {
	enum audit_kind    kind;
	const char        *peer; /* source IP */
	const char        *cn;
	const char *const *sans;
	size_t             nsans;
	const char        *serial; /* hex */
	const char        *key_type;
	int                org_removed;
	const char        *message; /* human detail, no secrets */
	const char        *related; /* e.g. "Secret ns/name", or NULL */
};

typedef void (*audit_sink_fn)(const struct audit_rec *, void *arg);

/* Installs the sink; call before threads start (or NULL to remove). */
void audit_set_sink(audit_sink_fn, void *arg);
/* Logs the record and hands it to the sink. Any thread. */
void audit_emit(const struct audit_rec *);
/*
 * Hands the record to the sink only, without a log line: for an outcome that
 * its caller has already logged in its own record (credsrc.c's "credentials
 * published"), so that one outcome is one line. Any thread.
 */
void audit_post(const struct audit_rec *);

/* "CertificateIssued", "AuthenticationFailed", ... */
const char *audit_reason(enum audit_kind);
/* 1 for kinds about credentials (not about a Certificate request). */
int audit_is_creds(enum audit_kind);
/* 1 for kinds that are Warnings. */
int audit_is_warning(enum audit_kind);
/* Metric label: "issued", "unauthenticated", "invalid_csr", ... */
const char *audit_result_label(enum audit_kind);

/*
 * Flood summaries. A request that ended before its message and carried no
 * valid token (reset, cancelled, cut short) gets no record of its own:
 * audit_note_reset() counts it per source, and once per interval (10 s)
 * one record per source says "N requests from X reset before a CSR".
 * Memory is bounded (a fixed table; sources beyond it are summed as
 * "other"). Any thread.
 */
void audit_note_reset(const char *peer);
/* Emits the pending summaries if the interval is over (force: now). Any thread. */
void audit_flush_summaries(int force);

#endif /* TCS_AUDIT_H */
