/*
 * fuzz_pem.c: PEM key and certificate loading (pki_load_key(),
 * pki_load_certs() and the describing helpers) and the snapshot builder
 * (creds_build()) on fuzzed parts.
 *
 * Input: the first byte picks which credential part the rest replaces (CA
 * certificate, CA key, token, accepted CAs, serving certificate, serving
 * key); the other parts stay valid, so creds_build() gets past them and
 * validates the fuzzed one against real material. The rest is also given to
 * both loaders directly.
 *
 * Checked beyond "no crash": a loader returns either a value or a non-empty
 * reason; a snapshot that builds has a CA, a key and a token digest.
 *
 * Slow by nature (a few hundred inputs a second): creds_build() checks that
 * each private key matches its certificate, builds the Ed25519 signing key
 * and the TLS material, on every input. The loaders alone are fuzzed at
 * parser speed by fuzz_pemparse.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "creds.h"
#include "fuzzpki.h"
#include "pki.h"

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
	enum creds_field   f;
	char               err[256];

	if (size < 1)
		return 0;
	f = (enum creds_field)(data[0] % CF__MAX);
	data++;
	size--;
	fuzzpki_load_direct(data, size);

	fuzzpki_input(&pki, &in);
	if (creds_input_set(&in, f, data, size, "fuzz") == -1)
		abort();
	err[0] = '\0';
	if ((c = creds_build(&in, now, err, sizeof(err))) != NULL) {
		if (c->ca_cert == NULL || c->ca_key == NULL || c->tls_leaf == NULL)
			abort();
		creds_release(c);
	} else if (err[0] == '\0')
		abort();
	creds_input_free(&in);
	return 0;
}
