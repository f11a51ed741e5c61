/*
 * creds.h: the credential snapshot, an immutable and fully validated set of
 * everything one Certificate call needs: the issuing CA and its key, the
 * accepted-CA bundle returned in `ca`, the digest of the machine token, and
 * the serving certificate and key that TLS presents.
 *
 * A snapshot is built from raw bytes (struct creds_input) by whichever source
 * the daemon runs with (mounted files, or Kubernetes Secrets), outside any
 * lock. It is either complete and valid or not built at all. After building,
 * nothing in it changes; any number of threads may read it while they hold a
 * reference (see credstore.h). The last reference wipes the key material.
 */
#ifndef TCS_CREDS_H
#define TCS_CREDS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "pki.h"
#include "util.h"

struct ed25519_key;

/* Raw material; each field names where it came from for error messages. */
struct creds_part {
	struct sbuf data;
	char        origin[160]; /* e.g. "CA_CERT_PATH (/etc/talos-ca/tls.crt)" */
	int         present;
};

enum creds_field {
	CF_CA_CERT,
	CF_CA_KEY,
	CF_TOKEN,
	CF_ACCEPTED_CAS,    /* optional */
	CF_ACCEPTED_TOKENS, /* optional: one token per line, each also accepted */
	CF_TLS_CERT,
	CF_TLS_KEY,
	CF__MAX
};

struct creds_input {
	struct creds_part part[CF__MAX];
};

/*
 * Field groups: the fields one source delivers together (a CA Secret or the
 * CA files; a serving Secret or the serving files). Every source owns whole
 * groups; the assembler (credsrc.h) waits until every registered group has
 * been delivered once.
 */
#define CF_MASK(f) (1u << (f))
#define CF_GROUP_CA                                                                                \
	(CF_MASK(CF_CA_CERT) | CF_MASK(CF_CA_KEY) | CF_MASK(CF_TOKEN) | CF_MASK(CF_ACCEPTED_CAS) | \
	    CF_MASK(CF_ACCEPTED_TOKENS))
#define CF_GROUP_TLS (CF_MASK(CF_TLS_CERT) | CF_MASK(CF_TLS_KEY))
#define CF_GROUP_ALL (CF_GROUP_CA | CF_GROUP_TLS)

/* Upper bound of any one input (a Secret value is at most 1 MiB). */
#define CREDS_MAX_PART (1024 * 1024)
/* Machine token plus accepted tokens; a token migration needs two or three. */
#define CREDS_MAX_TOKENS 16

struct creds {
	atomic_int refs;
	uint64_t   gen; /* set by credstore_publish() */

	X509         *ca_cert; /* issuing CA */
	EVP_PKEY     *ca_key;
	enum key_type ca_type;
	/* libsodium's copy of an Ed25519 ca_key (locked memory), or NULL */
	struct ed25519_key *ca_ed25519;
	unsigned char       akid[64]; /* CA's subjectKeyIdentifier */
	size_t              akid_len;
	X509_EXTENSION     *akid_ext;  /* authorityKeyIdentifier of issued certs, built once */
	STACK_OF(X509)     *accepted;  /* accepted CAs, then the issuing CA */
	unsigned char      *ca_bundle; /* their PEM, each ending in \n */
	size_t              ca_bundle_len;

	/* SHA-256 of the machine token, then of each accepted token; compare
	 * only through creds_token_ok(). */
	unsigned char token_digests[CREDS_MAX_TOKENS][SHA256_DIGEST_LENGTH];
	size_t        ntokens;
	int           odd_tokens; /* tokens that do not look like a Talos token */

	char         *tls_cert_pem; /* leaf (+ chain) as given */
	char         *tls_key_pem;  /* PKCS#8; wiped on free */
	size_t        tls_cert_len, tls_key_len;
	unsigned char tls_digest[SHA256_DIGEST_LENGTH]; /* identity of the pair */
	X509         *tls_leaf;

	long long     ca_not_after, tls_not_after;
	char          ca_fp[65], tls_fp[65]; /* SPKI SHA-256 fingerprints */
	unsigned char input_digest[SHA256_DIGEST_LENGTH];
};

/* Initialises an empty input; parts are filled by the source. */
void creds_input_init(struct creds_input *);
/* Sets a part, copying the bytes; 0 or -1. */
int creds_input_set(
    struct creds_input *, enum creds_field, const void *, size_t, const char *origin);
/* Wipes and frees every part. */
void creds_input_free(struct creds_input *);
/* SHA-256 over every present part, to detect "nothing changed". */
void creds_input_digest(const struct creds_input *, unsigned char out[SHA256_DIGEST_LENGTH]);

/* Receives one warning (a finding that does not refuse the credentials). */
typedef void (*creds_note_fn)(void *arg, const char *warning);

/*
 * The one validator of credentials, shared by the daemon and `check`.
 * Validates `in` completely against the wall clock `now` (seconds) and builds
 * a snapshot with one reference. On failure returns NULL and writes a one-line
 * reason naming the offending setting (file or Secret key) into err. Soft
 * problems (a serving certificate that does not chain to an accepted CA or
 * has no IP SAN, a token that does not look like a Talos token) go to
 * `note` (may be NULL) and do not fail the build. Does not take ownership of in.
 */
struct creds *creds_validate(const struct creds_input *in, long long now, creds_note_fn note,
    void *arg, char *err, size_t errlen);
/* creds_validate() with every warning logged (log_warnx). */
struct creds *creds_build(const struct creds_input *in, long long now, char *err, size_t errlen);

/*
 * 1 if `got` (len bytes, exactly as sent) is the machine token or one of the
 * accepted tokens. Constant time: one digest, then every slot compared, with
 * no early exit that would tell which token matched. Any thread.
 */
int creds_token_ok(const struct creds *c, const char *got, size_t len);

/* 1 if the token looks like a Talos token: [a-z0-9]{6}.[a-z0-9]{16} (trailing space ignored). */
int creds_token_is_talos(const char *tok, size_t len);
/* 1 if the key can serve as a CA or serving key (supported type, RSA >= 2048); else why. */
int creds_key_usable(EVP_PKEY *k, char *why, size_t len);

/* Adds a reference; returns c. */
struct creds *creds_ref(struct creds *c);
/* Drops a reference; the last one wipes and frees. NULL is fine. */
void creds_release(struct creds *c);

#endif /* TCS_CREDS_H */
