/*
 * events.h: audit records as Kubernetes Events (events.k8s.io/v1).
 *
 * The audit sink (events_sink) copies each record into a bounded lock-free
 * queue and returns at once; it never blocks the gRPC thread or the
 * credential source that emits it, and a full queue drops (counted in
 * MC_EVENTS_DROPPED). The events thread posts them: `regarding` is the
 * daemon's own Pod (POD_NAME, POD_NAMESPACE, POD_UID from the downward API;
 * without POD_NAME the watched Secret), `related` the Secret a credential
 * record is about. Repeats of the same event (same type, reason, related and
 * note) within six minutes become one Event with a series count, patched at
 * most every EVENTS_PATCH_MS; new Events and patches together are capped by
 * a token bucket (EVENTS_BURST, then one per EVENTS_REFILL_MS; one bucket for
 * requests, one for credential changes), so a flood of bad requests cannot
 * flood the API server nor crowd out credential Events. Notes carry peer, CN, SANs,
 * serial and the reason, never a token or key.
 */
#ifndef TCS_EVENTS_H
#define TCS_EVENTS_H

#include <stddef.h>

#include "audit.h"

struct config;
struct events;
struct kube;

#define EVENTS_QUEUE          256 /* records waiting for the thread */
#define EVENTS_BURST          25
#define EVENTS_REFILL_MS      2000            /* one Event or patch per 2 s after the burst */
#define EVENTS_PATCH_MS       10000           /* a series is patched at most this often */
#define EVENTS_SERIES_IDLE_MS (6 * 60 * 1000) /* a quiet series is finished */
#define EVENTS_SERIES_MAX     64
#define EVENTS_NOTE_MAX       1024 /* the API server's limit */
#define EVENTS_FLUSH_MS       2000 /* shutdown: time to post what is queued */
#define EVENTS_CONTROLLER     "talos-csr-signer"

/*
 * Builds the events poster on client `k` (which must outlive it) with the
 * identity from cfg (POD_*; the first watched Secret is the fallback
 * `regarding`). Returns NULL with a one-line reason in err. Main thread.
 */
struct events *events_new(struct kube *k, const struct config *cfg, char *err, size_t errlen);
/* Starts the events thread. 0 or -1. */
int events_start(struct events *);
/*
 * The audit sink (audit_sink_fn): copies the record into the queue, or drops
 * and counts it when the queue is full. Any thread; never blocks.
 */
void events_sink(const struct audit_rec *, void *arg);
/*
 * Gives the thread up to EVENTS_FLUSH_MS to post what is queued, then aborts
 * any transfer, joins and frees. No emitter may remain. NULL is fine.
 */
void events_free(struct events *);

/*
 * Writes the Event note for a record (peer, CN, SANs, serial, key type and
 * detail; control characters replaced) into buf, truncated to fit the API
 * server's limit. Returns buf. Pure.
 */
char *events_note(const struct audit_rec *, char *buf, size_t len);

#endif /* TCS_EVENTS_H */
