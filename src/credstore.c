/*
 * credstore.c: refcounted snapshot publication.
 *
 * Threads: any. The mutex guards only the `cur` pointer and its reference
 * increment, and the short "why nothing is served yet" text; builds and
 * frees happen outside it.
 */
#include "credstore.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "creds.h"

struct credstore {
	pthread_mutex_t      mtx;
	struct creds        *cur;
	atomic_uint_fast64_t gen;
	char                 waiting[CREDSTORE_WAITING_MAX];
};

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
}

void
credstore_waiting(struct credstore *cs, char *buf, size_t len)
{
	pthread_mutex_lock(&cs->mtx);
	snprintf(buf, len, "%s", cs->waiting);
	pthread_mutex_unlock(&cs->mtx);
}
