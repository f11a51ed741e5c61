/*
 * fuzz_csrparse.c: the reading and judging half of a Certificate call, at
 * parser speed: csr_read() (PEM) or csr_read_der() (DER), then
 * csr_judge_key() and csr_judge_request() (csr.h). No signature is checked
 * or made, no snapshot is needed; fuzz_csr drives the whole pipeline.
 *
 * Input: the same as fuzz_csr, so the two share seeds: a PEM text (used as
 * it is), or anything else: a knob byte choosing the policy (bit 0 the
 * peer-IP rule, bit 1 a SAN limit of 1, bit 2 Ed25519 only, bit 3 an IPv6
 * peer, bit 4 a 4096-bit RSA minimum), then DER.
 *
 * Checked beyond "no crash": every result has a known status and a refusal
 * has a message; a request that reads has a known key type named in the
 * audit fields, its DNS/IP SAN count matches the list the certificate
 * would get, the audit SANs are bounded and point into their buffer, and
 * an Ed25519 key's bytes are those of its EVP_PKEY when there is one; the
 * key policy refuses exactly the families and sizes the knobs exclude.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "csr.h"
#include "fuzzpki.h"
#include "pki.h"
#include "signer.h"

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

static void
check_read(const struct csr *csr, const struct signer_result *r)
{
	unsigned char raw[32];
	size_t        i, n = sizeof(raw);

	if (csr->kt >= KEY__MAX || strcmp(r->key_type, pki_key_type_name(csr->kt)) != 0)
		abort();
	if ((size_t)sk_GENERAL_NAME_num(csr->sans) != r->nsans_total)
		abort(); /* the audit count is not what the certificate gets */
	if (r->nsans > SIGNER_MAX_AUDIT_SANS || r->nsans > r->nsans_total)
		abort();
	for (i = 0; i < r->nsans; i++)
		if (r->sans[i] < r->sans_buf ||
		    r->sans[i] >= r->sans_buf + 64 * SIGNER_MAX_AUDIT_SANS)
			abort();
	if (memchr(r->cn, '\0', sizeof(r->cn)) == NULL)
		abort();
	if (csr->kt == KEY_ED25519 && csr->pub != NULL &&
	    (EVP_PKEY_get_raw_public_key(csr->pub, raw, &n) != 1 ||
		memcmp(raw, csr->ed25519, 32) != 0))
		abort();
	if (csr->kt != KEY_ED25519 && csr->pub == NULL)
		abort(); /* only Ed25519 may be read without an EVP_PKEY */
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct signer_policy pol;
	struct signer_result r;
	struct csr           csr;
	enum signer_status   st;
	const char          *peer = "127.0.0.1";
	uint8_t              knobs = 0;

	signer_policy_defaults(&pol);
	if (size >= 5 && memcmp(data, "-----", 5) == 0)
		st = csr_read(data, size, &csr, &r);
	else {
		if (size > 0) {
			knobs = data[0];
			data++;
			size--;
		}
		pol.require_peer_ip_san = knobs & 1;
		if (knobs & 2)
			pol.max_sans = 1;
		if (knobs & 4)
			pol.allowed_families = KEYFAM_ED25519;
		if (knobs & 8)
			peer = "::1";
		if (knobs & 16)
			pol.min_rsa_bits = 4096;
		st = csr_read_der(data, size, &csr, &r);
	}
	if (st >= SIGNER__MAX || st == SIGNER_DENIED || r.status != st)
		abort();
	if (st != SIGNER_OK && r.message[0] == '\0')
		abort();
	if (st == SIGNER_OK) {
		check_read(&csr, &r);
		st = csr_judge_key(&csr, &pol, &r);
		if (st != SIGNER_OK && st != SIGNER_DENIED)
			abort();
		if ((pki_key_family(csr.kt) & pol.allowed_families) == 0 && st != SIGNER_DENIED)
			abort(); /* a family outside the policy got through */
		if (csr.kt == KEY_RSA && csr.bits < pol.min_rsa_bits && st != SIGNER_DENIED)
			abort();
		if (st == SIGNER_OK) {
			st = csr_judge_request(&csr, &pol, peer, &r);
			if (st != SIGNER_OK && st != SIGNER_DENIED)
				abort();
			if (pol.max_sans > 0 && r.nsans_total > pol.max_sans && st != SIGNER_DENIED)
				abort();
		}
	}
	if (r.crt_pem != NULL)
		abort(); /* reading never issues */
	csr_free(&csr);
	signer_result_free(&r);
	return 0;
}
