/*
 * floor.c: the crypto floor of one Certificate call, and the cost of the
 * daemon's signing path in process, for `make bench`.
 *
 *   floor  --ca-key F --csr F [--serving-key F] [--seconds S]
 *	Times, with the fastest implementation on the machine and keys built
 *	once, the asymmetric operations a call cannot avoid: verifying the
 *	CSR's signature over its CertificationRequestInfo, signing a
 *	certificate-sized TBS with the CA key (Ed25519: libsodium; ECDSA and
 *	RSA: OpenSSL; for Ed25519 OpenSSL's figures are printed too, as
 *	openssl_verify_us and openssl_sign_us); and for a new connection the
 *	TLS 1.3 handshake's server side: one CertificateVerify signature with
 *	the serving key plus an X25519 key generation and derivation (OpenSSL,
 *	which terminates TLS).
 *   signer --ca-cert F --ca-key F --tls-cert F --tls-key F --token F --csr F
 *	[--seconds S | --iterations N]
 *	Times signer_issue() (PEM in, PEM certificate out) against a snapshot
 *	built from those files: the daemon's own path without gRPC and TLS.
 *	With --iterations it runs exactly N calls (for callgrind).
 *   wire   --csr F --crt F --ca F [--seconds S | --iterations N]
 *	Times the request decode and response encode the gRPC handler does
 *	around signer_issue() (protobuf-c unpack + free of a CertificateRequest
 *	holding the CSR, get_packed_size + pack of a CertificateResponse
 *	holding the CA bundle and a certificate), without gRPC.
 *
 * Prints one JSON object. Single-threaded, timed in CPU time: figures are
 * microseconds of one core.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <sodium.h>

#include "security.pb-c.h"

#include "creds.h"
#include "log.h"
#include "pki.h"
#include "signer.h"
#include "util.h"

static const char *
arg(int argc, char **argv, const char *name, const char *def)
{
	int i;

	for (i = 2; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	if (def == NULL) {
		fprintf(stderr, "floor: %s is required\n", name);
		exit(2);
	}
	return def;
}

/*
 * CPU time of this process, not wall time: the daemon's cost is read as CPU
 * time from /proc, and on a shared machine wall time also counts the other
 * processes that preempt this one.
 */
static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *what)
{
	fprintf(stderr, "floor: %s failed\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

static void
slurp(const char *path, struct sbuf *b)
{
	if (util_read_file(path, 1 << 20, b) == -1)
		die(path);
}

static EVP_PKEY *
load_key(const char *path)
{
	struct sbuf b;
	EVP_PKEY   *k;
	char        err[256];

	slurp(path, &b);
	if ((k = pki_load_key(b.data, b.len, err, sizeof(err))) == NULL) {
		fprintf(stderr, "floor: %s: %s\n", path, err);
		exit(1);
	}
	sbuf_free(&b);
	return k;
}

static const EVP_MD *
md_for(EVP_PKEY *k)
{
	switch (pki_key_type(k, NULL)) {
	case KEY_ED25519: return NULL;
	case KEY_ECDSA_P384: return EVP_sha384();
	case KEY_ECDSA_P521: return EVP_sha512();
	default: return EVP_sha256();
	}
}

/* Runs fn for about `secs` seconds; returns microseconds per call. */
static double
timeit(double secs, void (*fn)(void *), void *arg)
{
	double t0, t;
	long   n = 0, batch = 1;

	fn(arg); /* warm */
	t0 = now_s();
	do {
		for (long i = 0; i < batch; i++)
			fn(arg);
		n += batch;
		if (batch < 64)
			batch *= 2;
	} while ((t = now_s()) - t0 < secs);
	return (t - t0) / (double)n * 1e6;
}

struct op {
	EVP_PKEY            *key;
	const EVP_MD        *md;
	const unsigned char *tbs, *sig;
	size_t               tbslen, siglen;
	int                  pss;
};

static void
op_verify(void *a)
{
	struct op  *o = a;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	if (ctx == NULL || EVP_DigestVerifyInit(ctx, NULL, o->md, NULL, o->key) != 1 ||
	    EVP_DigestVerify(ctx, o->sig, o->siglen, o->tbs, o->tbslen) != 1)
		die("EVP_DigestVerify");
	EVP_MD_CTX_free(ctx);
}

static void
op_sign(void *a)
{
	struct op    *o = a;
	EVP_MD_CTX   *ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	unsigned char sig[1024];
	size_t        slen = sizeof(sig);

	if (ctx == NULL || EVP_DigestSignInit(ctx, &pctx, o->md, NULL, o->key) != 1 ||
	    (o->pss && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1) ||
	    EVP_DigestSign(ctx, sig, &slen, o->tbs, o->tbslen) != 1)
		die("EVP_DigestSign");
	EVP_MD_CTX_free(ctx);
}

/* libsodium's Ed25519: sk is the 64-byte secret key, pk the 32-byte public key. */
struct sop {
	unsigned char        sk[crypto_sign_SECRETKEYBYTES], pk[crypto_sign_PUBLICKEYBYTES];
	const unsigned char *msg, *sig;
	size_t               len;
};

static void
sop_sign(void *a)
{
	struct sop   *o = a;
	unsigned char sig[crypto_sign_BYTES];

	if (crypto_sign_detached(sig, NULL, o->msg, o->len, o->sk) != 0)
		die("crypto_sign_detached");
}

static void
sop_verify(void *a)
{
	struct sop *o = a;

	if (crypto_sign_verify_detached(o->sig, o->msg, o->len, o->pk) != 0)
		die("crypto_sign_verify_detached");
}

static void
op_x25519(void *a)
{
	EVP_PKEY     *peer = a, *mine = NULL;
	EVP_PKEY_CTX *ctx;
	unsigned char secret[32];
	size_t        slen = sizeof(secret);

	if ((mine = EVP_PKEY_Q_keygen(NULL, NULL, "X25519")) == NULL ||
	    (ctx = EVP_PKEY_CTX_new(mine, NULL)) == NULL || EVP_PKEY_derive_init(ctx) != 1 ||
	    EVP_PKEY_derive_set_peer(ctx, peer) != 1 || EVP_PKEY_derive(ctx, secret, &slen) != 1)
		die("X25519");
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(mine);
}

static X509_REQ *
load_csr(const char *path, struct sbuf *pem)
{
	BIO      *bio;
	X509_REQ *req;

	slurp(path, pem);
	if ((bio = BIO_new_mem_buf(pem->data, (int)pem->len)) == NULL ||
	    (req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL)) == NULL)
		die("reading the CSR");
	BIO_free(bio);
	return req;
}

static int
run_floor(int argc, char **argv)
{
	double                 secs = atof(arg(argc, argv, "--seconds", "2"));
	const char            *skpath = arg(argc, argv, "--serving-key", "");
	struct sbuf            pem;
	X509_REQ              *req;
	EVP_PKEY              *cak, *sk = NULL, *peer;
	unsigned char         *tbs = NULL, tbsbuf[400];
	const ASN1_BIT_STRING *sig;
	const X509_ALGOR      *alg;
	struct op              v, s, h;
	struct sop             sv, ss;
	double                 verify_us, sign_us, hs_sign_us = 0, kx_us = 0;
	double                 ossl_verify_us = 0, ossl_sign_us = 0;
	size_t                 n;
	int                    tbslen;

	if (sodium_init() < 0)
		die("sodium_init");

	cak = load_key(arg(argc, argv, "--ca-key", NULL));
	req = load_csr(arg(argc, argv, "--csr", NULL), &pem);

	/* Verify: the CSR's own signature over its CertificationRequestInfo. */
	if ((tbslen = i2d_re_X509_REQ_tbs(req, &tbs)) <= 0)
		die("i2d_re_X509_REQ_tbs");
	X509_REQ_get0_signature(req, &sig, &alg);
	memset(&v, 0, sizeof(v));
	v.key = X509_REQ_get0_pubkey(req);
	v.md = md_for(v.key);
	v.tbs = tbs;
	v.tbslen = (size_t)tbslen;
	v.sig = ASN1_STRING_get0_data(sig);
	v.siglen = (size_t)ASN1_STRING_length(sig);
	verify_us = timeit(secs, op_verify, &v);
	if (pki_key_type(v.key, NULL) == KEY_ED25519) {
		memset(&sv, 0, sizeof(sv));
		n = sizeof(sv.pk);
		if (EVP_PKEY_get_raw_public_key(v.key, sv.pk, &n) != 1)
			die("EVP_PKEY_get_raw_public_key");
		sv.msg = v.tbs;
		sv.len = v.tbslen;
		if (v.siglen != crypto_sign_BYTES)
			die("Ed25519 signature length");
		sv.sig = v.sig;
		ossl_verify_us = verify_us;
		verify_us = timeit(secs, sop_verify, &sv);
	}

	/* Sign: a TBSCertificate is about 300-400 bytes for a worker. */
	memset(tbsbuf, 0x5a, sizeof(tbsbuf));
	memset(&s, 0, sizeof(s));
	s.key = cak;
	s.md = md_for(cak);
	s.tbs = tbsbuf;
	s.tbslen = 350;
	sign_us = timeit(secs, op_sign, &s);
	if (pki_key_type(cak, NULL) == KEY_ED25519) {
		unsigned char seed[crypto_sign_SEEDBYTES];

		memset(&ss, 0, sizeof(ss));
		n = sizeof(seed);
		if (EVP_PKEY_get_raw_private_key(cak, seed, &n) != 1 ||
		    crypto_sign_seed_keypair(ss.pk, ss.sk, seed) != 0)
			die("Ed25519 CA key for libsodium");
		ss.msg = tbsbuf;
		ss.len = 350;
		ossl_sign_us = sign_us;
		sign_us = timeit(secs, sop_sign, &ss);
		sodium_memzero(seed, sizeof(seed));
		sodium_memzero(ss.sk, sizeof(ss.sk));
	}

	if (skpath[0] != '\0') {
		sk = load_key(skpath);
		memset(&h, 0, sizeof(h));
		h.key = sk;
		h.md = md_for(sk);
		h.pss = pki_key_type(sk, NULL) == KEY_RSA; /* TLS 1.3: RSA-PSS */
		h.tbs = tbsbuf;
		h.tbslen = 130; /* CertificateVerify content */
		hs_sign_us = timeit(secs, op_sign, &h);
		if ((peer = EVP_PKEY_Q_keygen(NULL, NULL, "X25519")) == NULL)
			die("X25519 keygen");
		kx_us = timeit(secs, op_x25519, peer);
		EVP_PKEY_free(peer);
	}
	printf("{\"csr_key\":\"%s\",\"ca_key\":\"%s\",\"serving_key\":\"%s\","
	       "\"verify_us\":%.1f,\"sign_us\":%.1f,\"call_floor_us\":%.1f,"
	       "\"handshake_sign_us\":%.1f,\"x25519_us\":%.1f,\"connection_floor_us\":%.1f,"
	       "\"openssl_verify_us\":%.1f,\"openssl_sign_us\":%.1f}\n",
	    pki_key_type_name(pki_key_type(v.key, NULL)),
	    pki_key_type_name(pki_key_type(cak, NULL)),
	    sk != NULL ? pki_key_type_name(pki_key_type(sk, NULL)) : "", verify_us, sign_us,
	    verify_us + sign_us, hs_sign_us, kx_us, verify_us + sign_us + hs_sign_us + kx_us,
	    ossl_verify_us > 0 ? ossl_verify_us : verify_us, ossl_sign_us > 0 ? ossl_sign_us : sign_us);
	OPENSSL_free(tbs);
	X509_REQ_free(req);
	sbuf_free(&pem);
	EVP_PKEY_free(cak);
	EVP_PKEY_free(sk);
	return 0;
}

struct issue {
	struct creds        *c;
	struct signer_params sp;
	struct sbuf          csr;
};

static void
op_issue(void *a)
{
	struct issue        *is = a;
	struct signer_result r;

	if (signer_issue(is->c, is->csr.data, is->csr.len, &is->sp, &r) != SIGNER_OK) {
		fprintf(stderr, "floor: signer_issue: %s\n", r.message);
		exit(1);
	}
	signer_result_free(&r);
}

static int
run_signer(int argc, char **argv)
{
	static const struct {
		const char      *flag;
		enum creds_field f;
	} parts[] = {
		{ "--ca-cert", CF_CA_CERT },
		{ "--ca-key", CF_CA_KEY },
		{ "--tls-cert", CF_TLS_CERT },
		{ "--tls-key", CF_TLS_KEY },
		{ "--token", CF_TOKEN },
	};
	struct creds_input in;
	struct issue       is;
	struct sbuf        b;
	char               err[256];
	long               iters = atol(arg(argc, argv, "--iterations", "0"));
	double             secs = atof(arg(argc, argv, "--seconds", "2")), us;
	size_t             i;

	creds_input_init(&in);
	for (i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		slurp(arg(argc, argv, parts[i].flag, NULL), &b);
		if (creds_input_set(&in, parts[i].f, b.data, b.len, parts[i].flag) == -1)
			die("creds_input_set");
		sbuf_free(&b);
	}
	memset(&is, 0, sizeof(is));
	if ((is.c = creds_build(&in, (long long)time(NULL), err, sizeof(err))) == NULL) {
		fprintf(stderr, "floor: creds_build: %s\n", err);
		return 1;
	}
	creds_input_free(&in);
	slurp(arg(argc, argv, "--csr", NULL), &is.csr);
	signer_policy_defaults(&is.sp.policy);
	is.sp.ttl_ms = 24 * 3600 * 1000LL;
	is.sp.backdate_ms = 60 * 1000;
	is.sp.now = (long long)time(NULL);
	is.sp.peer_ip = "127.0.0.1";
	if (iters > 0) {
		double t0 = now_s();

		for (long n = 0; n < iters; n++)
			op_issue(&is);
		us = (now_s() - t0) / (double)iters * 1e6;
	} else
		us = timeit(secs, op_issue, &is);
	printf(
	    "{\"ca_key\":\"%s\",\"signer_issue_us\":%.1f}\n", pki_key_type_name(is.c->ca_type), us);
	creds_release(is.c);
	sbuf_free(&is.csr);
	return 0;
}

struct wire {
	unsigned char *req;
	size_t         reqlen;
	struct sbuf    crt, ca;
	unsigned char  out[1 << 16];
};

static void
op_wire(void *a)
{
	struct wire                      *w = a;
	Securityapi__CertificateRequest  *req;
	Securityapi__CertificateResponse  resp = SECURITYAPI__CERTIFICATE_RESPONSE__INIT;
	size_t                            n;

	if ((req = securityapi__certificate_request__unpack(NULL, w->reqlen, w->req)) == NULL)
		die("unpack");
	securityapi__certificate_request__free_unpacked(req, NULL);
	resp.ca.data = w->ca.data;
	resp.ca.len = w->ca.len;
	resp.crt.data = w->crt.data;
	resp.crt.len = w->crt.len;
	if ((n = securityapi__certificate_response__get_packed_size(&resp)) > sizeof(w->out))
		die("response size");
	securityapi__certificate_response__pack(&resp, w->out);
}

static int
run_wire(int argc, char **argv)
{
	Securityapi__CertificateRequest req = SECURITYAPI__CERTIFICATE_REQUEST__INIT;
	struct wire                    *w = calloc(1, sizeof(*w));
	struct sbuf                     csr;
	long                            iters = atol(arg(argc, argv, "--iterations", "0"));
	double                          secs = atof(arg(argc, argv, "--seconds", "2")), us;

	if (w == NULL)
		die("calloc");
	slurp(arg(argc, argv, "--csr", NULL), &csr);
	slurp(arg(argc, argv, "--crt", NULL), &w->crt);
	slurp(arg(argc, argv, "--ca", NULL), &w->ca);
	req.csr.data = csr.data;
	req.csr.len = csr.len;
	w->reqlen = securityapi__certificate_request__get_packed_size(&req);
	if ((w->req = malloc(w->reqlen)) == NULL)
		die("malloc");
	securityapi__certificate_request__pack(&req, w->req);
	if (iters > 0) {
		double t0 = now_s();

		for (long n = 0; n < iters; n++)
			op_wire(w);
		us = (now_s() - t0) / (double)iters * 1e6;
	} else
		us = timeit(secs, op_wire, w);
	printf("{\"wire_us\":%.2f}\n", us);
	free(w->req);
	sbuf_free(&csr);
	sbuf_free(&w->crt);
	sbuf_free(&w->ca);
	free(w);
	return 0;
}

int
main(int argc, char **argv)
{
	log_init(LOG_JSON, LOG_ERROR);
	if (argc >= 2 && strcmp(argv[1], "floor") == 0)
		return run_floor(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "signer") == 0)
		return run_signer(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "wire") == 0)
		return run_wire(argc, argv);
	fprintf(stderr, "usage: floor floor|signer [flags] (see floor.c)\n");
	return 2;
}
