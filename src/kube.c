/*
 * kube.c: HTTPS requests to the Kubernetes API server with libcurl.
 *
 * DESIGN
 * This is the only file that includes <curl/curl.h>. struct kube holds the
 * immutable connection settings plus the cached bearer token; the token is
 * the one piece of mutable shared state and sits behind kube->mtx, so the
 * watcher and the events thread may both use it. It is re-read from its file
 * when older than KUBE_TOKEN_MAX_AGE_MS or after a 401 (client-go's cached
 * file token source does the same), and a failed re-read keeps the old one.
 *
 * Each struct kube_call owns one curl easy handle and is used by one thread
 * at a time (STYLE.md: handles are never shared). The Authorization header
 * lives in a curl_slist that is wiped before it is freed; response bodies go
 * into a bounded sbuf that is wiped on reuse and on free. CURLOPT_VERBOSE is
 * never set (it would print the bearer token). The progress callback checks
 * the owner's stop flag, so a transfer, even a silent watch, ends within
 * about a second of shutdown. libcurl keeps its own receive buffers, which
 * we cannot wipe; they are overwritten by later transfers.
 *
 * The CA bundle is named by path (CURLOPT_CAINFO) and libcurl's CA cache is
 * limited to KUBE_CA_CACHE_S seconds, so a rotated ca.crt is picked up.
 *
 * libcurl is not linked but loaded (dlopen) by kube_global_init(), which
 * main calls only in Kubernetes mode: with its dependencies (Kerberos, LDAP,
 * SSH, RTMP and through it GnuTLS) it is about 3.8 MB resident that the
 * file mode never uses (docs/performance.md). Below, each curl_* name the
 * code calls is a macro for the pointer loaded from the library, so the rest
 * of this file reads as plain libcurl code.
 */
#include "kube.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <dlfcn.h>

/* Plain prototypes: the type-checking macros would hide the functions. */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

#include "config.h"
#include "log.h"

/* The libcurl entry points, resolved once by curl_load(). */
static struct {
	__typeof__(curl_easy_setopt)         *easy_setopt;
	__typeof__(curl_slist_append)        *slist_append;
	__typeof__(curl_easy_getinfo)        *easy_getinfo;
	__typeof__(curl_multi_remove_handle) *multi_remove_handle;
	__typeof__(curl_version)             *version;
	__typeof__(curl_version_info)        *version_info;
	__typeof__(curl_slist_free_all)      *slist_free_all;
	__typeof__(curl_multi_wakeup)        *multi_wakeup;
	__typeof__(curl_multi_poll)          *multi_poll;
	__typeof__(curl_multi_perform)       *multi_perform;
	__typeof__(curl_multi_init)          *multi_init;
	__typeof__(curl_multi_info_read)     *multi_info_read;
	__typeof__(curl_multi_cleanup)       *multi_cleanup;
	__typeof__(curl_multi_add_handle)    *multi_add_handle;
	__typeof__(curl_global_init)         *global_init;
	__typeof__(curl_global_cleanup)      *global_cleanup;
	__typeof__(curl_easy_strerror)       *easy_strerror;
	__typeof__(curl_easy_reset)          *easy_reset;
	__typeof__(curl_easy_perform)        *easy_perform;
	__typeof__(curl_easy_init)           *easy_init;
	__typeof__(curl_easy_cleanup)        *easy_cleanup;
} curlfn;
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int            curl_ok, curl_inited;

static void
curl_load_once(void)
{
	static const struct {
		const char *name;
		void      **fn;
	} syms[] = {
		{ "curl_easy_setopt", (void **)&curlfn.easy_setopt },
		{ "curl_slist_append", (void **)&curlfn.slist_append },
		{ "curl_easy_getinfo", (void **)&curlfn.easy_getinfo },
		{ "curl_multi_remove_handle", (void **)&curlfn.multi_remove_handle },
		{ "curl_version", (void **)&curlfn.version },
		{ "curl_version_info", (void **)&curlfn.version_info },
		{ "curl_slist_free_all", (void **)&curlfn.slist_free_all },
		{ "curl_multi_wakeup", (void **)&curlfn.multi_wakeup },
		{ "curl_multi_poll", (void **)&curlfn.multi_poll },
		{ "curl_multi_perform", (void **)&curlfn.multi_perform },
		{ "curl_multi_init", (void **)&curlfn.multi_init },
		{ "curl_multi_info_read", (void **)&curlfn.multi_info_read },
		{ "curl_multi_cleanup", (void **)&curlfn.multi_cleanup },
		{ "curl_multi_add_handle", (void **)&curlfn.multi_add_handle },
		{ "curl_global_init", (void **)&curlfn.global_init },
		{ "curl_global_cleanup", (void **)&curlfn.global_cleanup },
		{ "curl_easy_strerror", (void **)&curlfn.easy_strerror },
		{ "curl_easy_reset", (void **)&curlfn.easy_reset },
		{ "curl_easy_perform", (void **)&curlfn.easy_perform },
		{ "curl_easy_init", (void **)&curlfn.easy_init },
		{ "curl_easy_cleanup", (void **)&curlfn.easy_cleanup },
	};
	void  *dl;
	size_t i;

	/* Never closed: a loaded libcurl stays until exit, as if linked. */
	if ((dl = dlopen(CURL_SONAME, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		log_warnx("kube: cannot load %s: %s", CURL_SONAME, dlerror());
		return;
	}
	for (i = 0; i < sizeof(syms) / sizeof(syms[0]); i++)
		if ((*syms[i].fn = dlsym(dl, syms[i].name)) == NULL) {
			log_warnx("kube: %s: no %s", CURL_SONAME, syms[i].name);
			return;
		}
	curl_ok = 1;
}

/* 0 once libcurl is loaded, -1 if it cannot be (logged once). Any thread. */
static int
curl_load(void)
{
	pthread_once(&curl_once, curl_load_once);
	return curl_ok ? 0 : -1;
}

/* curl.h wraps these two in argument-counting macros; the pointers replace them. */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#define curl_easy_setopt         (*curlfn.easy_setopt)
#define curl_slist_append        (*curlfn.slist_append)
#define curl_easy_getinfo        (*curlfn.easy_getinfo)
#define curl_multi_remove_handle (*curlfn.multi_remove_handle)
#define curl_version             (*curlfn.version)
#define curl_version_info        (*curlfn.version_info)
#define curl_slist_free_all      (*curlfn.slist_free_all)
#define curl_multi_wakeup        (*curlfn.multi_wakeup)
#define curl_multi_poll          (*curlfn.multi_poll)
#define curl_multi_perform       (*curlfn.multi_perform)
#define curl_multi_init          (*curlfn.multi_init)
#define curl_multi_info_read     (*curlfn.multi_info_read)
#define curl_multi_cleanup       (*curlfn.multi_cleanup)
#define curl_multi_add_handle    (*curlfn.multi_add_handle)
#define curl_global_init         (*curlfn.global_init)
#define curl_global_cleanup      (*curlfn.global_cleanup)
#define curl_easy_strerror       (*curlfn.easy_strerror)
#define curl_easy_reset          (*curlfn.easy_reset)
#define curl_easy_perform        (*curlfn.easy_perform)
#define curl_easy_init           (*curlfn.easy_init)
#define curl_easy_cleanup        (*curlfn.easy_cleanup)

#define KUBE_TOKEN_MAX_AGE_MS  (50 * 1000) /* re-read well within a minute */
#define KUBE_TOKEN_MAX         (64 * 1024)
#define KUBE_CA_CACHE_S        60L
#define KUBE_CONNECT_TIMEOUT_S 10L
#define KUBE_REQUEST_TIMEOUT_S 30L
#define KUBE_SA_NAMESPACE      "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

struct kube {
	char *url; /* no trailing slash */
	char *ca_path;
	char *token_path;
	char *ns;

	pthread_mutex_t mtx;   /* protects the token fields */
	char           *token; /* secret, NUL-terminated */
	size_t          token_len;
	int64_t         token_read_ms;
	int             token_stale;
	int             token_warned;
};

struct kube_call {
	struct kube       *k;
	const atomic_int  *stop;
	CURL              *h;
	struct curl_slist *hdrs; /* holds the bearer token: wiped */

	/* The request, kept to retry once after a 401. */
	char         method[8];
	char        *path;
	char        *ctype;
	char        *body;
	size_t       bodylen;
	kube_data_fn on_data;
	void        *arg;
	long         timeout_s, idle_s;

	/* The outcome. */
	struct sbuf resp;
	long        status;
	long        retry_after;
	int         overflow, cb_stop;
	CURLcode    rc;
	char        errbuf[CURL_ERROR_SIZE];
	char        err[256];
};

struct kube_multi {
	CURLM *m;
};

int
kube_global_init(void)
{
	if (curl_load() == -1)
		return -1;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_warnx("curl_global_init failed");
		return -1;
	}
	curl_inited = 1;
	return 0;
}

void
kube_global_cleanup(void)
{
	if (curl_inited)
		curl_global_cleanup();
	curl_inited = 0;
}

const char *
kube_curl_version(void)
{
	return curl_load() == 0 ? curl_version_info(CURLVERSION_NOW)->version : "not installed";
}

/* Reads and trims the token file into a new buffer; 0 or -1 (errno). */
static int
read_token(const char *path, char **out, size_t *outlen)
{
	struct sbuf b;
	size_t      s = 0, e;
	char       *t;

	*out = NULL;
	*outlen = 0;
	if (util_read_file(path, KUBE_TOKEN_MAX, &b) == -1)
		return -1;
	e = b.len;
	while (s < e && isspace(b.data[s]))
		s++;
	while (e > s && isspace(b.data[e - 1]))
		e--;
	if (e == s) {
		sbuf_free(&b);
		errno = ENODATA;
		return -1;
	}
	if ((t = malloc(e - s + 1)) == NULL) {
		sbuf_free(&b);
		return -1;
	}
	memcpy(t, b.data + s, e - s);
	t[e - s] = '\0';
	sbuf_free(&b);
	*out = t;
	*outlen = e - s;
	return 0;
}

/*
 * Returns a new "Authorization: Bearer ..." header line (caller wipes and
 * frees it), re-reading the token file when due. NULL when there is none.
 */
static char *
auth_header(struct kube *k)
{
	static const char pre[] = "Authorization: Bearer ";
	char             *tok, *h = NULL;
	size_t            len;
	int64_t           now = util_mono_ms();

	pthread_mutex_lock(&k->mtx);
	if (k->token == NULL || k->token_stale || now - k->token_read_ms >= KUBE_TOKEN_MAX_AGE_MS) {
		if (read_token(k->token_path, &tok, &len) == 0) {
			if (k->token != NULL)
				freezero(k->token, k->token_len + 1);
			k->token = tok;
			k->token_len = len;
			k->token_warned = 0;
		} else if (!k->token_warned) {
			log_warn("kube: cannot re-read the token %s; keeping the old one",
			    k->token_path);
			k->token_warned = 1;
		}
		/* Either way, try again after a full period, not on every call. */
		k->token_read_ms = now;
		k->token_stale = 0;
	}
	if (k->token != NULL && (h = malloc(sizeof(pre) + k->token_len)) != NULL) {
		memcpy(h, pre, sizeof(pre) - 1);
		memcpy(h + sizeof(pre) - 1, k->token, k->token_len + 1);
	}
	pthread_mutex_unlock(&k->mtx);
	return h;
}

static void
token_stale(struct kube *k)
{
	pthread_mutex_lock(&k->mtx);
	k->token_stale = 1;
	pthread_mutex_unlock(&k->mtx);
}

static char *
trimmed_dup(const char *s)
{
	size_t n;
	char  *d;

	if ((d = strdup(s)) == NULL)
		return NULL;
	n = strlen(d);
	while (n > 0 && (d[n - 1] == '/' || isspace((unsigned char)d[n - 1])))
		d[--n] = '\0';
	return d;
}

struct kube *
kube_new(const struct config *cfg, char *err, size_t errlen)
{
	struct kube *k;
	struct sbuf  b;
	const char  *host, *port;
	char         url[512];
	size_t       s, e;
	int          n;

	if ((k = calloc(1, sizeof(*k))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&k->mtx, NULL);
	if (cfg->kube_api_url != NULL && *cfg->kube_api_url != '\0') {
		if (strncmp(cfg->kube_api_url, "https://", 8) != 0) {
			snprintf(err, errlen, "KUBE_API_URL: must start with https://");
			goto fail;
		}
		k->url = trimmed_dup(cfg->kube_api_url);
	} else {
		host = getenv("KUBERNETES_SERVICE_HOST");
		port = getenv("KUBERNETES_SERVICE_PORT");
		if (host == NULL || *host == '\0' || port == NULL || *port == '\0') {
			snprintf(err, errlen,
			    "KUBE_API_URL: not set, and KUBERNETES_SERVICE_HOST/"
			    "KUBERNETES_SERVICE_PORT are not in the environment (not in a "
			    "cluster?)");
			goto fail;
		}
		/* An IPv6 literal needs brackets (net.JoinHostPort). */
		n = snprintf(url, sizeof(url),
		    strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host, port);
		if (n < 0 || (size_t)n >= sizeof(url)) {
			snprintf(err, errlen, "KUBERNETES_SERVICE_HOST: too long");
			goto fail;
		}
		k->url = strdup(url);
	}
	k->ca_path = strdup(cfg->kube_ca_path ? cfg->kube_ca_path : "");
	k->token_path = strdup(cfg->kube_token_path ? cfg->kube_token_path : "");
	if (k->url == NULL || k->ca_path == NULL || k->token_path == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (*k->ca_path != '\0' && access(k->ca_path, R_OK) == -1) {
		snprintf(
		    err, errlen, "KUBE_CA_PATH (%s): cannot read: %s", k->ca_path, strerror(errno));
		goto fail;
	}
	if (read_token(k->token_path, &k->token, &k->token_len) == -1) {
		snprintf(err, errlen, "KUBE_TOKEN_PATH (%s): cannot read: %s", k->token_path,
		    errno == ENODATA     ? "empty"
			: errno == EFBIG ? "too large"
					 : strerror(errno));
		goto fail;
	}
	k->token_read_ms = util_mono_ms();

	if (cfg->kube_namespace != NULL && *cfg->kube_namespace != '\0')
		k->ns = strdup(cfg->kube_namespace);
	else if (util_read_file(KUBE_SA_NAMESPACE, 256, &b) == 0) {
		for (s = 0; s < b.len && isspace(b.data[s]); s++)
			;
		for (e = b.len; e > s && isspace(b.data[e - 1]); e--)
			;
		b.data[e] = '\0';
		k->ns = strdup(e > s ? (char *)b.data + s : "default");
		sbuf_free(&b);
	} else
		k->ns = strdup("default");
	if (k->ns == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	return k;
fail:
	kube_free(k);
	return NULL;
}

void
kube_free(struct kube *k)
{
	if (k == NULL)
		return;
	if (k->token != NULL)
		freezero(k->token, k->token_len + 1);
	free(k->url);
	free(k->ca_path);
	free(k->token_path);
	free(k->ns);
	pthread_mutex_destroy(&k->mtx);
	free(k);
}

const char *
kube_namespace(const struct kube *k)
{
	return k->ns;
}

const char *
kube_url(const struct kube *k)
{
	return k->url;
}

struct kube_call *
kube_call_new(struct kube *k, const atomic_int *stop)
{
	struct kube_call *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	if ((c->h = curl_easy_init()) == NULL) {
		free(c);
		return NULL;
	}
	c->k = k;
	c->stop = stop;
	sbuf_init(&c->resp, KUBE_MAX_BODY);
	return c;
}

/* Wipes and frees the header list (it carries the bearer token). */
static void
free_headers(struct kube_call *c)
{
	struct curl_slist *l;

	for (l = c->hdrs; l != NULL; l = l->next)
		if (l->data != NULL)
			explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(c->hdrs);
	c->hdrs = NULL;
}

static void
clear_request(struct kube_call *c)
{
	free(c->path);
	free(c->ctype);
	if (c->body != NULL)
		freezero(c->body, c->bodylen + 1);
	c->path = c->ctype = c->body = NULL;
	c->bodylen = 0;
}

void
kube_call_free(struct kube_call *c)
{
	if (c == NULL)
		return;
	if (c->h != NULL) {
		/* Drop the handle's pointers to our buffers before freeing them. */
		curl_easy_cleanup(c->h);
	}
	free_headers(c);
	clear_request(c);
	sbuf_free(&c->resp);
	free(c);
}

static size_t
write_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct kube_call *c = arg;
	size_t            len = size * nmemb;

	if (c->status == 0)
		curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &c->status);
	if (c->on_data != NULL && c->status / 100 == 2) {
		if (c->on_data(p, len, c->arg) == -1) {
			c->cb_stop = 1;
			return 0; /* ends the transfer with CURLE_WRITE_ERROR */
		}
		return len;
	}
	if (sbuf_add(&c->resp, p, len) == -1) {
		c->overflow = 1;
		return 0;
	}
	return len;
}

static int
xferinfo_cb(void *arg, curl_off_t dlt, curl_off_t dln, curl_off_t ult, curl_off_t uln)
{
	struct kube_call *c = arg;

	(void)dlt;
	(void)dln;
	(void)ult;
	(void)uln;
	return c->stop != NULL && atomic_load(c->stop) ? 1 : 0;
}

/* Configures the easy handle for the stored request; 0 or -1. */
static int
setup(struct kube_call *c)
{
	CURL              *h = c->h;
	struct curl_slist *l;
	char              *auth = NULL, *url = NULL, ct[160];
	size_t             ulen;
	int                rc = -1;

	free_headers(c);
	sbuf_reset(&c->resp);
	c->status = c->retry_after = 0;
	c->overflow = c->cb_stop = 0;
	c->rc = CURLE_OK;
	c->errbuf[0] = c->err[0] = '\0';

	curl_easy_reset(h);
	ulen = strlen(c->k->url) + strlen(c->path) + 1;
	if ((url = malloc(ulen)) == NULL)
		goto out;
	snprintf(url, ulen, "%s%s", c->k->url, c->path);
	if ((auth = auth_header(c->k)) == NULL) {
		snprintf(c->err, sizeof(c->err), "no service-account token");
		goto out;
	}
	if ((l = curl_slist_append(NULL, auth)) == NULL)
		goto out;
	c->hdrs = l;
	if (curl_slist_append(c->hdrs, "Accept: application/json") == NULL ||
	    curl_slist_append(c->hdrs, "Expect:") == NULL)
		goto out;
	if (c->ctype != NULL) {
		snprintf(ct, sizeof(ct), "Content-Type: %s", c->ctype);
		if (curl_slist_append(c->hdrs, ct) == NULL)
			goto out;
	}

	curl_easy_setopt(h, CURLOPT_URL, url); /* libcurl copies it */
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_VERBOSE, 0L); /* never: it prints the token */
	if (*c->k->ca_path != '\0')
		curl_easy_setopt(h, CURLOPT_CAINFO, c->k->ca_path);
#if LIBCURL_VERSION_NUM >= 0x075700 /* 7.87.0 */
	curl_easy_setopt(h, CURLOPT_CA_CACHE_TIMEOUT, KUBE_CA_CACHE_S);
#endif
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->hdrs);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "talos-csr-signer/" TCS_VERSION);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, KUBE_CONNECT_TIMEOUT_S);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 30L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 15L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, c->timeout_s);
	if (c->idle_s > 0) {
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, c->idle_s);
	}
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(h, CURLOPT_PRIVATE, c);
	if (strcmp(c->method, "GET") != 0) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)c->bodylen);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->body != NULL ? c->body : "");
		if (strcmp(c->method, "POST") != 0)
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c->method);
	}
	rc = 0;
out:
	if (rc == -1 && c->err[0] == '\0')
		snprintf(c->err, sizeof(c->err), "out of memory");
	if (auth != NULL)
		freezero(auth, strlen(auth) + 1);
	free(url);
	return rc;
}

int
kube_call_prepare(struct kube_call *c, const char *method, const char *path, const char *ctype,
    const char *body, kube_data_fn on_data, void *arg, long timeout_s, long idle_s)
{
	clear_request(c);
	snprintf(c->method, sizeof(c->method), "%s", method);
	c->path = strdup(path);
	c->ctype = ctype != NULL ? strdup(ctype) : NULL;
	if (body != NULL) {
		c->bodylen = strlen(body);
		if ((c->body = malloc(c->bodylen + 1)) != NULL)
			memcpy(c->body, body, c->bodylen + 1);
	}
	c->on_data = on_data;
	c->arg = arg;
	c->timeout_s = timeout_s;
	c->idle_s = idle_s;
	if (c->path == NULL || (ctype != NULL && c->ctype == NULL) ||
	    (body != NULL && c->body == NULL)) {
		clear_request(c);
		snprintf(c->err, sizeof(c->err), "out of memory");
		return -1;
	}
	return 0;
}

/* Records how a transfer ended; 0 if a response came back, else -1. */
static int
finish(struct kube_call *c)
{
	curl_off_t ra = 0;

	curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &c->status);
	if (curl_easy_getinfo(c->h, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
		c->retry_after = (long)ra;
	free_headers(c);
	if (c->status == 401)
		token_stale(c->k);
	if (c->rc == CURLE_OK || (c->rc == CURLE_WRITE_ERROR && c->cb_stop))
		return 0;
	if (c->overflow)
		snprintf(
		    c->err, sizeof(c->err), "response body larger than %d bytes", KUBE_MAX_BODY);
	else if (c->rc == CURLE_ABORTED_BY_CALLBACK)
		snprintf(c->err, sizeof(c->err), "aborted (shutting down)");
	else
		snprintf(c->err, sizeof(c->err), "%s",
		    c->errbuf[0] ? c->errbuf : curl_easy_strerror(c->rc));
	log_debug("kube: %s %s: %s", c->method, c->path, c->err);
	return -1;
}

int
kube_call_perform(struct kube_call *c)
{
	int attempt, rc = -1;

	for (attempt = 0; attempt < 2; attempt++) {
		if (c->path == NULL || setup(c) == -1)
			return -1;
		c->rc = curl_easy_perform(c->h);
		rc = finish(c);
		if (rc == 0 && c->status == 401 && attempt == 0 &&
		    !(c->stop != NULL && atomic_load(c->stop))) {
			log_debug("kube: 401 from %s %s: re-reading the token", c->method, c->path);
			continue;
		}
		break;
	}
	return rc;
}

int
kube_request(
    struct kube_call *c, const char *method, const char *path, const char *ctype, const char *body)
{
	if (kube_call_prepare(
		c, method, path, ctype, body, NULL, NULL, KUBE_REQUEST_TIMEOUT_S, 0) == -1)
		return -1;
	return kube_call_perform(c);
}

long
kube_call_status(const struct kube_call *c)
{
	return c->status;
}

long
kube_call_retry_after(const struct kube_call *c)
{
	return c->retry_after;
}

const struct sbuf *
kube_call_body(const struct kube_call *c)
{
	return &c->resp;
}

const char *
kube_call_error(const struct kube_call *c)
{
	return c->err;
}

struct kube_multi *
kube_multi_new(void)
{
	struct kube_multi *km;

	if ((km = calloc(1, sizeof(*km))) == NULL)
		return NULL;
	if ((km->m = curl_multi_init()) == NULL) {
		free(km);
		return NULL;
	}
	return km;
}

void
kube_multi_free(struct kube_multi *km)
{
	if (km == NULL)
		return;
	curl_multi_cleanup(km->m);
	free(km);
}

int
kube_multi_add(struct kube_multi *km, struct kube_call *c)
{
	if (c->path == NULL || setup(c) == -1)
		return -1;
	if (curl_multi_add_handle(km->m, c->h) != CURLM_OK) {
		free_headers(c);
		snprintf(c->err, sizeof(c->err), "curl_multi_add_handle failed");
		return -1;
	}
	return 0;
}

void
kube_multi_remove(struct kube_multi *km, struct kube_call *c)
{
	curl_multi_remove_handle(km->m, c->h);
	free_headers(c);
}

int
kube_multi_run(struct kube_multi *km, int timeout_ms, struct kube_call **done, int max)
{
	CURLMsg          *msg;
	struct kube_call *c;
	int               running, left, n = 0, polled = 0;

	for (;;) {
		if (curl_multi_perform(km->m, &running) != CURLM_OK)
			return -1;
		while (n < max && (msg = curl_multi_info_read(km->m, &left)) != NULL) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			c = NULL;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
			if (c == NULL)
				continue;
			c->rc = msg->data.result;
			curl_multi_remove_handle(km->m, c->h);
			done[n++] = c;
		}
		if (n > 0 || polled)
			return n;
		if (curl_multi_poll(km->m, NULL, 0, timeout_ms, NULL) != CURLM_OK)
			return -1;
		polled = 1;
	}
}

void
kube_multi_wakeup(struct kube_multi *km)
{
	curl_multi_wakeup(km->m);
}

int
kube_call_result(struct kube_call *c)
{
	return finish(c);
}

char *
kube_escape(const char *s, char *buf, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t            o = 0;
	unsigned char     ch;

	for (; *s != '\0'; s++) {
		ch = (unsigned char)*s;
		if (isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
			if (o + 1 >= len)
				goto toolong;
			buf[o++] = (char)ch;
		} else {
			if (o + 3 >= len)
				goto toolong;
			buf[o++] = '%';
			buf[o++] = hex[ch >> 4];
			buf[o++] = hex[ch & 15];
		}
	}
	if (len > 0)
		buf[o] = '\0';
	return buf;
toolong:
	if (len > 0)
		buf[0] = '\0';
	return buf;
}

static int
valid_name(const char *s, size_t max, int dots)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > max || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
		return 0;
	for (i = 0; i < n; i++) {
		if ((s[i] >= 'a' && s[i] <= 'z') || isdigit((unsigned char)s[i]) || s[i] == '-' ||
		    (dots && s[i] == '.'))
			continue;
		return 0;
	}
	return 1;
}

int
kube_object_ref(const char *spec, const char *defns, char ns[KUBE_NS_MAX], char name[KUBE_NAME_MAX])
{
	const char *slash = strchr(spec, '/');
	size_t      nslen;

	if (slash != NULL) {
		nslen = (size_t)(slash - spec);
		if (nslen >= KUBE_NS_MAX)
			return -1;
		memcpy(ns, spec, nslen);
		ns[nslen] = '\0';
		spec = slash + 1;
	} else if (snprintf(ns, KUBE_NS_MAX, "%s", defns) >= KUBE_NS_MAX)
		return -1;
	if (snprintf(name, KUBE_NAME_MAX, "%s", spec) >= KUBE_NAME_MAX)
		return -1;
	if (!valid_name(ns, KUBE_NS_MAX - 1, 0) || !valid_name(name, KUBE_NAME_MAX - 1, 1))
		return -1;
	return 0;
}
