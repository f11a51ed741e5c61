/*
 * secret.c: decoding Secret objects into credential parts.
 *
 * Threads: any; no state. Called by the watcher thread on every ADDED or
 * MODIFIED event and on every LIST result. Owns nothing beyond a call: each
 * decoded value passes through a scrubbed sbuf and is copied into the
 * caller's creds_input (which scrubs on free).
 */
#include "secret.h"

#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "creds.h"

struct secret_key {
	const char      *key;
	enum creds_field field;
	int              optional;
};

static const struct secret_key ca_keys[] = {
	{ "tls.crt", CF_CA_CERT, 0 },
	{ "tls.key", CF_CA_KEY, 0 },
	{ "token", CF_TOKEN, 0 },
	{ "accepted-cas.crt", CF_ACCEPTED_CAS, 1 },
	{ "accepted-tokens", CF_ACCEPTED_TOKENS, 1 },
};

static const struct secret_key tls_keys[] = {
	{ "tls.crt", CF_TLS_CERT, 0 },
	{ "tls.key", CF_TLS_KEY, 0 },
};

const char *
secret_cjson_version(void)
{
	return cJSON_Version();
}

unsigned
secret_groups(enum secret_kind kind)
{
	return kind == SECRET_CA ? CF_GROUP_CA : kind == SECRET_TLS ? CF_GROUP_TLS : 0;
}

static const char *
str_at(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) && v->valuestring != NULL ? v->valuestring : "";
}

void
secret_meta(const cJSON *obj, const char **name, const char **ns, const char **rv, const char **uid)
{
	const cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");

	if (name != NULL)
		*name = str_at(md, "name");
	if (ns != NULL)
		*ns = str_at(md, "namespace");
	if (rv != NULL)
		*rv = str_at(md, "resourceVersion");
	if (uid != NULL)
		*uid = str_at(md, "uid");
}

int
secret_decode(const cJSON *obj, enum secret_kind kind, const char *label, struct creds_input *in,
    char *err, size_t errlen)
{
	const struct secret_key *keys;
	const cJSON             *data, *v;
	struct sbuf              b;
	char                     origin[160];
	size_t                   i, n;
	int                      rc = -1;

	sbuf_init(&b, CREDS_MAX_PART);
	if (kind >= SECRET__MAX) {
		snprintf(err, errlen, "Secret %s: unknown kind", label);
		goto out;
	}
	keys = kind == SECRET_CA ? ca_keys : tls_keys;
	n = kind == SECRET_CA ? sizeof(ca_keys) / sizeof(ca_keys[0])
			      : sizeof(tls_keys) / sizeof(tls_keys[0]);
	/* List items carry no kind; a watch object says "Secret". */
	if (!cJSON_IsObject(obj) ||
	    (*str_at(obj, "kind") != '\0' && strcmp(str_at(obj, "kind"), "Secret") != 0)) {
		snprintf(err, errlen, "Secret %s: not a Secret object", label);
		goto out;
	}
	data = cJSON_GetObjectItemCaseSensitive(obj, "data");
	if (data != NULL && !cJSON_IsObject(data)) {
		snprintf(err, errlen, "Secret %s: data is not an object", label);
		goto out;
	}
	for (i = 0; i < n; i++) {
		v = data != NULL ? cJSON_GetObjectItemCaseSensitive(data, keys[i].key) : NULL;
		if (v == NULL || (cJSON_IsString(v) && v->valuestring[0] == '\0')) {
			if (keys[i].optional)
				continue;
			snprintf(err, errlen, "Secret %s: key %s is missing or empty", label,
			    keys[i].key);
			goto out;
		}
		if (!cJSON_IsString(v)) {
			snprintf(
			    err, errlen, "Secret %s: key %s is not a string", label, keys[i].key);
			goto out;
		}
		sbuf_reset(&b);
		if (util_base64_decode(v->valuestring, strlen(v->valuestring), &b) == -1) {
			snprintf(err, errlen,
			    "Secret %s: key %s is not valid base64 (or too large)", label,
			    keys[i].key);
			goto out;
		}
		snprintf(origin, sizeof(origin), "Secret %s key %s", label, keys[i].key);
		if (creds_input_set(in, keys[i].field, b.data, b.len, origin) == -1) {
			snprintf(err, errlen, "Secret %s: out of memory", label);
			goto out;
		}
	}
	rc = 0;
out:
	sbuf_free(&b);
	return rc;
}

static void
wipe_tree(cJSON *n)
{
	for (; n != NULL; n = n->next) {
		if (n->valuestring != NULL)
			explicit_bzero(n->valuestring, strlen(n->valuestring));
		if (n->child != NULL)
			wipe_tree(n->child);
	}
}

void
secret_json_free(cJSON *doc)
{
	if (doc == NULL)
		return;
	wipe_tree(doc);
	cJSON_Delete(doc);
}

int
secret_decode_list(const void *body, size_t len, enum secret_kind kind, const char *label,
    struct creds_input *in, char *err, size_t errlen)
{
	cJSON       *doc;
	const cJSON *items, *item;
	int          rc = -1;

	if ((doc = cJSON_ParseWithLength((const char *)body, len)) == NULL ||
	    !cJSON_IsArray(items = cJSON_GetObjectItemCaseSensitive(doc, "items"))) {
		snprintf(err, errlen, "Secret %s: the answer is not a SecretList", label);
		goto out;
	}
	if ((item = cJSON_GetArrayItem(items, 0)) == NULL) {
		snprintf(err, errlen, "Secret %s: not found", label);
		goto out;
	}
	rc = secret_decode(item, kind, label, in, err, errlen);
out:
	secret_json_free(doc);
	return rc;
}

char *
secret_status_message(const void *body, size_t len, char *buf, size_t buflen)
{
	cJSON       *doc;
	const cJSON *m;

	buf[0] = '\0';
	if (len == 0 || (doc = cJSON_ParseWithLength((const char *)body, len)) == NULL)
		return buf;
	m = cJSON_GetObjectItemCaseSensitive(doc, "message");
	if (cJSON_IsString(m))
		snprintf(buf, buflen, "%s", m->valuestring);
	cJSON_Delete(doc); /* a Status carries no secret: nothing to wipe */
	return buf;
}
