/*
 * signer.c: CSR verification, policy and issuance (see signer.h).
 *
 * Threads: any; reads only the snapshot it is given and OpenSSL's
 * thread-safe RNG. Owns nothing beyond each call.
 *
 * Cost: OpenSSL 3 decodes a subjectPublicKeyInfo through its generic
 * decoder framework (OSSL_DECODER_CTX_new_for_pkey) whenever d2i_X509_REQ()
 * reads a CSR, and encodes it again through the encoder framework in
 * X509_set_pubkey(); for an Ed25519 CSR that set-up cost more instructions
 * than verifying and signing together (callgrind, docs/performance.md). So
 * the common CSRs (Ed25519, ECDSA P-256/P-384 with a named curve and an
 * uncompressed point) take a fast path: the CSR is read with the same ASN.1
 * as X509_REQ except that the public key stays raw bytes, the key is built
 * from those bytes directly, the signature is checked over the
 * CertificationRequestInfo as received (what X509_REQ_verify() does), and
 * the certificate gets the CSR's subjectPublicKeyInfo copied as it is (what
 * X509_set_pubkey() would write for such a key). Anything else, and any
 * fast-path failure, takes the general path (d2i_X509_REQ, X509_REQ_verify,
 * X509_set_pubkey), which also produces every error message: so both paths
 * accept, refuse and issue exactly the same.
 */
#include "signer.h"

#include <arpa/inet.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1t.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "creds.h"
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

static enum signer_status result(struct signer_result *r, enum signer_status s, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));

static enum signer_status
result(struct signer_result *r, enum signer_status s, const char *fmt, ...)
{
	va_list ap;

	r->status = s;
	va_start(ap, fmt);
	vsnprintf(r->message, sizeof(r->message), fmt, ap);
	va_end(ap);
	ERR_clear_error();
	return s;
}

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

/* Collects the DNS and IP SANs of the CSR (others are dropped). */
static GENERAL_NAMES *
csr_sans(X509_REQ *req, struct signer_result *r)
{
	STACK_OF(X509_EXTENSION) *exts;
	GENERAL_NAMES            *in = NULL, *out;
	GENERAL_NAME             *g, *copy;
	size_t                    used = 0, cap = 0;
	char                      text[INET6_ADDRSTRLEN + 8];
	const unsigned char      *d;
	int                       i, idx, n;

	if ((out = GENERAL_NAMES_new()) == NULL)
		return NULL;
	exts = X509_REQ_get_extensions(req);
	idx = X509v3_get_ext_by_NID(exts, NID_subject_alt_name, -1);
	if (idx >= 0)
		in = X509V3_EXT_d2i(X509v3_get_ext(exts, idx));
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	if (idx >= 0 && in == NULL) {
		GENERAL_NAMES_free(out);
		return NULL;
	}
	for (i = 0; i < sk_GENERAL_NAME_num(in); i++) {
		g = sk_GENERAL_NAME_value(in, i);
		if (g->type != GEN_DNS && g->type != GEN_IPADD)
			continue;
		if ((copy = GENERAL_NAME_dup(g)) == NULL || !sk_GENERAL_NAME_push(out, copy)) {
			GENERAL_NAME_free(copy);
			goto fail;
		}
		r->nsans_total++;
	}
	/* Text forms for the audit record (bounded). */
	cap = 64 * SIGNER_MAX_AUDIT_SANS;
	if ((r->sans_buf = malloc(cap)) == NULL)
		goto fail;
	for (i = 0; i < sk_GENERAL_NAME_num(out) && r->nsans < SIGNER_MAX_AUDIT_SANS; i++) {
		g = sk_GENERAL_NAME_value(out, i);
		d = ASN1_STRING_get0_data(
		    g->type == GEN_DNS ? (ASN1_STRING *)g->d.dNSName : g->d.iPAddress);
		n = ASN1_STRING_length(
		    g->type == GEN_DNS ? (ASN1_STRING *)g->d.dNSName : g->d.iPAddress);
		if (g->type == GEN_DNS)
			snprintf(text, sizeof(text), "%.*s", n > 60 ? 60 : n, d);
		else if (n == 4)
			inet_ntop(AF_INET, d, text, sizeof(text));
		else if (n == 16)
			inet_ntop(AF_INET6, d, text, sizeof(text));
		else
			snprintf(text, sizeof(text), "invalid-ip");
		if (used + strlen(text) + 1 > cap)
			break;
		memcpy(r->sans_buf + used, text, strlen(text) + 1);
		r->sans[r->nsans++] = r->sans_buf + used;
		used += strlen(text) + 1;
	}
	GENERAL_NAMES_free(in);
	return out;
fail:
	GENERAL_NAMES_free(in);
	GENERAL_NAMES_free(out);
	return NULL;
}

static int
peer_in_sans(GENERAL_NAMES *sans, const char *peer)
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

static X509_NAME *
strip_org(const X509_NAME *in, int *removed)
{
	X509_NAME *n;
	int        i;

	*removed = 0;
	if ((n = X509_NAME_dup(in)) == NULL)
		return NULL;
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
set_serial(X509 *x, struct signer_result *r)
{
	unsigned char raw[16];
	BIGNUM       *bn = NULL;
	ASN1_INTEGER *ai = NULL;
	int           ok = 0;

	do {
		if (RAND_bytes(raw, sizeof(raw)) != 1)
			return 0;
		raw[0] &= 0x7f;               /* positive, < 2^127 */
	} while (raw[0] == 0 && raw[1] == 0); /* keep it long and non-zero */
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

/*
 * The fast path's view of a CSR: PKCS#10 with the same ASN.1 templates as
 * OpenSSL's X509_REQ (attributes OPTIONAL, like OpenSSL, to tolerate
 * requests that omit an empty set), except that subjectPublicKeyInfo is a
 * plain algorithm + BIT STRING, so that nothing decodes the key. The info
 * keeps its received encoding, over which the signature is checked.
 * (Typedefs, unlike the rest of this file: the ASN.1 macros need type names.)
 */
typedef struct {
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

/*
 * OpenSSL's ASN.1 templates for the three structures above: the same shape
 * as X509_REQ, with the public key left as raw bytes.
 */
/* clang-format off */
ASN1_SEQUENCE(CSR_SPKI) = {
	ASN1_SIMPLE(CSR_SPKI, alg, X509_ALGOR),
	ASN1_SIMPLE(CSR_SPKI, key, ASN1_BIT_STRING)
} static_ASN1_SEQUENCE_END(CSR_SPKI)

ASN1_SEQUENCE_enc(CSR_INFO, enc, NULL) = {
	ASN1_SIMPLE(CSR_INFO, version, ASN1_INTEGER),
	ASN1_SIMPLE(CSR_INFO, subject, X509_NAME),
	ASN1_SIMPLE(CSR_INFO, spki, CSR_SPKI),
	ASN1_IMP_SET_OF_OPT(CSR_INFO, attributes, X509_ATTRIBUTE, 0)
} static_ASN1_SEQUENCE_END_ref(CSR_INFO, CSR_INFO)

ASN1_SEQUENCE(CSR_RAW) = {
	ASN1_SIMPLE(CSR_RAW, info, CSR_INFO),
	ASN1_SIMPLE(CSR_RAW, sig_alg, X509_ALGOR),
	ASN1_SIMPLE(CSR_RAW, signature, ASN1_BIT_STRING)
} static_ASN1_SEQUENCE_END(CSR_RAW); /* the ';' ends the macros for clang-format */
/* clang-format on */

/* An EVP_PKEY from the raw SPKI of an Ed25519 or ECDSA P-256/P-384 key, or NULL. */
static EVP_PKEY *
fast_key(const CSR_SPKI *spki)
{
	const ASN1_OBJECT   *obj;
	const void          *pval;
	const unsigned char *pt = ASN1_STRING_get0_data(spki->key);
	EVP_PKEY_CTX        *ctx = NULL;
	EVP_PKEY            *k = NULL;
	OSSL_PARAM           params[3];
	int                  ptype, len = ASN1_STRING_length(spki->key), curve;
	size_t               want;

	if ((spki->key->flags & 0x7) != 0) /* unused bits */
		return NULL;
	X509_ALGOR_get0(&obj, &ptype, &pval, spki->alg);
	switch (OBJ_obj2nid(obj)) {
	case NID_ED25519:
		/* RFC 8410: parameters absent (OpenSSL refuses others). */
		if (ptype != V_ASN1_UNDEF || len != 32)
			return NULL;
		return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pt, 32);
	case NID_X9_62_id_ecPublicKey:
		if (ptype != V_ASN1_OBJECT)
			return NULL; /* explicit curve parameters */
		curve = OBJ_obj2nid(pval);
		if (curve == NID_X9_62_prime256v1)
			want = 65;
		else if (curve == NID_secp384r1)
			want = 97;
		else
			return NULL;
		/* Uncompressed points only, so the copied SPKI is what OpenSSL writes. */
		if (len < 0 || (size_t)len != want || pt[0] != 0x04)
			return NULL;
		params[0] = OSSL_PARAM_construct_utf8_string(
		    OSSL_PKEY_PARAM_GROUP_NAME, (char *)OBJ_nid2sn(curve), 0);
		params[1] =
		    OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pt, want);
		params[2] = OSSL_PARAM_construct_end();
		if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
		    EVP_PKEY_fromdata_init(ctx) <= 0 ||
		    EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params) <= 0)
			k = NULL;
		EVP_PKEY_CTX_free(ctx);
		return k;
	default: return NULL;
	}
}

/*
 * Verifies the CSR's signature the way ASN1_item_verify() does for these
 * key types: the signature algorithm must name the key's type (Ed25519 with
 * absent parameters; ECDSA with SHA-256/384/512), the BIT STRING must have
 * no unused bits, and the signature covers the received encoding of the
 * CertificationRequestInfo. 1 if it verifies.
 */
static int
fast_verify(const CSR_RAW *csr, EVP_PKEY *pub)
{
	const ASN1_OBJECT *obj;
	const EVP_MD      *md = NULL;
	EVP_MD_CTX        *ctx;
	int                ptype, mdnid, pknid, ok;

	if ((csr->signature->flags & 0x7) != 0 || csr->info->enc.enc == NULL ||
	    csr->info->enc.len <= 0)
		return 0;
	X509_ALGOR_get0(&obj, &ptype, NULL, csr->sig_alg);
	if (!OBJ_find_sigid_algs(OBJ_obj2nid(obj), &mdnid, &pknid))
		return 0;
	if (pknid == NID_ED25519) {
		if (mdnid != NID_undef || ptype != V_ASN1_UNDEF ||
		    EVP_PKEY_get_base_id(pub) != EVP_PKEY_ED25519)
			return 0;
	} else if (pknid == NID_X9_62_id_ecPublicKey) {
		if (ptype != V_ASN1_UNDEF || EVP_PKEY_get_base_id(pub) != EVP_PKEY_EC)
			return 0;
		if (mdnid == NID_sha256)
			md = EVP_sha256();
		else if (mdnid == NID_sha384)
			md = EVP_sha384();
		else if (mdnid == NID_sha512)
			md = EVP_sha512();
		else
			return 0;
	} else
		return 0;
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return 0;
	ok = EVP_DigestVerifyInit(ctx, NULL, md, NULL, pub) == 1 &&
	    EVP_DigestVerify(ctx, ASN1_STRING_get0_data(csr->signature),
		(size_t)ASN1_STRING_length(csr->signature), csr->info->enc.enc,
		(size_t)csr->info->enc.len) == 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

/* The CSR's signature algorithm, from whichever path read it. */
static const X509_ALGOR *
csr_sig_alg(const X509_REQ *req, const CSR_RAW *raw)
{
	const X509_ALGOR *alg = NULL;

	if (raw != NULL)
		return raw->sig_alg;
	X509_REQ_get0_signature(req, NULL, &alg);
	return alg;
}

/*
 * The fast path's read of a CSR: on success returns a verified request
 * shell carrying the CSR's subject and attributes (everything the rest of
 * signer_issue() reads), and sets *pub (new reference) and *spki (owned by
 * *raw, free with ASN1_item_free). Returns NULL when the general path must
 * decide; the error queue is then cleared.
 */
static X509_REQ *
fast_read(const unsigned char *der, long dlen, CSR_RAW **raw, EVP_PKEY **pub)
{
	const unsigned char *p = der;
	CSR_RAW             *csr;
	X509_REQ            *req = NULL;
	EVP_PKEY            *k = NULL;
	int                  i;

	*raw = NULL;
	*pub = NULL;
	csr = (CSR_RAW *)ASN1_item_d2i(NULL, &p, dlen, ASN1_ITEM_rptr(CSR_RAW));
	if (csr == NULL || p != der + dlen || (k = fast_key(csr->info->spki)) == NULL ||
	    !fast_verify(csr, k))
		goto fail;
	if ((req = X509_REQ_new()) == NULL || !X509_REQ_set_subject_name(req, csr->info->subject))
		goto fail;
	for (i = 0; i < sk_X509_ATTRIBUTE_num(csr->info->attributes); i++)
		if (!X509_REQ_add1_attr(req, sk_X509_ATTRIBUTE_value(csr->info->attributes, i)))
			goto fail;
	*raw = csr;
	*pub = k;
	return req;
fail:
	X509_REQ_free(req);
	EVP_PKEY_free(k);
	ASN1_item_free((ASN1_VALUE *)csr, ASN1_ITEM_rptr(CSR_RAW));
	ERR_clear_error();
	return NULL;
}

/* Gives the certificate the CSR's subjectPublicKeyInfo as received. 1 or 0. */
static int
fast_set_pubkey(X509 *x, const CSR_SPKI *spki)
{
	const ASN1_OBJECT *obj;
	const void        *pval;
	ASN1_OBJECT       *o = NULL, *param = NULL;
	unsigned char     *bits = NULL;
	int                ptype, len = ASN1_STRING_length(spki->key);

	X509_ALGOR_get0(&obj, &ptype, &pval, spki->alg);
	if ((o = OBJ_dup(obj)) == NULL ||
	    (ptype == V_ASN1_OBJECT && (param = OBJ_dup(pval)) == NULL) ||
	    (bits = OPENSSL_memdup(ASN1_STRING_get0_data(spki->key), (size_t)len)) == NULL)
		goto fail;
	if (!X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(x), o,
		ptype == V_ASN1_OBJECT ? V_ASN1_OBJECT : V_ASN1_UNDEF, param, bits, len))
		goto fail;
	return 1;
fail:
	ASN1_OBJECT_free(o);
	ASN1_OBJECT_free(param);
	OPENSSL_free(bits);
	return 0;
}

/* Fills the audit fields (key type, CN) of a request. */
static void
describe(X509_REQ *req, EVP_PKEY *pub, struct signer_result *r, enum key_type *kt, int *bits)
{
	ASN1_STRING *cn;
	int          idx;

	*kt = pki_key_type(pub, bits);
	snprintf(r->key_type, sizeof(r->key_type), "%s", pki_key_type_name(*kt));
	idx = X509_NAME_get_index_by_NID(X509_REQ_get_subject_name(req), NID_commonName, -1);
	if (idx >= 0) {
		cn = X509_NAME_ENTRY_get_data(
		    X509_NAME_get_entry(X509_REQ_get_subject_name(req), idx));
		snprintf(r->cn, sizeof(r->cn), "%.*s",
		    ASN1_STRING_length(cn) > 200 ? 200 : ASN1_STRING_length(cn),
		    (const char *)ASN1_STRING_get0_data(cn));
	}
}

/*
 * The key policy, decided from the public key alone: family, RSA size and
 * RSA public exponent. It runs before the signature is verified, so that a
 * key built to make verification expensive (an RSA exponent of thousands of
 * bits costs ~30x a normal verification) is refused for the price of a
 * parse. Exponents outside [2, 2^31-1] are refused as Go's crypto/rsa
 * refuses them. Returns 0, or -1 with the reason in `why`.
 */
static int
key_policy(const struct signer_policy *pol, EVP_PKEY *pub, enum key_type kt, int bits,
    const char *name, char *why, size_t whylen)
{
	BIGNUM *e = NULL;
	int     rc = -1;

	if ((pki_key_family(kt) & pol->allowed_families) == 0)
		snprintf(why, whylen, "key type %s not allowed", name);
	else if (kt == KEY_RSA && bits < pol->min_rsa_bits)
		snprintf(why, whylen, "RSA key of %d bits is below %d", bits, pol->min_rsa_bits);
	else if (kt == KEY_RSA &&
	    (!EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_E, &e) || BN_num_bits(e) > 31 ||
		BN_is_zero(e) || BN_is_one(e)))
		snprintf(why, whylen, "RSA public exponent outside [2, 2^31-1]");
	else
		rc = 0;
	BN_free(e);
	ERR_clear_error();
	return rc;
}

enum signer_status
signer_issue(const struct creds *c, const unsigned char *csr, size_t len,
    const struct signer_params *pp, struct signer_result *r)
{
	const struct signer_policy *pol = &pp->policy;
	unsigned char              *der = NULL;
	const unsigned char        *p;
	long                        dlen = 0;
	X509_REQ                   *req = NULL;
	X509                       *x = NULL;
	X509_NAME                  *subj = NULL;
	EVP_PKEY                   *pub, *fastpub = NULL;
	CSR_RAW                    *raw = NULL;
	GENERAL_NAMES              *sans = NULL;
	ASN1_BIT_STRING            *ku = NULL;
	EXTENDED_KEY_USAGE         *eku = NULL;
	AUTHORITY_KEYID            *akid = NULL;
	ASN1_OBJECT                *obj;
	BIO                        *bio = NULL;
	BUF_MEM                    *mem;
	enum key_type               kt;
	enum signer_status          st;
	char                        why[128];
	time_t                      now = (time_t)pp->now;
	int                         bits;

	memset(r, 0, sizeof(*r));
	if (pol->max_csr_bytes > 0 && len > pol->max_csr_bytes)
		return result(r, SIGNER_DENIED, "CSR refused by policy: %s", "CSR too large");
	if (first_pem_block(csr, len, &der, &dlen) == -1)
		return result(r, SIGNER_BAD_DECODE, "%s", "failed to decode CSR");
	if ((req = fast_read(der, dlen, &raw, &fastpub)) != NULL) {
		pub = fastpub;
		goto verified;
	}
	p = der;
	req = d2i_X509_REQ(NULL, &p, dlen);
	if (req == NULL || p != der + dlen) {
		st = result(r, SIGNER_BAD_PARSE, "failed to parse CSR: %s",
		    "not a well-formed PKCS#10 request");
		goto out;
	}
	if ((pub = X509_REQ_get0_pubkey(req)) == NULL) {
		st =
		    result(r, SIGNER_BAD_PARSE, "failed to parse CSR: %s", "unreadable public key");
		goto out;
	}
	describe(req, pub, r, &kt, &bits);
	if (key_policy(pol, pub, kt, bits, r->key_type, why, sizeof(why)) == -1) {
		st = result(r, SIGNER_DENIED, "CSR refused by policy: %s", why);
		goto out;
	}
	if (X509_REQ_verify(req, pub) != 1) {
		st = result(r, SIGNER_BAD_PARSE, "failed to parse CSR: %s",
		    "signature verification failed");
		goto out;
	}
	if (0) {
	verified:
		describe(req, pub, r, &kt, &bits);
	}
	if ((sans = csr_sans(req, r)) == NULL) {
		st = result(
		    r, SIGNER_BAD_PARSE, "failed to parse CSR: %s", "malformed subjectAltName");
		goto out;
	}

	/*
	 * The rest of the policy, after the signature so that refusals describe
	 * a real CSR. The fast path (Ed25519, ECDSA: cheap to verify) meets the
	 * key policy here; the general path met it before verifying.
	 */
	if (raw != NULL && key_policy(pol, pub, kt, bits, r->key_type, why, sizeof(why)) == -1) {
		st = result(r, SIGNER_DENIED, "CSR refused by policy: %s", why);
		goto out;
	}
	if (pol->max_sans > 0 && r->nsans_total > pol->max_sans) {
		snprintf(why, sizeof(why), "%zu SANs exceed the limit of %u", r->nsans_total,
		    pol->max_sans);
		st = result(r, SIGNER_DENIED, "CSR refused by policy: %s", why);
		goto out;
	}
	if (pol->require_peer_ip_san && !peer_in_sans(sans, pp->peer_ip)) {
		st = result(r, SIGNER_DENIED, "CSR refused by policy: %s",
		    "caller address is not among the CSR's IP SANs");
		goto out;
	}

	/* Build the certificate. */
	st = result(r, SIGNER_INTERNAL, "%s", "failed to sign CSR");
	if ((x = X509_new()) == NULL || !X509_set_version(x, X509_VERSION_3) || !set_serial(x, r) ||
	    !X509_set_issuer_name(x, X509_get_subject_name(c->ca_cert)) ||
	    (subj = strip_org(X509_REQ_get_subject_name(req), &r->org_removed)) == NULL ||
	    !X509_set_subject_name(x, subj) ||
	    X509_time_adj_ex(X509_getm_notBefore(x), 0, -(long)(pp->backdate_ms / 1000), &now) ==
		NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), 0, (long)(pp->ttl_ms / 1000), &now) == NULL ||
	    !(raw != NULL ? fast_set_pubkey(x, raw->info->spki) : X509_set_pubkey(x, pub))) {
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
	if (sk_GENERAL_NAME_num(sans) > 0 &&
	    !add_ext(x, NID_subject_alt_name, X509_NAME_entry_count(subj) == 0, sans)) {
		log_ssl("signer: subjectAltName");
		goto out;
	}
	if ((akid = AUTHORITY_KEYID_new()) == NULL ||
	    (akid->keyid = ASN1_OCTET_STRING_new()) == NULL ||
	    !ASN1_OCTET_STRING_set(akid->keyid, c->akid, (int)c->akid_len) ||
	    !add_ext(x, NID_authority_key_identifier, 0, akid)) {
		log_ssl("signer: authorityKeyIdentifier");
		goto out;
	}
	if (X509_sign(x, c->ca_key, sign_md(c->ca_type, csr_sig_alg(req, raw))) <= 0) {
		log_ssl("signer: X509_sign");
		goto out;
	}
	if ((bio = BIO_new(BIO_s_mem())) == NULL || !PEM_write_bio_X509(bio, x)) {
		log_ssl("signer: PEM_write_bio_X509");
		goto out;
	}
	BIO_get_mem_ptr(bio, &mem);
	if ((r->crt_pem = malloc(mem->length + 1)) == NULL)
		goto out;
	memcpy(r->crt_pem, mem->data, mem->length);
	r->crt_pem[mem->length] = '\0';
	r->crt_len = mem->length;
	st = result(r, SIGNER_OK, "%s", "");
out:
	BIO_free(bio);
	AUTHORITY_KEYID_free(akid);
	sk_ASN1_OBJECT_free(eku); /* OBJ_nid2obj objects are static */
	ASN1_BIT_STRING_free(ku);
	GENERAL_NAMES_free(sans);
	X509_NAME_free(subj);
	X509_free(x);
	X509_REQ_free(req);
	EVP_PKEY_free(fastpub);
	ASN1_item_free((ASN1_VALUE *)raw, ASN1_ITEM_rptr(CSR_RAW));
	OPENSSL_free(der);
	return st;
}
