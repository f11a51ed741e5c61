/*
 * testutil.h: test-time PKI for the unit tests. Every key and certificate is
 * generated in memory when a test runs; nothing here is a fixture on disk.
 */
#ifndef TCS_TESTUTIL_H
#define TCS_TESTUTIL_H

#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "creds.h"
#include "signer.h"

enum tu_family { TU_ED25519, TU_P256, TU_P384, TU_RSA2048, TU_RSA4096, TU_RSA1024, TU__MAX };

/* A new key of the family (RSA keys are cached per family: generation is slow). */
EVP_PKEY *tu_key(enum tu_family);
/* A fresh (uncached) key. */
EVP_PKEY *tu_key_fresh(enum tu_family);
/* Self-signed CA "O=talos" with SKID, valid from now-1h for `days`. */
X509 *tu_ca(EVP_PKEY *key, int days);
/* Leaf signed by ca/cakey for `pub`, IP SAN `ip` (may be NULL), validity offsets in seconds. */
X509 *tu_leaf(X509 *ca, EVP_PKEY *cakey, EVP_PKEY *pub, const char *ip, long nb_off, long na_off);
/* PEM strings (malloc'd, NUL-terminated). `label` replaces "PRIVATE KEY" when non-NULL. */
char *tu_cert_pem(X509 *);
char *tu_key_pem(EVP_PKEY *, const char *label);
/* SEC1 / PKCS#1 traditional PEM of EC / RSA keys. */
char *tu_key_pem_traditional(EVP_PKEY *);
/*
 * A CSR PEM signed by `key`: CN, optional O, NULL-terminated lists of DNS names
 * and IP texts, plus an e-mail SAN when `with_email`.
 */
char *tu_csr_pem(EVP_PKEY *key, const char *cn, const char *org, const char *const *dns,
    const char *const *ips, int with_email);
/* The same, signed with `md` (NULL for Ed25519) instead of SHA-256. */
char *tu_csr_pem_md(EVP_PKEY *key, const EVP_MD *md, const char *cn, const char *org,
    const char *const *dns, const char *const *ips, int with_email);

/* A complete valid input: CA of `fam`, serving cert for 127.0.0.1, token "abcdef.0123456789abcdef". */
struct tu_pki {
	EVP_PKEY *ca_key, *tls_key;
	X509     *ca, *tls;
	char     *ca_pem, *ca_key_pem, *tls_pem, *tls_key_pem;
};
void tu_pki_make(struct tu_pki *, enum tu_family ca_family);
void tu_pki_input(const struct tu_pki *, struct creds_input *);
void tu_pki_free(struct tu_pki *);
/* Builds a snapshot from a fresh PKI of `fam` (asserts success). */
struct creds *tu_creds(enum tu_family fam, struct tu_pki *keep);

/* Default issuance parameters: 24 h, 1 min backdate, now, peer 10.0.0.5. */
struct signer_params tu_signer_params(void);

#define TU_TOKEN "abcdef.0123456789abcdef"

/* Runs `fn` with stderr redirected to a pipe; returns what it wrote (a static buffer). */
char *tu_capture_stderr(void (*fn)(void));

#endif
