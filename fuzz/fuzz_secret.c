/*
 * fuzz_secret.c: the Secret JSON decoder: cJSON parsing, secret_meta(),
 * secret_decode() for both kinds of Secret (base64 of every key, bounds)
 * and the wiping free, then the snapshot builder on what it decoded (a CA
 * Secret completed with a valid serving pair, and the other way round).
 *
 * Checked beyond "no crash": a refusal says why; a decoded part is never
 * larger than the base64 it came from allows.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "creds.h"
#include "fuzzpki.h"
#include "secret.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct fuzzpki pki;
static long long      now;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzzpki_quiet();
	fuzzpki_make(&pki);
	now = (long long)time(NULL);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct creds_input in;
	struct creds      *c;
	cJSON             *doc;
	const char        *name, *ns, *rv, *uid;
	char               err[256];
	int                k, f;

	if ((doc = cJSON_ParseWithLength((const char *)data, size)) == NULL)
		return 0;
	secret_meta(doc, &name, &ns, &rv, &uid);
	if (name == NULL || ns == NULL || rv == NULL || uid == NULL)
		abort();
	for (k = 0; k < SECRET__MAX; k++) {
		creds_input_init(&in);
		err[0] = '\0';
		if (secret_decode(doc, (enum secret_kind)k, "fuzz/secret", &in, err, sizeof(err)) ==
		    -1) {
			if (err[0] == '\0')
				abort();
			creds_input_free(&in);
			continue;
		}
		for (f = 0; f < CF__MAX; f++)
			if (in.part[f].present && in.part[f].data.len > size)
				abort(); /* base64 never expands */
		/* Complete with valid parts, so the builder judges the Secret's. */
		for (f = 0; f < CF__MAX; f++)
			if (!in.part[f].present && pki.pem[f] != NULL &&
			    creds_input_set(
				&in, (enum creds_field)f, pki.pem[f], pki.len[f], "fuzz") == -1)
				abort();
		if ((c = creds_build(&in, now, err, sizeof(err))) != NULL)
			creds_release(c);
		else if (err[0] == '\0')
			abort();
		creds_input_free(&in);
	}
	secret_json_free(doc);
	return 0;
}
