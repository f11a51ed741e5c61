/*
 * frontdoor.c: listening sockets, admission, TLS and the relay to gRPC.
 *
 * DESIGN
 * Threads: one front-door thread runs a level-triggered epoll loop over the
 * listeners, a wake-up eventfd and both ends of every connection; it alone
 * touches struct conn, the admission table and the SSL objects. main calls
 * frontdoor_start(), frontdoor_stop_accepting() and frontdoor_free(), which
 * talk to the thread through the eventfd and wait for it.
 *
 * A connection's life: accepted (non-blocking) -> admitted by the global
 * and per-source caps, or closed at once -> TLS handshake (deadline
 * HANDSHAKE_TIMEOUT; ALPN h2 required) -> handoff: an AF_UNIX socketpair,
 * one end given to gRPC with the client's real address (grpcsrv_add_fd())
 * -> relay: SSL_read -> h2guard -> inner socket,
 * inner socket -> SSL_write. Until the first complete request the deadline
 * is FIRST_REQUEST_TIMEOUT from accept; after it, MAX_CONNECTION_AGE plus a
 * grace (gRPC itself sends GOAWAY at MAX_CONNECTION_AGE; the front door's
 * bound is the backstop). A guard violation, a deadline, the client's end
 * or an error closes both ends. When gRPC ends a connection (its final
 * GOAWAY, then close), everything it wrote is delivered first, even if the
 * client is still sending: see to_inner().
 *
 * Memory per connection: struct conn, the SSL (SSL_MODE_RELEASE_BUFFERS: no
 * record buffers while idle) and, only while one side cannot take what the
 * other sent, one pending buffer per direction of at most one TLS record.
 * Reads go through one scratch buffer owned by the thread. Back-pressure:
 * while a direction has a pending buffer, its source is not read.
 *
 * Eviction: a connection is "unproven" until its first complete request
 * (handshaking, or handed off and silent). When the global cap is full, the
 * oldest unproven connection is closed to admit the new one (counted as
 * closed{reason="evicted"}). A flood of half-open handshakes or idle
 * connections from many addresses, each under the per-source cap, therefore
 * cannot keep a worker out: a worker proves itself within one round trip of
 * its handshake, long before MAX_CONNECTIONS newer connections arrive.
 * Connections that have asked for something are never evicted.
 *
 * Descriptors: on EMFILE/ENFILE the reserve descriptor is closed, the
 * pending connection accepted and closed, the reserve reopened, and accept
 * pauses for ACCEPT_BACKOFF_MS; it then resumes by itself.
 *
 * Shutdown, in three steps main drives:
 * 1. frontdoor_drain(): the listeners close; every relayed connection gets a
 *    GOAWAY and a PING inserted at the next frame boundary of gRPC's stream
 *    (h2guard.h), handshakes still in progress are handed off and drained
 *    too. It returns once every connection is quiet (the client acknowledged
 *    the PING and no stream is live) or gone, or when the grace ends. This
 *    comes before the gRPC core hears of the shutdown, because its shutdown
 *    cancels calls that have arrived but not been picked up yet, and calls
 *    a client opens before it sees gRPC's own GOAWAY.
 * 2. frontdoor_stop_accepting(): no more handoffs; gRPC may shut down.
 * 3. frontdoor_free(): connections get FD_FLUSH_MS to deliver what gRPC wrote
 *    before it closed its ends (the last answers, its GOAWAY); then the rest
 *    is closed and the thread ends.
 *
 * Owns: the listeners, the reserve descriptor,
 * every struct conn with its descriptors and SSL, the tlsterm holder.
 */
#define _GNU_SOURCE /* accept4 */
#include "frontdoor.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "admit.h"
#include "audit.h"
#include "config.h"
#include "credstore.h"
#include "grpcsrv.h"
#include "h2guard.h"
#include "log.h"
#include "metrics.h"
#include "tlsterm.h"
#include "util.h"

#define FD_MAX_LISTENERS     8
#define FD_SCRATCH           (16 * 1024 + 512) /* one TLS record */
#define FD_EVENTS            64
#define FD_TICK_MS           250
#define FD_ACCEPT_BACKOFF_MS 100
#define FD_AGE_GRACE_MS      15000 /* gRPC's own GOAWAY grace is 10 s */
#define FD_PUMP_ROUNDS       16    /* fairness: records moved per event */
#define FD_FLUSH_MS          1000  /* frontdoor_free(): delivering gRPC's last bytes */

enum tag_kind { TK_WAKE, TK_LISTEN, TK_CLIENT, TK_INNER, TK__MAX };
enum conn_state { CN_HANDSHAKE, CN_RELAY, CN__MAX };

struct tag {
	enum tag_kind kind;
	struct conn  *c;  /* TK_CLIENT, TK_INNER */
	int           fd; /* TK_LISTEN */
};

struct pending {
	unsigned char *buf;
	size_t         off, len;
};

struct conn {
	struct conn     *prev, *next; /* all open connections */
	struct conn     *dead_next;   /* closed in this batch, freed after it */
	struct tag       t_client, t_inner;
	int              cfd, ifd;
	SSL             *ssl;
	enum conn_state  state;
	int              dead, inner_eof;
	int              inner_hup;       /* gRPC's end is gone: ifd left the epoll set */
	int              inner_wdead;     /* gRPC reads no more: the client's bytes are dropped */
	int              ssl_wants_write; /* the last SSL call asked for EPOLLOUT */
	int              ssl_wants_read;  /* an SSL_write asked for EPOLLIN */
	int              drain_due;       /* insert the drain frames at the next boundary */
	unsigned         cev, iev;        /* epoll interest registered */
	struct conn     *uprev, *unext;   /* the unproven list, oldest first */
	int              unproven;        /* no complete request yet: evictable */
	int64_t          accepted_ms, deadline_ms;
	enum metric_fd   deadline_reason;
	struct admit_key key;
	char             peer[48];
	struct pending   c2s, s2c; /* client->gRPC, gRPC->client */
	struct h2guard   guard;
};

struct frontdoor {
	const struct config  *cfg;
	struct credstore     *store;
	struct grpcsrv       *grpc;
	struct tlsterm       *tls;
	struct admit         *admit;
	struct h2guard_limits lim;
	int                   ep, wakefd, reserve;
	struct tag            t_wake;
	struct tag            listeners[FD_MAX_LISTENERS];
	int                   nlisteners, port;
	int                   accepting; /* listeners registered for EPOLLIN */
	int64_t               resume_ms; /* accept paused until then (0: not paused) */
	int64_t               next_warn_ms;
	struct conn          *conns, *dead;
	struct conn          *u_head, *u_tail; /* unproven connections, oldest first */
	int64_t               age_ms;
	unsigned char         scratch[FD_SCRATCH];
	pthread_t             thread;
	int                   started;
	atomic_int            cmd_drain, cmd_stop_accepting, cmd_stop;
	pthread_mutex_t       mtx; /* acks */
	pthread_cond_t        cond;
	int                   ack_stop_accepting, ack_quiet;
	int                   draining;   /* connections are being drained */
	int                   no_handoff; /* gRPC may be shutting down: hand nothing over */
};

/* --- small helpers -------------------------------------------------------- */

static int
set_nodelay(int fd)
{
	int one = 1;

	return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void
ep_set(struct frontdoor *d, int fd, struct tag *t, unsigned *cur, unsigned want)
{
	struct epoll_event ev;

	if (*cur == want)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.events = want;
	ev.data.ptr = t;
	if (epoll_ctl(d->ep, EPOLL_CTL_MOD, fd, &ev) == -1)
		log_warn("frontdoor: epoll_ctl");
	*cur = want;
}

static void
pending_free(struct pending *p)
{
	free(p->buf);
	p->buf = NULL;
	p->off = p->len = 0;
}

/* Keeps the unsent tail of `b` (the source is not read until it is gone). */
static int
pending_keep(struct pending *p, const unsigned char *b, size_t n)
{
	if ((p->buf = malloc(n)) == NULL)
		return -1;
	memcpy(p->buf, b, n);
	p->off = 0;
	p->len = n;
	return 0;
}

static void
unproven_add(struct frontdoor *d, struct conn *c)
{
	c->unproven = 1;
	c->unext = NULL;
	c->uprev = d->u_tail;
	if (d->u_tail != NULL)
		d->u_tail->unext = c;
	else
		d->u_head = c;
	d->u_tail = c;
}

static void
unproven_remove(struct frontdoor *d, struct conn *c)
{
	if (!c->unproven)
		return;
	c->unproven = 0;
	if (c->uprev != NULL)
		c->uprev->unext = c->unext;
	else
		d->u_head = c->unext;
	if (c->unext != NULL)
		c->unext->uprev = c->uprev;
	else
		d->u_tail = c->uprev;
	c->uprev = c->unext = NULL;
}

static void
conn_close(struct frontdoor *d, struct conn *c, enum metric_fd why)
{
	if (c->dead)
		return;
	c->dead = 1;
	if ((int)why >= 0 && why < MFD__MAX)
		metrics_fd_inc(why);
	if (c->state == CN_HANDSHAKE)
		metrics_fd_gauge_add(MFG_HANDSHAKING, -1);
	metrics_fd_gauge_add(MFG_OPEN, -1);
	if (c->ssl != NULL && c->state == CN_RELAY && why == MFD__MAX)
		SSL_shutdown(c->ssl); /* best effort close_notify on an orderly end */
	SSL_free(c->ssl);
	c->ssl = NULL;
	if (c->cfd >= 0)
		close(c->cfd); /* also leaves the epoll set */
	if (c->ifd >= 0)
		close(c->ifd);
	c->cfd = c->ifd = -1;
	pending_free(&c->c2s);
	pending_free(&c->s2c);
	admit_release(d->admit, &c->key);
	unproven_remove(d, c);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		d->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->dead_next = d->dead;
	d->dead = c;
}

/* --- handoff to gRPC -------------------------------------------------------- */

/*
 * Makes the inner pair, an AF_UNIX socketpair: our end in c->ifd, the other
 * given to gRPC. No listener, no TCP stack on the hop, and no stranger can
 * reach it. 0 or -1.
 */
static int
handoff(struct frontdoor *d, struct conn *c)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == -1)
		return -1;
	if (grpcsrv_add_fd(d->grpc, sv[1], c->peer) == -1) {
		close(sv[0]); /* sv[1] was closed there */
		return -1;
	}
	c->ifd = sv[0];
	return 0;
}

/* --- relay ------------------------------------------------------------------ */

static enum metric_fd
guard_metric(enum h2guard_verdict v)
{
	switch (v) {
	case H2G_BAD_PREFACE: return MFD_GUARD_BAD_PREFACE;
	case H2G_HEADER_BLOCK: return MFD_GUARD_HEADER_BLOCK;
	case H2G_STREAMS: return MFD_GUARD_STREAMS;
	case H2G_RST_RATE: return MFD_GUARD_RST_RATE;
	case H2G_PRE_REQUEST: return MFD_GUARD_PRE_REQUEST;
	default: return MFD_GUARD_PROTOCOL;
	}
}

/* Sets the epoll interest of both ends from the connection's state. */
static void
rearm(struct frontdoor *d, struct conn *c)
{
	unsigned cw = 0, iw = 0;

	if (c->state == CN_HANDSHAKE) {
		cw = c->ssl_wants_write ? EPOLLOUT : EPOLLIN;
		ep_set(d, c->cfd, &c->t_client, &c->cev, cw);
		return;
	}
	if (c->c2s.buf == NULL || c->ssl_wants_read)
		cw |= EPOLLIN;
	if (c->ssl_wants_write)
		cw |= EPOLLOUT;
	if (c->inner_hup && !c->inner_eof && c->s2c.buf == NULL)
		cw |= EPOLLOUT; /* gRPC's rest is read as the client can take it */
	ep_set(d, c->cfd, &c->t_client, &c->cev, cw);
	if (c->inner_eof || c->inner_hup)
		return; /* removed from the set */
	if (c->s2c.buf == NULL)
		iw |= EPOLLIN;
	if (c->c2s.buf != NULL)
		iw |= EPOLLOUT;
	ep_set(d, c->ifd, &c->t_inner, &c->iev, iw);
}

/*
 * Writes to the inner socket. Returns 1 if all went, 0 if the rest was kept
 * pending, -1 on error.
 *
 * Once gRPC has closed its end (EPIPE), what the client sends is dropped as
 * if written, and the relay goes on in the other direction: gRPC's last bytes
 * are still to be read and delivered. They end with its final GOAWAY, which
 * tells the client that the streams it opened meanwhile were not processed,
 * so the client retries them elsewhere. Closing at the write error would
 * lose that GOAWAY, and those calls would fail with "EOF".
 */
static int
to_inner(struct conn *c, const unsigned char *b, size_t n)
{
	ssize_t w;

	if (c->inner_wdead)
		return 1;
	while (n > 0) {
		w = write(c->ifd, b, n);
		if (w > 0) {
			b += w;
			n -= (size_t)w;
			continue;
		}
		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1 && errno == EAGAIN)
			return pending_keep(&c->c2s, b, n) == 0 ? 0 : -1;
		if (w == -1 && (errno == EPIPE || errno == ECONNRESET)) {
			c->inner_wdead = 1;
			return 1;
		}
		return -1;
	}
	return 1;
}

/* SSL_write; 1 all sent, 0 the rest kept pending, -1 error. */
static int
to_client(struct conn *c, const unsigned char *b, size_t n, int from_pending)
{
	int r, e;

	while (n > 0) {
		r = SSL_write(c->ssl, b, (int)n);
		if (r > 0) {
			b += r;
			n -= (size_t)r;
			if (from_pending)
				c->s2c.off += (size_t)r, c->s2c.len -= (size_t)r;
			continue;
		}
		e = SSL_get_error(c->ssl, r);
		if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ)
			return -1;
		c->ssl_wants_write |= e == SSL_ERROR_WANT_WRITE;
		c->ssl_wants_read |= e == SSL_ERROR_WANT_READ;
		if (from_pending)
			return 0;
		return pending_keep(&c->s2c, b, n) == 0 ? 0 : -1;
	}
	return 1;
}

/* Sends the drain frames now (the server's stream is at a boundary); as to_client(). */
static int
drain_now(struct conn *c)
{
	unsigned char f[H2GUARD_DRAIN_LEN];

	h2guard_drain_frames(&c->guard, f);
	c->drain_due = 0;
	return to_client(c, f, sizeof(f), 0);
}

/*
 * Follows `n` bytes gRPC sent (in `b`, which has room for
 * H2GUARD_DRAIN_LEN more) and, while a drain is due, inserts its frames at
 * the first frame boundary. Returns the new length.
 */
static size_t
from_server(struct conn *c, unsigned char *b, size_t n)
{
	size_t at = h2guard_feed_server(&c->guard, b, n, c->drain_due);

	if (!c->drain_due || !h2guard_server_boundary(&c->guard))
		return n;
	memmove(b + at + H2GUARD_DRAIN_LEN, b + at, n - at);
	h2guard_drain_frames(&c->guard, b + at);
	c->drain_due = 0;
	h2guard_feed_server(&c->guard, b + at + H2GUARD_DRAIN_LEN, n - at, 0);
	return n + H2GUARD_DRAIN_LEN;
}

/* Moves bytes both ways until both are blocked; closes on an end or error. */
static void
pump(struct frontdoor *d, struct conn *c)
{
	enum h2guard_verdict v;
	ssize_t              n;
	int                  r, e, rounds, moved;

	for (rounds = 0; rounds < FD_PUMP_ROUNDS; rounds++) {
		moved = 0;
		/* client -> gRPC */
		c->ssl_wants_write = c->ssl_wants_read = 0;
		if (c->c2s.buf != NULL) {
			struct pending p = c->c2s;

			memset(&c->c2s, 0, sizeof(c->c2s)); /* to_inner may keep a new tail */
			r = to_inner(c, p.buf + p.off, p.len);
			free(p.buf);
			if (r == -1)
				goto end;
			moved |= r == 1;
		}
		if (c->c2s.buf == NULL) {
			ERR_clear_error();
			r = SSL_read(c->ssl, d->scratch, sizeof(d->scratch));
			if (r > 0) {
				v = h2guard_feed(&c->guard, d->scratch, (size_t)r, util_mono_ms());
				if (v != H2G_OK) {
					conn_close(d, c, guard_metric(v));
					return;
				}
				if (to_inner(c, d->scratch, (size_t)r) == -1)
					goto end;
				moved = 1;
			} else {
				e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_WRITE)
					c->ssl_wants_write = 1;
				else if (e != SSL_ERROR_WANT_READ)
					goto end; /* the client closed or broke TLS */
			}
		}
		/* gRPC -> client */
		if (c->s2c.buf != NULL) {
			r = to_client(c, c->s2c.buf + c->s2c.off, c->s2c.len, 1);
			if (r == -1)
				goto end;
			if (r == 1) {
				pending_free(&c->s2c);
				moved = 1;
			}
		}
		if (c->s2c.buf == NULL && c->drain_due && h2guard_server_boundary(&c->guard)) {
			if (drain_now(c) == -1)
				goto end;
			moved = 1;
		}
		if (c->s2c.buf == NULL && !c->inner_eof) {
			n = read(c->ifd, d->scratch, sizeof(d->scratch) - H2GUARD_DRAIN_LEN);
			if (n > 0) {
				n = (ssize_t)from_server(c, d->scratch, (size_t)n);
				if (to_client(c, d->scratch, (size_t)n, 0) == -1)
					goto end;
				moved = 1;
			} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				c->inner_eof = 1; /* gRPC closed the connection */
				if (!c->inner_hup)
					epoll_ctl(d->ep, EPOLL_CTL_DEL, c->ifd, NULL);
			}
		}
		if (c->inner_eof && c->s2c.buf == NULL)
			goto end; /* everything gRPC sent was delivered */
		if (!moved)
			break;
	}
	if (c->deadline_reason == MFD_FIRST_REQUEST_TIMEOUT && h2guard_requests(&c->guard) > 0) {
		unproven_remove(d, c);
		c->deadline_ms = c->accepted_ms + d->age_ms + FD_AGE_GRACE_MS;
		c->deadline_reason = MFD_LIFETIME;
	}
	rearm(d, c);
	return;
end:
	conn_close(d, c, MFD__MAX);
}

/* --- handshake ------------------------------------------------------------- */

static void
handshake(struct frontdoor *d, struct conn *c)
{
	struct epoll_event ev;
	int                r, e;

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r != 1) {
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			c->ssl_wants_write = e == SSL_ERROR_WANT_WRITE;
			rearm(d, c);
			return;
		}
		ERR_clear_error();
		conn_close(d, c, MFD_HANDSHAKE_FAILED);
		return;
	}
	c->ssl_wants_write = 0;
	if (!tlsterm_is_h2(c->ssl)) {
		conn_close(d, c, MFD_NO_H2);
		return;
	}
	metrics_fd_inc(MFD_HANDSHAKES);
	/* gRPC is shutting down (or gone) and takes nothing new. */
	if (d->no_handoff || handoff(d, c) == -1) {
		conn_close(d, c, MFD_HANDOFF_FAILED);
		return;
	}
	c->state = CN_RELAY;
	c->drain_due = d->draining;
	metrics_fd_gauge_add(MFG_HANDSHAKING, -1);
	c->deadline_ms = c->accepted_ms + d->cfg->first_request_timeout_ms;
	c->deadline_reason = MFD_FIRST_REQUEST_TIMEOUT;
	memset(&ev, 0, sizeof(ev));
	ev.data.ptr = &c->t_inner;
	c->iev = 0;
	if (epoll_ctl(d->ep, EPOLL_CTL_ADD, c->ifd, &ev) == -1) {
		conn_close(d, c, MFD_HANDOFF_FAILED);
		return;
	}
	pump(d, c); /* the client's preface may already sit in the SSL buffer */
}

/* --- accept ----------------------------------------------------------------- */

static void
listeners_arm(struct frontdoor *d, int on)
{
	struct epoll_event ev;
	int                i;

	if (d->accepting == on)
		return;
	for (i = 0; i < d->nlisteners; i++) {
		memset(&ev, 0, sizeof(ev));
		ev.events = on ? EPOLLIN : 0;
		ev.data.ptr = &d->listeners[i];
		epoll_ctl(d->ep, EPOLL_CTL_MOD, d->listeners[i].fd, &ev);
	}
	d->accepting = on;
	metrics_fd_gauge_set(MFG_ACCEPTING, on);
}

/*
 * The reserve descriptor: any descriptor will do, and an eventfd needs no
 * file system (a distroless image may have no /dev/null).
 */
static int
reserve_open(void)
{
	return eventfd(0, EFD_CLOEXEC);
}

/* Out of descriptors: shed the waiting connection with the reserve, pause. */
static void
fd_limit(struct frontdoor *d, int lfd, int64_t now)
{
	int fd;

	metrics_fd_inc(MFD_ACCEPT_FD_LIMIT);
	if (d->reserve >= 0) {
		close(d->reserve);
		d->reserve = -1;
		if ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
			close(fd);
		d->reserve = reserve_open();
	}
	if (now >= d->next_warn_ms) {
		log_warnx("frontdoor: out of file descriptors (%d connections open); "
			  "pausing accept for %d ms",
		    admit_total(d->admit), FD_ACCEPT_BACKOFF_MS);
		d->next_warn_ms = now + 10000;
	}
	listeners_arm(d, 0);
	d->resume_ms = now + FD_ACCEPT_BACKOFF_MS;
}

static void
admit_one(struct frontdoor *d, int fd, const struct sockaddr *sa, socklen_t sl, int64_t now)
{
	struct conn       *c;
	struct admit_key   k;
	struct epoll_event ev;
	SSL_CTX           *ctx;
	char               text[48];
	enum admit_result  ar;

	if (admit_key_of(sa, sl, &k, text, sizeof(text)) == -1) {
		close(fd);
		return;
	}
	ar = admit_take(d->admit, &k);
	if (ar == ADMIT_FULL && d->u_head != NULL) {
		/* Full: the oldest connection that has asked for nothing makes room. */
		conn_close(d, d->u_head, MFD_EVICTED);
		ar = admit_take(d->admit, &k);
	}
	if (ar != ADMIT_OK) {
		metrics_fd_inc(ar == ADMIT_FULL ? MFD_REFUSED_TOTAL : MFD_REFUSED_SOURCE);
		close(fd);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		admit_release(d->admit, &k);
		close(fd);
		return;
	}
	c->key = k;
	snprintf(c->peer, sizeof(c->peer), "%s", text);
	c->cfd = fd;
	c->ifd = -1;
	c->t_client = (struct tag){ TK_CLIENT, c, -1 };
	c->t_inner = (struct tag){ TK_INNER, c, -1 };
	c->state = CN_HANDSHAKE;
	c->accepted_ms = now;
	c->deadline_ms = now + d->cfg->handshake_timeout_ms;
	c->deadline_reason = MFD_HANDSHAKE_TIMEOUT;
	h2guard_init(&c->guard, &d->lim);
	/* linked first, so conn_close() can undo everything from here on */
	c->next = d->conns;
	if (d->conns != NULL)
		d->conns->prev = c;
	d->conns = c;
	unproven_add(d, c);
	metrics_fd_inc(MFD_ACCEPTED);
	metrics_fd_gauge_add(MFG_OPEN, 1);
	metrics_fd_gauge_add(MFG_HANDSHAKING, 1);
	set_nodelay(fd);
	ctx = tlsterm_acquire(d->tls);
	c->ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1) {
		ERR_clear_error();
		conn_close(d, c, MFD_HANDSHAKE_FAILED);
		return;
	}
	SSL_set_accept_state(c->ssl);
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = &c->t_client;
	c->cev = EPOLLIN;
	if (epoll_ctl(d->ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
		conn_close(d, c, MFD_HANDSHAKE_FAILED);
		return;
	}
}

static void
accept_burst(struct frontdoor *d, int lfd, int64_t now)
{
	struct sockaddr_storage ss;
	socklen_t               sl;
	int                     fd, n;

	for (n = 0; n < 64; n++) {
		sl = sizeof(ss);
		fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN)
				return;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				fd_limit(d, lfd, now);
				return;
			}
			metrics_fd_inc(MFD_ACCEPT_ERROR);
			return;
		}
		admit_one(d, fd, (struct sockaddr *)&ss, sl, now);
	}
}

/* --- the loop ------------------------------------------------------------------ */

static void
sweep(struct frontdoor *d, int64_t now)
{
	struct conn *c, *n;

	for (c = d->conns; c != NULL; c = n) {
		n = c->next;
		if (now >= c->deadline_ms)
			conn_close(d, c, c->deadline_reason);
	}
}

static void
free_dead(struct frontdoor *d)
{
	struct conn *c;

	while ((c = d->dead) != NULL) {
		d->dead = c->dead_next;
		free(c);
	}
}

static void
close_listeners(struct frontdoor *d)
{
	int i;

	listeners_arm(d, 0);
	for (i = 0; i < d->nlisteners; i++)
		close(d->listeners[i].fd);
	d->nlisteners = 0;
	d->resume_ms = 0;
}

/* Step 1 of the shutdown: every relayed connection is to be drained. */
static void
drain_begin(struct frontdoor *d)
{
	struct conn *c, *n;

	if (d->nlisteners > 0)
		close_listeners(d);
	d->draining = 1;
	for (c = d->conns; c != NULL; c = n) {
		n = c->next;
		if (c->state != CN_RELAY)
			continue;
		c->drain_due = 1;
		pump(d, c); /* sends the frames now if gRPC's stream is between frames */
	}
	free_dead(d);
}

/* Every connection is quiet or gone (see h2guard_quiet()). */
static int
all_quiet(const struct frontdoor *d)
{
	const struct conn *c;

	for (c = d->conns; c != NULL; c = c->next)
		if (c->state != CN_RELAY || !h2guard_quiet(&c->guard))
			return 0;
	return 1;
}

/* Tells the waiting main thread (acks under d->mtx). */
static void
ack(struct frontdoor *d, int *flag)
{
	pthread_mutex_lock(&d->mtx);
	*flag = 1;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->mtx);
}

static void *
run(void *arg)
{
	struct frontdoor  *d = arg;
	struct epoll_event evs[FD_EVENTS];
	struct tag        *t;
	int64_t            now, next_tick = 0, flush_end = 0;
	uint64_t           junk;
	int                i, n;

	for (;;) {
		n = epoll_wait(d->ep, evs, FD_EVENTS, FD_TICK_MS);
		now = util_mono_ms();
		for (i = 0; i < n; i++) {
			t = evs[i].data.ptr;
			switch (t->kind) {
			case TK_WAKE:
				if (read(d->wakefd, &junk, sizeof(junk)) == -1 && errno != EAGAIN)
					log_warn("frontdoor: eventfd");
				break;
			case TK_LISTEN:
				if (d->accepting)
					accept_burst(d, t->fd, now);
				break;
			case TK_CLIENT:
			case TK_INNER:
				if (t->c->dead)
					break;
				if (t->kind == TK_CLIENT &&
				    (evs[i].events & (EPOLLERR | EPOLLHUP))) {
					conn_close(
					    d, t->c, MFD__MAX); /* nothing can reach it any more */
					break;
				}
				if (t->kind == TK_INNER &&
				    (evs[i].events & (EPOLLERR | EPOLLHUP)) && !t->c->inner_hup &&
				    !t->c->inner_eof) {
					/*
					 * gRPC's end is closed: level-triggered HUP would
					 * fire until we read to the end, which waits while
					 * the client is slow. Leave the set; pump() reads
					 * the rest (data, then EOF) once the client drains.
					 */
					epoll_ctl(d->ep, EPOLL_CTL_DEL, t->c->ifd, NULL);
					t->c->inner_hup = 1;
				}
				if (t->c->state == CN_HANDSHAKE)
					handshake(d, t->c);
				else
					pump(d, t->c);
				break;
			default: break;
			}
		}
		free_dead(d);
		if (atomic_load(&d->cmd_drain) && !d->draining)
			drain_begin(d);
		if (d->draining && !d->ack_quiet && all_quiet(d))
			ack(d, &d->ack_quiet);
		if (atomic_load(&d->cmd_stop_accepting) && !d->no_handoff) {
			if (d->nlisteners > 0)
				close_listeners(d);
			d->no_handoff = 1;
			ack(d, &d->ack_stop_accepting);
		}
		if (atomic_load(&d->cmd_stop)) {
			/* Step 3: what gRPC wrote before closing its ends still goes out. */
			if (flush_end == 0)
				flush_end = now + FD_FLUSH_MS;
			if (d->conns == NULL || now >= flush_end)
				break;
		}
		if (now >= next_tick) {
			sweep(d, now);
			free_dead(d);
			audit_flush_summaries(0);
			next_tick = now + FD_TICK_MS;
		}
		if (d->resume_ms != 0 && now >= d->resume_ms) {
			d->resume_ms = 0;
			if (d->reserve < 0)
				d->reserve = reserve_open();
			if (d->nlisteners > 0)
				listeners_arm(d, 1);
		}
	}
	while (d->conns != NULL)
		conn_close(d, d->conns, MFD__MAX);
	free_dead(d);
	return NULL;
}

/* --- start and stop -------------------------------------------------------------- */

static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
		log_warn("setrlimit(RLIMIT_NOFILE)");
}

/* Binds and listens on one address; the descriptor or -1 (errno set). */
static int
listen_on(const struct sockaddr *sa, socklen_t sl, int v6only)
{
	int fd, one = 1;

	if ((fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
	if (bind(fd, sa, sl) == -1 || listen(fd, SOMAXCONN) == -1) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int
bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t               sl = sizeof(ss);

	memset(&ss, 0, sizeof(ss));
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == -1)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void
log_listening(const char *host, int v6, int port)
{
	char             addr[80];
	struct log_field f[2];

	snprintf(addr, sizeof(addr), v6 ? "[%s]:%d" : "%s:%d", host, port);
	f[0] = (struct log_field)LF_S("addr", addr);
	f[1] = (struct log_field)LF_I("port", port);
	log_record(LOG_INFO, "listening", f, 2);
}

static int
add_listener(struct frontdoor *d, int fd)
{
	struct epoll_event ev;

	if (d->nlisteners == FD_MAX_LISTENERS) {
		close(fd);
		return -1;
	}
	d->listeners[d->nlisteners] = (struct tag){ TK_LISTEN, NULL, fd };
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = &d->listeners[d->nlisteners];
	if (epoll_ctl(d->ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
		close(fd);
		return -1;
	}
	d->nlisteners++;
	return 0;
}

/* Binds LISTEN_ADDRESS (or every address) on PORT; 0 or -1 with err. */
static int
bind_all(struct frontdoor *d, char *err, size_t errlen)
{
	const struct config *cfg = d->cfg;
	struct sockaddr_in   s4;
	struct sockaddr_in6  s6;
	char                 list[512], *p, *tok;
	int                  fd, port = cfg->port;

	if (cfg->listen_address == NULL || *cfg->listen_address == '\0') {
		/* "[::]" is dual-stack; fall back to IPv4 where IPv6 is off. */
		memset(&s6, 0, sizeof(s6));
		s6.sin6_family = AF_INET6;
		s6.sin6_addr = in6addr_any;
		s6.sin6_port = htons((uint16_t)port);
		if ((fd = listen_on((struct sockaddr *)&s6, sizeof(s6), 0)) >= 0) {
			d->port = bound_port(fd);
			log_listening("::", 1, d->port);
		} else {
			memset(&s4, 0, sizeof(s4));
			s4.sin_family = AF_INET;
			s4.sin_addr.s_addr = htonl(INADDR_ANY);
			s4.sin_port = htons((uint16_t)port);
			if ((fd = listen_on((struct sockaddr *)&s4, sizeof(s4), 0)) == -1) {
				snprintf(err, errlen, "PORT: cannot listen on port %d: %s", port,
				    strerror(errno));
				return -1;
			}
			d->port = bound_port(fd);
			log_listening("0.0.0.0", 0, d->port);
		}
		return add_listener(d, fd);
	}
	snprintf(list, sizeof(list), "%s", cfg->listen_address);
	p = list;
	while ((tok = strsep(&p, ",")) != NULL) {
		int v6 = 0;

		while (*tok == ' ')
			tok++;
		if (*tok == '\0')
			continue;
		memset(&s4, 0, sizeof(s4));
		memset(&s6, 0, sizeof(s6));
		if (inet_pton(AF_INET, tok, &s4.sin_addr) == 1) {
			s4.sin_family = AF_INET;
			s4.sin_port = htons((uint16_t)port);
			fd = listen_on((struct sockaddr *)&s4, sizeof(s4), 0);
		} else if (inet_pton(AF_INET6, tok, &s6.sin6_addr) == 1) {
			v6 = 1;
			s6.sin6_family = AF_INET6;
			s6.sin6_port = htons((uint16_t)port);
			fd = listen_on((struct sockaddr *)&s6, sizeof(s6), 1);
		} else {
			snprintf(err, errlen, "LISTEN_ADDRESS: \"%s\" is not an IP address", tok);
			return -1;
		}
		if (fd == -1) {
			snprintf(err, errlen, "LISTEN_ADDRESS: cannot listen on %s port %d: %s",
			    tok, port, strerror(errno));
			return -1;
		}
		if (port == 0)
			port = bound_port(fd); /* the same ephemeral port everywhere */
		if (d->port == 0)
			d->port = port;
		log_listening(tok, v6, port);
		if (add_listener(d, fd) == -1) {
			snprintf(err, errlen, "LISTEN_ADDRESS: too many addresses (at most %d)",
			    FD_MAX_LISTENERS);
			return -1;
		}
	}
	if (d->nlisteners == 0) {
		snprintf(err, errlen, "LISTEN_ADDRESS: no address given");
		return -1;
	}
	return 0;
}

struct frontdoor *
frontdoor_start(const struct config *cfg, struct credstore *store, struct grpcsrv *grpc, char *err,
    size_t errlen)
{
	struct frontdoor  *d;
	struct epoll_event ev;

	raise_nofile();
	if ((d = calloc(1, sizeof(*d))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	d->cfg = cfg;
	d->store = store;
	d->grpc = grpc;
	d->ep = d->wakefd = d->reserve = -1;
	d->age_ms = cfg->max_connection_age_ms;
	d->lim.max_header_block = (uint32_t)cfg->h2_max_header_block;
	d->lim.max_open_streams = (uint32_t)cfg->h2_max_open_streams;
	d->lim.max_rst_per_sec = (uint32_t)cfg->h2_max_rst_per_sec;
	d->lim.max_bytes_before_request = (uint32_t)cfg->h2_max_bytes_before_request;
	pthread_mutex_init(&d->mtx, NULL);
	pthread_cond_init(&d->cond, NULL);
	atomic_init(&d->cmd_drain, 0);
	atomic_init(&d->cmd_stop_accepting, 0);
	atomic_init(&d->cmd_stop, 0);
	if ((d->tls = tlsterm_new(store, err, errlen)) == NULL)
		goto fail;
	if ((d->admit = admit_new(cfg->max_connections, cfg->max_connections_per_source)) == NULL ||
	    (d->ep = epoll_create1(EPOLL_CLOEXEC)) == -1 ||
	    (d->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1 ||
	    (d->reserve = reserve_open()) == -1) {
		snprintf(err, errlen, "front door: %s", strerror(errno));
		goto fail;
	}
	d->t_wake = (struct tag){ TK_WAKE, NULL, d->wakefd };
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = &d->t_wake;
	if (epoll_ctl(d->ep, EPOLL_CTL_ADD, d->wakefd, &ev) == -1) {
		snprintf(err, errlen, "front door: epoll: %s", strerror(errno));
		goto fail;
	}
	if (bind_all(d, err, errlen) == -1)
		goto fail;
	d->accepting = 1;
	metrics_fd_gauge_set(MFG_ACCEPTING, 1);
	if (pthread_create(&d->thread, NULL, run, d) != 0) {
		snprintf(err, errlen, "cannot start the front-door thread");
		goto fail;
	}
	d->started = 1;
	return d;
fail:
	frontdoor_free(d);
	return NULL;
}

int
frontdoor_port(const struct frontdoor *d)
{
	return d->port;
}

static void
wake(struct frontdoor *d)
{
	uint64_t one = 1;

	if (write(d->wakefd, &one, sizeof(one)) == -1 && errno != EAGAIN)
		log_warn("frontdoor: eventfd");
}

int
frontdoor_drain(struct frontdoor *d, int64_t ms)
{
	struct timespec until = util_abstime_ms(ms);
	int64_t         t0 = util_mono_ms();
	int             quiet;

	if (d == NULL || !d->started)
		return 1;
	atomic_store(&d->cmd_drain, 1);
	wake(d);
	pthread_mutex_lock(&d->mtx);
	while (!d->ack_quiet && pthread_cond_timedwait(&d->cond, &d->mtx, &until) == 0)
		;
	quiet = d->ack_quiet;
	pthread_mutex_unlock(&d->mtx);
	if (quiet)
		log_info("connections drained in %lld ms", (long long)(util_mono_ms() - t0));
	else
		log_info("drain grace over: some connections still had calls in flight or had not "
			 "answered the PING");
	frontdoor_stop_accepting(d);
	return quiet;
}

void
frontdoor_stop_accepting(struct frontdoor *d)
{
	if (d == NULL || !d->started)
		return;
	atomic_store(&d->cmd_stop_accepting, 1);
	wake(d);
	pthread_mutex_lock(&d->mtx);
	while (!d->ack_stop_accepting)
		pthread_cond_wait(&d->cond, &d->mtx);
	pthread_mutex_unlock(&d->mtx);
}

void
frontdoor_free(struct frontdoor *d)
{
	int i;

	if (d == NULL)
		return;
	if (d->started) {
		atomic_store(&d->cmd_stop, 1);
		wake(d);
		pthread_join(d->thread, NULL);
	}
	for (i = 0; i < d->nlisteners; i++)
		close(d->listeners[i].fd);
	if (d->reserve >= 0)
		close(d->reserve);
	if (d->wakefd >= 0)
		close(d->wakefd);
	if (d->ep >= 0)
		close(d->ep);
	admit_free(d->admit);
	tlsterm_free(d->tls);
	metrics_fd_gauge_set(MFG_ACCEPTING, 0);
	pthread_mutex_destroy(&d->mtx);
	pthread_cond_destroy(&d->cond);
	free(d);
}
