/*
 * test_ratelimit.c: per-address token buckets and their bounded table
 * (mirrors src/ratelimit.c). Time is given explicitly with
 * ratelimit_allow_at(), so nothing here sleeps.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "ratelimit.h"

Test(ratelimit, bad_parameters_are_refused)
{
	cr_assert_null(ratelimit_new(0, 5, 64));
	cr_assert_null(ratelimit_new(-1, 5, 64));
	cr_assert_null(ratelimit_new(1, 0, 64));
}

Test(ratelimit, burst_then_refusal_then_refill)
{
	struct ratelimit *rl = ratelimit_new(2.0, 5, 64);
	int               i;

	cr_assert_not_null(rl);
	for (i = 0; i < 5; i++)
		cr_assert(ratelimit_allow_at(rl, "10.0.0.1", 1000), "request %d of the burst", i);
	cr_assert_not(ratelimit_allow_at(rl, "10.0.0.1", 1000), "the 6th request must be limited");
	cr_assert_not(ratelimit_allow_at(rl, "10.0.0.1", 1400), "0.8 token after 400 ms");
	cr_assert(ratelimit_allow_at(rl, "10.0.0.1", 1500), "one token after 500 ms at 2 rps");
	cr_assert_not(ratelimit_allow_at(rl, "10.0.0.1", 1500));
	/* A long pause refills to the burst, never beyond. */
	for (i = 0; i < 5; i++)
		cr_assert(ratelimit_allow_at(rl, "10.0.0.1", 100000));
	cr_assert_not(ratelimit_allow_at(rl, "10.0.0.1", 100000));
	ratelimit_free(rl);
}

Test(ratelimit, addresses_are_independent)
{
	struct ratelimit *rl = ratelimit_new(1.0, 3, 64);
	int               i;

	for (i = 0; i < 3; i++)
		cr_assert(ratelimit_allow_at(rl, "127.0.0.2", 0));
	cr_assert_not(ratelimit_allow_at(rl, "127.0.0.2", 0));
	/* Another source is still served, IPv4 or IPv6. */
	cr_assert(ratelimit_allow_at(rl, "127.0.0.3", 0));
	cr_assert(ratelimit_allow_at(rl, "::1", 0));
	cr_assert(ratelimit_allow_at(rl, "fd00::1", 0));
	cr_assert_not(ratelimit_allow_at(rl, "127.0.0.2", 0), "the limited one stays limited");
	ratelimit_free(rl);
}

Test(ratelimit, sub_one_rps_and_burst_of_one)
{
	struct ratelimit *rl = ratelimit_new(0.1, 1, 8);

	cr_assert(ratelimit_allow_at(rl, "192.0.2.1", 0));
	cr_assert_not(ratelimit_allow_at(rl, "192.0.2.1", 9000));
	cr_assert(ratelimit_allow_at(rl, "192.0.2.1", 10000));
	ratelimit_free(rl);
}

Test(ratelimit, memory_is_bounded_under_many_addresses)
{
	struct ratelimit *rl = ratelimit_new(1.0, 2, 1024);
	size_t            before = ratelimit_footprint(rl);
	char              a[64];
	int               i, allowed = 0;

	cr_assert_gt(before, 0);
	cr_assert_lt(before, 1024 * 1024, "1024 slots must not cost a megabyte");
	for (i = 0; i < 200000; i++) {
		snprintf(a, sizeof(a), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
		allowed += ratelimit_allow_at(rl, a, 5000);
	}
	cr_assert_eq(ratelimit_footprint(rl), before, "the table must not grow");
	/* Every new address starts with a full bucket: a flood never refuses strangers. */
	cr_assert_eq(allowed, 200000);
	ratelimit_free(rl);
}

Test(ratelimit, a_flood_evicts_quiet_addresses_towards_serving)
{
	struct ratelimit *rl = ratelimit_new(0.001, 1, 16);
	char              a[64];
	int               i;

	cr_assert(ratelimit_allow_at(rl, "198.51.100.7", 0));
	cr_assert_not(ratelimit_allow_at(rl, "198.51.100.7", 1));
	/* Many other sources, seen later, push the quiet one out of the small table. */
	for (i = 0; i < 5000; i++) {
		snprintf(a, sizeof(a), "203.0.113.%d-%d", i % 250, i);
		ratelimit_allow_at(rl, a, 1000 + i);
	}
	cr_assert(ratelimit_allow_at(rl, "198.51.100.7", 10000),
	    "a forgotten address gets a fresh bucket (errs on serving)");
	ratelimit_free(rl);
}

Test(ratelimit, recently_seen_addresses_survive_a_flood_in_a_big_table)
{
	struct ratelimit *rl = ratelimit_new(0.001, 1, 4096);
	char              a[64];
	int               i;

	cr_assert(ratelimit_allow_at(rl, "198.51.100.8", 0));
	/* 100 strangers cannot evict it from 4096 slots (LRU within 8-way sets). */
	for (i = 0; i < 100; i++) {
		snprintf(a, sizeof(a), "203.0.113.%d", i);
		ratelimit_allow_at(rl, a, 10 + i);
	}
	cr_assert_not(ratelimit_allow_at(rl, "198.51.100.8", 500), "still limited");
	ratelimit_free(rl);
}

struct hammer {
	struct ratelimit *rl;
	atomic_int       *allowed;
};

static void *
hammer(void *arg)
{
	struct hammer *h = arg;
	int            i;

	for (i = 0; i < 5000; i++)
		if (ratelimit_allow_at(h->rl, "127.0.0.9", 42))
			atomic_fetch_add(h->allowed, 1);
	return NULL;
}

Test(ratelimit, concurrent_callers_share_one_bucket_exactly)
{
	struct ratelimit *rl = ratelimit_new(1.0, 50, 64);
	atomic_int        allowed = 0;
	struct hammer     h = { rl, &allowed };
	pthread_t         t[4];
	int               i;

	for (i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, hammer, &h);
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	cr_assert_eq(atomic_load(&allowed), 50, "exactly the burst at one instant, got %d",
	    atomic_load(&allowed));
	ratelimit_free(rl);
}
