/*
 * watch.h: following the CA Secret and the serving Secret through the API.
 *
 * One watcher thread follows every configured Secret (CA_SECRET, TLS_SECRET)
 * at once: for each, LIST with fieldSelector=metadata.name=NAME (so that RBAC
 * can be limited by resourceNames), then WATCH from the list's
 * resourceVersion with bookmarks and a randomized timeout, resuming from the
 * last resourceVersion seen, relisting on 410 Gone (an ERROR event or the
 * HTTP status), backing off with jitter (0.8 s doubling to 30 s, reset after
 * two quiet minutes) on errors (the decisions: watchfsm.h). Every
 * ADDED/MODIFIED object is decoded and submitted to the credential
 * assembler, which validates before publishing and reports the outcome.
 *
 * The stream parser is pure and separate (watch_parser_*), so that tests and
 * fuzzers can feed it any chunking.
 */
#ifndef TCS_WATCH_H
#define TCS_WATCH_H

#include <stddef.h>

struct cJSON;
struct config;
struct credsrc;
struct kube;
struct watch;
struct watch_parser;

enum watch_evtype {
	WATCH_ADDED,
	WATCH_MODIFIED,
	WATCH_DELETED,
	WATCH_BOOKMARK,
	WATCH_ERROR,
	WATCH_EV__MAX
};

/* A watch line longer than this ends the stream (a Secret is <= 1 MiB before base64). */
#define WATCH_MAX_EVENT (2 * 1024 * 1024)

/*
 * Called once per complete event. `object` belongs to the parser and is
 * wiped and freed after the call returns. Return 0 to go on, -1 to stop.
 */
typedef int (*watch_event_fn)(enum watch_evtype type, const struct cJSON *object, void *arg);

/* Returns a parser calling `cb` for each event, or NULL on ENOMEM. */
struct watch_parser *watch_parser_new(watch_event_fn cb, void *arg);
/*
 * Feeds stream bytes in any split (mid-line, mid-UTF-8, mid-base64). Returns
 * 0, or -1 when a line is longer than WATCH_MAX_EVENT, is not a JSON object
 * with a known "type" and an "object", or the callback asked to stop; the
 * parser must then be reset before reuse. Single thread.
 */
int watch_feed(struct watch_parser *, const void *buf, size_t len);
/* Drops any partial line (wiped). */
void watch_parser_reset(struct watch_parser *);
/* Number of events delivered since the last reset. */
size_t watch_parser_events(const struct watch_parser *);
/* Wipes and frees. NULL is fine. */
void watch_parser_free(struct watch_parser *);
/* "ADDED", ... */
const char *watch_evtype_name(enum watch_evtype);

/*
 * Builds the watcher for the Secrets named in cfg (CA_SECRET, TLS_SECRET),
 * registering each Secret with the assembler `cs` as a source of its group
 * (so credsrc_expected() includes them). `k`, `cfg` and `cs` must outlive it.
 * Returns NULL with a one-line reason naming the setting in err (main thread,
 * start-up, before any source submits).
 */
struct watch *watch_new(
    struct kube *k, const struct config *cfg, struct credsrc *cs, char *err, size_t errlen);
/* "Secret ns/a, Secret ns/b" for logs. Valid until watch_free(). */
const char *watch_describe(const struct watch *);
/* Starts the watcher thread. 0 or -1. */
int watch_start(struct watch *);
/* Asks for a relist of every Secret (SIGHUP). Any thread. */
void watch_resync(struct watch *);
/* Stops (aborting transfers within about a second), joins, frees. NULL is fine. */
void watch_free(struct watch *);

#endif /* TCS_WATCH_H */
