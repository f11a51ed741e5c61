/*
 * credsrc.h: assembles credential snapshots from the parts that sources
 * deliver, validates them and publishes them to the store.
 *
 * A source (mounted files, a Kubernetes Secret) owns a set of fields (the CA
 * group: CA cert, key, token, accepted CAs; the serving group: cert and key)
 * and always submits all of its fields together. The candidate snapshot is the
 * last good parts overlaid with the submitted ones; when it validates it is
 * published and becomes the new good set, otherwise it is dropped, the last
 * good snapshot keeps serving and the reason is logged, counted and audited
 * (CredentialsInvalid). Sources may run on different threads.
 */
#ifndef TCS_CREDSRC_H
#define TCS_CREDSRC_H

#include <stddef.h>

#include "creds.h"

struct credstore;
struct credsrc;

#define CF_MASK(f) (1u << (f))
#define CF_GROUP_CA                                                                                \
	(CF_MASK(CF_CA_CERT) | CF_MASK(CF_CA_KEY) | CF_MASK(CF_TOKEN) | CF_MASK(CF_ACCEPTED_CAS) | \
	    CF_MASK(CF_ACCEPTED_TOKENS))
#define CF_GROUP_TLS (CF_MASK(CF_TLS_CERT) | CF_MASK(CF_TLS_KEY))

struct credsrc *credsrc_new(struct credstore *);
void            credsrc_free(struct credsrc *);

enum credsrc_result {
	CREDSRC_PUBLISHED, /* a new snapshot is serving */
	CREDSRC_UNCHANGED, /* same bytes as what is serving: nothing done */
	CREDSRC_PENDING,   /* other sources have not delivered yet */
	CREDSRC_INVALID,   /* refused; the last good snapshot stays */
};

/*
 * Submits the fields of `mask` from `in` (fields in the mask that are not
 * present in `in` are submitted as absent). `related` names the source for
 * logs and Events ("files", "Secret ns/name"). Copies what it keeps. On
 * CREDSRC_INVALID, err holds the one-line reason. `expect` is the mask of
 * every field that some source will deliver; until all of them have been
 * delivered once, the result is CREDSRC_PENDING.
 */
enum credsrc_result credsrc_submit(struct credsrc *, unsigned expect, unsigned mask,
    const struct creds_input *in, const char *related, char *err, size_t errlen);

/* Says what the source waits for while nothing is served (credstore_set_waiting()). */
void credsrc_set_waiting(struct credsrc *, const char *reason);

/* Forgets the "unchanged" memory so the next submit rebuilds (SIGHUP). */
void credsrc_invalidate(struct credsrc *);

#endif /* TCS_CREDSRC_H */
