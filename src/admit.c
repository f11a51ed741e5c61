/*
 * admit.c: global and per-source connection counts (see admit.h).
 *
 * DESIGN
 * A chained hash table keyed by the 16-byte source key, with a per-table
 * random seed so that an attacker cannot aim many sources at one chain.
 * Threads: one owner thread (the front door's); no locks.
 * Owns: the buckets and one entry per source with an open connection.
 */
#include "admit.h"

#include <netinet/in.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#define ADMIT_BUCKETS 4096 /* power of two */

struct entry {
	struct admit_key key;
	int              count;
	struct entry    *next;
};

struct admit {
	int           max_total, max_per_source;
	int           total;
	uint64_t      seed;
	struct entry *b[ADMIT_BUCKETS];
};

struct admit *
admit_new(int max_total, int max_per_source)
{
	struct admit *a;

	if ((a = calloc(1, sizeof(*a))) == NULL)
		return NULL;
	a->max_total = max_total;
	a->max_per_source = max_per_source;
	if (RAND_bytes((unsigned char *)&a->seed, sizeof(a->seed)) != 1)
		a->seed = (uint64_t)(uintptr_t)a ^ 0x9e3779b97f4a7c15ull;
	return a;
}

void
admit_free(struct admit *a)
{
	struct entry *e, *n;
	size_t        i;

	if (a == NULL)
		return;
	for (i = 0; i < ADMIT_BUCKETS; i++)
		for (e = a->b[i]; e != NULL; e = n) {
			n = e->next;
			free(e);
		}
	free(a);
}

int
admit_key_of(
    const struct sockaddr *sa, socklen_t len, struct admit_key *k, char *text, size_t textlen)
{
	static const uint8_t       mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	const struct sockaddr_in  *s4;
	const struct sockaddr_in6 *s6;

	memset(k, 0, sizeof(*k));
	if (textlen > 0)
		text[0] = '\0';
	if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(*s4)) {
		s4 = (const struct sockaddr_in *)(const void *)sa;
		memcpy(k->b, mapped, sizeof(mapped));
		memcpy(k->b + 12, &s4->sin_addr, 4);
		if (inet_ntop(AF_INET, &s4->sin_addr, text, (socklen_t)textlen) == NULL)
			return -1;
		return 0;
	}
	if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(*s6)) {
		s6 = (const struct sockaddr_in6 *)(const void *)sa;
		if (memcmp(s6->sin6_addr.s6_addr, mapped, sizeof(mapped)) == 0) {
			memcpy(k->b, s6->sin6_addr.s6_addr, 16);
			if (inet_ntop(AF_INET, s6->sin6_addr.s6_addr + 12, text,
				(socklen_t)textlen) == NULL)
				return -1;
			return 0;
		}
		memcpy(k->b, s6->sin6_addr.s6_addr, 8); /* the /64 */
		if (inet_ntop(AF_INET6, &s6->sin6_addr, text, (socklen_t)textlen) == NULL)
			return -1;
		return 0;
	}
	return -1;
}

static size_t
bucket(const struct admit *a, const struct admit_key *k)
{
	uint64_t h = a->seed, w;
	int      i;

	for (i = 0; i < 16; i += 8) {
		memcpy(&w, k->b + i, 8);
		h ^= w;
		h *= 0xff51afd7ed558ccdull;
		h ^= h >> 33;
	}
	return (size_t)(h & (ADMIT_BUCKETS - 1));
}

static struct entry *
find(const struct admit *a, const struct admit_key *k, size_t bi)
{
	struct entry *e;

	for (e = a->b[bi]; e != NULL; e = e->next)
		if (memcmp(e->key.b, k->b, sizeof(k->b)) == 0)
			return e;
	return NULL;
}

enum admit_result
admit_take(struct admit *a, const struct admit_key *k)
{
	size_t        bi = bucket(a, k);
	struct entry *e;

	if (a->total >= a->max_total)
		return ADMIT_FULL;
	if ((e = find(a, k, bi)) == NULL) {
		if ((e = calloc(1, sizeof(*e))) == NULL)
			return ADMIT_FULL; /* out of memory: refuse, never crash */
		e->key = *k;
		e->next = a->b[bi];
		a->b[bi] = e;
	}
	if (e->count >= a->max_per_source)
		return ADMIT_SOURCE_FULL;
	e->count++;
	a->total++;
	return ADMIT_OK;
}

void
admit_release(struct admit *a, const struct admit_key *k)
{
	size_t         bi = bucket(a, k);
	struct entry **pp, *e;

	for (pp = &a->b[bi]; (e = *pp) != NULL; pp = &e->next)
		if (memcmp(e->key.b, k->b, sizeof(k->b)) == 0)
			break;
	if (e == NULL || e->count == 0)
		return;
	e->count--;
	a->total--;
	if (e->count == 0) {
		*pp = e->next;
		free(e);
	}
}

int
admit_total(const struct admit *a)
{
	return a->total;
}

int
admit_count(const struct admit *a, const struct admit_key *k)
{
	const struct entry *e = find(a, k, bucket(a, k));

	return e != NULL ? e->count : 0;
}
