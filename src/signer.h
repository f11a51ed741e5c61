/*
 * signer.h: CSR policy and certificate issuance against a credential
 * snapshot: the exact certificate profile of Talos's trustd.
 *
 * A pure function of (snapshot, CSR bytes, parameters): no I/O, no threads,
 * no gRPC, so it is unit-testable and fuzzable, and the message shape would
 * let the CA key move into a separate process without touching callers.
 *
 * Issued certificate: X.509 v3, 128-bit random positive serial, issuer = the
 * CA's subject, subject = the CSR's subject without any Organization,
 * SAN = the CSR's DNS names and IP addresses only, KeyUsage digitalSignature
 * (critical), ExtKeyUsage serverAuth only, no basicConstraints, AKID = the
 * CA's SKID, notBefore = now - backdate, notAfter = now + ttl, signed with
 * the CA key's algorithm (Ed25519; ECDSA with SHA-256/384/512 by curve;
 * RSA PKCS#1 v1.5 with SHA-256), whatever the CSR's key family. Ed25519
 * signatures are made and checked with libsodium (ed25519.h) unless the
 * parameters ask for OpenSSL.
 */
#ifndef TCS_SIGNER_H
#define TCS_SIGNER_H

#include <stddef.h>
#include <stdint.h>

struct creds;

enum signer_status {
	SIGNER_OK,
	SIGNER_BAD_DECODE, /* no PEM block: INVALID_ARGUMENT */
	SIGNER_BAD_PARSE,  /* not a CSR, bad signature: INVALID_ARGUMENT */
	SIGNER_DENIED,     /* refused by policy: PERMISSION_DENIED */
	SIGNER_INTERNAL,   /* our failure: INTERNAL */
	SIGNER__MAX
};

/* Policy knobs (generous defaults that never refuse a real Talos worker). */
struct signer_policy {
	size_t   max_csr_bytes;    /* 0: no limit */
	unsigned max_sans;         /* 0: no limit */
	unsigned allowed_families; /* KEYFAM_* mask */
	int      min_rsa_bits;
	int      require_peer_ip_san; /* peer address must be an IP SAN */
};

/*
 * Which implementation verifies and signs Ed25519. The default is the
 * fastest (libsodium); OpenSSL's stays callable so that a differential test
 * can show both accept, refuse and issue exactly the same.
 */
enum signer_engine {
	SIGNER_ENGINE_FAST,    /* libsodium for Ed25519, OpenSSL otherwise */
	SIGNER_ENGINE_OPENSSL, /* OpenSSL for everything */
	SIGNER_ENGINE__MAX
};

struct signer_params {
	struct signer_policy policy;
	int64_t              ttl_ms;
	int64_t              backdate_ms;
	long long            now;     /* wall clock, seconds */
	const char          *peer_ip; /* text form, or NULL */
	enum signer_engine   engine;
	const unsigned char *serial; /* 16 bytes (tests), or NULL: random */
};

#define SIGNER_MAX_AUDIT_SANS 32

/*
 * What happened, for the reply and the audit record. `message` is safe to
 * send to the client; `detail` may say more for the log. crt_pem is set only
 * on SIGNER_OK. Free with signer_result_free().
 */
struct signer_result {
	enum signer_status status;
	char               message[256];
	char               cn[256];
	char               key_type[16];
	char               serial[40];
	int                org_removed;
	const char        *sans[SIGNER_MAX_AUDIT_SANS];
	size_t             nsans;       /* listed in sans[] */
	size_t             nsans_total; /* in the CSR */
	char              *sans_buf;
	unsigned char     *crt_pem;
	size_t             crt_len;
};

/* Default policy values (see config.c). */
void signer_policy_defaults(struct signer_policy *);

/*
 * Verifies and signs `csr` (PEM, first block) with the snapshot's CA, in
 * one pipeline whatever the engine: read (csr.h), key policy, verify,
 * request policy, build, sign; only verify and sign depend on the engine.
 * Fills `res` (initialised here; free with signer_result_free()) and returns
 * its status. Any thread; `c` must stay referenced for the call.
 */
enum signer_status signer_issue(const struct creds *c, const unsigned char *csr, size_t len,
    const struct signer_params *, struct signer_result *res);

void signer_result_free(struct signer_result *);

/*
 * Sets the status and the client-safe message of `r` (printf format),
 * clears OpenSSL's error queue, and returns the status. For csr.c and
 * signer.c.
 */
enum signer_status signer_result_set(struct signer_result *r, enum signer_status, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));

/* "ok", "invalid_csr", ... (metric/audit label of a status). */
const char *signer_status_name(enum signer_status);

#endif /* TCS_SIGNER_H */
