/*
 * ratelimit.c: set-associative table of token buckets.
 *
 * Threads: any; one mutex per set keeps contention low.
 */
#include "ratelimit.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define RL_WAYS   8
#define RL_KEYLEN 48

struct bucket {
	char    key[RL_KEYLEN];
	double  tokens;
	int64_t last_ms;
	int     used;
};

struct rlset {
	pthread_mutex_t mtx;
	struct bucket   b[RL_WAYS];
};

struct ratelimit {
	double        rps;
	double        burst;
	size_t        nsets;
	struct rlset *sets;
	uint64_t      seed;
};

struct ratelimit *
ratelimit_new(double rps, int burst, size_t slots)
{
	struct ratelimit *rl;
	size_t            i;

	if (rps <= 0 || burst < 1 || (rl = calloc(1, sizeof(*rl))) == NULL)
		return NULL;
	rl->rps = rps;
	rl->burst = burst;
	rl->nsets = (slots + RL_WAYS - 1) / RL_WAYS;
	if (rl->nsets == 0)
		rl->nsets = 1;
	if ((rl->sets = calloc(rl->nsets, sizeof(*rl->sets))) == NULL) {
		free(rl);
		return NULL;
	}
	for (i = 0; i < rl->nsets; i++)
		pthread_mutex_init(&rl->sets[i].mtx, NULL);
	rl->seed = (uint64_t)util_mono_ms() * 0x9e3779b97f4a7c15ULL;
	return rl;
}

void
ratelimit_free(struct ratelimit *rl)
{
	size_t i;

	if (rl == NULL)
		return;
	for (i = 0; i < rl->nsets; i++)
		pthread_mutex_destroy(&rl->sets[i].mtx);
	free(rl->sets);
	free(rl);
}

size_t
ratelimit_footprint(const struct ratelimit *rl)
{
	return sizeof(*rl) + rl->nsets * sizeof(*rl->sets);
}

/* FNV-1a, seeded per process so sets cannot be targeted offline. */
static uint64_t
hash(const struct ratelimit *rl, const char *s)
{
	uint64_t h = 1469598103934665603ULL ^ rl->seed;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h ^ (h >> 29);
}

int
ratelimit_allow_at(struct ratelimit *rl, const char *addr, int64_t now)
{
	struct rlset  *set = &rl->sets[hash(rl, addr) % rl->nsets];
	struct bucket *b = NULL, *victim = NULL;
	int            i, ok;

	pthread_mutex_lock(&set->mtx);
	for (i = 0; i < RL_WAYS; i++) {
		if (set->b[i].used && strncmp(set->b[i].key, addr, RL_KEYLEN - 1) == 0) {
			b = &set->b[i];
			break;
		}
		if (victim == NULL || !set->b[i].used ||
		    (victim->used && set->b[i].last_ms < victim->last_ms))
			victim = &set->b[i];
	}
	if (b == NULL) {
		b = victim;
		memset(b, 0, sizeof(*b));
		strncpy(b->key, addr, RL_KEYLEN - 1);
		b->used = 1;
		b->tokens = rl->burst;
		b->last_ms = now;
	}
	if (now > b->last_ms) {
		b->tokens += (double)(now - b->last_ms) / 1000.0 * rl->rps;
		if (b->tokens > rl->burst)
			b->tokens = rl->burst;
		b->last_ms = now;
	}
	ok = b->tokens >= 1.0;
	if (ok)
		b->tokens -= 1.0;
	pthread_mutex_unlock(&set->mtx);
	return ok;
}

int
ratelimit_allow(struct ratelimit *rl, const char *addr)
{
	return ratelimit_allow_at(rl, addr, util_mono_ms());
}
