/*
 * fuzz_csr.c: the CSR path of one Certificate call: PEM decoding, PKCS#10
 * parsing, signature verification, policy and signing (signer_issue()),
 * against a fixed snapshot built once at start-up.
 *
 * Input: either a PEM text (used as it is), or anything else, which is taken
 * as DER and wrapped in a "CERTIFICATE REQUEST" PEM block first, so that the
 * fuzzer mutates the ASN.1 directly instead of fighting base64. The first
 * byte of a DER input is not part of the CSR: its bits choose the policy
 * (peer-IP rule, SAN limit, allowed families), so refusals are reached too.
 *
 * Checked beyond "no crash": an OK result carries exactly one PEM
 * CERTIFICATE that parses, has no Organization and is issued by the CA;
 * every other result carries no certificate.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "creds.h"
#include "fuzzpki.h"
#include "pki.h"
#include "signer.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct creds *snap;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snap = fuzzpki_snapshot("fuzz_csr");
	return 0;
}

/* PEM-wraps DER; returns a malloc'd text. */
static unsigned char *
wrap(const uint8_t *der, size_t len, size_t *outlen)
{
	BIO           *b;
	unsigned char *s = NULL;
	char          *p;
	long           n;

	if ((b = BIO_new(BIO_s_mem())) == NULL)
		abort();
	if (PEM_write_bio(b, "CERTIFICATE REQUEST", "", der, (long)len) > 0 &&
	    (n = BIO_get_mem_data(b, &p)) > 0 && (s = malloc((size_t)n)) != NULL) {
		memcpy(s, p, (size_t)n);
		*outlen = (size_t)n;
	}
	BIO_free(b);
	return s;
}

static void
check_issued(const struct signer_result *r)
{
	BIO  *b;
	X509 *x, *extra;

	if (r->crt_pem == NULL || r->crt_len == 0)
		abort();
	if ((b = BIO_new_mem_buf(r->crt_pem, (int)r->crt_len)) == NULL)
		abort();
	if ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) == NULL)
		abort(); /* issued something unparsable */
	if ((extra = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
		abort(); /* more than one block */
	if (X509_NAME_get_index_by_NID(X509_get_subject_name(x), NID_organizationName, -1) >= 0)
		abort(); /* an O survived */
	if (X509_check_issued(snap->ca_cert, x) != X509_V_OK)
		abort();
	if (X509_verify(x, snap->ca_key) != 1)
		abort();
	X509_free(x);
	BIO_free(b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct signer_params sp;
	struct signer_result r;
	unsigned char       *pem = NULL;
	size_t               plen = 0;
	uint8_t              knobs = 0;

	memset(&sp, 0, sizeof(sp));
	signer_policy_defaults(&sp.policy);
	sp.ttl_ms = 24 * 3600 * 1000LL;
	sp.backdate_ms = 60 * 1000;
	sp.now = (long long)time(NULL);
	sp.peer_ip = "127.0.0.1";
	if (size >= 5 && memcmp(data, "-----", 5) == 0) {
		signer_issue(snap, data, size, &sp, &r);
	} else {
		if (size > 0) {
			knobs = data[0];
			data++;
			size--;
		}
		sp.policy.require_peer_ip_san = knobs & 1;
		if (knobs & 2)
			sp.policy.max_sans = 1;
		if (knobs & 4)
			sp.policy.allowed_families = KEYFAM_ED25519;
		if (knobs & 8)
			sp.peer_ip = "::1";
		if ((pem = wrap(data, size, &plen)) == NULL)
			return 0;
		signer_issue(snap, pem, plen, &sp, &r);
	}
	if (r.status == SIGNER_OK)
		check_issued(&r);
	else if (r.crt_pem != NULL || r.status >= SIGNER__MAX)
		abort();
	signer_result_free(&r);
	free(pem);
	return 0;
}
