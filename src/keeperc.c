/*
 * keeperc.c: the network side's end of the keeper channels.
 *
 * DESIGN
 * Channels: one control socket (keeper -> network: KP_CREDS, KP_WAITING;
 * network -> keeper: KP_AUDIT, KP_RELOAD) and a pool of request sockets,
 * each carrying one KP_SIGN / KP_SIGNED exchange at a time. A call takes a
 * free request socket from the pool (there are as many as gRPC workers, so
 * it rarely waits), writes its request with a fresh id, reads until the
 * reply with that id (a late reply to an earlier, timed-out request is
 * dropped), and puts the socket back.
 *
 * Threads: the reader thread (keeperc_start) alone reads the control
 * socket; any thread writes it under ctrl_mtx. Request sockets are used by
 * the thread that took them from the pool (pool_mtx).
 * Owns: every channel descriptor, the reader thread, the network-side
 * snapshots it builds (published to the store, which owns them from then).
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

struct chan {
	int              fd;
	uint32_t         next_id;
	struct kp_reader rd;  /* replies (kept across calls: no allocation per call) */
	struct sbuf      out; /* requests (a CSR and an address: nothing secret) */
	struct chan     *next_free;
};

struct keeperc {
	struct credstore *store;
	int               ctrl;
	pthread_mutex_t   ctrl_mtx; /* writers of ctrl */
	struct chan      *chans;
	int               nchans;
	struct chan      *free_list;
	pthread_mutex_t   pool_mtx;
	pthread_cond_t    pool_cond;
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
	pthread_mutex_init(&k->ctrl_mtx, NULL);
	pthread_mutex_init(&k->pool_mtx, NULL);
	pthread_cond_init(&k->pool_cond, NULL);
	for (i = n - 1; i >= 0; i--) {
		k->chans[i].fd = req[i];
		k->chans[i].next_id = 1;
		kp_reader_init(&k->chans[i].rd, req[i]);
		sbuf_init(&k->chans[i].out, KP_HEADER_LEN + KP_MAX_PAYLOAD);
		k->chans[i].next_free = k->free_list;
		k->free_list = &k->chans[i];
	}
	credstore_set_waiting(store, "waiting for the keeper process");
	return k;
}

int
keeperc_start(struct keeperc *k)
{
	if (util_thread_start(&k->reader, UTIL_STACK_MEDIUM, reader, k) != 0) {
		log_warnx("keeper: cannot start the control reader");
		return -1;
	}
	k->reader_started = 1;
	return 0;
}

/* Takes a free request channel, waiting up to the deadline; NULL on timeout. */
static struct chan *
take(struct keeperc *k, int64_t deadline)
{
	struct chan    *ch;
	struct timespec ts;
	int64_t         ms;

	pthread_mutex_lock(&k->pool_mtx);
	while ((ch = k->free_list) == NULL) {
		if ((ms = deadline - util_mono_ms()) <= 0)
			break;
		ts = util_abstime_ms(ms);
		pthread_cond_timedwait(&k->pool_cond, &k->pool_mtx, &ts);
	}
	if (ch != NULL)
		k->free_list = ch->next_free;
	pthread_mutex_unlock(&k->pool_mtx);
	return ch;
}

static void
give_back(struct keeperc *k, struct chan *ch)
{
	pthread_mutex_lock(&k->pool_mtx);
	ch->next_free = k->free_list;
	k->free_list = ch;
	pthread_cond_signal(&k->pool_cond);
	pthread_mutex_unlock(&k->pool_mtx);
}

/* One exchange on a channel; 0 with the reply in m (pointing into the channel's reader), or -1. */
static int
exchange(struct keeperc *k, struct chan *ch, const struct kp_msg *req, struct kp_msg *m,
    int64_t deadline)
{
	const unsigned char *msg;
	size_t               len;
	char                 err[256];
	int                  r;

	ch->out.len = 0;
	if (kp_encode(&ch->out, req) == -1) {
		log_warnx("keeper: cannot encode a sign request");
		return -1;
	}
	if (kp_write(ch->fd, ch->out.data, ch->out.len) == -1) {
		mark_dead(k, strerror(errno));
		return -1;
	}
	for (;;) {
		if (deadline - util_mono_ms() <= 0) {
			log_warnx("keeper: no reply within %d ms", k->timeout_ms);
			return -1;
		}
		/* The whole timeout per read: a late reply is at most one more read. */
		if ((r = kp_reader_next(&ch->rd, k->timeout_ms, &msg, &len)) != 1) {
			if (r == 0 || errno != ETIMEDOUT)
				mark_dead(k, r == 0 ? "request channel closed" : strerror(errno));
			else
				log_warnx("keeper: no reply within %d ms", k->timeout_ms);
			return -1;
		}
		err[0] = '\0';
		if (kp_decode(msg, len, KP_TO_NETWORK, m, err, sizeof(err)) == -1 ||
		    m->type != KP_SIGNED) {
			log_warnx("keeper: protocol error on a request channel: %s",
			    err[0] == '\0' ? "not a reply" : err);
			mark_dead(k, "protocol error");
			return -1;
		}
		if (m->id == req->id)
			return 0;
		/* A late reply to a request that timed out: drop it. */
	}
}

int
keeperc_issue(void *arg, const struct creds *cr, const unsigned char *csr, size_t len,
    const char *peer_ip, struct signer_result *res, struct certpipe_signed *sig)
{
	struct keeperc *k = arg;
	struct chan    *ch;
	struct kp_msg   req, m;
	int64_t         deadline = util_mono_ms() + k->timeout_ms;
	int             rc = -1;

	(void)cr; /* the keeper signs with its own snapshot */
	if (atomic_load(&k->dead))
		return -1;
	if (len > KP_MAX_CSR) {
		res->status = SIGNER_BAD_DECODE;
		snprintf(res->message, sizeof(res->message), "failed to decode CSR");
		return 0;
	}
	if ((ch = take(k, deadline)) == NULL) {
		log_warnx("keeper: no free request channel within %d ms", k->timeout_ms);
		return -1;
	}
	kp_init(&req, KP_SIGN);
	req.id = ch->next_id++;
	req.csr = csr;
	req.csr_len = len;
	snprintf(req.peer, sizeof(req.peer), "%s", peer_ip != NULL ? peer_ip : "unknown");
	if (exchange(k, ch, &req, &m, deadline) == 0) {
		res->status = (enum signer_status)m.status;
		snprintf(res->message, sizeof(res->message), "%.255s", m.message);
		if (m.crt != NULL) {
			if ((res->crt_pem = malloc(m.crt_len + 1)) == NULL ||
			    (sig->ca = malloc(m.ca_bundle_len + 1)) == NULL) {
				free(res->crt_pem);
				res->crt_pem = NULL;
				res->status = SIGNER_INTERNAL;
				snprintf(res->message, sizeof(res->message), "out of memory");
			} else {
				memcpy(res->crt_pem, m.crt, m.crt_len);
				res->crt_pem[m.crt_len] = '\0';
				res->crt_len = m.crt_len;
				memcpy(sig->ca, m.ca_bundle, m.ca_bundle_len);
				sig->ca_len = m.ca_bundle_len;
			}
		}
		sig->audited = 1; /* the keeper wrote the record, with subject and serial */
		rc = 0;
	}
	give_back(k, ch);
	return rc;
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
	/* The keeper reads end of file on every channel and exits. */
	atomic_store(&k->dead, 1);
	shutdown(k->ctrl, SHUT_RDWR);
	for (i = 0; i < k->nchans; i++)
		shutdown(k->chans[i].fd, SHUT_RDWR);
	if (k->reader_started)
		pthread_join(k->reader, NULL);
	close(k->ctrl);
	for (i = 0; i < k->nchans; i++) {
		close(k->chans[i].fd);
		kp_reader_free(&k->chans[i].rd);
		sbuf_free(&k->chans[i].out);
	}
	pthread_mutex_destroy(&k->ctrl_mtx);
	pthread_mutex_destroy(&k->pool_mtx);
	pthread_cond_destroy(&k->pool_cond);
	free(k->chans);
	free(k);
}
