/*
 * pki.h: reading and describing keys and certificates (OpenSSL 3).
 *
 * Pure functions over memory buffers: no files, no globals, any thread.
 * Private keys are accepted under every label a Talos or Kubernetes user
 * meets: "PRIVATE KEY" (PKCS#8), Talos's non-standard "ED25519 PRIVATE KEY"
 * (PKCS#8 inside), "EC PRIVATE KEY" (SEC1) and "RSA PRIVATE KEY" (PKCS#1).
 * Encrypted keys are refused. Decoded DER is wiped before returning.
 */
#ifndef TCS_PKI_H
#define TCS_PKI_H

#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "util.h"

enum key_type {
	KEY_ED25519,
	KEY_ECDSA_P256,
	KEY_ECDSA_P384,
	KEY_ECDSA_P521,
	KEY_RSA,
	KEY_OTHER,
	KEY__MAX
};

/* Key families, as a bit mask for policy (ALLOWED_KEY_TYPES). */
#define KEYFAM_ED25519 0x1u
#define KEYFAM_ECDSA   0x2u
#define KEYFAM_RSA     0x4u
#define KEYFAM_ALL     (KEYFAM_ED25519 | KEYFAM_ECDSA | KEYFAM_RSA)

/*
 * Parses the first private key found in `pem`. Returns a new key (free with
 * EVP_PKEY_free) or NULL with a short reason in err.
 */
EVP_PKEY *pki_load_key(const void *pem, size_t len, char *err, size_t errlen);

/*
 * Parses every CERTIFICATE block of `pem` (at least one). Returns a new stack
 * (free with OSSL_STACK_OF_X509_free / sk_X509_pop_free) or NULL with err set.
 */
STACK_OF(X509) *pki_load_certs(const void *pem, size_t len, char *err, size_t errlen);

/* Classifies a key; *bits gets the size in bits when non-NULL. */
enum key_type pki_key_type(const EVP_PKEY *, int *bits);
/* "ed25519", "ecdsa-p256", ..., "rsa" (static strings). */
const char *pki_key_type_name(enum key_type);
/* The KEYFAM_* bit of a type, 0 for KEY_OTHER. */
unsigned pki_key_family(enum key_type);

/* Appends the PEM of a certificate to `out`. 0 or -1. */
int pki_cert_pem(X509 *, struct sbuf *out);
/*
 * The PEM of a DER blob under `label` (e.g. "CERTIFICATE"), byte for byte
 * what PEM_write_bio() writes: 64-character lines, each ending in \n.
 * Returns a new NUL-terminated buffer (free with free()) and its length
 * in *outlen, or NULL. One allocation, no BIO.
 */
unsigned char *pki_der_to_pem(
    const char *label, const unsigned char *der, size_t len, size_t *outlen);
/* Appends the PKCS#8 PEM of a private key to `out` (scrubbed buffer). 0 or -1. */
int pki_key_pem(EVP_PKEY *, struct sbuf *out);

/* Hex SHA-256 of the certificate's subjectPublicKeyInfo (65 bytes). */
int pki_spki_fingerprint(X509 *, char out[65]);
/* notAfter / notBefore as time_t; -1 on error. */
long long pki_not_after(const X509 *);
long long pki_not_before(const X509 *);
/* 1 if the certificate has `ip` (text form) among its IP SANs. */
int pki_has_ip_san(X509 *, const char *ip);
/* 1 if the certificate has at least one IP SAN. */
int pki_has_any_ip_san(X509 *);

#endif /* TCS_PKI_H */
