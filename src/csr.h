/*
 * csr.h: reading and judging a certificate request, without cryptography.
 *
 * The first half of signer_issue() (signer.h): PEM, PKCS#10 DER, the public
 * key's description, the subject, the requested DNS and IP SANs, and the
 * policy (key family, RSA size and exponent, SAN count, peer address). No
 * signature is checked or made here, so the parser fuzz target (fuzz_csrparse)
 * runs thousands of times faster than the whole path (fuzz_csr). Whatever the
 * engine (signer.h), a CSR is read by these functions and nothing else.
 *
 * Every function fills the caller's struct signer_result: the audit fields
 * (CN, key type, SANs) as soon as they are known, the status and message on
 * a refusal. Any thread; no I/O, no globals.
 */
#ifndef TCS_CSR_H
#define TCS_CSR_H

#include <stddef.h>

#include <openssl/asn1t.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "pki.h"
#include "signer.h"

/*
 * A PKCS#10 request as received: the same ASN.1 as OpenSSL's X509_REQ
 * (attributes OPTIONAL, like OpenSSL, to tolerate requests that omit an
 * empty set), except that subjectPublicKeyInfo is a plain algorithm + BIT
 * STRING, so that nothing decodes the key while parsing. The info and the
 * SPKI keep their received encodings: the signature covers the first, and
 * the certificate may copy the second. (Typedefs, unlike the rest of the
 * code: OpenSSL's ASN.1 macros need type names.)
 */
typedef struct {
	ASN1_ENCODING    enc;
	X509_ALGOR      *alg;
	ASN1_BIT_STRING *key;
} CSR_SPKI;

typedef struct {
	ASN1_ENCODING             enc;
	ASN1_INTEGER             *version;
	X509_NAME                *subject;
	CSR_SPKI                 *spki;
	STACK_OF(X509_ATTRIBUTE) *attributes;
} CSR_INFO;

typedef struct {
	CSR_INFO        *info;
	X509_ALGOR      *sig_alg;
	ASN1_BIT_STRING *signature;
} CSR_RAW;

DECLARE_ASN1_ITEM(CSR_INFO)

/* A request read by csr_read(); release with csr_free(). */
struct csr {
	unsigned char *der; /* the decoded PEM block (OPENSSL_free) */
	long           derlen;
	CSR_RAW       *raw;
	enum key_type  kt;
	int            bits;
	/*
	 * The public key: an EVP_PKEY for every family but Ed25519 read from
	 * its raw bytes (then NULL: libsodium needs none, and OpenSSL builds one
	 * only when it verifies). `ed25519` holds the 32 key bytes of any
	 * Ed25519 key.
	 */
	EVP_PKEY     *pub;
	unsigned char ed25519[32];
	/*
	 * 1 when the certificate gets the CSR's subjectPublicKeyInfo as
	 * received (Ed25519, and ECDSA P-256/P-384 with a named curve and an
	 * uncompressed point: what X509_set_pubkey() would write for them); 0
	 * when it is encoded again from `pub`.
	 */
	int            spki_as_received;
	GENERAL_NAMES *sans; /* the DNS and IP SANs, in order */
};

/*
 * Reads `pem` (first PEM block of any label, Go's pem.Decode semantics)
 * into `csr` (initialised here; csr_free() it whatever the result).
 * SIGNER_BAD_DECODE: no PEM block; SIGNER_BAD_PARSE: not a complete DER
 * PKCS#10 request, a public key OpenSSL cannot read, or a malformed
 * subjectAltName; SIGNER_INTERNAL: out of memory. `r` gets the audit
 * fields and, on failure, the status and message.
 */
enum signer_status csr_read(
    const unsigned char *pem, size_t len, struct csr *csr, struct signer_result *r);

/* csr_read() on DER bytes (no PEM); takes a copy of `der`. */
enum signer_status csr_read_der(
    const unsigned char *der, size_t len, struct csr *csr, struct signer_result *r);

/*
 * The key policy, from the public key alone: family, RSA size, RSA public
 * exponent in [2, 2^31-1] (Go's crypto/rsa bound). It runs before the
 * signature is checked, so that a key built to make verification expensive
 * is refused for the price of a parse. SIGNER_OK or SIGNER_DENIED.
 */
enum signer_status csr_judge_key(
    const struct csr *, const struct signer_policy *, struct signer_result *r);

/*
 * The rest of the policy, judged after the signature so that refusals
 * describe a real CSR: the SAN count, and the caller's address among the
 * IP SANs (`peer_ip` text, or NULL). SIGNER_OK or SIGNER_DENIED.
 */
enum signer_status csr_judge_request(
    const struct csr *, const struct signer_policy *, const char *peer_ip, struct signer_result *r);

/* The signature algorithm, signature and signed bytes of a read CSR. */
const X509_ALGOR      *csr_sig_alg(const struct csr *);
const ASN1_BIT_STRING *csr_signature(const struct csr *);

/* Frees what csr_read() allocated; `csr` may then be read again. */
void csr_free(struct csr *);

#endif /* TCS_CSR_H */
