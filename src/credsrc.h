/*
 * credsrc.h: the credential assembler. Sources register with it once, then
 * deliver parts; it assembles snapshots, validates them, publishes them to
 * the store, and is the one place that reports a credential outcome.
 *
 * A source (mounted files, a Kubernetes Secret) registers the field groups it
 * owns (creds.h: CF_GROUP_CA, CF_GROUP_TLS) and always submits all of its
 * fields together. The assembler expects the union of every registration:
 * until each registered group has been delivered once, nothing is published.
 * The candidate snapshot is the last good parts overlaid with the submitted
 * ones; when it validates it is published and becomes the new good set,
 * otherwise it is dropped and the last good snapshot keeps serving.
 *
 * Every outcome (published, unchanged, pending, refused, and a source that
 * could not deliver at all) is logged here once, counted here, and posted here
 * as at most one Event (audit.h). Sources report only what is not a credential
 * outcome: their transport (a watch restarted, a 403) and readiness text.
 * Sources may run on different threads.
 */
#ifndef TCS_CREDSRC_H
#define TCS_CREDSRC_H

#include <stddef.h>

#include "creds.h"
#include "metrics.h"

struct credstore;
struct credsrc;
struct credsrc_source;

/* Returns an assembler publishing to `store` (which must outlive it), or NULL on ENOMEM. */
struct credsrc *credsrc_new(struct credstore *store);
/* Wipes the parts it keeps, frees every registration. NULL is fine. */
void credsrc_free(struct credsrc *);

/*
 * Registers a source delivering the fields of `groups` (CF_GROUP_*), named
 * `label` in logs and Events ("files", "Secret ns/name"; copied), whose
 * per-source reload gauge is `metric`. Every source registers before the
 * first submission (start-up, one thread). Returns a handle that lives until
 * credsrc_free(), or NULL with a one-line reason in err when `groups` is
 * empty, overlaps another source's, or a submission already happened.
 */
struct credsrc_source *credsrc_register(struct credsrc *, unsigned groups, const char *label,
    enum metric_source metric, char *err, size_t errlen);
/* The union of every registered source's groups. */
unsigned credsrc_expected(const struct credsrc *);

enum credsrc_result {
	CREDSRC_PUBLISHED, /* a new snapshot is serving */
	CREDSRC_UNCHANGED, /* same bytes as what is serving: nothing done */
	CREDSRC_PENDING,   /* other sources have not delivered yet */
	CREDSRC_INVALID,   /* refused; the last good snapshot stays */
	CREDSRC__MAX
};

/* "published", "unchanged", "pending", "refused". */
const char *credsrc_result_name(enum credsrc_result);

/*
 * Submits the fields of the source's groups from `in` (fields of its groups
 * that are not present in `in` are submitted as absent). `version` names the
 * delivered object's version (a Secret's resourceVersion), or is NULL for a
 * rescan that may find nothing new: an unchanged delivery with a version is
 * logged at info, one without at debug. Copies what it keeps. Logs, counts
 * and audits the outcome. On CREDSRC_INVALID, err holds the one-line reason.
 * The source's thread.
 */
enum credsrc_result credsrc_submit(struct credsrc_source *, const struct creds_input *in,
    const char *version, char *err, size_t errlen);

enum credsrc_fault {
	CREDSRC_UNREADABLE, /* read or decoded, but not usable: `why` says where */
	CREDSRC_DELETED,    /* the object was deleted */
	CREDSRC_MISSING,    /* the object does not exist (yet) */
	CREDSRC_FAULT__MAX
};

/*
 * The source could not deliver: its object is unreadable, was deleted, or is
 * missing. Nothing is published; the last good snapshot keeps serving. Logs,
 * counts and audits it like a refusal (a CredentialsInvalid Event). `why` is
 * the one-line reason for CREDSRC_UNREADABLE and may be NULL otherwise;
 * `version` as for credsrc_submit(). A source reports a deletion or absence
 * once, not on every retry. The source's thread.
 */
void credsrc_fault(
    struct credsrc_source *, enum credsrc_fault, const char *version, const char *why);

/*
 * Says what the source waits for while nothing is served, for /readyz
 * (credstore_set_waiting()); "" when it waits for nothing. Any thread.
 */
void credsrc_waiting(struct credsrc_source *, const char *reason);

/* Forgets the "unchanged" memory so the next submit rebuilds (SIGHUP). Any thread. */
void credsrc_invalidate(struct credsrc_source *);

#endif /* TCS_CREDSRC_H */
