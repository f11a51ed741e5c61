/*
 * stress.c: concurrency stress for the shared state, built with
 * ThreadSanitizer by `make test-tsan` (Criterion's runner cannot start under
 * TSan, so this is a plain program). It fails (exit 1) on any broken
 * invariant, and TSan (halt_on_error=1) on any data race.
 *
 * Scenarios: readers acquire/release snapshots while a publisher swaps fresh
 * ones; two sources submit to the assembler at once while readers read; many
 * threads share the rate-limit table; many threads sign through the keeper
 * channels at once (keeperc: submitters, channel readers, answers crossing
 * threads) against an echoing keeper that answers out of order.
 */
#include <sys/socket.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "creds.h"
#include "credsrc.h"
#include "credstore.h"
#include "keeperc.h"
#include "keeperproto.h"
#include "ratelimit.h"
#include "signer.h"
#include "util.h"

static int passed, failed;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (cond)                                                                          \
			passed++;                                                                  \
		else {                                                                             \
			failed++;                                                                  \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                       \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
		}                                                                                  \
	} while (0)

static char *
pem_of_cert(X509 *x)
{
	BIO  *b = BIO_new(BIO_s_mem());
	char *p, *s;
	long  n;

	PEM_write_bio_X509(b, x);
	n = BIO_get_mem_data(b, &p);
	s = strndup(p, (size_t)n);
	BIO_free(b);
	return s;
}

static char *
pem_of_key(EVP_PKEY *k)
{
	BIO  *b = BIO_new(BIO_s_mem());
	char *p, *s;
	long  n;

	PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
	n = BIO_get_mem_data(b, &p);
	s = strndup(p, (size_t)n);
	BIO_free(b);
	return s;
}

static void
ext(X509 *x, X509 *iss, int nid, const char *v)
{
	X509V3_CTX      ctx;
	X509_EXTENSION *e;

	X509V3_set_ctx(&ctx, iss, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &ctx, nid, v);
	X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
}

static X509 *
cert(EVP_PKEY *pub, X509 *iss, EVP_PKEY *isskey, int ca)
{
	X509      *x = X509_new();
	X509_NAME *n = X509_NAME_new();

	X509_set_version(x, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(x), rand() + 1);
	X509_NAME_add_entry_by_txt(n, ca ? "O" : "CN", MBSTRING_ASC,
	    (const unsigned char *)(ca ? "talos" : "server"), -1, -1, 0);
	X509_set_subject_name(x, n);
	X509_set_issuer_name(x, iss ? X509_get_subject_name(iss) : n);
	X509_NAME_free(n);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, pub);
	if (ca) {
		ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
		ext(x, x, NID_key_usage, "critical,keyCertSign,digitalSignature");
		ext(x, x, NID_subject_key_identifier, "hash");
	} else
		ext(x, iss, NID_subject_alt_name, "IP:127.0.0.1");
	X509_sign(x, iss ? isskey : pub, NULL);
	return x;
}

static void
make_input(struct creds_input *in, const char *token)
{
	EVP_PKEY *cak = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	EVP_PKEY *tk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	X509     *ca = cert(cak, NULL, NULL, 1), *leaf = cert(tk, ca, cak, 0);
	char     *s[4] = { pem_of_cert(ca), pem_of_key(cak), pem_of_cert(leaf), pem_of_key(tk) };

	creds_input_init(in);
	creds_input_set(in, CF_CA_CERT, s[0], strlen(s[0]), "ca");
	creds_input_set(in, CF_CA_KEY, s[1], strlen(s[1]), "cakey");
	creds_input_set(in, CF_TOKEN, token, strlen(token), "token");
	creds_input_set(in, CF_TLS_CERT, s[2], strlen(s[2]), "tls");
	creds_input_set(in, CF_TLS_KEY, s[3], strlen(s[3]), "tlskey");
	for (int i = 0; i < 4; i++)
		free(s[i]);
	X509_free(ca);
	X509_free(leaf);
	EVP_PKEY_free(cak);
	EVP_PKEY_free(tk);
}

struct shared {
	struct credstore      *store;
	struct credsrc        *src;
	struct credsrc_source *all; /* one source, submitted through by two threads */
	struct ratelimit      *rl;
	atomic_int             stop;
	atomic_long            reads, bad;
	atomic_long            allowed;
};

static void *
reader(void *arg)
{
	struct shared *s = arg;
	struct creds  *c;
	uint64_t       last = 0;

	while (!atomic_load(&s->stop)) {
		if ((c = credstore_acquire(s->store)) == NULL)
			continue;
		if (c->gen < last || c->ca_bundle_len == 0 || c->ca_key == NULL ||
		    c->tls_key_pem == NULL || atomic_load(&c->refs) < 1)
			atomic_fetch_add(&s->bad, 1);
		last = c->gen;
		creds_release(c);
		atomic_fetch_add(&s->reads, 1);
	}
	return NULL;
}

static void *
submitter(void *arg)
{
	struct shared     *s = arg;
	struct creds_input in;
	char               err[256], tok[64];
	int                i;

	for (i = 0; i < 60; i++) {
		snprintf(tok, sizeof(tok), "tok%03d.%p", i, (void *)&in);
		make_input(&in, tok);
		credsrc_submit(s->all, &in, NULL, err, sizeof(err));
		creds_input_free(&in);
	}
	return NULL;
}

static void *
limiter(void *arg)
{
	struct shared *s = arg;
	char           addr[32];
	int            i;

	for (i = 0; i < 20000; i++) {
		snprintf(addr, sizeof(addr), "10.0.0.%d", i % 8);
		if (ratelimit_allow(s->rl, addr))
			atomic_fetch_add(&s->allowed, 1);
	}
	return NULL;
}

/* --- keeper channels ------------------------------------------------------- */

#define ECHO_BATCH 4 /* requests an echo keeper holds, answered last first */

/* A keeper's request thread that signs nothing: its certificate is the CSR. */
static void *
echo_keeper(void *arg)
{
	int                 *fd = arg;
	struct kp_reader     rd;
	struct sbuf          out;
	struct kp_msg        m, r;
	const unsigned char *msg;
	size_t               len;
	char                 err[128];
	uint32_t             ids[ECHO_BATCH];
	unsigned char        csr[ECHO_BATCH][64];
	size_t               csrlen[ECHO_BATCH];
	int                  n = 0, i;

	kp_reader_init(&rd, *fd);
	sbuf_init(&out, KP_HEADER_LEN + KP_MAX_PAYLOAD);
	for (;;) {
		/* Hold requests while more are already there, up to a batch. */
		i = kp_reader_next(&rd, n > 0 ? 1 : -1, &msg, &len);
		if (i == 1 && kp_decode(msg, len, KP_TO_KEEPER, &m, err, sizeof(err)) == 0 &&
		    m.csr_len <= sizeof(csr[0])) {
			ids[n] = m.id;
			memcpy(csr[n], m.csr, m.csr_len);
			csrlen[n++] = m.csr_len;
			if (n < ECHO_BATCH)
				continue;
		} else if (i != -1 || n == 0)
			break; /* end of file, or garbage */
		while (n > 0) {
			n--;
			kp_init(&r, KP_SIGNED);
			r.id = ids[n];
			r.status = SIGNER_OK;
			r.crt = csr[n];
			r.crt_len = csrlen[n];
			r.ca_bundle = (const unsigned char *)"CA";
			r.ca_bundle_len = 2;
			out.len = 0;
			if (kp_encode(&out, &r) == -1 || kp_write(*fd, out.data, out.len) == -1)
				goto done;
		}
	}
done:
	kp_reader_free(&rd);
	sbuf_free(&out);
	return NULL;
}

struct signing {
	struct keeperc *kc;
	int             id;
	atomic_long     ok, bad, answers;
};

struct async_call {
	struct signing        *sg;
	char                   csr[32];
	struct signer_result   res;
	struct certpipe_signed sig;
};

static void
async_done(void *ctx, int rc)
{
	struct async_call *a = ctx;

	if (rc == 0 && a->res.crt_len == strlen(a->csr) &&
	    memcmp(a->res.crt_pem, a->csr, a->res.crt_len) == 0)
		atomic_fetch_add(&a->sg->ok, 1);
	else
		atomic_fetch_add(&a->sg->bad, 1);
	atomic_fetch_add(&a->sg->answers, 1);
}

#define SIGN_CALLS 400

/* Half the calls block in keeperc_issue(), half are submitted and answered later. */
static void *
signer_thread(void *arg)
{
	struct signing        *sg = arg;
	struct async_call     *calls = calloc(SIGN_CALLS, sizeof(*calls));
	struct signer_result   res;
	struct certpipe_signed sig;
	char                   csr[32];
	int                    i;

	for (i = 0; calls != NULL && i < SIGN_CALLS; i++) {
		snprintf(csr, sizeof(csr), "csr-%p-%d", (void *)&sig, i);
		if (i % 2 == 0) {
			memset(&res, 0, sizeof(res));
			memset(&sig, 0, sizeof(sig));
			if (keeperc_issue(sg->kc, NULL, (const unsigned char *)csr, strlen(csr),
				"10.0.0.1", &res, &sig) == 0 &&
			    res.crt_len == strlen(csr) &&
			    memcmp(res.crt_pem, csr, res.crt_len) == 0)
				atomic_fetch_add(&sg->ok, 1);
			else
				atomic_fetch_add(&sg->bad, 1);
			atomic_fetch_add(&sg->answers, 1);
			free(sig.ca);
			signer_result_free(&res);
			continue;
		}
		calls[i].sg = sg;
		snprintf(calls[i].csr, sizeof(calls[i].csr), "%s", csr);
		if (keeperc_submit(sg->kc, (const unsigned char *)calls[i].csr,
			strlen(calls[i].csr), "10.0.0.1", &calls[i].res, &calls[i].sig, async_done,
			&calls[i]) == -1) {
			atomic_fetch_add(&sg->bad, 1);
			atomic_fetch_add(&sg->answers, 1);
		}
	}
	/* The answers write into calls[]: wait for every answer before freeing. */
	while (atomic_load(&sg->answers) < (long)SIGN_CALLS * 4 && calls != NULL)
		usleep(1000);
	for (i = 0; calls != NULL && i < SIGN_CALLS; i++) {
		free(calls[i].sig.ca);
		signer_result_free(&calls[i].res);
	}
	free(calls);
	return NULL;
}

/* 4. Four threads sign through two keeper channels at once. */
static void
stress_keeper_channels(void)
{
	struct credstore *store = credstore_new();
	struct signing    sg;
	struct keeperc   *kc;
	pthread_t         keepers[2], th[4];
	int               ctrl[2], req[2][2], kfd[2], netfd[2], i;

	memset(&sg, 0, sizeof(sg));
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, ctrl) == -1 ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, req[0]) == -1 ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, req[1]) == -1) {
		CHECK(0, "socketpair");
		return;
	}
	for (i = 0; i < 2; i++) {
		netfd[i] = req[i][0];
		kfd[i] = req[i][1];
		pthread_create(&keepers[i], NULL, echo_keeper, &kfd[i]);
	}
	kc = keeperc_new(ctrl[0], netfd, 2, store, 10000);
	CHECK(kc != NULL && keeperc_start(kc) == 0, "keeperc start");
	sg.kc = kc;
	for (i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, signer_thread, &sg);
	for (i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	CHECK(atomic_load(&sg.answers) == 4 * SIGN_CALLS, "%ld answers for %d calls",
	    atomic_load(&sg.answers), 4 * SIGN_CALLS);
	CHECK(atomic_load(&sg.ok) == 4 * SIGN_CALLS, "%ld calls got their own certificate, %ld not",
	    atomic_load(&sg.ok), atomic_load(&sg.bad));
	CHECK(keeperc_dead(kc) == 0, "the keeper was declared dead");
	keeperc_free(kc); /* the echo keepers read end of file */
	for (i = 0; i < 2; i++) {
		pthread_join(keepers[i], NULL);
		close(kfd[i]);
	}
	close(ctrl[1]);
	credstore_free(store);
}

int
main(void)
{
	struct shared      s;
	struct creds_input in;
	struct creds      *c;
	pthread_t          r[4], w[2], l[4];
	char               err[256];
	int                i;

	memset(&s, 0, sizeof(s));
	s.store = credstore_new();
	s.src = credsrc_new(s.store);
	if ((s.all = credsrc_register(s.src, CF_GROUP_ALL, "stress", MS_FILES, err, sizeof(err))) ==
	    NULL) {
		fprintf(stderr, "credsrc_register: %s\n", err);
		return 1;
	}

	/* 1. Readers against a publisher of fresh snapshots. */
	make_input(&in, "abcdef.0123456789abcdef");
	for (i = 0; i < 4; i++)
		pthread_create(&r[i], NULL, reader, &s);
	for (i = 0; i < 300; i++) {
		c = creds_build(&in, (long long)time(NULL), err, sizeof(err));
		CHECK(c != NULL, "creds_build: %s", err);
		if (c != NULL)
			credstore_publish(s.store, c);
	}
	/* 2. Two sources submitting at once, readers still reading. */
	pthread_create(&w[0], NULL, submitter, &s);
	pthread_create(&w[1], NULL, submitter, &s);
	pthread_join(w[0], NULL);
	pthread_join(w[1], NULL);
	atomic_store(&s.stop, 1);
	for (i = 0; i < 4; i++)
		pthread_join(r[i], NULL);
	CHECK(atomic_load(&s.bad) == 0, "%ld inconsistent reads", atomic_load(&s.bad));
	CHECK(atomic_load(&s.reads) > 0, "readers never read");
	CHECK(credstore_generation(s.store) == 300 + 120, "generation %llu, want 420",
	    (unsigned long long)credstore_generation(s.store));
	c = credstore_acquire(s.store);
	CHECK(c != NULL && atomic_load(&c->refs) == 2, "reference count of the current snapshot");
	creds_release(c);
	creds_input_free(&in);

	/* 3. The rate-limit table from many threads. */
	s.rl = ratelimit_new(1.0, 3, 256);
	for (i = 0; i < 4; i++)
		pthread_create(&l[i], NULL, limiter, &s);
	for (i = 0; i < 4; i++)
		pthread_join(l[i], NULL);
	/* 8 addresses, burst 3, 1/s: about 24 allowed, whatever the interleaving. */
	CHECK(atomic_load(&s.allowed) >= 24 && atomic_load(&s.allowed) < 200,
	    "allowed %ld of 80000", atomic_load(&s.allowed));
	ratelimit_free(s.rl);

	credsrc_free(s.src);
	credstore_free(s.store);

	stress_keeper_channels();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
