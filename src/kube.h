/*
 * kube.h: the Kubernetes API client, the only module that includes libcurl.
 *
 * A `struct kube` is the connection configuration: the API server URL (from
 * KUBE_API_URL, else KUBERNETES_SERVICE_HOST/PORT), the CA bundle file, the
 * service-account token file and the default namespace. It is built once by
 * main and then shared read-only, except for the cached bearer token, which
 * it re-reads at least every minute and right after any 401 (projected
 * tokens rotate) under its own mutex.
 *
 * A `struct kube_call` is one reusable request slot with its own curl easy
 * handle; it belongs to one thread. Response bodies go into a bounded,
 * scrubbed struct sbuf; a streaming GET (watch) hands its bytes to a callback
 * instead. A `struct kube_multi` drives several calls from one thread (the
 * watcher follows two Secrets with it). Every transfer aborts promptly when
 * the caller's stop flag is set.
 */
#ifndef TCS_KUBE_H
#define TCS_KUBE_H

#include <stdatomic.h>
#include <stddef.h>

#include "util.h"

struct config;
struct kube;
struct kube_call;
struct kube_multi;

/* Bound of one response body or one watch event (a Secret is at most 1 MiB before base64). */
#define KUBE_MAX_BODY (3 * 1024 * 1024)

/*
 * Loads libcurl (dlopen: only Kubernetes mode pays for it) and calls
 * curl_global_init(); main only, before any thread starts. 0 or -1 (logged).
 */
int kube_global_init(void);
/* Undoes kube_global_init() if it succeeded; main only, after every thread has stopped. */
void kube_global_cleanup(void);
/* The libcurl version, e.g. "7.88.1", for --version. A static string. */
const char *kube_curl_version(void);

/*
 * Builds the client configuration from `cfg` (main thread, start-up).
 * Returns NULL with a one-line reason naming the setting in err. The token
 * file is read once here, so that a missing token is a configuration error.
 */
struct kube *kube_new(const struct config *cfg, char *err, size_t errlen);
/* Wipes the cached token and frees. NULL is fine. No call may remain. */
void kube_free(struct kube *);
/* The namespace of Secrets named without one. Valid until kube_free(). */
const char *kube_namespace(const struct kube *);
/* The API server base URL, e.g. "https://10.96.0.1:443". */
const char *kube_url(const struct kube *);

/*
 * Receives the body bytes of a successful (2xx) streaming call, in arbitrary
 * pieces. Returns 0 to continue or -1 to end the transfer.
 */
typedef int (*kube_data_fn)(const void *buf, size_t len, void *arg);

/*
 * Returns a new call slot bound to `k` (which must outlive it), or NULL on
 * ENOMEM. Transfers abort within about a second once *stop is non-zero.
 * One thread at a time may use a slot.
 */
struct kube_call *kube_call_new(struct kube *k, const atomic_int *stop);
/* Frees the slot and wipes its buffers. NULL is fine; must not be in a multi. */
void kube_call_free(struct kube_call *);

/*
 * Prepares a request: `method` "GET", "POST" or "PATCH"; `path` starts with
 * "/" and is appended to the base URL (already escaped); `ctype` and `body`
 * may be NULL (the body is copied). With `on_data` the call streams: 2xx
 * bytes go to the callback, anything else is collected for kube_call_body().
 * `timeout_s` bounds the whole transfer (0: none, for watches; then a
 * low-speed limit of `idle_s` seconds ends a silent stream). 0 or -1.
 */
int kube_call_prepare(struct kube_call *, const char *method, const char *path, const char *ctype,
    const char *body, kube_data_fn on_data, void *arg, long timeout_s, long idle_s);
/*
 * Runs a prepared call to completion on the calling thread. Returns 0 when
 * an HTTP response was received (status in kube_call_status()), -1 on a
 * transport error, an over-long body or an abort (logged at debug level,
 * the reason in kube_call_error()). A 401 marks the token stale and the call
 * is retried once with a freshly read token.
 */
int kube_call_perform(struct kube_call *);
/* HTTP status of the last completed call (0 if none). */
long kube_call_status(const struct kube_call *);
/* Retry-After of the last response in seconds, 0 if none. */
long kube_call_retry_after(const struct kube_call *);
/* Body of the last non-streamed response (NUL-terminated, bounded). */
const struct sbuf *kube_call_body(const struct kube_call *);
/* One-line transport error of the last call, "" if none. */
const char *kube_call_error(const struct kube_call *);
/* Convenience: prepare + perform with a 30 s timeout; 0 or -1 as above. */
int kube_request(
    struct kube_call *, const char *method, const char *path, const char *ctype, const char *body);

/* A multi driver for calls on one thread. NULL on failure. */
struct kube_multi *kube_multi_new(void);
/* Frees the driver; every call must have been removed first. NULL is fine. */
void kube_multi_free(struct kube_multi *);
/* Starts a prepared call in the driver. 0 or -1. */
int kube_multi_add(struct kube_multi *, struct kube_call *);
/* Takes a running call out of the driver (aborting it). */
void kube_multi_remove(struct kube_multi *, struct kube_call *);
/*
 * Runs transfers for at most `timeout_ms` (less if one finishes or
 * kube_multi_wakeup() is called). Finished calls are removed from the driver
 * and stored in done[] (at most `max`); returns their number, or -1. For
 * each, kube_call_result() says how it ended. Owner thread only.
 */
int kube_multi_run(struct kube_multi *, int timeout_ms, struct kube_call **done, int max);
/* Wakes kube_multi_run() from any thread. */
void kube_multi_wakeup(struct kube_multi *);
/*
 * After kube_multi_run() reported the call: 0 when an HTTP response was
 * received (including a stream that ended normally), -1 on a transport error
 * or abort. Also records a 401 (token stale) like kube_call_perform().
 */
int kube_call_result(struct kube_call *);

#define KUBE_NS_MAX   64  /* a namespace is a DNS label: 63 + NUL */
#define KUBE_NAME_MAX 254 /* a Secret name is a DNS subdomain: 253 + NUL */

/*
 * Splits "namespace/name" or "name" (namespace `defns`) into ns and name and
 * checks both are valid Kubernetes names. 0 or -1.
 */
int kube_object_ref(
    const char *spec, const char *defns, char ns[KUBE_NS_MAX], char name[KUBE_NAME_MAX]);

/* Percent-escapes `s` for a query value into buf; returns buf ("" if too long). */
char *kube_escape(const char *s, char *buf, size_t len);

#endif /* TCS_KUBE_H */
