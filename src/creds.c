/*
 * creds.c: building and validating a credential snapshot.
 *
 * Threads: creds_build() runs on a source's thread (or main at start-up)
 * and touches no shared state; creds_ref()/creds_release() from any thread.
 * Owns: every OpenSSL object and buffer in struct creds; the serving key PEM
 * and the CA key are wiped when the last reference goes.
 */
#include "creds.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "log.h"

static const char *const field_names[CF__MAX] = { "CA certificate", "CA key", "token",
	"accepted CAs", "accepted tokens", "serving certificate", "serving key" };

void
creds_input_init(struct creds_input *in)
{
	int i;

	memset(in, 0, sizeof(*in));
	for (i = 0; i < CF__MAX; i++)
		sbuf_init(&in->part[i].data, CREDS_MAX_PART);
}

int
creds_input_set(
    struct creds_input *in, enum creds_field f, const void *p, size_t n, const char *origin)
{
	struct creds_part *cp;

	if (f >= CF__MAX)
		return -1;
	cp = &in->part[f];
	sbuf_free(&cp->data);
	sbuf_init(&cp->data, CREDS_MAX_PART);
	if (sbuf_add(&cp->data, p, n) == -1)
		return -1;
	snprintf(cp->origin, sizeof(cp->origin), "%s", origin);
	cp->present = 1;
	return 0;
}

void
creds_input_free(struct creds_input *in)
{
	int i;

	for (i = 0; i < CF__MAX; i++) {
		sbuf_free(&in->part[i].data);
		in->part[i].present = 0;
	}
}

void
creds_input_digest(const struct creds_input *in, unsigned char out[SHA256_DIGEST_LENGTH])
{
	EVP_MD_CTX              *ctx;
	const struct creds_part *cp;
	uint64_t                 len;
	int                      i;

	memset(out, 0, SHA256_DIGEST_LENGTH);
	if ((ctx = EVP_MD_CTX_new()) == NULL || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
		goto out;
	for (i = 0; i < CF__MAX; i++) {
		cp = &in->part[i];
		len = cp->present ? (uint64_t)cp->data.len : UINT64_MAX;
		EVP_DigestUpdate(ctx, &len, sizeof(len));
		if (cp->present && cp->data.len > 0)
			EVP_DigestUpdate(ctx, cp->data.data, cp->data.len);
	}
	EVP_DigestFinal_ex(ctx, out, NULL);
out:
	EVP_MD_CTX_free(ctx);
}

struct creds *
creds_ref(struct creds *c)
{
	atomic_fetch_add(&c->refs, 1);
	return c;
}

static void
creds_free(struct creds *c)
{
	X509_free(c->ca_cert);
	EVP_PKEY_free(c->ca_key);
	sk_X509_pop_free(c->accepted, X509_free);
	free(c->ca_bundle);
	free(c->tls_cert_pem);
	freezero(c->tls_key_pem, c->tls_key_len + 1);
	X509_free(c->tls_leaf);
	OPENSSL_cleanse(c, sizeof(*c));
	free(c);
}

void
creds_release(struct creds *c)
{
	if (c != NULL && atomic_fetch_sub(&c->refs, 1) == 1)
		creds_free(c);
}

/* A one-line error naming where the bad input came from. */
static void
fail(char *err, size_t errlen, const struct creds_part *cp, enum creds_field f, const char *why)
{
	snprintf(err, errlen, "%s: %s: %s", cp->origin[0] ? cp->origin : field_names[f],
	    field_names[f], why);
}

int
creds_key_usable(EVP_PKEY *k, char *why, size_t len)
{
	int           bits;
	enum key_type t = pki_key_type(k, &bits);

	if (t == KEY_OTHER) {
		snprintf(why, len,
		    "unsupported key type (want Ed25519, ECDSA P-256/P-384/P-521 or RSA)");
		return 0;
	}
	if (t == KEY_RSA && bits < 2048) {
		snprintf(why, len, "RSA key of %d bits is too small (minimum 2048)", bits);
		return 0;
	}
	return 1;
}

static int
set_akid(struct creds *c)
{
	const ASN1_OCTET_STRING *skid;
	unsigned int             n = 0;

	if ((skid = X509_get0_subject_key_id(c->ca_cert)) != NULL && ASN1_STRING_length(skid) > 0 &&
	    (size_t)ASN1_STRING_length(skid) <= sizeof(c->akid)) {
		c->akid_len = (size_t)ASN1_STRING_length(skid);
		memcpy(c->akid, ASN1_STRING_get0_data(skid), c->akid_len);
		return 0;
	}
	/* RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
	if (!X509_pubkey_digest(c->ca_cert, EVP_sha1(), c->akid, &n))
		return -1;
	c->akid_len = n;
	return 0;
}

static void notef(creds_note_fn note, void *arg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
notef(creds_note_fn note, void *arg, const char *fmt, ...)
{
	char    msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (note != NULL)
		note(arg, msg);
}

int
creds_token_is_talos(const char *tok, size_t len)
{
	size_t i;

	while (len > 0 && isspace((unsigned char)tok[len - 1]))
		len--;
	if (len != 23 || tok[6] != '.')
		return 0;
	for (i = 0; i < len; i++) {
		if (i == 6)
			continue;
		if (!((tok[i] >= 'a' && tok[i] <= 'z') || (tok[i] >= '0' && tok[i] <= '9')))
			return 0;
	}
	return 1;
}

int
creds_token_ok(const struct creds *c, const char *got, size_t len)
{
	unsigned char h[SHA256_DIGEST_LENGTH];
	unsigned      ok = 0, in_use, same;
	size_t        i;

	if (SHA256((const unsigned char *)got, len, h) == NULL)
		return 0;
	/* Every slot, used or not, so the time says nothing about which or how many. */
	for (i = 0; i < CREDS_MAX_TOKENS; i++) {
		same = (unsigned)(CRYPTO_memcmp(h, c->token_digests[i], sizeof(h)) == 0);
		in_use = (unsigned)(i < c->ntokens);
		ok |= same & in_use;
	}
	OPENSSL_cleanse(h, sizeof(h));
	return (int)ok;
}

/*
 * Digests the machine token and each line of the accepted tokens into c.
 * 0, or -1 with err naming the input at fault.
 */
static int
load_tokens(struct creds *c, const struct creds_input *in, creds_note_fn note, void *arg, char *err,
    size_t errlen)
{
	const struct creds_part *cp = &in->part[CF_TOKEN];
	const char              *p, *end, *eol, *s, *e;

	if (!creds_token_is_talos((const char *)cp->data.data, cp->data.len)) {
		c->odd_tokens++;
		notef(note, arg,
		    "%s: the token does not look like a Talos token ([a-z0-9]{6}.[a-z0-9]{16}); "
		    "accepted anyway",
		    cp->origin[0] ? cp->origin : "token");
	}
	if (util_token_digest((const char *)cp->data.data, cp->data.len, c->token_digests[0]) ==
	    -1) {
		fail(err, errlen, cp, CF_TOKEN, "empty");
		return -1;
	}
	c->ntokens = 1;
	cp = &in->part[CF_ACCEPTED_TOKENS];
	if (!cp->present)
		return 0;
	p = (const char *)cp->data.data;
	end = p + cp->data.len;
	for (; p < end; p = eol + 1) {
		if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
			eol = end;
		for (s = p, e = eol; s < e && isspace((unsigned char)*s); s++)
			;
		while (e > s && isspace((unsigned char)e[-1]))
			e--;
		if (s == e)
			continue; /* blank line */
		if (c->ntokens == CREDS_MAX_TOKENS) {
			snprintf(err, errlen, "%s: accepted tokens: more than %d tokens",
			    cp->origin[0] ? cp->origin : "accepted tokens", CREDS_MAX_TOKENS - 1);
			return -1;
		}
		if (!creds_token_is_talos(s, (size_t)(e - s))) {
			c->odd_tokens++;
			notef(note, arg,
			    "%s: accepted token %zu does not look like a Talos token "
			    "([a-z0-9]{6}.[a-z0-9]{16}); accepted anyway",
			    cp->origin[0] ? cp->origin : "accepted tokens", c->ntokens);
		}
		if (util_token_digest(s, (size_t)(e - s), c->token_digests[c->ntokens]) == -1) {
			fail(err, errlen, cp, CF_ACCEPTED_TOKENS, "cannot digest a token");
			return -1;
		}
		c->ntokens++;
	}
	return 0;
}

/* Serving-certificate checks that warn without refusing. */
static void
soft_checks(struct creds *c, STACK_OF(X509) *chain, creds_note_fn note, void *arg)
{
	X509_STORE     *st = NULL;
	X509_STORE_CTX *ctx = NULL;
	STACK_OF(X509) *untrusted = NULL;
	int             i;

	if (!pki_has_any_ip_san(c->tls_leaf))
		notef(note, arg,
		    "serving certificate has no IP SAN: Talos workers dial IP "
		    "addresses and will refuse it");
	if ((X509_get_extension_flags(c->tls_leaf) & EXFLAG_XKUSAGE) &&
	    !(X509_get_extended_key_usage(c->tls_leaf) & XKU_SSL_SERVER))
		notef(note, arg,
		    "serving certificate lacks the serverAuth extended key usage: Talos workers "
		    "will refuse it");
	if ((st = X509_STORE_new()) == NULL || (ctx = X509_STORE_CTX_new()) == NULL ||
	    (untrusted = sk_X509_new_null()) == NULL)
		goto out;
	for (i = 0; i < sk_X509_num(c->accepted); i++)
		X509_STORE_add_cert(st, sk_X509_value(c->accepted, i));
	for (i = 1; i < sk_X509_num(chain); i++)
		sk_X509_push(untrusted, sk_X509_value(chain, i));
	if (!X509_STORE_CTX_init(ctx, st, c->tls_leaf, untrusted))
		goto out;
	if (X509_verify_cert(ctx) != 1)
		notef(note, arg,
		    "serving certificate does not chain to an accepted CA (%s): "
		    "workers of Talos 1.5, 1.6 and 1.8+ will refuse it",
		    X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
out:
	ERR_clear_error();
	sk_X509_free(untrusted);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
}

static int
in_stack(STACK_OF(X509) *sk, X509 *x)
{
	int i;

	for (i = 0; i < sk_X509_num(sk); i++)
		if (X509_cmp(sk_X509_value(sk, i), x) == 0)
			return 1;
	return 0;
}

static void
log_note(void *arg, const char *msg)
{
	(void)arg;
	log_warnx("%s", msg);
}

struct creds *
creds_build(const struct creds_input *in, long long now, char *err, size_t errlen)
{
	return creds_validate(in, now, log_note, NULL, err, errlen);
}

struct creds *
creds_validate(const struct creds_input *in, long long now, creds_note_fn note, void *arg,
    char *err, size_t errlen)
{
	static const enum creds_field required[] = { CF_CA_CERT, CF_CA_KEY, CF_TOKEN, CF_TLS_CERT,
		CF_TLS_KEY };
	const struct creds_part      *cp;
	struct creds                 *c = NULL;
	STACK_OF(X509)               *sk = NULL, *chain = NULL;
	EVP_PKEY                     *tlskey = NULL;
	X509                         *x;
	struct sbuf                   b;
	EVP_MD_CTX                   *sha = NULL;
	char                          why[384];
	size_t                        i;
	int                           j;

	sbuf_init(&b, 4 * CREDS_MAX_PART);
	for (i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		cp = &in->part[required[i]];
		if (!cp->present || cp->data.len == 0) {
			fail(err, errlen, cp, required[i], "missing or empty");
			goto bad;
		}
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto bad;
	}
	atomic_init(&c->refs, 1);

	/* The issuing CA: the first certificate of its file. */
	cp = &in->part[CF_CA_CERT];
	if ((sk = pki_load_certs(cp->data.data, cp->data.len, why, sizeof(why))) == NULL) {
		fail(err, errlen, cp, CF_CA_CERT, why);
		goto bad;
	}
	c->ca_cert = sk_X509_shift(sk);
	sk_X509_pop_free(sk, X509_free);
	sk = NULL;
	if (X509_check_ca(c->ca_cert) == 0) {
		fail(err, errlen, cp, CF_CA_CERT, "not a CA certificate");
		goto bad;
	}
	c->ca_not_after = pki_not_after(c->ca_cert);
	if (c->ca_not_after < now) {
		fail(err, errlen, cp, CF_CA_CERT, "expired");
		goto bad;
	}
	if (pki_not_before(c->ca_cert) > now) {
		fail(err, errlen, cp, CF_CA_CERT, "not yet valid");
		goto bad;
	}
	pki_spki_fingerprint(c->ca_cert, c->ca_fp);

	cp = &in->part[CF_CA_KEY];
	if ((c->ca_key = pki_load_key(cp->data.data, cp->data.len, why, sizeof(why))) == NULL ||
	    !creds_key_usable(c->ca_key, why, sizeof(why))) {
		fail(err, errlen, cp, CF_CA_KEY, why);
		goto bad;
	}
	if (X509_check_private_key(c->ca_cert, c->ca_key) != 1) {
		ERR_clear_error();
		fail(err, errlen, cp, CF_CA_KEY, "does not match the CA certificate");
		goto bad;
	}
	c->ca_type = pki_key_type(c->ca_key, NULL);
	if (set_akid(c) == -1) {
		fail(err, errlen, &in->part[CF_CA_CERT], CF_CA_CERT,
		    "cannot compute key identifier");
		goto bad;
	}

	/* Accepted CAs, then the issuing CA last (Talos v1.7+ order). */
	if ((c->accepted = sk_X509_new_null()) == NULL)
		goto oom;
	cp = &in->part[CF_ACCEPTED_CAS];
	if (cp->present && cp->data.len > 0) {
		if ((sk = pki_load_certs(cp->data.data, cp->data.len, why, sizeof(why))) == NULL) {
			fail(err, errlen, cp, CF_ACCEPTED_CAS, why);
			goto bad;
		}
		while ((x = sk_X509_shift(sk)) != NULL) {
			/* Workers put these in their root pool: only CA certificates. */
			if (X509_check_ca(x) == 0) {
				X509_free(x);
				fail(err, errlen, cp, CF_ACCEPTED_CAS,
				    "holds a certificate that is not a CA certificate");
				goto bad;
			}
			if (X509_cmp(x, c->ca_cert) == 0 || in_stack(c->accepted, x)) {
				X509_free(x);
				continue;
			}
			if (!sk_X509_push(c->accepted, x)) {
				X509_free(x);
				goto oom;
			}
		}
		sk_X509_free(sk);
		sk = NULL;
	}
	if (!X509_up_ref(c->ca_cert) || !sk_X509_push(c->accepted, c->ca_cert))
		goto oom;
	for (j = 0; j < sk_X509_num(c->accepted); j++)
		if (pki_cert_pem(sk_X509_value(c->accepted, j), &b) == -1)
			goto oom;
	c->ca_bundle = sbuf_take(&b, &c->ca_bundle_len);
	if (c->ca_bundle == NULL)
		goto oom;

	if (load_tokens(c, in, note, arg, err, errlen) == -1)
		goto bad;

	/* The serving certificate, its chain and its key. */
	cp = &in->part[CF_TLS_CERT];
	if ((chain = pki_load_certs(cp->data.data, cp->data.len, why, sizeof(why))) == NULL) {
		fail(err, errlen, cp, CF_TLS_CERT, why);
		goto bad;
	}
	c->tls_leaf = sk_X509_value(chain, 0);
	X509_up_ref(c->tls_leaf);
	c->tls_not_after = pki_not_after(c->tls_leaf);
	if (c->tls_not_after < now) {
		fail(err, errlen, cp, CF_TLS_CERT, "expired");
		goto bad;
	}
	if (pki_not_before(c->tls_leaf) > now) {
		fail(err, errlen, cp, CF_TLS_CERT, "not yet valid");
		goto bad;
	}
	pki_spki_fingerprint(c->tls_leaf, c->tls_fp);
	cp = &in->part[CF_TLS_KEY];
	if ((tlskey = pki_load_key(cp->data.data, cp->data.len, why, sizeof(why))) == NULL ||
	    !creds_key_usable(tlskey, why, sizeof(why))) {
		fail(err, errlen, cp, CF_TLS_KEY, why);
		goto bad;
	}
	if (X509_check_private_key(c->tls_leaf, tlskey) != 1) {
		ERR_clear_error();
		fail(err, errlen, cp, CF_TLS_KEY, "does not match the serving certificate");
		goto bad;
	}
	/* Re-encode for gRPC: canonical labels (no Talos label), PKCS#8 key. */
	sbuf_reset(&b);
	for (j = 0; j < sk_X509_num(chain); j++)
		if (pki_cert_pem(sk_X509_value(chain, j), &b) == -1)
			goto oom;
	if ((c->tls_cert_pem = (char *)sbuf_take(&b, &c->tls_cert_len)) == NULL)
		goto oom;
	if (pki_key_pem(tlskey, &b) == -1 ||
	    (c->tls_key_pem = (char *)sbuf_take(&b, &c->tls_key_len)) == NULL)
		goto oom;
	if ((sha = EVP_MD_CTX_new()) == NULL || !EVP_DigestInit_ex(sha, EVP_sha256(), NULL) ||
	    !EVP_DigestUpdate(sha, c->tls_cert_pem, c->tls_cert_len) ||
	    !EVP_DigestUpdate(sha, c->tls_key_pem, c->tls_key_len) ||
	    !EVP_DigestUpdate(sha, c->ca_bundle, c->ca_bundle_len) ||
	    !EVP_DigestFinal_ex(sha, c->tls_digest, NULL))
		goto oom;
	EVP_MD_CTX_free(sha);
	sha = NULL;

	soft_checks(c, chain, note, arg);
	creds_input_digest(in, c->input_digest);
	EVP_PKEY_free(tlskey);
	sk_X509_pop_free(chain, X509_free);
	sbuf_free(&b);
	return c;
oom:
	snprintf(err, errlen, "out of memory building credentials");
bad:
	ERR_clear_error();
	EVP_MD_CTX_free(sha);
	EVP_PKEY_free(tlskey);
	sk_X509_pop_free(sk, X509_free);
	sk_X509_pop_free(chain, X509_free);
	sbuf_free(&b);
	if (c != NULL)
		creds_free(c);
	return NULL;
}
