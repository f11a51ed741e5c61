/*
 * keeperc.c: the network side's end of the keeper channels.
 *
 * DESIGN
 * Channels: one control socket (keeper -> network: KP_CREDS, KP_WAITING;
 * network -> keeper: KP_AUDIT, KP_RELOAD) and as many request sockets as
 * the keeper has signing threads. Requests are pipelined: keeperc_submit()
 * picks the channel with the fewest calls in flight, records the call as
 * pending under a fresh id, writes its KP_SIGN and returns; the channel's
 * reader thread reads the KP_SIGNED replies (several per recv() under load),
 * matches each to its pending call by id and calls its done function. So no
 * gRPC worker waits for the keeper, and under load neither side sleeps
 * between calls: the two cross-process wake-ups a blocking round trip cost
 * per call are mostly gone.
 * A pending call older than the timeout is answered -1 (UNAVAILABLE) by
 * the reader's sweep; its late reply is dropped by id. A channel holds at
 * most KEEPERC_MAX_PENDING calls: past that, a submitter waits for room
 * (until its own deadline), so a keeper that falls behind slows the gRPC
 * workers down, as a blocking round trip did, instead of queueing without
 * bound and answering the tail UNAVAILABLE after the keeper has signed it.
 * When a channel fails (end of file, a protocol error) every pending call on
 * every channel is answered -1 and later submits fail at once.
 * keeperc_issue() is the blocking form (submit, then wait).
 *
 * Threads: the control reader alone reads the control socket; any thread
 * writes it under ctrl_mtx. Each request channel has a reader thread (it
 * alone reads the socket), a write lock (any submitting thread) and a
 * pending lock (the list of calls awaiting a reply), never held together,
 * so a writer blocked on a full socket never stops the reader that drains
 * the other direction.
 * Owns: every channel descriptor, the reader threads, the pending calls
 * (not their results: the submitter's), the network-side snapshots it
 * builds (published to the store, which owns them from then).
 */
#include "keeperc.h"

#include <sys/socket.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "certpipe.h"
#include "creds.h"
#include "credstore.h"
#include "keeperproto.h"
#include "log.h"
#include "metrics.h"
#include "signer.h"
#include "util.h"

struct pending {
	uint32_t                id;
	int64_t                 deadline; /* util_mono_ms */
	struct signer_result   *res;
	struct certpipe_signed *sig;
	certpipe_done_fn        done;
	void                   *ctx;
	struct pending         *next;
};

struct chan {
	struct keeperc  *k;
	int              fd;
	pthread_mutex_t  wr_mtx; /* writers: out, the socket's send side */
	struct sbuf      out;    /* requests (a CSR and an address: nothing secret) */
	pthread_mutex_t  pend_mtx;
	pthread_cond_t   room;    /* npending fell below the bound, or closed */
	uint32_t         next_id; /* under pend_mtx, as everything down to closed */
	struct pending  *head, *tail;
	atomic_int       npending; /* changed under pend_mtx; read without it by pick() */
	int              closed;   /* no more pending calls */
	struct kp_reader rd;       /* replies: the reader thread's */
	pthread_t        th;
	int              started;
};

struct keeperc {
	struct credstore *store;
	int               ctrl;
	pthread_mutex_t   ctrl_mtx; /* writers of ctrl */
	struct chan      *chans;
	int               nchans;
	atomic_uint       turn; /* the next submit's channel */
	int               timeout_ms;
	atomic_int        dead;
	pthread_t         reader;
	int               reader_started;
};

static void
mark_dead(struct keeperc *k, const char *why)
{
	if (atomic_exchange(&k->dead, 1) == 0) {
		log_warnx(
		    "keeper: %s: refusing calls (UNAVAILABLE) until the process restarts", why);
		credstore_set_waiting(k->store, "the keeper process is gone (restarting)");
		metrics_set_serving(0);
	}
}

int
keeperc_dead(struct keeperc *k)
{
	return atomic_load(&k->dead);
}

/* Builds the network side's snapshot: serving pair, digests, CA bundle; never a CA key. */
static struct creds *
public_creds(const struct kp_msg *m)
{
	struct creds *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	atomic_init(&c->refs, 1);
	c->tls_cert_pem = malloc(m->tls_cert_len + 1);
	c->tls_key_pem = malloc(m->tls_key_len + 1);
	c->ca_bundle = malloc(m->ca_bundle_len ? m->ca_bundle_len : 1);
	if (c->tls_cert_pem == NULL || c->tls_key_pem == NULL || c->ca_bundle == NULL) {
		creds_release(c);
		return NULL;
	}
	memcpy(c->tls_cert_pem, m->tls_cert, m->tls_cert_len);
	c->tls_cert_pem[m->tls_cert_len] = '\0';
	c->tls_cert_len = m->tls_cert_len;
	memcpy(c->tls_key_pem, m->tls_key, m->tls_key_len);
	c->tls_key_pem[m->tls_key_len] = '\0';
	c->tls_key_len = m->tls_key_len;
	memcpy(c->ca_bundle, m->ca_bundle, m->ca_bundle_len);
	c->ca_bundle_len = m->ca_bundle_len;
	memcpy(c->token_digests, m->digests, m->ndigests * KP_DIGEST_LEN);
	c->ntokens = m->ndigests;
	memcpy(c->tls_digest, m->tls_digest, sizeof(c->tls_digest));
	snprintf(c->tls_fp, sizeof(c->tls_fp), "%.64s", m->tls_fp);
	c->tls_not_after = m->tls_not_after;
	c->ca_not_after = m->ca_not_after;
	return c;
}

static void *
reader(void *arg)
{
	struct keeperc *k = arg;
	struct sbuf     in;
	struct kp_msg   m;
	struct creds   *c;
	char            err[256];
	int             r;

	sbuf_init(&in, KP_HEADER_LEN + KP_MAX_PAYLOAD);
	for (;;) {
		if ((r = kp_read(k->ctrl, &in, -1)) != 1) {
			mark_dead(k, r == 0 ? "control channel closed" : strerror(errno));
			break;
		}
		if (kp_decode(in.data, in.len, KP_TO_NETWORK, &m, err, sizeof(err)) == -1) {
			log_warnx("keeper: protocol error: %s", err);
			mark_dead(k, "protocol error on the control channel");
			break;
		}
		if (m.type == KP_CREDS) {
			if ((c = public_creds(&m)) == NULL) {
				log_warnx("keeper: out of memory applying credentials");
				continue;
			}
			credstore_publish(k->store, c);
			credstore_set_waiting(k->store, "");
		} else if (m.type == KP_WAITING)
			credstore_set_waiting(k->store, m.message);
		else
			log_warnx(
			    "keeper: unexpected %s on the control channel", kp_type_name(m.type));
		sbuf_reset(&in);
	}
	sbuf_free(&in); /* wipes the serving key's copy */
	return NULL;
}

static void chan_fail_all(struct chan *ch);

static void
fail_everything(struct keeperc *k, const char *why)
{
	int i;

	mark_dead(k, why);
	for (i = 0; i < k->nchans; i++)
		chan_fail_all(&k->chans[i]);
}

struct keeperc *
keeperc_new(int ctrl, const int *req, int n, struct credstore *store, int timeout_ms)
{
	struct keeperc *k;
	int             i;

	if ((k = calloc(1, sizeof(*k))) == NULL ||
	    (k->chans = calloc((size_t)n, sizeof(*k->chans))) == NULL) {
		free(k);
		close(ctrl);
		for (i = 0; i < n; i++)
			close(req[i]);
		return NULL;
	}
	k->store = store;
	k->ctrl = ctrl;
	k->nchans = n;
	k->timeout_ms = timeout_ms;
	atomic_init(&k->dead, 0);
	atomic_init(&k->turn, 0);
	pthread_mutex_init(&k->ctrl_mtx, NULL);
	for (i = 0; i < n; i++) {
		k->chans[i].k = k;
		k->chans[i].fd = req[i];
		k->chans[i].next_id = 1;
		pthread_mutex_init(&k->chans[i].wr_mtx, NULL);
		pthread_mutex_init(&k->chans[i].pend_mtx, NULL);
		pthread_cond_init(&k->chans[i].room, NULL);
		kp_reader_init(&k->chans[i].rd, req[i]);
		sbuf_init(&k->chans[i].out, KP_HEADER_LEN + KP_MAX_PAYLOAD);
	}
	credstore_set_waiting(store, "waiting for the keeper process");
	return k;
}

/* --- request channels -------------------------------------------------------- */

/* Copies a KP_SIGNED reply into the submitter's result. */
static void
fill(const struct kp_msg *m, struct signer_result *res, struct certpipe_signed *sig)
{
	res->status = (enum signer_status)m->status;
	snprintf(res->message, sizeof(res->message), "%.255s", m->message);
	if (m->crt != NULL) {
		if ((res->crt_pem = malloc(m->crt_len + 1)) == NULL ||
		    (sig->ca = malloc(m->ca_bundle_len + 1)) == NULL) {
			free(res->crt_pem);
			res->crt_pem = NULL;
			res->status = SIGNER_INTERNAL;
			snprintf(res->message, sizeof(res->message), "out of memory");
		} else {
			memcpy(res->crt_pem, m->crt, m->crt_len);
			res->crt_pem[m->crt_len] = '\0';
			res->crt_len = m->crt_len;
			memcpy(sig->ca, m->ca_bundle, m->ca_bundle_len);
			sig->ca_len = m->ca_bundle_len;
		}
	}
	sig->audited = 1; /* the keeper wrote the record, with subject and serial */
}

/*
 * Takes the call at *pp (whose predecessor is prev, NULL at the head) off the
 * pending list: the tail, the count and a submitter waiting for room follow.
 * Returns it. Under pend_mtx.
 */
static struct pending *
detach(struct chan *ch, struct pending **pp, struct pending *prev)
{
	struct pending *p = *pp;

	*pp = p->next;
	if (ch->tail == p)
		ch->tail = prev;
	p->next = NULL;
	atomic_fetch_sub(&ch->npending, 1);
	pthread_cond_signal(&ch->room); /* one slot: one waiter (no system call without one) */
	return p;
}

/* Removes and returns the pending call with `id`, or NULL. Under pend_mtx. */
static struct pending *
unlink_id(struct chan *ch, uint32_t id)
{
	struct pending **pp, *p, *prev = NULL;

	for (pp = &ch->head; (p = *pp) != NULL; prev = p, pp = &p->next)
		if (p->id == id)
			return detach(ch, pp, prev);
	return NULL;
}

/* Answers -1 to every pending call and closes the channel to new ones. */
static void
chan_fail_all(struct chan *ch)
{
	struct pending *p, *next;

	pthread_mutex_lock(&ch->pend_mtx);
	ch->closed = 1;
	p = ch->head;
	ch->head = ch->tail = NULL;
	atomic_store(&ch->npending, 0);
	pthread_cond_broadcast(&ch->room);
	pthread_mutex_unlock(&ch->pend_mtx);
	for (; p != NULL; p = next) {
		next = p->next;
		p->done(p->ctx, -1);
		free(p);
	}
}

/* Answers -1 to the pending calls past their deadline (oldest first). */
static void
sweep(struct chan *ch)
{
	struct pending *expired = NULL, *p, *prev, **pp;
	int64_t         now = util_mono_ms();
	int             n = 0;

	pthread_mutex_lock(&ch->pend_mtx);
	for (pp = &ch->head, prev = NULL; (p = *pp) != NULL;) {
		if (p->deadline > now) {
			prev = p;
			pp = &p->next;
			continue;
		}
		p = detach(ch, pp, prev);
		p->next = expired;
		expired = p;
	}
	pthread_mutex_unlock(&ch->pend_mtx);
	for (; expired != NULL; expired = p, n++) {
		p = expired->next;
		expired->done(expired->ctx, -1);
		free(expired);
	}
	if (n > 0)
		log_warnx("keeper: no reply within %d ms (%d call%s)", ch->k->timeout_ms, n,
		    n == 1 ? "" : "s");
}

/* A request channel's reader: replies to their pending calls, and the sweep. */
static void *
chan_reader(void *arg)
{
	struct chan         *ch = arg;
	struct keeperc      *k = ch->k;
	const unsigned char *msg;
	struct pending      *p;
	struct kp_msg        m;
	size_t               len;
	char                 err[256];
	int                  r, tick = k->timeout_ms / 4;
	int64_t              next_sweep;

	if (tick < 20)
		tick = 20;
	else if (tick > 1000)
		tick = 1000;
	next_sweep = util_mono_ms() + tick;
	for (;;) {
		if ((r = kp_reader_next(&ch->rd, tick, &msg, &len)) != 1) {
			if (r == -1 && errno == ETIMEDOUT) {
				sweep(ch);
				next_sweep = util_mono_ms() + tick;
				continue;
			}
			fail_everything(k, r == 0 ? "request channel closed" : strerror(errno));
			break;
		}
		err[0] = '\0';
		if (kp_decode(msg, len, KP_TO_NETWORK, &m, err, sizeof(err)) == -1 ||
		    m.type != KP_SIGNED) {
			log_warnx("keeper: protocol error on a request channel: %s",
			    err[0] == '\0' ? "not a reply" : err);
			fail_everything(k, "protocol error");
			break;
		}
		pthread_mutex_lock(&ch->pend_mtx);
		p = unlink_id(ch, m.id);
		pthread_mutex_unlock(&ch->pend_mtx);
		if (p == NULL)
			continue; /* a late reply to a call already answered -1: dropped */
		fill(&m, p->res, p->sig);
		p->done(p->ctx, 0);
		free(p);
		if (util_mono_ms() >= next_sweep) { /* replies keep coming: sweep anyway */
			sweep(ch);
			next_sweep = util_mono_ms() + tick;
		}
	}
	return NULL;
}

int
keeperc_start(struct keeperc *k)
{
	int i;

	if (util_thread_start(&k->reader, UTIL_STACK_MEDIUM, reader, k) != 0) {
		log_warnx("keeper: cannot start the control reader");
		return -1;
	}
	k->reader_started = 1;
	for (i = 0; i < k->nchans; i++) {
		if (util_thread_start(
			&k->chans[i].th, UTIL_STACK_SMALL, chan_reader, &k->chans[i]) != 0) {
			log_warnx("keeper: cannot start the request channel readers");
			return -1;
		}
		k->chans[i].started = 1;
	}
	return 0;
}

/*
 * The channel with the fewest calls in flight (the scan starts at the next
 * channel in turn, so ties go round): a call never queues behind a slow
 * signature (RSA) on one channel while another is idle.
 */
static struct chan *
pick(struct keeperc *k)
{
	unsigned     start = atomic_fetch_add(&k->turn, 1), i;
	struct chan *best = NULL, *ch;
	int          n, least = 0;

	for (i = 0; i < (unsigned)k->nchans; i++) {
		ch = &k->chans[(start + i) % (unsigned)k->nchans];
		n = atomic_load_explicit(&ch->npending, memory_order_relaxed);
		if (best == NULL || n < least) {
			best = ch;
			least = n;
		}
	}
	return best;
}

int
keeperc_submit(void *arg, const unsigned char *csr, size_t len, const char *peer_ip,
    struct signer_result *res, struct certpipe_signed *sig, certpipe_done_fn done, void *ctx)
{
	struct keeperc *k = arg;
	struct chan    *ch;
	struct pending *p;
	struct kp_msg   req;
	int             rc;

	if (atomic_load(&k->dead))
		return -1;
	if (len > KP_MAX_CSR) { /* the keeper's limit: refused here, as the signer would */
		res->status = SIGNER_BAD_DECODE;
		snprintf(res->message, sizeof(res->message), "failed to decode CSR");
		done(ctx, 0);
		return 0;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		log_warnx("keeper: out of memory submitting a call");
		return -1;
	}
	ch = pick(k);
	p->deadline = util_mono_ms() + k->timeout_ms;
	p->res = res;
	p->sig = sig;
	p->done = done;
	p->ctx = ctx;
	kp_init(&req, KP_SIGN);
	req.csr = csr;
	req.csr_len = len;
	snprintf(req.peer, sizeof(req.peer), "%s", peer_ip != NULL ? peer_ip : "unknown");
	/* Pending before the write: the reply may come before the write returns. */
	pthread_mutex_lock(&ch->pend_mtx);
	while (!ch->closed && atomic_load(&ch->npending) >= KEEPERC_MAX_PENDING) {
		/* The keeper is behind: wait for room, as a blocking round trip would. */
		struct timespec ts = util_abstime_ms(p->deadline - util_mono_ms());

		if (pthread_cond_timedwait(&ch->room, &ch->pend_mtx, &ts) == ETIMEDOUT &&
		    atomic_load(&ch->npending) >= KEEPERC_MAX_PENDING)
			break;
	}
	if (ch->closed || atomic_load(&ch->npending) >= KEEPERC_MAX_PENDING) {
		if (!ch->closed)
			log_warnx("keeper: %d calls waiting on a channel for %d ms",
			    KEEPERC_MAX_PENDING, k->timeout_ms);
		pthread_mutex_unlock(&ch->pend_mtx);
		free(p);
		return -1;
	}
	atomic_fetch_add(&ch->npending, 1);
	p->id = req.id = ch->next_id++;
	if (ch->tail != NULL)
		ch->tail->next = p;
	else
		ch->head = p;
	ch->tail = p;
	pthread_mutex_unlock(&ch->pend_mtx);

	pthread_mutex_lock(&ch->wr_mtx);
	ch->out.len = 0;
	if ((rc = kp_encode(&ch->out, &req)) == -1)
		log_warnx("keeper: cannot encode a sign request");
	else if ((rc = kp_write(ch->fd, ch->out.data, ch->out.len)) == -1)
		mark_dead(k, strerror(errno));
	pthread_mutex_unlock(&ch->wr_mtx);
	if (rc == 0)
		return 0;
	/* Not sent: unless the reader already answered it (the channel failed), it is ours. */
	pthread_mutex_lock(&ch->pend_mtx);
	p = unlink_id(ch, req.id);
	pthread_mutex_unlock(&ch->pend_mtx);
	if (p == NULL)
		return 0;
	free(p);
	return -1;
}

struct waiter {
	pthread_mutex_t mtx;
	pthread_cond_t  cond;
	int             done, rc;
};

static void
wake_waiter(void *ctx, int rc)
{
	struct waiter *w = ctx;

	pthread_mutex_lock(&w->mtx);
	w->rc = rc;
	w->done = 1;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mtx);
}

int
keeperc_issue(void *arg, const struct creds *cr, const unsigned char *csr, size_t len,
    const char *peer_ip, struct signer_result *res, struct certpipe_signed *sig)
{
	struct waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, -1 };

	(void)cr; /* the keeper signs with its own snapshot */
	if (keeperc_submit(arg, csr, len, peer_ip, res, sig, wake_waiter, &w) == -1)
		return -1;
	pthread_mutex_lock(&w.mtx);
	while (!w.done) /* the reader answers every call, at the latest at its deadline */
		pthread_cond_wait(&w.cond, &w.mtx);
	pthread_mutex_unlock(&w.mtx);
	pthread_mutex_destroy(&w.mtx);
	pthread_cond_destroy(&w.cond);
	return w.rc;
}

static void
send_ctrl(struct keeperc *k, const struct kp_msg *m)
{
	struct sbuf out;

	if (atomic_load(&k->dead))
		return;
	sbuf_init(&out, KP_HEADER_LEN + KP_MAX_PAYLOAD);
	if (kp_encode(&out, m) == 0) {
		pthread_mutex_lock(&k->ctrl_mtx);
		if (kp_write(k->ctrl, out.data, out.len) == -1)
			log_warnx(
			    "keeper: cannot send %s: %s", kp_type_name(m->type), strerror(errno));
		pthread_mutex_unlock(&k->ctrl_mtx);
	}
	sbuf_free(&out);
}

void
keeperc_audit_sink(const struct audit_rec *r, void *arg)
{
	struct kp_msg m;

	kp_init(&m, KP_AUDIT);
	m.kind = (int)r->kind;
	snprintf(m.peer, sizeof(m.peer), "%s", r->peer != NULL ? r->peer : "");
	snprintf(m.message, sizeof(m.message), "%s", r->message != NULL ? r->message : "");
	snprintf(m.related, sizeof(m.related), "%s", r->related != NULL ? r->related : "");
	send_ctrl(arg, &m);
}

void
keeperc_reload(struct keeperc *k)
{
	struct kp_msg m;

	kp_init(&m, KP_RELOAD);
	send_ctrl(k, &m);
}

void
keeperc_free(struct keeperc *k)
{
	int i;

	if (k == NULL)
		return;
	/* The keeper reads end of file on every channel and exits; the readers
	 * see end of file too and answer what is still pending. */
	atomic_store(&k->dead, 1);
	shutdown(k->ctrl, SHUT_RDWR);
	for (i = 0; i < k->nchans; i++)
		shutdown(k->chans[i].fd, SHUT_RDWR);
	if (k->reader_started)
		pthread_join(k->reader, NULL);
	for (i = 0; i < k->nchans; i++) {
		if (k->chans[i].started)
			pthread_join(k->chans[i].th, NULL);
		chan_fail_all(&k->chans[i]); /* a reader that never started */
	}
	close(k->ctrl);
	for (i = 0; i < k->nchans; i++) {
		close(k->chans[i].fd);
		kp_reader_free(&k->chans[i].rd);
		sbuf_free(&k->chans[i].out);
		pthread_mutex_destroy(&k->chans[i].wr_mtx);
		pthread_mutex_destroy(&k->chans[i].pend_mtx);
		pthread_cond_destroy(&k->chans[i].room);
	}
	pthread_mutex_destroy(&k->ctrl_mtx);
	free(k->chans);
	free(k);
}
