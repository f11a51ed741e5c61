/*
 * httpd.c: /healthz, /readyz and /metrics over plain HTTP (libmicrohttpd).
 *
 * DESIGN
 * httpd_start() and httpd_stop() run on main. libmicrohttpd owns one
 * internal polling thread that accepts, reads the request line and calls
 * handle() for each request; every answer is built in that call from atomics
 * (metrics.c) and, for /readyz, from one short-lived snapshot reference, so a
 * probe can neither block nor be blocked by a Certificate call. Connections
 * are capped and time out, so a slow or hostile scraper cannot pin memory.
 * libmicrohttpd's own diagnostics go through log_warnx(), keeping stderr in
 * the structured format.
 *
 * libmicrohttpd is not linked but loaded (dlopen) when the listener starts
 * or --version asks for it: it pulls in GnuTLS, p11-kit and nettle, about
 * 2.3 MB resident (docs/performance.md), which a daemon run with HTTP_ADDR=
 * never uses. Only this file knows.
 *
 * Owns: the MHD daemon. Borrows: the credential store (outlives the server).
 */
#include "httpd.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef HAVE_MHD
#include <dlfcn.h>
#include <pthread.h>

#include <microhttpd.h>
#endif

#include "creds.h"
#include "credstore.h"
#include "log.h"
#include "metrics.h"
#include "probe.h"
#include "util.h"

/*
 * Limits that keep probes answered under slowloris and floods: one source
 * address holds at most HTTPD_MAX_PER_IP connections (a kubelet and a
 * Prometheus on the same node need a handful), so a single hostile host
 * cannot take the HTTPD_MAX_CONNECTIONS slots; an idle connection is closed
 * after HTTPD_TIMEOUT_S; each connection's buffer pool is HTTPD_CONN_MEMORY
 * (a probe's request is a few hundred bytes; responses are allocated apart).
 * Worst case: 256 x 8 KiB = 2 MiB.
 */
#define HTTPD_MAX_CONNECTIONS 256
#define HTTPD_MAX_PER_IP      16
#define HTTPD_TIMEOUT_S       5
#define HTTPD_CONN_MEMORY     (8 * 1024)
#define HTTPD_MAX_METRICS     (1024 * 1024)

struct httpd {
	struct credstore *store;
	int               port;
#ifdef HAVE_MHD
	struct MHD_Daemon *mhd;
#endif

	_Atomic(struct probe *) probe; /* NULL: no self-probe */
};

int
httpd_parse_addr(const char *addr, char *host, size_t hostlen, int *port)
{
	const char *colon, *h, *hend;
	char       *end;
	long        p;

	host[0] = '\0';
	if (addr[0] == '[') {
		h = addr + 1;
		if ((hend = strchr(h, ']')) == NULL || hend[1] != ':')
			return -1;
		colon = hend + 1;
	} else {
		if ((colon = strrchr(addr, ':')) == NULL)
			return -1;
		h = addr;
		hend = colon;
		if (memchr(h, ':', (size_t)(hend - h)) != NULL)
			return -1; /* a bare IPv6 literal needs brackets */
	}
	if ((size_t)(hend - h) + 1 > hostlen)
		return -1;
	memcpy(host, h, (size_t)(hend - h));
	host[hend - h] = '\0';
	p = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || p < 0 || p > 65535)
		return -1;
	*port = (int)p;
	return 0;
}

void
httpd_readiness(struct credstore *store, long long now, struct httpd_readiness *r)
{
	struct creds *c;

	r->ready = 0;
	if ((c = credstore_acquire(store)) == NULL) {
		credstore_waiting(store, r->reason, sizeof(r->reason));
		if (r->reason[0] == '\0')
			snprintf(r->reason, sizeof(r->reason), "no valid credentials loaded");
		return;
	}
	if (!metrics_serving()) {
		/* Not serving although credentials were loaded: say why if known (the keeper died). */
		credstore_waiting(store, r->reason, sizeof(r->reason));
		if (r->reason[0] == '\0')
			snprintf(r->reason, sizeof(r->reason), "gRPC port not bound");
	} else if (c->ca_not_after < now)
		snprintf(r->reason, sizeof(r->reason),
		    "issuing CA certificate expired "
		    "(generation %llu)",
		    (unsigned long long)c->gen);
	else if (c->tls_not_after < now)
		snprintf(r->reason, sizeof(r->reason),
		    "serving certificate expired "
		    "(generation %llu)",
		    (unsigned long long)c->gen);
	else {
		r->ready = 1;
		snprintf(r->reason, sizeof(r->reason), "ready");
	}
	creds_release(c);
}

#ifdef HAVE_MHD

/* The libmicrohttpd entry points, resolved once by mhd_load(). */
static struct {
	__typeof__(MHD_get_version)                 *get_version;
	__typeof__(MHD_create_response_from_buffer) *create_response_from_buffer;
	__typeof__(MHD_add_response_header)         *add_response_header;
	__typeof__(MHD_queue_response)              *queue_response;
	__typeof__(MHD_destroy_response)            *destroy_response;
	__typeof__(MHD_start_daemon)                *start_daemon;
	__typeof__(MHD_stop_daemon)                 *stop_daemon;
	__typeof__(MHD_get_daemon_info)             *get_daemon_info;
} mhd;
static pthread_once_t mhd_once = PTHREAD_ONCE_INIT;
static int            mhd_ok;

static void
mhd_load_once(void)
{
	static const struct {
		const char *name;
		void      **fn;
	} syms[] = {
		{ "MHD_get_version", (void **)&mhd.get_version },
		{ "MHD_create_response_from_buffer", (void **)&mhd.create_response_from_buffer },
		{ "MHD_add_response_header", (void **)&mhd.add_response_header },
		{ "MHD_queue_response", (void **)&mhd.queue_response },
		{ "MHD_destroy_response", (void **)&mhd.destroy_response },
		{ "MHD_start_daemon", (void **)&mhd.start_daemon },
		{ "MHD_stop_daemon", (void **)&mhd.stop_daemon },
		{ "MHD_get_daemon_info", (void **)&mhd.get_daemon_info },
	};
	void  *dl;
	size_t i;

	/* Never closed: the daemon's thread runs its code until httpd_stop(). */
	if ((dl = dlopen(MHD_SONAME, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		log_warnx("httpd: cannot load %s: %s", MHD_SONAME, dlerror());
		return;
	}
	for (i = 0; i < sizeof(syms) / sizeof(syms[0]); i++)
		if ((*syms[i].fn = dlsym(dl, syms[i].name)) == NULL) {
			log_warnx("httpd: %s: no %s", MHD_SONAME, syms[i].name);
			return;
		}
	mhd_ok = 1;
}

/* 0 once libmicrohttpd is loaded, -1 if it cannot be (logged once). Any thread. */
static int
mhd_load(void)
{
	pthread_once(&mhd_once, mhd_load_once);
	return mhd_ok ? 0 : -1;
}

const char *
httpd_mhd_version(void)
{
	return mhd_load() == 0 ? mhd.get_version() : "not installed";
}

static void mhd_log(void *, const char *, va_list) __attribute__((format(printf, 2, 0)));

static void
mhd_log(void *arg, const char *fmt, va_list ap)
{
	char   buf[512];
	size_t n;

	(void)arg;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	log_warnx("httpd: %s", buf);
}

static enum MHD_Result
reply(struct MHD_Connection *conn, unsigned status, const char *ctype, const void *body, size_t len)
{
	struct MHD_Response *resp;
	enum MHD_Result      rc;

	resp = mhd.create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	mhd.add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	mhd.add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	rc = mhd.queue_response(conn, status, resp);
	mhd.destroy_response(resp);
	return rc;
}

static enum MHD_Result
reply_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
	return reply(conn, status, "text/plain; charset=utf-8", text, strlen(text));
}

/* libmicrohttpd's access handler: runs on its internal thread. */
static enum MHD_Result
handle(void *arg, struct MHD_Connection *conn, const char *url, const char *method,
    const char *version, const char *upload, size_t *upload_len, void **state)
{
	struct httpd          *h = arg;
	struct httpd_readiness r;
	struct sbuf            b;
	struct probe          *pr;
	enum MHD_Result        rc;
	char                   line[700];

	(void)version;
	(void)upload;
	if (*upload_len != 0) {
		*upload_len = 0; /* probes have no body: discard */
		return MHD_YES;
	}
	(void)state;
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
	if (strcmp(url, "/healthz") == 0 || strcmp(url, "/livez") == 0) {
		if ((pr = atomic_load(&h->probe)) != NULL &&
		    !probe_alive(pr, r.reason, sizeof(r.reason))) {
			snprintf(line, sizeof(line), "unhealthy: %s\n", r.reason);
			return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, line);
		}
		return reply_text(conn, MHD_HTTP_OK, "ok\n");
	}
	if (strcmp(url, "/readyz") == 0) {
		httpd_readiness(h->store, (long long)time(NULL), &r);
		if (r.ready && (pr = atomic_load(&h->probe)) != NULL &&
		    !probe_ready(pr, r.reason, sizeof(r.reason)))
			r.ready = 0;
		snprintf(line, sizeof(line), "%s%s\n", r.ready ? "" : "not ready: ", r.reason);
		return reply_text(conn, r.ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, line);
	}
	if (strcmp(url, "/metrics") == 0) {
		sbuf_init(&b, HTTPD_MAX_METRICS);
		if (metrics_render(&b) == -1 ||
		    ((pr = atomic_load(&h->probe)) != NULL && probe_render(pr, &b) == -1)) {
			sbuf_free(&b);
			log_warnx("httpd: cannot render metrics");
			return reply_text(
			    conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "metrics unavailable\n");
		}
		rc = reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
		    b.data != NULL ? (const char *)b.data : "", b.len);
		sbuf_free(&b);
		return rc;
	}
	return reply_text(
	    conn, MHD_HTTP_NOT_FOUND, "not found: try /healthz, /readyz or /metrics\n");
}

static struct MHD_Daemon *
start_daemon(struct httpd *h, unsigned flags, int port, const struct sockaddr *sa)
{
	if (sa != NULL)
		return mhd.start_daemon(flags, (uint16_t)port, NULL, NULL, handle, h,
		    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, /* first: see MHD docs */
		    MHD_OPTION_SOCK_ADDR, sa, MHD_OPTION_CONNECTION_LIMIT,
		    (unsigned)HTTPD_MAX_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
		    (unsigned)HTTPD_MAX_PER_IP, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		    (size_t)HTTPD_CONN_MEMORY, MHD_OPTION_CONNECTION_TIMEOUT,
		    (unsigned)HTTPD_TIMEOUT_S, MHD_OPTION_END);
	return mhd.start_daemon(flags, (uint16_t)port, NULL, NULL, handle, h,
	    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_CONNECTION_LIMIT,
	    (unsigned)HTTPD_MAX_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
	    (unsigned)HTTPD_MAX_PER_IP, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	    (size_t)HTTPD_CONN_MEMORY, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTPD_TIMEOUT_S,
	    MHD_OPTION_END);
}

int
httpd_start(const char *addr, struct credstore *store, struct httpd **out, char *err, size_t errlen)
{
	struct httpd               *h = NULL;
	struct sockaddr_in          sin;
	struct sockaddr_in6         sin6;
	const union MHD_DaemonInfo *di;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_AUTO;
	char     host[64], shown[96];
	int      port;

	*out = NULL;
	if (addr == NULL || *addr == '\0')
		return 0; /* disabled */
	if (httpd_parse_addr(addr, host, sizeof(host), &port) == -1) {
		snprintf(
		    err, errlen, "HTTP_ADDR: \"%s\" is not HOST:PORT, :PORT or [IPV6]:PORT", addr);
		return -1;
	}
	if (mhd_load() == -1) {
		snprintf(err, errlen, "HTTP_ADDR: cannot load %s (set HTTP_ADDR= to disable it)",
		    MHD_SONAME);
		return -1;
	}
	if ((h = calloc(1, sizeof(*h))) == NULL) {
		snprintf(err, errlen, "HTTP_ADDR: out of memory");
		return -1;
	}
	h->store = store;
	memset(&sin, 0, sizeof(sin));
	memset(&sin6, 0, sizeof(sin6));
	if (host[0] == '\0') {
		/* Every address: dual stack, or IPv4 only where IPv6 is off. */
		if ((h->mhd = start_daemon(h, flags | MHD_USE_DUAL_STACK, port, NULL)) == NULL)
			h->mhd = start_daemon(h, flags, port, NULL);
	} else if (inet_pton(AF_INET, host, &sin.sin_addr) == 1) {
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)port);
		h->mhd = start_daemon(h, flags, port, (const struct sockaddr *)&sin);
	} else if (inet_pton(AF_INET6, host, &sin6.sin6_addr) == 1) {
		sin6.sin6_family = AF_INET6;
		sin6.sin6_port = htons((uint16_t)port);
		h->mhd =
		    start_daemon(h, flags | MHD_USE_IPv6, port, (const struct sockaddr *)&sin6);
	} else {
		snprintf(err, errlen, "HTTP_ADDR: \"%s\" is not an IP address", host);
		free(h);
		return -1;
	}
	if (h->mhd == NULL) {
		snprintf(err, errlen, "HTTP_ADDR: cannot listen on %s", addr);
		free(h);
		return -1;
	}
	h->port = port;
	if ((di = mhd.get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT)) != NULL && di->port != 0)
		h->port = di->port;
	snprintf(shown, sizeof(shown), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, h->port);
	{
		struct log_field f[] = { LF_S("addr", shown), LF_I("port", h->port) };
		log_record(LOG_INFO, "http listening", f, 2);
	}
	*out = h;
	return 0;
}

void
httpd_stop(struct httpd *h)
{
	if (h == NULL)
		return;
	mhd.stop_daemon(h->mhd);
	free(h);
}

void
httpd_set_probe(struct httpd *h, struct probe *p)
{
	if (h != NULL)
		atomic_store(&h->probe, p);
}

#else /* !HAVE_MHD */

void
httpd_set_probe(struct httpd *h, struct probe *p)
{
	(void)h;
	(void)p;
}

const char *
httpd_mhd_version(void)
{
	return "none";
}

int
httpd_start(const char *addr, struct credstore *store, struct httpd **out, char *err, size_t errlen)
{
	(void)store;
	*out = NULL;
	if (addr == NULL || *addr == '\0')
		return 0;
	snprintf(err, errlen,
	    "HTTP_ADDR: this build has no HTTP listener "
	    "(libmicrohttpd missing); set HTTP_ADDR= to disable it");
	return -1;
}

void
httpd_stop(struct httpd *h)
{
	free(h);
}

#endif /* HAVE_MHD */

int
httpd_port(const struct httpd *h)
{
	return h != NULL ? h->port : 0;
}
