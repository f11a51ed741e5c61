/*
 * csr.c: reading and judging a certificate request (see csr.h).
 *
 * DESIGN: one reading of a CSR serves every engine and key family. The
 * request is decoded with X509_REQ's ASN.1, the public key left raw, and the
 * key is then read by the cheapest means that gives what OpenSSL's
 * d2i_X509_REQ() would:
 *   - Ed25519 (parameters absent, 32 bytes, no unused bits): its raw bytes;
 *     no EVP_PKEY (OpenSSL 3's generic decoder costs more than verifying
 *     and signing an Ed25519 CSR together: docs/performance.md);
 *   - ECDSA P-256/P-384, named curve, uncompressed point, no unused bits:
 *     EVP_PKEY_fromdata() on the point, which refuses a point off the curve
 *     as the decoder does;
 *   - anything else: OpenSSL's decoder on the received subjectPublicKeyInfo
 *     (d2i_PUBKEY), exactly what d2i_X509_REQ() runs.
 * The requested extensions are found as X509_REQ_get_extensions() finds
 * them (extensionRequest, then msExtReq; a missing or unreadable set means
 * no extensions). The order of the outcomes: a request is read completely
 * first (anything unreadable is INVALID_ARGUMENT, whatever the policy),
 * then csr_judge_key(), then (signer.c) the signature, then
 * csr_judge_request().
 *
 * Threads: any. Owns: the struct csr it fills; nothing between calls.
 */
#include "csr.h"

#include <arpa/inet.h>

#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>

/*
 * OpenSSL's ASN.1 templates for the structures of csr.h: the same shape as
 * X509_REQ, with the public key left as raw bytes.
 */
/* clang-format off */
ASN1_SEQUENCE_enc(CSR_SPKI, enc, NULL) = {
	ASN1_SIMPLE(CSR_SPKI, alg, X509_ALGOR),
	ASN1_SIMPLE(CSR_SPKI, key, ASN1_BIT_STRING)
} static_ASN1_SEQUENCE_END_ref(CSR_SPKI, CSR_SPKI)

ASN1_SEQUENCE_enc(CSR_INFO, enc, NULL) = {
	ASN1_SIMPLE(CSR_INFO, version, ASN1_INTEGER),
	ASN1_SIMPLE(CSR_INFO, subject, X509_NAME),
	ASN1_SIMPLE(CSR_INFO, spki, CSR_SPKI),
	ASN1_IMP_SET_OF_OPT(CSR_INFO, attributes, X509_ATTRIBUTE, 0)
} ASN1_SEQUENCE_END_ref(CSR_INFO, CSR_INFO)

ASN1_SEQUENCE(CSR_RAW) = {
	ASN1_SIMPLE(CSR_RAW, info, CSR_INFO),
	ASN1_SIMPLE(CSR_RAW, sig_alg, X509_ALGOR),
	ASN1_SIMPLE(CSR_RAW, signature, ASN1_BIT_STRING)
} static_ASN1_SEQUENCE_END(CSR_RAW); /* the ';' ends the macros for clang-format */
/* clang-format on */

#define BAD_PARSE(r, why) signer_result_set(r, SIGNER_BAD_PARSE, "failed to parse CSR: %s", why)
#define DENIED(r, ...)    signer_result_set(r, SIGNER_DENIED, "CSR refused by policy: " __VA_ARGS__)

/* Reads the first PEM block of any label (Go's pem.Decode semantics). */
static int
first_pem_block(const unsigned char *in, size_t len, unsigned char **der, long *dlen)
{
	BIO  *bio;
	char *name = NULL, *header = NULL;
	int   ok;

	*der = NULL;
	if (len > INT32_MAX || (bio = BIO_new_mem_buf(in, (int)len)) == NULL)
		return -1;
	ok = PEM_read_bio(bio, &name, &header, der, dlen);
	OPENSSL_free(name);
	OPENSSL_free(header);
	BIO_free(bio);
	return ok ? 0 : -1;
}

/* An EC key from an uncompressed point on a named curve, or NULL. */
static EVP_PKEY *
ec_key(int curve, const unsigned char *pt, size_t len)
{
	EVP_PKEY_CTX *ctx;
	EVP_PKEY     *k = NULL;
	OSSL_PARAM    params[3];

	params[0] = OSSL_PARAM_construct_utf8_string(
	    OSSL_PKEY_PARAM_GROUP_NAME, (char *)OBJ_nid2sn(curve), 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pt, len);
	params[2] = OSSL_PARAM_construct_end();
	if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		k = NULL;
	EVP_PKEY_CTX_free(ctx);
	return k;
}

/*
 * Reads the public key (see DESIGN above): sets kt, bits, pub, ed25519
 * and spki_as_received. 0, or -1 when OpenSSL could not read the key.
 */
static int
read_key(struct csr *csr)
{
	const CSR_SPKI      *spki = csr->raw->info->spki;
	const ASN1_OBJECT   *obj;
	const void          *pval;
	const unsigned char *pt = ASN1_STRING_get0_data(spki->key), *p;
	int                  ptype, len = ASN1_STRING_length(spki->key), curve = NID_undef, plain;
	size_t               n = sizeof(csr->ed25519);

	X509_ALGOR_get0(&obj, &ptype, &pval, spki->alg);
	plain = (spki->key->flags & 0x7) == 0; /* no unused bits */
	if (ptype == V_ASN1_OBJECT)
		curve = OBJ_obj2nid(pval);
	switch (OBJ_obj2nid(obj)) {
	case NID_ED25519:
		if (!plain || ptype != V_ASN1_UNDEF || len != 32)
			break;
		memcpy(csr->ed25519, pt, 32);
		csr->kt = KEY_ED25519;
		csr->bits = 253; /* what OpenSSL reports for Ed25519 */
		csr->spki_as_received = 1;
		return 0;
	case NID_X9_62_id_ecPublicKey:
		if (!plain || len < 1 || pt[0] != 0x04 ||
		    !((curve == NID_X9_62_prime256v1 && len == 65) ||
			(curve == NID_secp384r1 && len == 97)))
			break;
		if ((csr->pub = ec_key(curve, pt, (size_t)len)) == NULL)
			return -1;
		csr->kt = pki_key_type(csr->pub, &csr->bits);
		csr->spki_as_received = 1;
		return 0;
	default: break;
	}
	/* Everything else: what d2i_X509_REQ() does, on the received bytes. */
	if (spki->enc.enc == NULL || spki->enc.len <= 0)
		return -1;
	p = spki->enc.enc;
	if ((csr->pub = d2i_PUBKEY(NULL, &p, (long)spki->enc.len)) == NULL)
		return -1;
	csr->kt = pki_key_type(csr->pub, &csr->bits);
	if (csr->kt == KEY_ED25519 &&
	    (EVP_PKEY_get_raw_public_key(csr->pub, csr->ed25519, &n) != 1 || n != 32))
		return -1;
	return 0;
}

/* The requested extensions, found as X509_REQ_get_extensions() finds them. */
static STACK_OF(X509_EXTENSION) *
requested_extensions(const CSR_INFO *info)
{
	static const int     nids[] = { NID_ext_req, NID_ms_ext_req };
	const ASN1_TYPE     *ext = NULL;
	const unsigned char *p;
	size_t               i;
	int                  idx;

	for (i = 0; i < sizeof(nids) / sizeof(nids[0]); i++) {
		if ((idx = X509at_get_attr_by_NID(info->attributes, nids[i], -1)) < 0)
			continue;
		ext = X509_ATTRIBUTE_get0_type(X509at_get_attr(info->attributes, idx), 0);
		break;
	}
	if (ext == NULL)
		return sk_X509_EXTENSION_new_null();
	if (ext->type != V_ASN1_SEQUENCE)
		return NULL;
	p = ext->value.sequence->data;
	return (STACK_OF(X509_EXTENSION) *)ASN1_item_d2i(
	    NULL, &p, ext->value.sequence->length, ASN1_ITEM_rptr(X509_EXTENSIONS));
}

/* Text forms of the SANs for the audit record (bounded); 0 or -1. */
static int
describe_sans(const GENERAL_NAMES *sans, struct signer_result *r)
{
	const GENERAL_NAME  *g;
	const ASN1_STRING   *s;
	const unsigned char *d;
	size_t               used = 0, cap = 64 * SIGNER_MAX_AUDIT_SANS, tl;
	char                 text[INET6_ADDRSTRLEN + 8];
	int                  i, n;

	if ((r->sans_buf = malloc(cap)) == NULL)
		return -1;
	for (i = 0; i < sk_GENERAL_NAME_num(sans) && r->nsans < SIGNER_MAX_AUDIT_SANS; i++) {
		g = sk_GENERAL_NAME_value(sans, i);
		s = g->type == GEN_DNS ? (const ASN1_STRING *)g->d.dNSName : g->d.iPAddress;
		d = ASN1_STRING_get0_data(s);
		n = ASN1_STRING_length(s);
		if (g->type == GEN_DNS)
			snprintf(text, sizeof(text), "%.*s", n > 60 ? 60 : n, d);
		else if (n == 4)
			inet_ntop(AF_INET, d, text, sizeof(text));
		else if (n == 16)
			inet_ntop(AF_INET6, d, text, sizeof(text));
		else
			snprintf(text, sizeof(text), "invalid-ip");
		tl = strlen(text) + 1;
		if (used + tl > cap)
			break;
		memcpy(r->sans_buf + used, text, tl);
		r->sans[r->nsans++] = r->sans_buf + used;
		used += tl;
	}
	return 0;
}

/*
 * Collects the DNS and IP SANs (others are dropped) into csr->sans.
 * 0, or -1 with *malformed set when the extension does not decode.
 */
static int
read_sans(struct csr *csr, struct signer_result *r, int *malformed)
{
	STACK_OF(X509_EXTENSION) *exts;
	GENERAL_NAMES            *in = NULL;
	GENERAL_NAME             *g, *copy;
	int                       i, idx, rc = -1;

	*malformed = 0;
	if ((csr->sans = GENERAL_NAMES_new()) == NULL)
		return -1;
	exts = requested_extensions(csr->raw->info);
	if ((idx = X509v3_get_ext_by_NID(exts, NID_subject_alt_name, -1)) >= 0 &&
	    (in = X509V3_EXT_d2i(X509v3_get_ext(exts, idx))) == NULL)
		*malformed = 1;
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	if (*malformed)
		goto out;
	for (i = 0; i < sk_GENERAL_NAME_num(in); i++) {
		g = sk_GENERAL_NAME_value(in, i);
		if (g->type != GEN_DNS && g->type != GEN_IPADD)
			continue;
		if ((copy = GENERAL_NAME_dup(g)) == NULL ||
		    !sk_GENERAL_NAME_push(csr->sans, copy)) {
			GENERAL_NAME_free(copy);
			goto out;
		}
		r->nsans_total++;
	}
	rc = describe_sans(csr->sans, r);
out:
	GENERAL_NAMES_free(in);
	return rc;
}

/* The audit fields of the subject: the first CN (bounded). */
static void
describe_subject(const X509_NAME *subject, struct signer_result *r)
{
	const ASN1_STRING *cn;
	int                idx;

	if ((idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1)) < 0)
		return;
	cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx));
	snprintf(r->cn, sizeof(r->cn), "%.*s",
	    ASN1_STRING_length(cn) > 200 ? 200 : ASN1_STRING_length(cn),
	    (const char *)ASN1_STRING_get0_data(cn));
}

/* Reads csr->der (already set). */
static enum signer_status
read_der(struct csr *csr, struct signer_result *r)
{
	const unsigned char *p = csr->der;
	int                  malformed;

	csr->raw = (CSR_RAW *)ASN1_item_d2i(NULL, &p, csr->derlen, ASN1_ITEM_rptr(CSR_RAW));
	if (csr->raw == NULL || p != csr->der + csr->derlen)
		return BAD_PARSE(r, "not a well-formed PKCS#10 request");
	if (read_key(csr) == -1)
		return BAD_PARSE(r, "unreadable public key");
	snprintf(r->key_type, sizeof(r->key_type), "%s", pki_key_type_name(csr->kt));
	describe_subject(csr->raw->info->subject, r);
	if (read_sans(csr, r, &malformed) == -1)
		return malformed
		    ? BAD_PARSE(r, "malformed subjectAltName")
		    : signer_result_set(r, SIGNER_INTERNAL, "%s", "failed to sign CSR");
	ERR_clear_error();
	return SIGNER_OK;
}

static void
csr_init(struct csr *csr, struct signer_result *r)
{
	memset(csr, 0, sizeof(*csr));
	csr->kt = KEY_OTHER;
	memset(r, 0, sizeof(*r));
}

enum signer_status
csr_read(const unsigned char *pem, size_t len, struct csr *csr, struct signer_result *r)
{
	csr_init(csr, r);
	if (first_pem_block(pem, len, &csr->der, &csr->derlen) == -1)
		return signer_result_set(r, SIGNER_BAD_DECODE, "%s", "failed to decode CSR");
	return read_der(csr, r);
}

enum signer_status
csr_read_der(const unsigned char *der, size_t len, struct csr *csr, struct signer_result *r)
{
	csr_init(csr, r);
	if (len > INT32_MAX || (csr->der = OPENSSL_malloc(len + 1)) == NULL)
		return signer_result_set(r, SIGNER_INTERNAL, "%s", "failed to sign CSR");
	memcpy(csr->der, der, len);
	csr->derlen = (long)len;
	return read_der(csr, r);
}

enum signer_status
csr_judge_key(const struct csr *csr, const struct signer_policy *pol, struct signer_result *r)
{
	BIGNUM            *e = NULL;
	enum signer_status st = SIGNER_OK;

	if ((pki_key_family(csr->kt) & pol->allowed_families) == 0)
		st = DENIED(r, "key type %s not allowed", pki_key_type_name(csr->kt));
	else if (csr->kt == KEY_RSA && csr->bits < pol->min_rsa_bits)
		st = DENIED(r, "RSA key of %d bits is below %d", csr->bits, pol->min_rsa_bits);
	else if (csr->kt == KEY_RSA &&
	    (!EVP_PKEY_get_bn_param(csr->pub, OSSL_PKEY_PARAM_RSA_E, &e) || BN_num_bits(e) > 31 ||
		BN_is_zero(e) || BN_is_one(e)))
		st = DENIED(r, "%s", "RSA public exponent outside [2, 2^31-1]");
	BN_free(e);
	ERR_clear_error();
	return st;
}

/* 1 if `peer` (text) is one of the IP SANs. */
static int
peer_in_sans(const GENERAL_NAMES *sans, const char *peer)
{
	unsigned char       buf[16];
	const GENERAL_NAME *g;
	int                 i, len;

	if (peer == NULL)
		return 0;
	if (inet_pton(AF_INET, peer, buf) == 1)
		len = 4;
	else if (inet_pton(AF_INET6, peer, buf) == 1)
		len = 16;
	else
		return 0;
	for (i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
		g = sk_GENERAL_NAME_value(sans, i);
		if (g->type == GEN_IPADD && ASN1_STRING_length(g->d.iPAddress) == len &&
		    memcmp(ASN1_STRING_get0_data(g->d.iPAddress), buf, (size_t)len) == 0)
			return 1;
	}
	return 0;
}

enum signer_status
csr_judge_request(const struct csr *csr, const struct signer_policy *pol, const char *peer_ip,
    struct signer_result *r)
{
	if (pol->max_sans > 0 && r->nsans_total > pol->max_sans)
		return DENIED(r, "%zu SANs exceed the limit of %u", r->nsans_total, pol->max_sans);
	if (pol->require_peer_ip_san && !peer_in_sans(csr->sans, peer_ip))
		return DENIED(r, "%s", "caller address is not among the CSR's IP SANs");
	return SIGNER_OK;
}

const X509_ALGOR *
csr_sig_alg(const struct csr *csr)
{
	return csr->raw != NULL ? csr->raw->sig_alg : NULL;
}

const ASN1_BIT_STRING *
csr_signature(const struct csr *csr)
{
	return csr->raw != NULL ? csr->raw->signature : NULL;
}

void
csr_free(struct csr *csr)
{
	GENERAL_NAMES_free(csr->sans);
	EVP_PKEY_free(csr->pub);
	ASN1_item_free((ASN1_VALUE *)csr->raw, ASN1_ITEM_rptr(CSR_RAW));
	OPENSSL_free(csr->der);
	memset(csr, 0, sizeof(*csr));
	csr->kt = KEY_OTHER;
}
