/*
 * credstore.h: the one piece of shared mutable state, the current credential
 * snapshot (h2o's background updater pattern).
 *
 * Readers (gRPC threads, the TLS certificate fetcher, probes) take a
 * reference with credstore_acquire() and drop it with creds_release(); no
 * lock is held while they work. The publisher (the credential source's
 * thread) swaps the pointer under a short mutex and bumps the generation;
 * the old snapshot is freed and wiped when its last reader lets go.
 */
#ifndef TCS_CREDSTORE_H
#define TCS_CREDSTORE_H

#include <stddef.h>
#include <stdint.h>

#define CREDSTORE_WAITING_MAX 640

struct creds;
struct credstore;

/* Returns a new, empty store, or NULL. */
struct credstore *credstore_new(void);
/* Releases the current snapshot and frees the store; no reader may remain. */
void credstore_free(struct credstore *);

/*
 * Publishes `c` (the store takes over the caller's reference) and returns the
 * new generation (1 for the first publish). Any thread.
 */
uint64_t credstore_publish(struct credstore *, struct creds *c);

/* Returns the current snapshot with one reference for the caller, or NULL. */
struct creds *credstore_acquire(struct credstore *);

/* The generation of the current snapshot (0 before the first). Lock-free. */
uint64_t credstore_generation(struct credstore *);

/*
 * What the credential source is waiting for, while nothing is served (e.g.
 * "waiting for Secret ns/name: HTTP 403: ..."); "" or NULL clears it. Shown
 * by /readyz. Any thread; no secret may go into it.
 */
void credstore_set_waiting(struct credstore *, const char *reason);
/*
 * Makes every publish and every change of the waiting text write 1 to the
 * eventfd `fd` (-1: none), so one poll() can watch the store (the keeper
 * forwards both to the network side). Before any publisher runs.
 */
void credstore_set_notify(struct credstore *, int fd);
/* Copies the waiting text into buf ("" when there is none). Any thread. */
void credstore_waiting(struct credstore *, char *buf, size_t len);

#endif /* TCS_CREDSTORE_H */
