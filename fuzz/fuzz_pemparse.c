/*
 * fuzz_pemparse.c: the PEM loaders alone, at parser speed: pki_load_key()
 * and pki_load_certs() on the input, then the describing helpers (key type,
 * SPKI fingerprint, validity, IP SANs) on what they return. fuzz_pem adds
 * creds_build() (key/certificate matching, signing key set-up) on top and
 * is about a hundred times slower.
 *
 * Input: the bytes of a credential file (no knob byte); fuzz_pem's seeds
 * without their first byte.
 *
 * Checked beyond "no crash": a loader returns either a value or a non-empty
 * reason, and a certificate list is never empty.
 */
#include <stdint.h>
#include <stdlib.h>

#include "fuzzpki.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzzpki_quiet();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzzpki_load_direct(data, size);
	return 0;
}
