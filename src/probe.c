/*
 * probe.c: the self-probe of the gRPC port (see probe.h).
 *
 * DESIGN
 * probe_start() and probe_stop() run on main; probe_start() runs the first
 * probe itself, so that /readyz has an answer as soon as the daemon says it
 * serves. One thread (the probe thread) then
 * sleeps on a condition variable for the interval, then, if the credential
 * store holds a snapshot, runs probe_once() against the gRPC listener and
 * records the outcome in a probe_state under the probe's mutex. The HTTP
 * thread reads a copy of that state (probe_get) to answer /healthz, /readyz
 * and /metrics; it never waits on a probe in flight, only on the mutex held
 * for a struct copy.
 *
 * probe_once() is one non-blocking socket driven by poll() against a single
 * deadline, so a listener that accepts and then says nothing (a stalled TLS
 * stack) times out like one that never accepts. Its OpenSSL client context
 * is created per probe: a probe every few seconds costs less than keeping
 * state, and nothing is shared with the serving side.
 *
 * The failure streak is logged on its edges only (one warning when it
 * starts, one line when it ends), never per probe, so a deaf listener
 * cannot flood the log through the probe either.
 *
 * Threads: main (start/stop), the probe thread, the HTTP thread (reads).
 * Owns: the probe thread, its mutex and state. Borrows: the credential
 * store (outlives the probe).
 */
#include "probe.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "creds.h"
#include "credstore.h"
#include "log.h"
#include "util.h"

#define PROBE_H2_PREFACE  "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define PROBE_H2_SETTINGS 0x4
#define PROBE_H2_ACK      0x1
#define PROBE_MAX_FRAMES  8 /* frames read while waiting for SETTINGS */

struct probe {
	char                host[64];
	int                 port;
	struct credstore   *store;
	struct probe_params params;
	pthread_t           thread;
	pthread_mutex_t     mtx;
	pthread_cond_t      cv; /* signalled by probe_stop() */
	int                 stop;
	struct probe_state  st;
};

void
probe_state_init(struct probe_state *s)
{
	memset(s, 0, sizeof(*s));
	s->failing_since = -1;
}

void
probe_state_record(struct probe_state *s, int64_t now, int64_t took, int ok, const char *why)
{
	s->runs++;
	s->last_ok = ok != 0;
	s->last_at = now;
	s->last_ms = took;
	if (ok) {
		s->ok_total++;
		s->failing_since = -1;
		s->why[0] = '\0';
		return;
	}
	s->fail_total++;
	if (s->failing_since < 0)
		s->failing_since = now - took; /* the streak began when this probe did */
	snprintf(s->why, sizeof(s->why), "%s", why != NULL && *why != '\0' ? why : "failed");
}

void
probe_state_skip(struct probe_state *s, int64_t now)
{
	s->skipped_total++;
	s->failing_since = -1;
	s->last_at = now;
}

int
probe_state_alive(
    const struct probe_state *s, int64_t now, int64_t fail_after, char *why, size_t whylen)
{
	if (s->failing_since < 0 || now - s->failing_since < fail_after)
		return 1;
	if (why != NULL)
		snprintf(why, whylen, "self-probe of the gRPC port failing for %lld s: %s",
		    (long long)((now - s->failing_since) / 1000), s->why);
	return 0;
}

int
probe_state_ready(const struct probe_state *s, char *why, size_t whylen)
{
	if (s->runs > 0 && s->last_ok)
		return 1;
	if (s->runs == 0)
		snprintf(why, whylen, "self-probe of the gRPC port pending");
	else
		snprintf(why, whylen, "self-probe of the gRPC port failed: %s", s->why);
	return 0;
}

void
probe_target(const char *listen, char *host, size_t hostlen)
{
	size_t n;

	if (listen == NULL)
		listen = "";
	while (*listen == ' ')
		listen++;
	n = strcspn(listen, ", ");
	if (n == 0 || (n == 7 && strncmp(listen, "0.0.0.0", 7) == 0))
		snprintf(host, hostlen, "127.0.0.1");
	else if (n == 2 && strncmp(listen, "::", 2) == 0)
		snprintf(host, hostlen, "::1");
	else
		snprintf(host, hostlen, "%.*s", (int)n, listen);
}

/* Waits until `fd` is readable (or writable) or `deadline` passes. 0 or -1. */
static int
wait_fd(int fd, int for_write, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = for_write ? POLLOUT : POLLIN };
	int64_t       left;
	int           n;

	for (;;) {
		if ((left = deadline - util_mono_ms()) <= 0)
			return -1;
		n = poll(&pfd, 1, left > 1000000 ? 1000000 : (int)left);
		if (n > 0)
			return 0;
		if (n == 0 || errno != EINTR)
			return -1;
	}
}

/* Drives one SSL call to completion within the deadline: 1, or 0 on failure. */
static int
ssl_wait(SSL *ssl, int fd, int ret, int64_t deadline)
{
	switch (SSL_get_error(ssl, ret)) {
	case SSL_ERROR_WANT_READ: return wait_fd(fd, 0, deadline) == 0;
	case SSL_ERROR_WANT_WRITE: return wait_fd(fd, 1, deadline) == 0;
	default: return 0;
	}
}

/* Reads exactly `len` bytes over TLS within the deadline. 0 or -1. */
static int
ssl_read_full(SSL *ssl, int fd, unsigned char *buf, size_t len, int64_t deadline)
{
	size_t got = 0;
	int    n;

	while (got < len) {
		if ((n = SSL_read(ssl, buf + got, (int)(len - got))) > 0)
			got += (size_t)n;
		else if (!ssl_wait(ssl, fd, n, deadline))
			return -1;
	}
	return 0;
}

/* Opens a non-blocking TCP connection to host:port within the deadline. fd or -1. */
static int
dial(const char *host, int port, int64_t deadline, char *why, size_t whylen)
{
	struct sockaddr_storage ss;
	struct sockaddr_in     *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6    *sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t               slen;
	int                     fd = -1, one = 1, soerr = 0;
	socklen_t               elen = sizeof(soerr);

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		slen = sizeof(*sin);
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		slen = sizeof(*sin6);
	} else {
		snprintf(why, whylen, "\"%s\" is not an IP address", host);
		return -1;
	}
	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1) {
		snprintf(why, whylen, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&ss, slen) == -1) {
		if (errno != EINPROGRESS) {
			snprintf(why, whylen, "connect: %s", strerror(errno));
			goto fail;
		}
		if (wait_fd(fd, 1, deadline) == -1) {
			snprintf(why, whylen, "connect: timed out");
			goto fail;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &elen) == -1 || soerr != 0) {
			snprintf(why, whylen, "connect: %s", strerror(soerr != 0 ? soerr : errno));
			goto fail;
		}
	}
	return fd;
fail:
	close(fd);
	return -1;
}

int
probe_once(const char *host, int port, int64_t timeout_ms, char *why, size_t whylen)
{
	static const unsigned char alpn[] = { 2, 'h', '2' };
	/* The client preface, then an empty SETTINGS frame (RFC 9113 3.4). */
	static const unsigned char hello[] = PROBE_H2_PREFACE "\0\0\0\x04\0\0\0\0\0";
	const unsigned char       *sel = NULL;
	unsigned int               sellen = 0;
	unsigned char              hdr[9], skip[256];
	SSL_CTX                   *ctx = NULL;
	SSL                       *ssl = NULL;
	int64_t                    deadline = util_mono_ms() + timeout_ms;
	size_t                     flen, off = 0, n;
	int                        fd = -1, rc = -1, ret, i;

	why[0] = '\0';
	if ((fd = dial(host[0] != '\0' ? host : "127.0.0.1", port, deadline, why, whylen)) == -1)
		goto out;
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL ||
	    !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn)) != 0 || (ssl = SSL_new(ctx)) == NULL ||
	    !SSL_set_fd(ssl, fd)) {
		snprintf(why, whylen, "cannot set up TLS");
		goto out;
	}
	SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL); /* the door, not the certificate */
	while ((ret = SSL_connect(ssl)) != 1)
		if (!ssl_wait(ssl, fd, ret, deadline)) {
			snprintf(why, whylen, "TLS handshake %s",
			    util_mono_ms() >= deadline ? "timed out" : "failed");
			goto out;
		}
	SSL_get0_alpn_selected(ssl, &sel, &sellen);
	if (sellen != 2 || memcmp(sel, "h2", 2) != 0) {
		snprintf(why, whylen, "TLS handshake did not select ALPN h2");
		goto out;
	}
	while (off < sizeof(hello) - 1) {
		if ((ret = SSL_write(ssl, hello + off, (int)(sizeof(hello) - 1 - off))) > 0)
			off += (size_t)ret;
		else if (!ssl_wait(ssl, fd, ret, deadline)) {
			snprintf(why, whylen, "HTTP/2 preface: write failed");
			goto out;
		}
	}
	/* The server's first frame must be SETTINGS (RFC 9113 3.4); allow a few others. */
	for (i = 0; i < PROBE_MAX_FRAMES; i++) {
		if (ssl_read_full(ssl, fd, hdr, sizeof(hdr), deadline) == -1) {
			snprintf(why, whylen, "HTTP/2: no SETTINGS from the server (%s)",
			    util_mono_ms() >= deadline ? "timed out" : "closed");
			goto out;
		}
		if (hdr[3] == PROBE_H2_SETTINGS && (hdr[4] & PROBE_H2_ACK) == 0) {
			rc = 0;
			goto out;
		}
		flen = ((size_t)hdr[0] << 16) | ((size_t)hdr[1] << 8) | hdr[2];
		while (flen > 0) {
			n = flen < sizeof(skip) ? flen : sizeof(skip);
			if (ssl_read_full(ssl, fd, skip, n, deadline) == -1) {
				snprintf(why, whylen, "HTTP/2: connection lost");
				goto out;
			}
			flen -= n;
		}
	}
	snprintf(why, whylen, "HTTP/2: no SETTINGS in the first %d frames", PROBE_MAX_FRAMES);
out:
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	if (fd != -1)
		close(fd);
	ERR_clear_error();
	return rc;
}

/*
 * One round: probe if there is a snapshot, record, log the edges of a
 * failure streak. Probe thread (or main, before the thread starts).
 */
static void
probe_round(struct probe *p)
{
	struct creds *c;
	int64_t       t0 = util_mono_ms(), t1;
	char          why[128];
	int           ok, was_failing;

	if ((c = credstore_acquire(p->store)) == NULL) {
		pthread_mutex_lock(&p->mtx);
		probe_state_skip(&p->st, t0);
		pthread_mutex_unlock(&p->mtx);
		return;
	}
	creds_release(c);
	ok = probe_once(p->host, p->port, p->params.timeout, why, sizeof(why)) == 0;
	t1 = util_mono_ms();
	pthread_mutex_lock(&p->mtx);
	was_failing = p->st.runs > 0 && !p->st.last_ok;
	probe_state_record(&p->st, t1, t1 - t0, ok, why);
	pthread_mutex_unlock(&p->mtx);
	if (!ok && !was_failing) {
		struct log_field f[] = { LF_S("reason", why), LF_I("port", p->port) };
		log_record(LOG_WARN, "self-probe of the gRPC port failed", f, 2);
	} else if (ok && was_failing)
		log_info("self-probe of the gRPC port passes again");
}

/* The probe thread: sleep, probe, until stopped. */
static void *
probe_main(void *arg)
{
	struct probe   *p = arg;
	struct timespec ts;
	int             stop;

	for (;;) {
		ts = util_abstime_ms(p->params.interval);
		pthread_mutex_lock(&p->mtx);
		while (!p->stop && pthread_cond_timedwait(&p->cv, &p->mtx, &ts) == 0)
			;
		stop = p->stop;
		pthread_mutex_unlock(&p->mtx);
		if (stop)
			return NULL;
		probe_round(p);
	}
}

int
probe_start(const char *host, int port, struct credstore *store, const struct probe_params *params,
    struct probe **out)
{
	struct probe *p;

	*out = NULL;
	if (params->interval <= 0)
		return 0; /* disabled */
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		log_warnx("probe: out of memory");
		return -1;
	}
	snprintf(p->host, sizeof(p->host), "%s", host != NULL ? host : "");
	p->port = port;
	p->store = store;
	p->params = *params;
	probe_state_init(&p->st);
	pthread_mutex_init(&p->mtx, NULL);
	pthread_cond_init(&p->cv, NULL);
	probe_round(p); /* at once: /readyz is decided when "serving" is logged */
	if ((errno = pthread_create(&p->thread, NULL, probe_main, p)) != 0) {
		log_warn("probe: pthread_create");
		pthread_cond_destroy(&p->cv);
		pthread_mutex_destroy(&p->mtx);
		free(p);
		return -1;
	}
	*out = p;
	return 0;
}

void
probe_stop(struct probe *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mtx);
	p->stop = 1;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mtx);
	pthread_join(p->thread, NULL);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mtx);
	free(p);
}

void
probe_get(struct probe *p, struct probe_state *out)
{
	pthread_mutex_lock(&p->mtx);
	*out = p->st;
	pthread_mutex_unlock(&p->mtx);
}

int
probe_alive(struct probe *p, char *why, size_t whylen)
{
	struct probe_state s;

	probe_get(p, &s);
	return probe_state_alive(&s, util_mono_ms(), p->params.fail_after, why, whylen);
}

int
probe_ready(struct probe *p, char *why, size_t whylen)
{
	struct probe_state s;

	probe_get(p, &s);
	return probe_state_ready(&s, why, whylen);
}

int
probe_render(struct probe *p, struct sbuf *out)
{
	struct probe_state s;
	char               buf[1024];
	int64_t            now = util_mono_ms();
	int                n;

	probe_get(p, &s);
	n = snprintf(buf, sizeof(buf),
	    "# HELP talos_csr_signer_self_probe_up 1 if the last self-probe of the gRPC port "
	    "(TLS + HTTP/2 handshake) passed.\n"
	    "# TYPE talos_csr_signer_self_probe_up gauge\n"
	    "talos_csr_signer_self_probe_up %d\n"
	    "# HELP talos_csr_signer_self_probe_total Self-probes by result.\n"
	    "# TYPE talos_csr_signer_self_probe_total counter\n"
	    "talos_csr_signer_self_probe_total{result=\"success\"} %llu\n"
	    "talos_csr_signer_self_probe_total{result=\"failure\"} %llu\n"
	    "talos_csr_signer_self_probe_total{result=\"skipped\"} %llu\n"
	    "# HELP talos_csr_signer_self_probe_duration_seconds Duration of the last "
	    "self-probe.\n"
	    "# TYPE talos_csr_signer_self_probe_duration_seconds gauge\n"
	    "talos_csr_signer_self_probe_duration_seconds %.3f\n"
	    "# HELP talos_csr_signer_self_probe_failing_seconds How long the self-probe has "
	    "failed without a pass (0 when passing).\n"
	    "# TYPE talos_csr_signer_self_probe_failing_seconds gauge\n"
	    "talos_csr_signer_self_probe_failing_seconds %.3f\n",
	    s.runs > 0 && s.last_ok, (unsigned long long)s.ok_total,
	    (unsigned long long)s.fail_total, (unsigned long long)s.skipped_total,
	    (double)s.last_ms / 1000.0,
	    s.failing_since < 0 ? 0.0 : (double)(now - s.failing_since) / 1000.0);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -1;
	return sbuf_add(out, buf, (size_t)n);
}
