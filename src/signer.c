/*
 * signer.c: CSR verification and issuance (see signer.h).
 *
 * DESIGN: signer_issue() is one pipeline of named steps, the same for every
 * engine and every key family:
 *
 *   read (csr.c) -> key policy (csr.c) -> verify -> request policy (csr.c)
 *     -> build -> sign
 *
 * Only verify and sign look at the engine, and only for Ed25519: verify
 * runs libsodium (SIGNER_ENGINE_FAST) or ASN1_item_verify(), which is what
 * X509_REQ_verify() runs (SIGNER_ENGINE_OPENSSL, and every other family);
 * sign runs libsodium for an Ed25519 CA (FAST) or X509_sign(). Both Ed25519
 * verifiers first pass ed25519_is_strict(), and the libsodium one checks
 * the signature algorithm as ASN1_item_verify() does, so the two engines
 * accept, refuse and issue the same (tests/unit/test_ed25519.c compares
 * them on hundreds of CSRs, certificates byte for byte). Everything that
 * reads the CSR is in csr.c, without cryptography, so that it can be fuzzed
 * at parser speed (fuzz_csrparse); fuzz_csr drives the whole pipeline.
 *
 * Threads: any; reads only the snapshot it is given and OpenSSL's
 * thread-safe RNG. Owns nothing beyond each call.
 */
#include "signer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "creds.h"
#include "csr.h"
#include "ed25519.h"
#include "log.h"
#include "pki.h"

static const char *const status_names[SIGNER__MAX] = { "issued", "invalid_csr", "invalid_csr",
	"policy_denied", "internal_error" };

const char *
signer_status_name(enum signer_status s)
{
	return s < SIGNER__MAX ? status_names[s] : "unknown";
}

void
signer_policy_defaults(struct signer_policy *p)
{
	p->max_csr_bytes = 16384;
	p->max_sans = 256;
	p->allowed_families = KEYFAM_ALL;
	p->min_rsa_bits = 2048;
	p->require_peer_ip_san = 0;
}

void
signer_result_free(struct signer_result *r)
{
	free(r->sans_buf);
	free(r->crt_pem);
	r->sans_buf = NULL;
	r->crt_pem = NULL;
	r->nsans = 0;
}

enum signer_status
signer_result_set(struct signer_result *r, enum signer_status s, const char *fmt, ...)
{
	va_list ap;

	r->status = s;
	va_start(ap, fmt);
	vsnprintf(r->message, sizeof(r->message), fmt, ap);
	va_end(ap);
	ERR_clear_error();
	return s;
}

/*
 * Removes every Organization from the request's own subject, in place (the
 * request is ours and freed after the call; X509_set_subject_name() copies
 * the result into the certificate). Returns n.
 */
static X509_NAME *
strip_org(X509_NAME *n, int *removed)
{
	int i;

	*removed = 0;
	while ((i = X509_NAME_get_index_by_NID(n, NID_organizationName, -1)) >= 0) {
		X509_NAME_ENTRY_free(X509_NAME_delete_entry(n, i));
		*removed = 1;
	}
	return n;
}

static int
add_ext(X509 *x, int nid, int crit, void *value)
{
	X509_EXTENSION *e;
	int             ok;

	if ((e = X509V3_EXT_i2d(nid, crit, value)) == NULL)
		return 0;
	ok = X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	return ok;
}

static int
set_serial(X509 *x, const unsigned char *fixed, struct signer_result *r)
{
	unsigned char raw[16];
	BIGNUM       *bn = NULL;
	ASN1_INTEGER *ai = NULL;
	int           ok = 0;

	do {
		if (fixed != NULL)
			memcpy(raw, fixed, sizeof(raw)); /* tests: reproducible certificates */
		else if (RAND_bytes(raw, sizeof(raw)) != 1)
			return 0;
		raw[0] &= 0x7f;                                /* positive, < 2^127 */
	} while (fixed == NULL && raw[0] == 0 && raw[1] == 0); /* keep it long and non-zero */
	if ((bn = BN_bin2bn(raw, sizeof(raw), NULL)) != NULL &&
	    (ai = BN_to_ASN1_INTEGER(bn, NULL)) != NULL && X509_set_serialNumber(x, ai))
		ok = 1;
	util_hex(raw, sizeof(raw), r->serial);
	ASN1_INTEGER_free(ai);
	BN_free(bn);
	return ok;
}

/*
 * The digest the certificate is signed with, as trustd chooses it: the CSR's
 * own signature algorithm whenever it fits the CA key (trustd sets the
 * template's SignatureAlgorithm from the CSR, and Go refuses one that does not
 * match the CA key). An RSA CA with a sha512WithRSAEncryption CSR signs
 * SHA512-RSA; an ECDSA CA signs with the CSR's ECDSA hash whatever its curve;
 * Ed25519 is always pure. Where it cannot fit (the worker's key family differs
 * from the CA's, which trustd refuses, or a hash trustd would not sign with),
 * our own choice from the CA key: SHA-256, SHA-384 for P-384, SHA-512 for P-521.
 * RSA-PSS CSRs get PKCS#1 v1.5 with the CSR's hash (XXX: trustd would sign PSS;
 * no Talos release sends a PSS CSR).
 */
static const EVP_MD *
sign_md(enum key_type ca, const X509_ALGOR *csr_alg)
{
	const ASN1_OBJECT *obj = NULL;
	int                mdnid = NID_undef, pknid = NID_undef, fits;

	if (ca == KEY_ED25519)
		return NULL;
	if (csr_alg != NULL) {
		X509_ALGOR_get0(&obj, NULL, NULL, csr_alg);
		if (OBJ_find_sigid_algs(OBJ_obj2nid(obj), &mdnid, &pknid) &&
		    (mdnid == NID_sha256 || mdnid == NID_sha384 || mdnid == NID_sha512)) {
			fits = ca == KEY_RSA ? pknid == NID_rsaEncryption || pknid == NID_rsassaPss
					     : pknid == NID_X9_62_id_ecPublicKey;
			if (fits)
				return EVP_get_digestbynid(mdnid);
		}
	}
	switch (ca) {
	case KEY_ECDSA_P384: return EVP_sha384();
	case KEY_ECDSA_P521: return EVP_sha512();
	default: return EVP_sha256();
	}
}

/* Appends a DER length to p; returns the bytes written (at most 5). */
static size_t
der_len(unsigned char *p, size_t len)
{
	size_t n = 0, i;

	if (len < 0x80) {
		p[0] = (unsigned char)len;
		return 1;
	}
	for (i = len; i > 0; i >>= 8)
		n++;
	p[0] = (unsigned char)(0x80 | n);
	for (i = 0; i < n; i++)
		p[1 + i] = (unsigned char)(len >> (8 * (n - 1 - i)));
	return 1 + n;
}

/*
 * Signs with libsodium: the TBSCertificate gets the Ed25519 algorithm
 * identifier (what X509_sign() sets), is encoded once, signed, and wrapped
 * as Certificate ::= SEQUENCE { tbs, algorithm, BIT STRING signature }:
 * the bytes X509_sign() + i2d_X509() produce, since Ed25519 is
 * deterministic. Returns 0 with *der (OPENSSL_free) and *len, or -1.
 */
static int
sign_ed25519(X509 *x, const struct ed25519_key *k, unsigned char **der, size_t *len)
{
	/* AlgorithmIdentifier { id-Ed25519 } (RFC 8410), then the BIT STRING header. */
	static const unsigned char alg[] = { 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70 };
	static const unsigned char bits[] = { 0x03, 0x41, 0x00 };
	unsigned char             *tbs = NULL, *out, *p, sig[ED25519_SIGNATURE_BYTES];
	X509_ALGOR                *tbsalg;
	size_t                     body;
	int                        tlen, rc = -1;

	/*
	 * OpenSSL 3.0 has no setter for the TBS signature algorithm besides
	 * X509_sign(); the structure is embedded, writable, in the certificate.
	 */
	tbsalg = (X509_ALGOR *)X509_get0_tbs_sigalg(x);
	if (!X509_ALGOR_set0(tbsalg, OBJ_nid2obj(NID_ED25519), V_ASN1_UNDEF, NULL) ||
	    (tlen = i2d_re_X509_tbs(x, &tbs)) <= 0) {
		log_ssl("signer: encoding the TBSCertificate");
		goto out;
	}
	if (ed25519_sign(k, tbs, (size_t)tlen, sig) == -1) {
		log_warnx("signer: Ed25519 signing failed");
		goto out;
	}
	body = (size_t)tlen + sizeof(alg) + sizeof(bits) + sizeof(sig);
	if ((out = OPENSSL_malloc(body + 6)) == NULL)
		goto out;
	p = out;
	*p++ = 0x30;
	p += der_len(p, body);
	memcpy(p, tbs, (size_t)tlen);
	p += tlen;
	memcpy(p, alg, sizeof(alg));
	p += sizeof(alg);
	memcpy(p, bits, sizeof(bits));
	p += sizeof(bits);
	memcpy(p, sig, sizeof(sig));
	p += sizeof(sig);
	*der = out;
	*len = (size_t)(p - out);
	rc = 0;
out:
	OPENSSL_free(tbs);
	return rc;
}

/*
 * Signs the certificate with the CA key and returns its DER in *der
 * (OPENSSL_free) and *len: libsodium for an Ed25519 CA (always pure
 * Ed25519) unless `engine` asks for OpenSSL, X509_sign() with digest `md`
 * (sign_md()) otherwise. 0 or -1 (logged).
 */
static int
sign_cert(X509 *x, const struct creds *c, const EVP_MD *md, enum signer_engine engine,
    unsigned char **der, size_t *len)
{
	int n;

	*der = NULL;
	*len = 0;
	if (c->ca_ed25519 != NULL && engine == SIGNER_ENGINE_FAST)
		return sign_ed25519(x, c->ca_ed25519, der, len);
	if (X509_sign(x, c->ca_key, md) <= 0) {
		log_ssl("signer: X509_sign");
		return -1;
	}
	if ((n = i2d_X509(x, der)) <= 0) {
		log_ssl("signer: i2d_X509");
		return -1;
	}
	*len = (size_t)n;
	return 0;
}

/* Gives the certificate the CSR's subjectPublicKeyInfo as received. 1 or 0. */
static int
copy_spki(X509 *x, const CSR_SPKI *spki)
{
	const ASN1_OBJECT *obj;
	const void        *pval;
	ASN1_OBJECT       *o = NULL, *param = NULL;
	unsigned char     *bits = NULL;
	int                ptype, len = ASN1_STRING_length(spki->key), rc = 0;

	X509_ALGOR_get0(&obj, &ptype, &pval, spki->alg);
	if ((o = OBJ_dup(obj)) == NULL ||
	    (ptype == V_ASN1_OBJECT && (param = OBJ_dup(pval)) == NULL) ||
	    (bits = OPENSSL_memdup(ASN1_STRING_get0_data(spki->key), (size_t)len)) == NULL)
		goto out;
	if (!X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(x), o,
		ptype == V_ASN1_OBJECT ? V_ASN1_OBJECT : V_ASN1_UNDEF, param, bits, len))
		goto out;
	o = param = NULL; /* the certificate owns them now */
	bits = NULL;
	rc = 1;
out:
	ASN1_OBJECT_free(o);
	ASN1_OBJECT_free(param);
	OPENSSL_free(bits);
	return rc;
}

/*
 * Verify, libsodium: an Ed25519 key's signature, accepted exactly when
 * ASN1_item_verify() would accept it after ed25519_is_strict(): no unused
 * bits in the signature, an algorithm that names Ed25519 without a digest
 * (its parameters are not read), and a valid signature over the
 * CertificationRequestInfo as received. 1 if it verifies.
 */
static int
verify_libsodium(const struct csr *csr)
{
	const ASN1_BIT_STRING *sig = csr_signature(csr);
	const ASN1_ENCODING   *tbs = &csr->raw->info->enc;
	const ASN1_OBJECT     *obj;
	int                    mdnid, pknid;

	X509_ALGOR_get0(&obj, NULL, NULL, csr_sig_alg(csr));
	if ((sig->flags & 0x7) != 0 || tbs->enc == NULL || tbs->len <= 0 ||
	    !OBJ_find_sigid_algs(OBJ_obj2nid(obj), &mdnid, &pknid) || mdnid != NID_undef ||
	    pknid != NID_ED25519)
		return 0;
	return ed25519_verify(csr->ed25519, tbs->enc, (size_t)tbs->len, ASN1_STRING_get0_data(sig),
	    (size_t)ASN1_STRING_length(sig));
}

/*
 * Verify, OpenSSL: ASN1_item_verify() over the CertificationRequestInfo as
 * received, which is what X509_REQ_verify() does. An Ed25519 key read from
 * its raw bytes gets its EVP_PKEY here. 1 if it verifies.
 */
static int
verify_openssl(const struct csr *csr)
{
	EVP_PKEY *k = csr->pub, *own = NULL;
	int       ok;

	if (k == NULL && csr->kt == KEY_ED25519)
		k = own = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, csr->ed25519, 32);
	if (k == NULL)
		return 0;
	ok = ASN1_item_verify(ASN1_ITEM_rptr(CSR_INFO), csr_sig_alg(csr), csr_signature(csr),
		 csr->raw->info, k) == 1;
	EVP_PKEY_free(own);
	return ok;
}

/* Step: the CSR's signature, by the engine's implementation. */
static enum signer_status
step_verify(const struct csr *csr, enum signer_engine engine, struct signer_result *r)
{
	const ASN1_BIT_STRING *sig = csr_signature(csr);
	int                    ok;

	if (csr->kt == KEY_ED25519 &&
	    !ed25519_is_strict(
		csr->ed25519, ASN1_STRING_get0_data(sig), (size_t)ASN1_STRING_length(sig)))
		ok = 0; /* both engines: see ed25519.h */
	else if (csr->kt == KEY_ED25519 && engine == SIGNER_ENGINE_FAST)
		ok = verify_libsodium(csr);
	else
		ok = verify_openssl(csr);
	if (!ok)
		return signer_result_set(r, SIGNER_BAD_PARSE, "failed to parse CSR: %s",
		    "signature verification failed");
	return SIGNER_OK;
}

/*
 * Step: the unsigned certificate (trustd's profile, signer.h) in *out
 * (X509_free). The CSR's subject loses its Organizations in place (the
 * request is ours and freed after the call).
 */
static enum signer_status
step_build(const struct creds *c, struct csr *csr, const struct signer_params *pp, X509 **out,
    struct signer_result *r)
{
	X509_NAME          *subj = csr->raw->info->subject;
	X509               *x = NULL;
	ASN1_BIT_STRING    *ku = NULL;
	EXTENDED_KEY_USAGE *eku = NULL;
	ASN1_OBJECT        *obj;
	time_t              now = (time_t)pp->now;
	enum signer_status  st = SIGNER_INTERNAL;

	*out = NULL;
	if ((x = X509_new()) == NULL || !X509_set_version(x, X509_VERSION_3) ||
	    !set_serial(x, pp->serial, r) ||
	    !X509_set_issuer_name(x, X509_get_subject_name(c->ca_cert)) ||
	    strip_org(subj, &r->org_removed) == NULL || !X509_set_subject_name(x, subj) ||
	    X509_time_adj_ex(X509_getm_notBefore(x), 0, -(long)(pp->backdate_ms / 1000), &now) ==
		NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), 0, (long)(pp->ttl_ms / 1000), &now) == NULL ||
	    !(csr->spki_as_received ? copy_spki(x, csr->raw->info->spki)
				    : X509_set_pubkey(x, csr->pub))) {
		log_ssl("signer: building certificate");
		goto out;
	}
	if ((ku = ASN1_BIT_STRING_new()) == NULL ||
	    !ASN1_BIT_STRING_set_bit(ku, 0, 1) || /* digitalSignature */
	    !add_ext(x, NID_key_usage, 1, ku) || (eku = sk_ASN1_OBJECT_new_null()) == NULL ||
	    (obj = OBJ_nid2obj(NID_server_auth)) == NULL || !sk_ASN1_OBJECT_push(eku, obj) ||
	    !add_ext(x, NID_ext_key_usage, 0, eku)) {
		log_ssl("signer: usage extensions");
		goto out;
	}
	if (sk_GENERAL_NAME_num(csr->sans) > 0 &&
	    !add_ext(x, NID_subject_alt_name, X509_NAME_entry_count(subj) == 0, csr->sans)) {
		log_ssl("signer: subjectAltName");
		goto out;
	}
	if (!X509_add_ext(x, c->akid_ext, -1)) {
		log_ssl("signer: authorityKeyIdentifier");
		goto out;
	}
	*out = x;
	x = NULL;
	st = SIGNER_OK;
out:
	sk_ASN1_OBJECT_free(eku); /* OBJ_nid2obj objects are static */
	ASN1_BIT_STRING_free(ku);
	X509_free(x);
	if (st != SIGNER_OK)
		signer_result_set(r, st, "%s", "failed to sign CSR");
	return st;
}

/* Step: signs `x` by the engine's implementation; r->crt_pem gets the PEM. */
static enum signer_status
step_sign(const struct creds *c, X509 *x, const struct csr *csr, enum signer_engine engine,
    struct signer_result *r)
{
	unsigned char     *crt = NULL;
	size_t             crtlen = 0;
	enum signer_status st = SIGNER_INTERNAL;

	if (sign_cert(x, c, sign_md(c->ca_type, csr_sig_alg(csr)), engine, &crt, &crtlen) == -1)
		goto out;
	if ((r->crt_pem = pki_der_to_pem("CERTIFICATE", crt, crtlen, &r->crt_len)) == NULL) {
		log_warnx("signer: out of memory encoding the certificate");
		goto out;
	}
	st = SIGNER_OK;
out:
	OPENSSL_free(crt);
	return signer_result_set(r, st, "%s", st == SIGNER_OK ? "" : "failed to sign CSR");
}

enum signer_status
signer_issue(const struct creds *c, const unsigned char *pem, size_t len,
    const struct signer_params *pp, struct signer_result *r)
{
	const struct signer_policy *pol = &pp->policy;
	struct csr                  csr;
	X509                       *x = NULL;
	enum signer_status          st;

	/* read: the size rule first, so that a huge input costs nothing. */
	if (pol->max_csr_bytes > 0 && len > pol->max_csr_bytes) {
		memset(r, 0, sizeof(*r));
		memset(&csr, 0, sizeof(csr));
		st = signer_result_set(
		    r, SIGNER_DENIED, "CSR refused by policy: %s", "CSR too large");
		goto out;
	}
	if ((st = csr_read(pem, len, &csr, r)) != SIGNER_OK ||
	    (st = csr_judge_key(&csr, pol, r)) != SIGNER_OK ||
	    (st = step_verify(&csr, pp->engine, r)) != SIGNER_OK ||
	    (st = csr_judge_request(&csr, pol, pp->peer_ip, r)) != SIGNER_OK ||
	    (st = step_build(c, &csr, pp, &x, r)) != SIGNER_OK)
		goto out;
	st = step_sign(c, x, &csr, pp->engine, r);
out:
	X509_free(x);
	csr_free(&csr);
	return st;
}
