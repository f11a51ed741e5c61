/*
 * audit.c: audit records to the log and to an optional sink.
 *
 * Threads: any. The sink pointer is written once before threads start. The
 * flood-summary table is guarded by one mutex, held only to count or to copy
 * the table out; records are written after it is released.
 */
#include "audit.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

#define AUDIT_SUMMARY_SLOTS 32
#define AUDIT_SUMMARY_MS    10000

struct summary {
	char     peer[48];
	uint64_t count;
};

static pthread_mutex_t summary_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct summary  summaries[AUDIT_SUMMARY_SLOTS + 1]; /* last: "other" */
static int64_t         summary_since = -1;

static audit_sink_fn sink;
static void         *sink_arg;

static const struct {
	const char *reason;
	const char *label;
	int         warning;
} kinds[AK__MAX] = {
	[AK_ISSUED] = { "CertificateIssued", "issued", 0 },
	[AK_AUTH_FAILED] = { "AuthenticationFailed", "unauthenticated", 1 },
	[AK_INVALID_CSR] = { "InvalidCSR", "invalid_csr", 1 },
	[AK_POLICY_DENIED] = { "PolicyDenied", "policy_denied", 1 },
	[AK_RATE_LIMITED] = { "RateLimited", "rate_limited", 1 },
	[AK_UNAVAILABLE] = { "Unavailable", "unavailable", 1 },
	[AK_INTERNAL] = { "InternalError", "internal_error", 1 },
	[AK_CREDS_ROTATED] = { "CredentialsRotated", "credentials_rotated", 0 },
	[AK_CREDS_INVALID] = { "CredentialsInvalid", "credentials_invalid", 1 },
	[AK_CREDS_WARNING] = { "CredentialsWarning", "credentials_warning", 1 },
	[AK_SECRET_ACCESS] = { "SecretAccessFailed", "secret_access_failed", 1 },
};

int
audit_is_creds(enum audit_kind k)
{
	return k == AK_CREDS_ROTATED || k == AK_CREDS_INVALID || k == AK_CREDS_WARNING ||
	    k == AK_SECRET_ACCESS;
}

void
audit_set_sink(audit_sink_fn fn, void *arg)
{
	sink = fn;
	sink_arg = arg;
}

const char *
audit_reason(enum audit_kind k)
{
	return k < AK__MAX ? kinds[k].reason : "Unknown";
}

int
audit_is_warning(enum audit_kind k)
{
	return k < AK__MAX ? kinds[k].warning : 1;
}

const char *
audit_result_label(enum audit_kind k)
{
	return k < AK__MAX ? kinds[k].label : "unknown";
}

void
audit_emit(const struct audit_rec *r)
{
	int creds = audit_is_creds(r->kind);

	if (creds) {
		struct log_field f[] = {
			LF_S("reason", audit_reason(r->kind)),
			LF_S("detail", r->message ? r->message : ""),
			LF_S("related", r->related ? r->related : ""),
		};
		log_record(audit_is_warning(r->kind) ? LOG_WARN : LOG_INFO, "credentials", f,
		    sizeof(f) / sizeof(f[0]));
	} else {
		struct log_field f[] = {
			LF_S("peer", r->peer ? r->peer : ""),
			LF_S("cn", r->cn ? r->cn : ""),
			LF_V("sans", r->sans, r->nsans),
			LF_S("serial", r->serial ? r->serial : ""),
			LF_S("key_type", r->key_type ? r->key_type : ""),
			LF_S("outcome", r->kind == AK_ISSUED ? "issued" : "rejected"),
			LF_S("reason", audit_reason(r->kind)),
			LF_S("detail", r->message ? r->message : ""),
			LF_B("org_removed", r->org_removed),
		};
		log_record(r->kind == AK_ISSUED ? LOG_INFO : LOG_WARN, "audit", f,
		    sizeof(f) / sizeof(f[0]));
	}
	if (sink != NULL)
		sink(r, sink_arg);
}

void
audit_post(const struct audit_rec *r)
{
	if (sink != NULL)
		sink(r, sink_arg);
}

void
audit_note_reset(const char *peer)
{
	struct summary *sl = NULL;
	int             i;

	metrics_fd_inc(MFD_RESET_BEFORE_CSR);
	if (peer == NULL)
		peer = "unknown";
	pthread_mutex_lock(&summary_mtx);
	if (summary_since < 0)
		summary_since = util_mono_ms();
	for (i = 0; i < AUDIT_SUMMARY_SLOTS && sl == NULL; i++)
		if (summaries[i].count == 0 || strcmp(summaries[i].peer, peer) == 0)
			sl = &summaries[i];
	if (sl == NULL)
		sl = &summaries[AUDIT_SUMMARY_SLOTS];
	if (sl->count++ == 0)
		snprintf(sl->peer, sizeof(sl->peer), "%s",
		    sl == &summaries[AUDIT_SUMMARY_SLOTS] ? "other" : peer);
	pthread_mutex_unlock(&summary_mtx);
	audit_flush_summaries(0);
}

void
audit_flush_summaries(int force)
{
	struct summary out[AUDIT_SUMMARY_SLOTS + 1];
	char           detail[160];
	int            i, n = 0;
	int64_t        now = util_mono_ms();

	pthread_mutex_lock(&summary_mtx);
	if (summary_since >= 0 && (force || now - summary_since >= AUDIT_SUMMARY_MS)) {
		for (i = 0; i <= AUDIT_SUMMARY_SLOTS; i++)
			if (summaries[i].count > 0)
				out[n++] = summaries[i];
		memset(summaries, 0, sizeof(summaries));
		summary_since = -1;
	}
	pthread_mutex_unlock(&summary_mtx);
	for (i = 0; i < n; i++) {
		snprintf(detail, sizeof(detail), "%llu requests from %.48s reset before a CSR",
		    (unsigned long long)out[i].count, out[i].peer);
		{
			struct log_field f[] = {
				LF_S("peer", out[i].peer),
				LF_S("outcome", "rejected"),
				LF_S("reason", "ResetBeforeCSR"),
				LF_I("count", out[i].count),
				LF_S("detail", detail),
			};
			log_record(LOG_WARN, "audit summary", f, sizeof(f) / sizeof(f[0]));
		}
	}
}
