/*
 * testutil.c: in-memory PKI for the unit tests (see testutil.h).
 */
#include "testutil.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

static EVP_PKEY       *cache[TU__MAX];
static pthread_mutex_t cache_mtx = PTHREAD_MUTEX_INITIALIZER;

EVP_PKEY *
tu_key_fresh(enum tu_family f)
{
	EVP_PKEY *k = NULL;

	switch (f) {
	case TU_ED25519: k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"); break;
	case TU_P256: k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"); break;
	case TU_P384: k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384"); break;
	case TU_RSA2048: k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048); break;
	case TU_RSA4096: k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)4096); break;
	case TU_RSA1024: k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024); break;
	default: break;
	}
	cr_assert_not_null(k, "key generation failed");
	return k;
}

EVP_PKEY *
tu_key(enum tu_family f)
{
	EVP_PKEY *k;

	if (f == TU_ED25519 || f == TU_P256 || f == TU_P384)
		return tu_key_fresh(f);
	pthread_mutex_lock(&cache_mtx);
	if (cache[f] == NULL)
		cache[f] = tu_key_fresh(f);
	k = cache[f];
	EVP_PKEY_up_ref(k);
	pthread_mutex_unlock(&cache_mtx);
	return k;
}

static const EVP_MD *
md_for(EVP_PKEY *k)
{
	return EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519 ? NULL : EVP_sha256();
}

static void
add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX      ctx;
	X509_EXTENSION *e;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	cr_assert_not_null(e, "extension %d", nid);
	X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
}

static void
rand_serial(X509 *x)
{
	unsigned char b[16];
	BIGNUM       *bn;

	RAND_bytes(b, sizeof(b));
	b[0] &= 0x7f;
	b[0] |= 0x01;
	bn = BN_bin2bn(b, sizeof(b), NULL);
	BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
	BN_free(bn);
}

X509 *
tu_ca(EVP_PKEY *key, int days)
{
	X509      *x = X509_new();
	X509_NAME *n = X509_NAME_new();

	X509_set_version(x, X509_VERSION_3);
	rand_serial(x);
	X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"talos", -1, -1, 0);
	X509_set_subject_name(x, n);
	X509_set_issuer_name(x, n);
	X509_NAME_free(n);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400);
	X509_set_pubkey(x, key);
	add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
	add_ext(x, x, NID_key_usage, "critical,keyCertSign,digitalSignature");
	add_ext(x, x, NID_ext_key_usage, "serverAuth,clientAuth");
	add_ext(x, x, NID_subject_key_identifier, "hash");
	cr_assert(X509_sign(x, key, md_for(key)) > 0);
	return x;
}

X509 *
tu_leaf(X509 *ca, EVP_PKEY *cakey, EVP_PKEY *pub, const char *ip, long nb, long na)
{
	X509      *x = X509_new();
	X509_NAME *n = X509_NAME_new();
	char       san[128];

	X509_set_version(x, X509_VERSION_3);
	rand_serial(x);
	X509_NAME_add_entry_by_txt(
	    n, "CN", MBSTRING_ASC, (const unsigned char *)"server", -1, -1, 0);
	X509_set_subject_name(x, n);
	X509_NAME_free(n);
	X509_set_issuer_name(x, X509_get_subject_name(ca));
	X509_gmtime_adj(X509_getm_notBefore(x), nb);
	X509_gmtime_adj(X509_getm_notAfter(x), na);
	X509_set_pubkey(x, pub);
	if (ip != NULL) {
		snprintf(san, sizeof(san), "IP:%s", ip);
		add_ext(x, ca, NID_subject_alt_name, san);
	}
	add_ext(x, ca, NID_ext_key_usage, "serverAuth");
	add_ext(x, ca, NID_authority_key_identifier, "keyid");
	cr_assert(X509_sign(x, cakey, md_for(cakey)) > 0);
	return x;
}

static char *
bio_string(BIO *b)
{
	char *p, *s;
	long  n = BIO_get_mem_data(b, &p);

	s = malloc((size_t)n + 1);
	memcpy(s, p, (size_t)n);
	s[n] = '\0';
	BIO_free(b);
	return s;
}

char *
tu_cert_pem(X509 *x)
{
	BIO *b = BIO_new(BIO_s_mem());

	PEM_write_bio_X509(b, x);
	return bio_string(b);
}

char *
tu_key_pem(EVP_PKEY *k, const char *label)
{
	BIO   *b = BIO_new(BIO_s_mem());
	char  *s, *out, *p;
	size_t n;

	PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
	s = bio_string(b);
	if (label == NULL)
		return s;
	/* Replace both "PRIVATE KEY" labels. */
	n = strlen(s) + 2 * strlen(label) + 1;
	out = calloc(1, n);
	p = strstr(s, "\n");
	snprintf(out, n, "-----BEGIN %s-----%.*s-----END %s-----\n", label,
	    (int)(strstr(s, "-----END") - p), p, label);
	free(s);
	return out;
}

char *
tu_key_pem_traditional(EVP_PKEY *k)
{
	BIO *b = BIO_new(BIO_s_mem());

	cr_assert(PEM_write_bio_PrivateKey_traditional(b, k, NULL, NULL, 0, NULL, NULL));
	return bio_string(b);
}

char *
tu_csr_pem(EVP_PKEY *key, const char *cn, const char *org, const char *const *dns,
    const char *const *ips, int with_email)
{
	return tu_csr_pem_md(key, md_for(key), cn, org, dns, ips, with_email);
}

char *
tu_csr_pem_md(EVP_PKEY *key, const EVP_MD *md, const char *cn, const char *org,
    const char *const *dns, const char *const *ips, int with_email)
{
	X509_REQ                 *r = X509_REQ_new();
	X509_NAME                *n = X509_NAME_new();
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	X509_EXTENSION           *e;
	BIO                      *b = BIO_new(BIO_s_mem());
	char                      san[8192] = "";
	size_t                    len = 0;
	int                       i;

	if (org != NULL)
		X509_NAME_add_entry_by_txt(
		    n, "O", MBSTRING_ASC, (const unsigned char *)org, -1, -1, 0);
	if (cn != NULL)
		X509_NAME_add_entry_by_txt(
		    n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_REQ_set_subject_name(r, n);
	X509_NAME_free(n);
	X509_REQ_set_pubkey(r, key);
	for (i = 0; dns != NULL && dns[i] != NULL; i++)
		len += (size_t)snprintf(
		    san + len, sizeof(san) - len, "%sDNS:%s", len ? "," : "", dns[i]);
	for (i = 0; ips != NULL && ips[i] != NULL; i++)
		len += (size_t)snprintf(
		    san + len, sizeof(san) - len, "%sIP:%s", len ? "," : "", ips[i]);
	if (with_email)
		len += (size_t)snprintf(
		    san + len, sizeof(san) - len, "%semail:a@example.com", len ? "," : "");
	if (len > 0) {
		e = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
		cr_assert_not_null(e);
		sk_X509_EXTENSION_push(exts, e);
		X509_REQ_add_extensions(r, exts);
	}
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	cr_assert(X509_REQ_sign(r, key, md) > 0);
	PEM_write_bio_X509_REQ(b, r);
	X509_REQ_free(r);
	return bio_string(b);
}

void
tu_pki_make(struct tu_pki *p, enum tu_family fam)
{
	memset(p, 0, sizeof(*p));
	p->ca_key = tu_key(fam);
	p->ca = tu_ca(p->ca_key, 3650);
	p->tls_key = tu_key(TU_P256);
	p->tls = tu_leaf(p->ca, p->ca_key, p->tls_key, "127.0.0.1", -60, 86400);
	p->ca_pem = tu_cert_pem(p->ca);
	p->ca_key_pem = tu_key_pem(p->ca_key, fam == TU_ED25519 ? "ED25519 PRIVATE KEY" : NULL);
	p->tls_pem = tu_cert_pem(p->tls);
	p->tls_key_pem = tu_key_pem(p->tls_key, NULL);
}

void
tu_pki_input(const struct tu_pki *p, struct creds_input *in)
{
	creds_input_init(in);
	creds_input_set(in, CF_CA_CERT, p->ca_pem, strlen(p->ca_pem), "CA_CERT_PATH (test)");
	creds_input_set(in, CF_CA_KEY, p->ca_key_pem, strlen(p->ca_key_pem), "CA_KEY_PATH (test)");
	creds_input_set(in, CF_TOKEN, TU_TOKEN "\n", strlen(TU_TOKEN) + 1, "TOKEN_PATH (test)");
	creds_input_set(in, CF_TLS_CERT, p->tls_pem, strlen(p->tls_pem), "TLS_CERT_PATH (test)");
	creds_input_set(
	    in, CF_TLS_KEY, p->tls_key_pem, strlen(p->tls_key_pem), "TLS_KEY_PATH (test)");
}

void
tu_pki_free(struct tu_pki *p)
{
	EVP_PKEY_free(p->ca_key);
	EVP_PKEY_free(p->tls_key);
	X509_free(p->ca);
	X509_free(p->tls);
	free(p->ca_pem);
	free(p->ca_key_pem);
	free(p->tls_pem);
	free(p->tls_key_pem);
	memset(p, 0, sizeof(*p));
}

struct creds *
tu_creds(enum tu_family fam, struct tu_pki *keep)
{
	struct tu_pki      local, *p = keep ? keep : &local;
	struct creds_input in;
	struct creds      *c;
	char               err[512];

	tu_pki_make(p, fam);
	tu_pki_input(p, &in);
	c = creds_build(&in, (long long)time(NULL), err, sizeof(err));
	cr_assert_not_null(c, "creds_build: %s", err);
	creds_input_free(&in);
	if (keep == NULL)
		tu_pki_free(p);
	return c;
}

struct signer_params
tu_signer_params(void)
{
	struct signer_params p;

	memset(&p, 0, sizeof(p));
	signer_policy_defaults(&p.policy);
	p.ttl_ms = 24LL * 3600 * 1000;
	p.backdate_ms = 60 * 1000;
	p.now = (long long)time(NULL);
	p.peer_ip = "10.0.0.5";
	return p;
}

char *
tu_capture_stderr(void (*fn)(void))
{
	static char buf[65536];
	int         p[2], saved;
	ssize_t     n;

	cr_assert_eq(pipe(p), 0);
	saved = dup(STDERR_FILENO);
	dup2(p[1], STDERR_FILENO);
	fn();
	dup2(saved, STDERR_FILENO);
	close(p[1]);
	n = read(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}
