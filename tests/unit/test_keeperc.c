/*
 * test_keeperc.c: the network side's end of the keeper channels (mirrors
 * src/keeperc.c), against a scripted keeper on the other end of
 * socketpairs: a reply, a reply that comes too late (dropped by id), a
 * keeper that goes away, and the control channel's credentials and
 * waiting text reaching the network side's store; and the pipelined form
 * (keeperc_submit): many calls in flight on one channel, answered in any
 * order by id, each exactly once, by its reply, its deadline or the
 * keeper's end.
 */
#include <sys/socket.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "audit.h"
#include "certpipe.h"
#include "creds.h"
#include "credstore.h"
#include "keeperc.h"
#include "keeperproto.h"
#include "signer.h"
#include "util.h"

static int               ctrl[2], req[2];
static struct credstore *store;
static struct keeperc   *kc;

static void
setup(void)
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, ctrl), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, req), 0);
	store = credstore_new();
	kc = keeperc_new(ctrl[0], &req[0], 1, store, 300);
	cr_assert_not_null(kc);
	cr_assert_eq(keeperc_start(kc), 0);
}

static void
teardown(void)
{
	keeperc_free(kc);
	close(ctrl[1]);
	close(req[1]);
	credstore_free(store);
}

TestSuite(keeperc, .init = setup, .fini = teardown);

/*
 * Reads one KP_SIGN on the keeper's end; returns its id. With `slot`, the
 * CSR is "csr-N" (keeperc_submit's tests) and *slot gets N.
 */
static uint32_t
read_sign(int *slot)
{
	struct sbuf   in;
	struct kp_msg m;
	char          err[128];
	uint32_t      id;

	sbuf_init(&in, KP_HEADER_LEN + KP_MAX_PAYLOAD);
	cr_assert_eq(kp_read(req[1], &in, 2000), 1);
	cr_assert_eq(kp_decode(in.data, in.len, KP_TO_KEEPER, &m, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(m.type, KP_SIGN);
	cr_assert_str_eq(m.peer, "10.0.0.5");
	if (slot != NULL) {
		cr_assert_eq(m.csr_len, 5);
		*slot = m.csr[4] - '0';
	}
	id = m.id;
	sbuf_free(&in);
	return id;
}

static void
send_msg(int fd, const struct kp_msg *m)
{
	struct sbuf out;

	sbuf_init(&out, KP_HEADER_LEN + KP_MAX_PAYLOAD);
	cr_assert_eq(kp_encode(&out, m), 0);
	cr_assert_eq(kp_write(fd, out.data, out.len), 0);
	sbuf_free(&out);
}

static void
reply(uint32_t id, const char *crt)
{
	struct kp_msg m;

	kp_init(&m, KP_SIGNED);
	m.id = id;
	m.status = SIGNER_OK;
	m.crt = (const unsigned char *)crt;
	m.crt_len = strlen(crt);
	m.ca_bundle = (const unsigned char *)"BUNDLE";
	m.ca_bundle_len = 6;
	send_msg(req[1], &m);
}

Test(keeperc, a_reply_and_a_late_reply)
{
	struct signer_result   res;
	struct certpipe_signed sig;
	uint32_t               id1, id2;
	pid_t                  pid;

	/* First call: the keeper answers nothing in time. */
	memset(&res, 0, sizeof(res));
	memset(&sig, 0, sizeof(sig));
	cr_assert_eq(
	    keeperc_issue(kc, NULL, (const unsigned char *)"csr", 3, "10.0.0.5", &res, &sig), -1);
	id1 = read_sign(NULL);
	cr_assert_eq(keeperc_dead(kc), 0, "a timeout is not a dead keeper");
	/* Second call: the late reply to the first comes before its own. */
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		id2 = read_sign(NULL);
		reply(id1, "LATE");
		reply(id2, "MINE");
		_exit(id2 != id1 ? 0 : 1);
	}
	memset(&res, 0, sizeof(res));
	memset(&sig, 0, sizeof(sig));
	cr_assert_eq(
	    keeperc_issue(kc, NULL, (const unsigned char *)"csr", 3, "10.0.0.5", &res, &sig), 0);
	cr_assert_eq(res.status, SIGNER_OK);
	cr_assert_eq(res.crt_len, 4);
	cr_assert(memcmp(res.crt_pem, "MINE", 4) == 0, "got the late reply");
	cr_assert_eq(sig.audited, 1, "the keeper audits signing outcomes");
	cr_assert_eq(sig.ca_len, 6);
	cr_assert(memcmp(sig.ca, "BUNDLE", 6) == 0, "the bundle of the CA that signed");
	free(sig.ca);
	signer_result_free(&res);
}

Test(keeperc, keeper_gone_is_unavailable_and_dead)
{
	struct signer_result   res;
	struct certpipe_signed sig;

	close(req[1]);
	close(ctrl[1]);
	memset(&res, 0, sizeof(res));
	memset(&sig, 0, sizeof(sig));
	cr_assert_eq(
	    keeperc_issue(kc, NULL, (const unsigned char *)"csr", 3, "10.0.0.5", &res, &sig), -1);
	cr_assert_eq(keeperc_dead(kc), 1);
	cr_assert_null(res.crt_pem);
	/* Later calls fail at once. */
	cr_assert_eq(
	    keeperc_issue(kc, NULL, (const unsigned char *)"csr", 3, "10.0.0.5", &res, &sig), -1);
	req[1] = ctrl[1] = -1;
}

Test(keeperc, credentials_and_waiting_reach_the_store)
{
	struct kp_msg m;
	struct creds *c;
	unsigned char dig[2][KP_DIGEST_LEN];
	char          w[128];
	int           i;

	credstore_waiting(store, w, sizeof(w));
	cr_assert_str_eq(w, "waiting for the keeper process");
	kp_init(&m, KP_WAITING);
	snprintf(m.message, sizeof(m.message), "waiting for Secret ns/ca");
	send_msg(ctrl[1], &m);
	for (i = 0; i < 200; i++) {
		credstore_waiting(store, w, sizeof(w));
		if (strcmp(w, "waiting for Secret ns/ca") == 0)
			break;
		usleep(10000);
	}
	cr_assert_str_eq(w, "waiting for Secret ns/ca");

	memset(dig, 0x11, sizeof(dig));
	kp_init(&m, KP_CREDS);
	m.gen = 1;
	m.tls_cert = (const unsigned char *)"CERT";
	m.tls_cert_len = 4;
	m.tls_key = (const unsigned char *)"KEY";
	m.tls_key_len = 3;
	m.ca_bundle = (const unsigned char *)"BUNDLE";
	m.ca_bundle_len = 6;
	m.digests = &dig[0][0];
	m.ndigests = 2;
	m.tls_not_after = 2000000000;
	m.ca_not_after = 2100000000;
	snprintf(m.tls_fp, sizeof(m.tls_fp), "ab");
	send_msg(ctrl[1], &m);
	for (i = 0; i < 200 && credstore_generation(store) == 0; i++)
		usleep(10000);
	cr_assert_not_null(c = credstore_acquire(store));
	cr_assert_null(c->ca_key, "the network side never has a CA key");
	cr_assert_null(c->ca_cert);
	cr_assert_eq(c->ntokens, 2);
	cr_assert_str_eq(c->tls_cert_pem, "CERT");
	cr_assert_str_eq(c->tls_key_pem, "KEY");
	cr_assert_eq(c->ca_bundle_len, 6);
	cr_assert_eq(c->ca_not_after, 2100000000);
	credstore_waiting(store, w, sizeof(w));
	cr_assert_str_eq(w, "");
	creds_release(c);
}

Test(keeperc, audit_and_reload_go_to_the_keeper)
{
	struct audit_rec ar;
	struct sbuf      in;
	struct kp_msg    m;
	char             err[128];

	memset(&ar, 0, sizeof(ar));
	ar.kind = AK_RATE_LIMITED;
	ar.peer = "10.0.0.9";
	ar.message = "too many requests";
	keeperc_audit_sink(&ar, kc);
	keeperc_reload(kc);
	sbuf_init(&in, KP_HEADER_LEN + KP_MAX_PAYLOAD);
	cr_assert_eq(kp_read(ctrl[1], &in, 2000), 1);
	cr_assert_eq(kp_decode(in.data, in.len, KP_TO_KEEPER, &m, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(m.type, KP_AUDIT);
	cr_assert_eq(m.kind, AK_RATE_LIMITED);
	cr_assert_str_eq(m.peer, "10.0.0.9");
	cr_assert_eq(kp_read(ctrl[1], &in, 2000), 1);
	cr_assert_eq(kp_decode(in.data, in.len, KP_TO_KEEPER, &m, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(m.type, KP_RELOAD);
	sbuf_free(&in);
}

/* --- keeperc_submit: calls in flight ---------------------------------------- */

#define NCALLS 8

struct slot {
	struct signer_result   res;
	struct certpipe_signed sig;
	int                    calls, rc;
};

static struct slot     slots[NCALLS];
static pthread_mutex_t slot_mtx = PTHREAD_MUTEX_INITIALIZER;

static void
slot_done(void *ctx, int rc)
{
	struct slot *sl = ctx;

	pthread_mutex_lock(&slot_mtx);
	sl->calls++;
	sl->rc = rc;
	pthread_mutex_unlock(&slot_mtx);
}

/* Waits until `n` slots were answered (or 3 s); returns how many were. */
static int
answered(int n)
{
	int i, got = 0, tries;

	for (tries = 0; tries < 300; tries++) {
		pthread_mutex_lock(&slot_mtx);
		for (got = 0, i = 0; i < NCALLS; i++)
			got += slots[i].calls;
		pthread_mutex_unlock(&slot_mtx);
		if (got >= n)
			break;
		usleep(10000);
	}
	usleep(50000); /* and no second answer comes */
	pthread_mutex_lock(&slot_mtx);
	for (got = 0, i = 0; i < NCALLS; i++)
		got += slots[i].calls;
	pthread_mutex_unlock(&slot_mtx);
	return got;
}

static void
submit_all(void)
{
	char csr[16];
	int  i;

	memset(slots, 0, sizeof(slots));
	for (i = 0; i < NCALLS; i++) {
		snprintf(csr, sizeof(csr), "csr-%d", i);
		cr_assert_eq(keeperc_submit(kc, (const unsigned char *)csr, strlen(csr), "10.0.0.5",
				 &slots[i].res, &slots[i].sig, slot_done, &slots[i]),
		    0);
	}
}

Test(keeperc, calls_in_flight_answered_by_id_in_any_order)
{
	uint32_t ids[NCALLS];
	int      i, slot, order[NCALLS];
	char     crt[16];

	submit_all(); /* all written before any reply: nobody waits for the keeper */
	for (i = 0; i < NCALLS; i++) {
		ids[i] = read_sign(&slot);
		order[i] = slot;
	}
	for (i = 1; i < NCALLS; i++)
		cr_assert_neq(ids[i], ids[0], "each call has its own id");
	cr_assert_eq(answered(0), 0, "no answer before a reply");
	for (i = NCALLS - 1; i >= 0; i--) { /* the last sent is answered first */
		snprintf(crt, sizeof(crt), "CRT-%d", order[i]);
		reply(ids[i], crt);
	}
	cr_assert_eq(answered(NCALLS), NCALLS, "every call answered exactly once");
	for (i = 0; i < NCALLS; i++) {
		snprintf(crt, sizeof(crt), "CRT-%d", i);
		cr_assert_eq(slots[i].calls, 1);
		cr_assert_eq(slots[i].rc, 0);
		cr_assert_eq(slots[i].res.status, SIGNER_OK);
		cr_assert_eq(slots[i].res.crt_len, strlen(crt));
		cr_assert(memcmp(slots[i].res.crt_pem, crt, strlen(crt)) == 0,
		    "call %d got another call's certificate", i);
		cr_assert_eq(slots[i].sig.audited, 1);
		free(slots[i].sig.ca);
		signer_result_free(&slots[i].res);
	}
}

Test(keeperc, overdue_calls_answered_unavailable_once)
{
	uint32_t ids[NCALLS];
	int      i, slot;

	submit_all();
	for (i = 0; i < NCALLS; i++)
		ids[i] = read_sign(&slot);
	reply(ids[3], "IN-TIME");
	/* The rest pass their 300 ms deadline: each answered -1, once. */
	cr_assert_eq(answered(NCALLS), NCALLS);
	for (i = 0; i < NCALLS; i++) {
		cr_assert_eq(slots[i].calls, 1, "call %d answered %d times", i, slots[i].calls);
		cr_assert_eq(slots[i].rc, i == 3 ? 0 : -1, "call %d", i);
		cr_assert_eq(slots[i].res.crt_pem == NULL, i != 3);
	}
	/* Their late replies are dropped; the channel still works. */
	for (i = 0; i < NCALLS; i++)
		if (i != 3)
			reply(ids[i], "LATE");
	cr_assert_eq(answered(NCALLS + 1), NCALLS, "a late reply answered a call twice");
	cr_assert_eq(keeperc_dead(kc), 0, "a timeout is not a dead keeper");
	free(slots[3].sig.ca);
	signer_result_free(&slots[3].res);
}

Test(keeperc, keeper_gone_answers_every_call_in_flight)
{
	int i, slot;

	submit_all();
	for (i = 0; i < NCALLS; i++)
		read_sign(&slot);
	close(req[1]); /* the keeper dies with every call unanswered */
	close(ctrl[1]);
	req[1] = ctrl[1] = -1;
	cr_assert_eq(answered(NCALLS), NCALLS);
	for (i = 0; i < NCALLS; i++) {
		cr_assert_eq(slots[i].calls, 1);
		cr_assert_eq(slots[i].rc, -1);
	}
	cr_assert_eq(keeperc_dead(kc), 1);
	cr_assert_eq(keeperc_submit(kc, (const unsigned char *)"csr-9", 5, "10.0.0.5",
			 &slots[0].res, &slots[0].sig, slot_done, &slots[0]),
	    -1, "a submit after the keeper died must fail at once");
	cr_assert_eq(answered(NCALLS), NCALLS, "a failed submit calls no done function");
}

/* --- the bound on calls in flight per channel ------------------------------ */

static struct slot   many[KEEPERC_MAX_PENDING + 1];
static volatile int  extra_returned, extra_rc;
static volatile long extra_at, reply_at;

static void *
submit_extra(void *arg)
{
	(void)arg;
	extra_rc = keeperc_submit(kc, (const unsigned char *)"csr-x", 5, "10.0.0.5",
	    &many[KEEPERC_MAX_PENDING].res, &many[KEEPERC_MAX_PENDING].sig, slot_done,
	    &many[KEEPERC_MAX_PENDING]);
	extra_at = (long)util_mono_ms();
	extra_returned = 1;
	return NULL;
}

Test(keeperc, a_full_channel_makes_the_submitter_wait_for_room)
{
	pthread_t th;
	uint32_t  first;
	int       i, slot;

	memset(many, 0, sizeof(many));
	for (i = 0; i < KEEPERC_MAX_PENDING; i++)
		cr_assert_eq(keeperc_submit(kc, (const unsigned char *)"csr-0", 5, "10.0.0.5",
				 &many[i].res, &many[i].sig, slot_done, &many[i]),
		    0);
	first = read_sign(&slot);
	cr_assert_eq(pthread_create(&th, NULL, submit_extra, NULL), 0);
	usleep(100000);
	cr_assert_eq(extra_returned, 0, "a submit past the bound did not wait");
	reply_at = (long)util_mono_ms();
	reply(first, "ROOM");
	pthread_join(th, NULL);
	cr_assert_eq(extra_rc, 0, "the waiting submit got in once there was room");
	cr_assert_geq(extra_at, reply_at, "it got in before the reply made room");
	/* The rest time out (300 ms); every one of the 129 calls is answered once. */
	for (i = 0; i < 300; i++) {
		int n = 0, j;

		pthread_mutex_lock(&slot_mtx);
		for (j = 0; j <= KEEPERC_MAX_PENDING; j++)
			n += many[j].calls;
		pthread_mutex_unlock(&slot_mtx);
		if (n == KEEPERC_MAX_PENDING + 1)
			break;
		usleep(10000);
	}
	for (i = 0; i <= KEEPERC_MAX_PENDING; i++) {
		cr_assert_eq(many[i].calls, 1, "call %d answered %d times", i, many[i].calls);
		free(many[i].sig.ca);
		signer_result_free(&many[i].res);
	}
}
