/*
 * credstore.c: refcounted snapshot publication.
 *
 * Threads: any. The mutex guards only the `cur` pointer and its reference
 * increment, and the short "why nothing is served yet" text; builds and
 * frees happen outside it.
 */
#include "credstore.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "creds.h"
#include "log.h"

struct credstore {
	pthread_mutex_t      mtx;
	struct creds        *cur;
	atomic_uint_fast64_t gen;
	char                 waiting[CREDSTORE_WAITING_MAX];
	int                  notify_fd; /* eventfd, or -1 */
};

/* Wakes whoever watches the store (the keeper's control loop). */
static void
notify(struct credstore *cs)
{
	uint64_t one = 1;

	if (cs->notify_fd >= 0 && write(cs->notify_fd, &one, sizeof(one)) == -1 && errno != EAGAIN)
		log_warn("credstore: eventfd write");
}

void
credstore_set_notify(struct credstore *cs, int fd)
{
	cs->notify_fd = fd;
}

struct credstore *
credstore_new(void)
{
	struct credstore *cs;

	if ((cs = calloc(1, sizeof(*cs))) == NULL)
		return NULL;
	if (pthread_mutex_init(&cs->mtx, NULL) != 0) {
		free(cs);
		return NULL;
	}
	atomic_init(&cs->gen, 0);
	cs->notify_fd = -1;
	return cs;
}

void
credstore_free(struct credstore *cs)
{
	if (cs == NULL)
		return;
	creds_release(cs->cur);
	pthread_mutex_destroy(&cs->mtx);
	free(cs);
}

uint64_t
credstore_publish(struct credstore *cs, struct creds *c)
{
	struct creds *old;
	uint64_t      gen;

	pthread_mutex_lock(&cs->mtx);
	gen = atomic_load(&cs->gen) + 1;
	c->gen = gen;
	old = cs->cur;
	cs->cur = c;
	atomic_store(&cs->gen, gen);
	pthread_mutex_unlock(&cs->mtx);
	creds_release(old);
	notify(cs);
	return gen;
}

struct creds *
credstore_acquire(struct credstore *cs)
{
	struct creds *c;

	pthread_mutex_lock(&cs->mtx);
	if ((c = cs->cur) != NULL)
		creds_ref(c);
	pthread_mutex_unlock(&cs->mtx);
	return c;
}

uint64_t
credstore_generation(struct credstore *cs)
{
	return atomic_load(&cs->gen);
}

void
credstore_set_waiting(struct credstore *cs, const char *reason)
{
	pthread_mutex_lock(&cs->mtx);
	snprintf(cs->waiting, sizeof(cs->waiting), "%s", reason != NULL ? reason : "");
	pthread_mutex_unlock(&cs->mtx);
	notify(cs);
}

void
credstore_waiting(struct credstore *cs, char *buf, size_t len)
{
	pthread_mutex_lock(&cs->mtx);
	snprintf(buf, len, "%s", cs->waiting);
	pthread_mutex_unlock(&cs->mtx);
}
