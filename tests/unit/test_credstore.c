/*
 * test_credstore.c: publish/acquire/generation, and readers racing a
 * publisher (run under ThreadSanitizer by `make test`).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include <criterion/criterion.h>

#include "creds.h"
#include "credstore.h"
#include "testutil.h"

Test(credstore, publish_and_acquire)
{
	struct credstore *cs = credstore_new();
	struct creds     *a = tu_creds(TU_ED25519, NULL), *b = tu_creds(TU_P256, NULL), *got;

	cr_assert_null(credstore_acquire(cs));
	cr_assert_eq(credstore_generation(cs), 0);
	cr_assert_eq(credstore_publish(cs, a), 1);
	got = credstore_acquire(cs);
	cr_assert_eq(got, a);
	cr_assert_eq(got->gen, 1);
	/* The reader keeps the old snapshot alive across a publish. */
	cr_assert_eq(credstore_publish(cs, b), 2);
	cr_assert_eq(atomic_load(&a->refs), 1);
	cr_assert_eq(got->ca_type, KEY_ED25519);
	creds_release(got);
	got = credstore_acquire(cs);
	cr_assert_eq(got, b);
	creds_release(got);
	credstore_free(cs);
}

struct race {
	struct credstore *cs;
	atomic_int        stop;
	atomic_long       reads;
};

static void *
reader(void *arg)
{
	struct race  *r = arg;
	struct creds *c;
	uint64_t      last = 0;

	while (!atomic_load(&r->stop)) {
		if ((c = credstore_acquire(r->cs)) == NULL)
			continue;
		cr_assert_geq(c->gen, last, "generation went backwards");
		last = c->gen;
		cr_assert_gt(c->ca_bundle_len, 0);
		cr_assert_not_null(c->ca_key);
		creds_release(c);
		atomic_fetch_add(&r->reads, 1);
		sched_yield();
	}
	return NULL;
}

/*
 * The timeout is generous: under make test-asan (fast_unwind_on_malloc=0) on
 * a shared 2-core machine at load 30, the 101 snapshot builds took 97-126 s.
 */
Test(credstore, readers_race_a_publisher, .timeout = 400)
{
	struct race        r = { .cs = credstore_new() };
	struct tu_pki      pki;
	struct creds_input in;
	struct creds      *c;
	pthread_t          t[4];
	char               err[256];
	int                i;

	/* Each snapshot is published once, as sources do. */
	tu_pki_make(&pki, TU_ED25519);
	tu_pki_input(&pki, &in);
	credstore_publish(r.cs, creds_build(&in, (long long)time(NULL), err, sizeof(err)));
	for (i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, reader, &r);
	for (i = 0; i < 100; i++) {
		c = creds_build(&in, (long long)time(NULL), err, sizeof(err));
		cr_assert_not_null(c, "%s", err);
		credstore_publish(r.cs, c);
	}
	atomic_store(&r.stop, 1);
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	cr_assert_eq(credstore_generation(r.cs), 101);
	cr_assert_gt(atomic_load(&r.reads), 0);
	c = credstore_acquire(r.cs);
	cr_assert_eq(atomic_load(&c->refs), 2, "leaked or lost reference");
	creds_release(c);
	credstore_free(r.cs);
	creds_input_free(&in);
	tu_pki_free(&pki);
}
