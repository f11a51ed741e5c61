/*
 * test_admit.c: global and per-source connection counts (mirrors
 * src/admit.c): IPv4 by address, IPv6 by /64, mapped addresses as IPv4.
 */
#include <netinet/in.h>

#include <arpa/inet.h>
#include <string.h>

#include <criterion/criterion.h>

#include "admit.h"

static struct admit_key
key4(const char *ip, char *text, size_t len)
{
	struct sockaddr_in s4;
	struct admit_key   k;

	memset(&s4, 0, sizeof(s4));
	s4.sin_family = AF_INET;
	cr_assert_eq(inet_pton(AF_INET, ip, &s4.sin_addr), 1);
	cr_assert_eq(admit_key_of((struct sockaddr *)&s4, sizeof(s4), &k, text, len), 0);
	return k;
}

static struct admit_key
key6(const char *ip, char *text, size_t len)
{
	struct sockaddr_in6 s6;
	struct admit_key    k;

	memset(&s6, 0, sizeof(s6));
	s6.sin6_family = AF_INET6;
	cr_assert_eq(inet_pton(AF_INET6, ip, &s6.sin6_addr), 1);
	cr_assert_eq(admit_key_of((struct sockaddr *)&s6, sizeof(s6), &k, text, len), 0);
	return k;
}

Test(admit, keys_and_text)
{
	char             t[48];
	struct admit_key a, b, c;

	a = key4("192.0.2.7", t, sizeof(t));
	cr_assert_str_eq(t, "192.0.2.7");
	b = key6("::ffff:192.0.2.7", t, sizeof(t));
	cr_assert_str_eq(t, "192.0.2.7", "a mapped address reads as IPv4");
	cr_assert_eq(memcmp(&a, &b, sizeof(a)), 0, "and counts as the same source");
	a = key6("2001:db8:1:2::1", t, sizeof(t));
	cr_assert_str_eq(t, "2001:db8:1:2::1");
	b = key6("2001:db8:1:2:ffff:eeee:dddd:cccc", t, sizeof(t));
	c = key6("2001:db8:1:3::1", t, sizeof(t));
	cr_assert_eq(memcmp(&a, &b, sizeof(a)), 0, "one /64 is one source");
	cr_assert_neq(memcmp(&a, &c, sizeof(a)), 0, "the next /64 is another");
}

Test(admit, per_source_then_global_cap)
{
	struct admit    *ad = admit_new(5, 2);
	struct admit_key a, b, c, d;
	char             t[48];

	cr_assert_not_null(ad);
	a = key4("10.0.0.1", t, sizeof(t));
	b = key4("10.0.0.2", t, sizeof(t));
	c = key6("fd00::1", t, sizeof(t));
	d = key6("fd00::2", t, sizeof(t));
	cr_assert_eq(admit_take(ad, &a), ADMIT_OK);
	cr_assert_eq(admit_take(ad, &a), ADMIT_OK);
	cr_assert_eq(admit_take(ad, &a), ADMIT_SOURCE_FULL);
	cr_assert_eq(admit_take(ad, &b), ADMIT_OK);
	cr_assert_eq(admit_take(ad, &c), ADMIT_OK);
	cr_assert_eq(admit_take(ad, &d), ADMIT_OK, "same /64 as c: its second");
	cr_assert_eq(admit_take(ad, &b), ADMIT_FULL, "5 open: the global cap");
	cr_assert_eq(admit_total(ad), 5);
	cr_assert_eq(admit_count(ad, &c), 2);
	admit_release(ad, &a);
	cr_assert_eq(admit_take(ad, &b), ADMIT_OK, "a slot freed");
	admit_release(ad, &c);
	admit_release(ad, &d);
	cr_assert_eq(admit_count(ad, &c), 0);
	admit_release(ad, &d); /* one too many: ignored */
	cr_assert_eq(admit_total(ad), 3);
	admit_free(ad);
}

Test(admit, non_ip_is_refused)
{
	struct sockaddr  sa;
	struct admit_key k;
	char             t[48];

	memset(&sa, 0, sizeof(sa));
	sa.sa_family = AF_UNIX;
	cr_assert_eq(admit_key_of(&sa, sizeof(sa), &k, t, sizeof(t)), -1);
}
