/*
 * keyder.h: a private key's DER to an EVP_PKEY, without OpenSSL 3.0's
 * format-guessing decoders.
 *
 * d2i_AutoPrivateKey() in OpenSSL 3.0 builds a decoder chain for every key
 * type it knows on each call: about 450 µs a key on this project's
 * reference machine, and 1.3 ms to refuse a few bytes of junk. Here the
 * structure is read with ASN.1 templates (a microsecond) and the key is
 * built from its parts through the one key manager it needs
 * (EVP_PKEY_fromdata, or the raw seed for Ed25519): 26-46 µs a key.
 *
 * Accepted, whatever the PEM label says (Talos writes PKCS#8 under
 * "ED25519 PRIVATE KEY"):
 *   PKCS#8 PrivateKeyInfo (RFC 5208) holding Ed25519 (RFC 8410),
 *     EC on a named curve (SEC1 inside) or RSA (PKCS#1 inside);
 *   SEC1 ECPrivateKey (RFC 5915) on a named curve, public key optional
 *     (derived when absent);
 *   PKCS#1 RSAPrivateKey (RFC 8017), two primes.
 * Refused at once, with a reason, what the daemon could not use anyway:
 * every other algorithm, explicit EC curve parameters, multi-prime RSA,
 * trailing bytes. Within the three families it accepts nothing that
 * d2i_AutoPrivateKey() refuses and builds the same key
 * (tests/unit/test_keyder.c compares the two over every family and format
 * and about 3,000 damaged encodings: they agree on every one).
 *
 * Secrets: every intermediate copy of private material (the decoded
 * structures, the big numbers, the parameter array) is wiped before it is
 * freed. Pure function, any thread.
 */
#ifndef TCS_KEYDER_H
#define TCS_KEYDER_H

#include <stddef.h>

#include <openssl/evp.h>

/*
 * Decodes `len` bytes of DER. Returns a new key (free with EVP_PKEY_free)
 * or NULL with a short reason in `why` (never containing key bytes).
 */
EVP_PKEY *keyder_decode(const unsigned char *der, size_t len, char *why, size_t whylen);

#endif /* TCS_KEYDER_H */
