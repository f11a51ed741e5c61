/*
 * ed25519.h: Ed25519 through libsodium, the fast implementation of the
 * Talos default key family (OpenSSL 3.0's is about 2.6x slower here).
 *
 * OpenSSL still parses and writes every structure; this module only signs
 * and verifies raw bytes. The CA's private key is held in memory that
 * libsodium locks (mlock, no core dump, guard pages) and wipes on free.
 */
#ifndef TCS_ED25519_H
#define TCS_ED25519_H

#include <stddef.h>

#include <openssl/evp.h>

#define ED25519_PUBLIC_BYTES    32
#define ED25519_SIGNATURE_BYTES 64

struct ed25519_key;

/*
 * Extracts the 32-byte seed of an Ed25519 private key once and expands it
 * into libsodium's secret key, both in a locked buffer. Returns a new key
 * (free with ed25519_key_free()) or NULL (not an Ed25519 private key, or
 * out of memory). Any thread.
 */
struct ed25519_key *ed25519_key_new(EVP_PKEY *);
/* Wipes and frees. NULL is fine. */
void ed25519_key_free(struct ed25519_key *);

/* Signs `msg` (pure Ed25519, deterministic). 0 or -1. Any thread. */
int ed25519_sign(const struct ed25519_key *, const unsigned char *msg, size_t len,
    unsigned char sig[ED25519_SIGNATURE_BYTES]);

/*
 * 1 if `sig` is a valid signature of `msg` by `pub` (32 bytes), else 0.
 * Refuses what ed25519_is_strict() refuses, like OpenSSL after that check.
 */
int ed25519_verify(const unsigned char *pub, const unsigned char *msg, size_t len,
    const unsigned char *sig, size_t siglen);

/*
 * 1 unless the public key is a non-canonical encoding or a point of small
 * order, or the signature's R is a point of small order. libsodium refuses
 * such inputs and OpenSSL does not; no real key or signature is ever one,
 * so the signer refuses them before either implementation runs, and the two
 * accept exactly the same CSRs. `sig` may be shorter than 64 bytes (then
 * only the key is checked and verification fails later anyway).
 */
int ed25519_is_strict(const unsigned char *pub, const unsigned char *sig, size_t siglen);

/* libsodium's version string, for --version. */
const char *ed25519_sodium_version(void);

#endif /* TCS_ED25519_H */
