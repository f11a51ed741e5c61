/*
 * test_secret.c: Secret JSON -> credential parts (mirrors src/secret.c).
 * The PKI is generated at test time (testutil); the JSON is built here the
 * way the API server serialises a Secret (data values in standard base64).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "creds.h"
#include "credsrc.h"
#include "credstore.h"
#include "metrics.h"
#include "secret.h"
#include "testutil.h"

static char *
b64(const char *s)
{
	size_t n = strlen(s);
	char  *o = malloc(4 * ((n + 2) / 3) + 1);

	cr_assert_not_null(o);
	EVP_EncodeBlock((unsigned char *)o, (const unsigned char *)s, (int)n);
	return o;
}

/* Adds key=base64(val) to data. */
static void
put(cJSON *data, const char *key, const char *val)
{
	char *v = b64(val);

	cJSON_AddStringToObject(data, key, v);
	free(v);
}

static cJSON *
secret_obj(const char *kind, cJSON **data)
{
	cJSON *o = cJSON_CreateObject(), *md;

	if (kind != NULL)
		cJSON_AddStringToObject(o, "kind", kind);
	md = cJSON_AddObjectToObject(o, "metadata");
	cJSON_AddStringToObject(md, "name", "talos-ca");
	cJSON_AddStringToObject(md, "namespace", "tcs");
	cJSON_AddStringToObject(md, "resourceVersion", "4711");
	cJSON_AddStringToObject(md, "uid", "0b7e1c2a-0000-4000-8000-000000000001");
	*data = cJSON_AddObjectToObject(o, "data");
	return o;
}

static int
part_is(const struct creds_input *in, enum creds_field f, const char *want)
{
	const struct creds_part *p = &in->part[f];

	return p->present && p->data.len == strlen(want) &&
	    memcmp(p->data.data, want, p->data.len) == 0;
}

Test(secret, ca_secret_decodes_every_key_and_builds)
{
	struct tu_pki      pki;
	struct creds_input in;
	struct creds      *c;
	cJSON             *o, *data;
	char               err[512];

	tu_pki_make(&pki, TU_ED25519);
	o = secret_obj("Secret", &data);
	put(data, "tls.crt", pki.ca_pem);
	put(data, "tls.key", pki.ca_key_pem); /* Talos "ED25519 PRIVATE KEY" label */
	put(data, "token", TU_TOKEN "\n");
	put(data, "accepted-cas.crt", pki.ca_pem);
	put(data, "unrelated", "ignored");

	creds_input_init(&in);
	cr_assert_eq(
	    secret_decode(o, SECRET_CA, "tcs/talos-ca", &in, err, sizeof(err)), 0, "%s", err);
	cr_assert(part_is(&in, CF_CA_CERT, pki.ca_pem));
	cr_assert(part_is(&in, CF_CA_KEY, pki.ca_key_pem));
	cr_assert(part_is(&in, CF_TOKEN, TU_TOKEN "\n"));
	cr_assert(part_is(&in, CF_ACCEPTED_CAS, pki.ca_pem));
	cr_assert(!in.part[CF_TLS_CERT].present && !in.part[CF_TLS_KEY].present);
	cr_assert_str_eq(in.part[CF_CA_KEY].origin, "Secret tcs/talos-ca key tls.key");

	/* Add the serving pair from a second (cert-manager) Secret: a full snapshot. */
	secret_json_free(o);
	o = secret_obj("Secret", &data);
	put(data, "tls.crt", pki.tls_pem);
	put(data, "tls.key", pki.tls_key_pem);
	put(data, "ca.crt", "not even PEM: ignored");
	cr_assert_eq(
	    secret_decode(o, SECRET_TLS, "tcs/serving", &in, err, sizeof(err)), 0, "%s", err);
	cr_assert(part_is(&in, CF_TLS_CERT, pki.tls_pem));
	c = creds_build(&in, (long long)time(NULL), err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	cr_assert(creds_token_ok(c, TU_TOKEN, strlen(TU_TOKEN)));
	creds_release(c);
	creds_input_free(&in);
	secret_json_free(o);
	tu_pki_free(&pki);
}

Test(secret, missing_required_key_names_the_key)
{
	struct tu_pki      pki;
	struct creds_input in;
	cJSON             *o, *data;
	char               err[512];

	tu_pki_make(&pki, TU_P256);
	o = secret_obj("Secret", &data);
	put(data, "tls.crt", pki.ca_pem);
	put(data, "tls.key", pki.ca_key_pem);
	creds_input_init(&in);
	cr_assert_eq(secret_decode(o, SECRET_CA, "tcs/talos-ca", &in, err, sizeof(err)), -1);
	cr_assert(strstr(err, "token") != NULL && strstr(err, "tcs/talos-ca") != NULL, "%s", err);
	/* An empty value counts as missing. */
	cJSON_AddStringToObject(data, "token", "");
	cr_assert_eq(secret_decode(o, SECRET_CA, "tcs/talos-ca", &in, err, sizeof(err)), -1);
	cr_assert(strstr(err, "token") != NULL, "%s", err);
	/* accepted-cas.crt is optional. */
	cJSON_DeleteItemFromObject(data, "token");
	put(data, "token", TU_TOKEN);
	cr_assert_eq(
	    secret_decode(o, SECRET_CA, "tcs/talos-ca", &in, err, sizeof(err)), 0, "%s", err);
	cr_assert(!in.part[CF_ACCEPTED_CAS].present);
	creds_input_free(&in);
	secret_json_free(o);
	tu_pki_free(&pki);
}

Test(secret, bad_base64_wrong_kind_and_no_data_are_refused)
{
	struct creds_input in;
	cJSON             *o, *data;
	char               err[512];

	creds_input_init(&in);
	o = secret_obj("Secret", &data);
	cJSON_AddStringToObject(data, "tls.crt", "!!!notbase64");
	cJSON_AddStringToObject(data, "tls.key", "aGVsbG8=");
	cr_assert_eq(secret_decode(o, SECRET_TLS, "tcs/s", &in, err, sizeof(err)), -1);
	cr_assert(strstr(err, "tls.crt") != NULL && strstr(err, "base64") != NULL, "%s", err);
	cr_assert(strstr(err, "!!!") == NULL, "the value must not be echoed: %s", err);
	secret_json_free(o);

	o = secret_obj("ConfigMap", &data);
	put(data, "tls.crt", "x");
	put(data, "tls.key", "y");
	cr_assert_eq(secret_decode(o, SECRET_TLS, "tcs/s", &in, err, sizeof(err)), -1);
	secret_json_free(o);

	/* A list item has no kind: accepted. */
	o = secret_obj(NULL, &data);
	put(data, "tls.crt", "x");
	put(data, "tls.key", "y");
	cr_assert_eq(secret_decode(o, SECRET_TLS, "tcs/s", &in, err, sizeof(err)), 0, "%s", err);
	cr_assert(part_is(&in, CF_TLS_KEY, "y"));
	secret_json_free(o);

	/* A value that is not a string. */
	o = secret_obj("Secret", &data);
	cJSON_AddNumberToObject(data, "tls.crt", 5);
	put(data, "tls.key", "y");
	cr_assert_eq(secret_decode(o, SECRET_TLS, "tcs/s", &in, err, sizeof(err)), -1);
	secret_json_free(o);

	/* No data at all. */
	o = cJSON_Parse("{\"kind\":\"Secret\",\"metadata\":{\"name\":\"s\"}}");
	cr_assert_eq(secret_decode(o, SECRET_TLS, "tcs/s", &in, err, sizeof(err)), -1);
	cr_assert(strstr(err, "tls.crt") != NULL, "%s", err);
	secret_json_free(o);
	creds_input_free(&in);
}

Test(secret, metadata_and_groups)
{
	cJSON      *o, *data;
	const char *name, *ns, *rv, *uid;

	o = secret_obj("Secret", &data);
	secret_meta(o, &name, &ns, &rv, &uid);
	cr_assert_str_eq(name, "talos-ca");
	cr_assert_str_eq(ns, "tcs");
	cr_assert_str_eq(rv, "4711");
	cr_assert_str_eq(uid, "0b7e1c2a-0000-4000-8000-000000000001");
	secret_json_free(o);
	o = cJSON_Parse("{\"metadata\":{\"resourceVersion\":7}}");
	secret_meta(o, &name, NULL, &rv, NULL);
	cr_assert_str_eq(name, "");
	cr_assert_str_eq(rv, "", "a non-string resourceVersion is ignored");
	secret_json_free(o);
	secret_json_free(NULL);
	cr_assert_eq(secret_groups(SECRET_CA), CF_GROUP_CA);
	cr_assert_eq(secret_groups(SECRET_TLS), CF_GROUP_TLS);
	cr_assert_str_eq(secret_cjson_version(), cJSON_Version());
}

Test(secret, through_the_assembler_a_broken_secret_keeps_the_last_good)
{
	struct credstore      *st = credstore_new();
	struct credsrc        *cs = credsrc_new(st);
	struct credsrc_source *sca, *stls;
	struct tu_pki          pki, pki2;
	struct creds_input     in;
	cJSON                 *o, *data;
	char                   err[512];

	sca = credsrc_register(
	    cs, secret_groups(SECRET_CA), "Secret tcs/ca", MS_CA_SECRET, err, sizeof(err));
	stls = credsrc_register(
	    cs, secret_groups(SECRET_TLS), "Secret tcs/srv", MS_TLS_SECRET, err, sizeof(err));
	cr_assert(sca != NULL && stls != NULL, "%s", err);

	tu_pki_make(&pki, TU_ED25519);
	tu_pki_make(&pki2, TU_P256);
	creds_input_init(&in);
	o = secret_obj("Secret", &data);
	put(data, "tls.crt", pki.tls_pem);
	put(data, "tls.key", pki.tls_key_pem);
	cr_assert_eq(secret_decode(o, SECRET_TLS, "tcs/srv", &in, err, sizeof(err)), 0);
	cr_assert_eq(credsrc_submit(stls, &in, "1", err, sizeof(err)), CREDSRC_PENDING);
	secret_json_free(o);
	creds_input_free(&in);

	creds_input_init(&in);
	o = secret_obj("Secret", &data);
	put(data, "tls.crt", pki.ca_pem);
	put(data, "tls.key", pki.ca_key_pem);
	put(data, "token", TU_TOKEN);
	cr_assert_eq(secret_decode(o, SECRET_CA, "tcs/ca", &in, err, sizeof(err)), 0);
	cr_assert_eq(credsrc_submit(sca, &in, "2", err, sizeof(err)), CREDSRC_PUBLISHED, "%s", err);
	secret_json_free(o);
	creds_input_free(&in);

	/* A CA Secret whose key belongs to another CA: refused, generation 1 stays. */
	creds_input_init(&in);
	o = secret_obj("Secret", &data);
	put(data, "tls.crt", pki.ca_pem);
	put(data, "tls.key", pki2.ca_key_pem);
	put(data, "token", TU_TOKEN);
	cr_assert_eq(secret_decode(o, SECRET_CA, "tcs/ca", &in, err, sizeof(err)), 0);
	cr_assert_eq(credsrc_submit(sca, &in, "3", err, sizeof(err)), CREDSRC_INVALID);
	cr_assert(strstr(err, "Secret tcs/ca key tls") != NULL, "%s", err);
	cr_assert_eq(credstore_generation(st), 1);
	secret_json_free(o);
	creds_input_free(&in);
	credsrc_free(cs);
	credstore_free(st);
	tu_pki_free(&pki);
	tu_pki_free(&pki2);
}

/* What `check` reads in Kubernetes mode: a LIST answer, and a Status on refusal. */
Test(secret, list_answers_and_status_messages)
{
	struct tu_pki      pki;
	struct creds_input in;
	cJSON             *list, *items, *o, *data;
	char              *body, err[512], msg[256];
	const char *status = "{\"kind\":\"Status\",\"status\":\"Failure\",\"message\":\"secrets "
			     "\\\"talos-ca\\\" is forbidden: cannot list resource\",\"code\":403}";

	tu_pki_make(&pki, TU_ED25519);
	o = secret_obj(NULL, &data); /* list items carry no kind */
	put(data, "tls.crt", pki.ca_pem);
	put(data, "tls.key", pki.ca_key_pem);
	put(data, "token", TU_TOKEN);
	put(data, "accepted-tokens", "newtok.0123456789abcdef\n");
	list = cJSON_CreateObject();
	items = cJSON_AddArrayToObject(list, "items");
	cJSON_AddItemToArray(items, o);
	body = cJSON_PrintUnformatted(list);
	creds_input_init(&in);
	cr_assert_eq(secret_decode_list(
			 body, strlen(body), SECRET_CA, "tcs/talos-ca", &in, err, sizeof(err)),
	    0, "%s", err);
	cr_assert(part_is(&in, CF_ACCEPTED_TOKENS, "newtok.0123456789abcdef\n"));
	cr_assert_str_eq(
	    in.part[CF_ACCEPTED_TOKENS].origin, "Secret tcs/talos-ca key accepted-tokens");
	creds_input_free(&in);
	free(body);
	secret_json_free(list);

	creds_input_init(&in);
	cr_assert_eq(
	    secret_decode_list("{\"items\":[]}", 12, SECRET_CA, "tcs/typo", &in, err, sizeof(err)),
	    -1);
	cr_assert_str_eq(err, "Secret tcs/typo: not found");
	cr_assert_eq(
	    secret_decode_list("not json", 8, SECRET_CA, "tcs/x", &in, err, sizeof(err)), -1);
	creds_input_free(&in);

	cr_assert_str_eq(secret_status_message(status, strlen(status), msg, sizeof(msg)),
	    "secrets \"talos-ca\" is forbidden: cannot list resource");
	cr_assert_str_eq(secret_status_message("", 0, msg, sizeof(msg)), "");
	tu_pki_free(&pki);
}
