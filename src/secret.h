/*
 * secret.h: Kubernetes Secret JSON to credential parts (cJSON).
 *
 * Pure functions, any thread. The CA Secret carries tls.crt (machine CA),
 * tls.key (its key; Talos's "ED25519 PRIVATE KEY" label is accepted later by
 * the PEM loader), token (machine token) and optionally accepted-cas.crt;
 * the serving Secret (cert-manager) carries tls.crt and tls.key, and its
 * ca.crt is ignored (the credential builder warns when the serving chain does
 * not lead to an accepted CA). Decoded bytes only ever live in scrubbed
 * buffers; secret_json_free() wipes every string of a parsed document before
 * freeing it.
 */
#ifndef TCS_SECRET_H
#define TCS_SECRET_H

#include <stddef.h>

#include "creds.h"

struct cJSON;

enum secret_kind {
	SECRET_CA,  /* CF_GROUP_CA */
	SECRET_TLS, /* CF_GROUP_TLS */
	SECRET__MAX
};

/* The cJSON version, e.g. "1.7.15", for --version. A static string. */
const char *secret_cjson_version(void);

/* The CF_GROUP_* mask a kind of Secret delivers. */
unsigned secret_groups(enum secret_kind);

/*
 * Points *name, *ns, *rv and *uid (any may be NULL to skip) at the
 * metadata strings of `obj`, or at "" when absent. They live as long as obj.
 */
void secret_meta(
    const struct cJSON *obj, const char **name, const char **ns, const char **rv, const char **uid);

/*
 * Decodes the `data` of Secret `obj` into the parts of `kind` in `in`
 * (initialised by the caller; parts already there are replaced). `label`
 * ("ns/name") goes into each part's origin. Returns 0, or -1 with a one-line
 * reason (never secret bytes) in err when the object is not a Secret, a
 * required key is missing or empty, or a value is not valid base64.
 */
int secret_decode(const struct cJSON *obj, enum secret_kind kind, const char *label,
    struct creds_input *in, char *err, size_t errlen);

/*
 * Decodes the one Secret of a SecretList answer (a LIST with a name field
 * selector, as the watcher and `check` read it) like secret_decode().
 * -1 with "not found" in err when the list is empty.
 */
int secret_decode_list(const void *body, size_t len, enum secret_kind kind, const char *label,
    struct creds_input *in, char *err, size_t errlen);

/*
 * The `message` of a Kubernetes Status body (an API error answer) into buf
 * ("" if none). Returns buf.
 */
char *secret_status_message(const void *body, size_t len, char *buf, size_t buflen);

/*
 * Frees a parsed document that may carry Secret data (a Secret, a SecretList,
 * a watch event line): wipes every string in the tree, then cJSON_Delete().
 * A document that cannot carry any (a Status) is freed with cJSON_Delete().
 * NULL is fine.
 */
void secret_json_free(struct cJSON *);

#endif /* TCS_SECRET_H */
