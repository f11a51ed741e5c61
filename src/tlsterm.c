/*
 * tlsterm.c: SSL_CTX per credentials generation (see tlsterm.h).
 *
 * DESIGN
 * Threads: tlsterm_acquire() may be called from any thread (the front door
 * calls it on accept). The generation is compared lock-free; when it moved,
 * the caller that notices builds the new context outside the lock and swaps
 * it in under a short mutex (h2o/Redis shape). The old context is freed by
 * its last SSL. A snapshot whose serving pair did not change (only the CA
 * side or the token moved) keeps the current context.
 *
 * The chain: the serving PEM's extra certificates plus the accepted CAs form
 * a store, SSL_CTX_build_cert_chain() resolves the chain once, and
 * SSL_MODE_NO_AUTO_CHAIN keeps OpenSSL from building (and verifying) it
 * again on every handshake, as it did under gRPC with a leaf-only PEM.
 *
 * Owns: the current SSL_CTX reference and the digest of the pair in it.
 */
#include "tlsterm.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "creds.h"
#include "credstore.h"
#include "log.h"
#include "pki.h"

/* gRPC 1.51's list (TLS 1.2 part), so the policy is what workers met before. */
#define TLSTERM_CIPHERS                                                                            \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"                             \
	"ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"
#define TLSTERM_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
/* A Go client's first key share is X25519: offering it first saves a round trip. */
#define TLSTERM_GROUPS "X25519:P-256:P-384"

struct tlsterm {
	struct credstore    *store;
	pthread_mutex_t      mtx; /* cur, digest */
	SSL_CTX             *cur;
	unsigned char        digest[SHA256_DIGEST_LENGTH];
	atomic_uint_fast64_t gen; /* store generation last looked at */
};

static int
alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
    unsigned int inlen, void *arg)
{
	unsigned int i;

	(void)ssl;
	(void)arg;
	for (i = 0; i < inlen; i += 1u + in[i])
		if (in[i] == 2 && i + 3 <= inlen && memcmp(in + i + 1, "h2", 2) == 0) {
			*out = in + i + 1;
			*outlen = 2;
			return SSL_TLSEXT_ERR_OK;
		}
	return SSL_TLSEXT_ERR_ALERT_FATAL; /* gRPC needs h2: refuse at once */
}

int
tlsterm_is_h2(const SSL *ssl)
{
	const unsigned char *p = NULL;
	unsigned int         n = 0;

	SSL_get0_alpn_selected(ssl, &p, &n);
	return n == 2 && memcmp(p, "h2", 2) == 0;
}

SSL_CTX *
tlsterm_build(const struct creds *c, char *err, size_t errlen)
{
	SSL_CTX        *ctx = NULL;
	EVP_PKEY       *key = NULL;
	STACK_OF(X509) *certs = NULL;
	X509_STORE     *st = NULL;
	char            why[256], e[256];
	int             i, ok = 0;

	why[0] = '\0';
	if ((key = pki_load_key(c->tls_key_pem, c->tls_key_len, why, sizeof(why))) == NULL)
		goto out;
	if ((certs = pki_load_certs(c->tls_cert_pem, c->tls_cert_len, why, sizeof(why))) == NULL)
		goto out;
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		snprintf(why, sizeof(why), "SSL_CTX_new: %s", log_ssl_errors(e, sizeof(e)));
		goto out;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_cipher_list(ctx, TLSTERM_CIPHERS) ||
	    !SSL_CTX_set_ciphersuites(ctx, TLSTERM_SUITES) ||
	    !SSL_CTX_set1_groups_list(ctx, TLSTERM_GROUPS)) {
		snprintf(why, sizeof(why), "TLS policy: %s", log_ssl_errors(e, sizeof(e)));
		goto out;
	}
	/*
	 * Workers (grpc-go) keep no session cache: tickets would cost an
	 * encryption and two records per handshake for nothing.
	 */
	SSL_CTX_set_options(
	    ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(ctx,
	    SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
		SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_NO_AUTO_CHAIN);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	if (SSL_CTX_use_certificate(ctx, sk_X509_value(certs, 0)) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(why, sizeof(why), "serving pair: %s", log_ssl_errors(e, sizeof(e)));
		goto out;
	}
	/* The chain, built once: the PEM's extra certificates, then the accepted CAs. */
	if ((st = X509_STORE_new()) == NULL)
		goto oom;
	for (i = 1; i < sk_X509_num(certs); i++)
		if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(certs, i)) != 1 ||
		    X509_STORE_add_cert(st, sk_X509_value(certs, i)) != 1)
			goto oom;
	for (i = 0; i < sk_X509_num(c->accepted); i++)
		if (X509_STORE_add_cert(st, sk_X509_value(c->accepted, i)) != 1)
			goto oom;
	if (!SSL_CTX_set1_chain_cert_store(ctx, st))
		goto oom;
	/*
	 * Flags 0: build from the store (CHECK would verify against the PEM's
	 * own chain only). A chain that does not resolve is only a warning
	 * (creds.c logged it); the PEM's chain is then served as given.
	 */
	if (SSL_CTX_build_cert_chain(ctx, 0) != 1)
		log_debug("serving chain not resolved: %s", log_ssl_errors(e, sizeof(e)));
	ERR_clear_error();
	SSL_CTX_set1_chain_cert_store(ctx, NULL);
	ok = 1;
	goto out;
oom:
	snprintf(why, sizeof(why), "out of memory building the serving chain");
out:
	if (!ok) {
		snprintf(err, errlen, "serving TLS context: %s", why);
		SSL_CTX_free(ctx);
		ctx = NULL;
	}
	X509_STORE_free(st);
	sk_X509_pop_free(certs, X509_free);
	EVP_PKEY_free(key);
	return ctx;
}

/* Logs the serving certificate now in use (the same record gRPC's fetcher wrote). */
static void
log_loaded(const struct creds *c)
{
	struct log_field lf[] = {
		LF_I("generation", c->gen),
		LF_S("serving_spki_sha256", c->tls_fp),
		LF_I("not_after", c->tls_not_after),
	};

	log_record(LOG_INFO, "serving certificate loaded", lf, sizeof(lf) / sizeof(lf[0]));
}

struct tlsterm *
tlsterm_new(struct credstore *store, char *err, size_t errlen)
{
	struct tlsterm *t;
	struct creds   *c;

	if ((c = credstore_acquire(store)) == NULL) {
		snprintf(err, errlen, "no credentials loaded");
		return NULL;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		snprintf(err, errlen, "out of memory");
		creds_release(c);
		return NULL;
	}
	t->store = store;
	pthread_mutex_init(&t->mtx, NULL);
	if ((t->cur = tlsterm_build(c, err, errlen)) == NULL) {
		creds_release(c);
		tlsterm_free(t);
		return NULL;
	}
	memcpy(t->digest, c->tls_digest, sizeof(t->digest));
	atomic_init(&t->gen, c->gen);
	log_loaded(c);
	creds_release(c);
	return t;
}

void
tlsterm_free(struct tlsterm *t)
{
	if (t == NULL)
		return;
	SSL_CTX_free(t->cur);
	pthread_mutex_destroy(&t->mtx);
	free(t);
}

/* The store moved past what `t` looked at: rebuild if the serving pair changed. */
static void
refresh(struct tlsterm *t, uint64_t gen)
{
	struct creds *c;
	SSL_CTX      *ctx, *old = NULL;
	char          err[320];
	int           same;

	if ((c = credstore_acquire(t->store)) == NULL)
		return;
	pthread_mutex_lock(&t->mtx);
	same = memcmp(c->tls_digest, t->digest, sizeof(t->digest)) == 0;
	pthread_mutex_unlock(&t->mtx);
	atomic_store(&t->gen, gen > c->gen ? gen : c->gen);
	if (same) {
		creds_release(c);
		return;
	}
	if ((ctx = tlsterm_build(c, err, sizeof(err))) == NULL) {
		log_warnx("%s; the previous serving certificate stays", err);
		creds_release(c);
		return;
	}
	pthread_mutex_lock(&t->mtx);
	old = t->cur;
	t->cur = ctx;
	memcpy(t->digest, c->tls_digest, sizeof(t->digest));
	pthread_mutex_unlock(&t->mtx);
	SSL_CTX_free(old); /* connections still using it hold their own reference */
	log_loaded(c);
	creds_release(c);
}

SSL_CTX *
tlsterm_acquire(struct tlsterm *t)
{
	SSL_CTX *ctx;
	uint64_t gen = credstore_generation(t->store);

	if (gen != atomic_load(&t->gen))
		refresh(t, gen);
	pthread_mutex_lock(&t->mtx);
	ctx = t->cur;
	SSL_CTX_up_ref(ctx);
	pthread_mutex_unlock(&t->mtx);
	return ctx;
}
