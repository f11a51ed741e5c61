/*
 * test_util.c: scrubbed buffers, base64, durations, token comparison.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "util.h"

Test(util, sbuf_bounds)
{
	struct sbuf b;
	int         i;

	sbuf_init(&b, 10);
	cr_assert_eq(sbuf_add(&b, "0123456789", 10), 0);
	cr_assert_eq(b.data[10], '\0');
	cr_assert_eq(sbuf_add(&b, "x", 1), -1);
	cr_assert_eq(errno, EFBIG);
	cr_assert_eq(b.len, 10);
	sbuf_free(&b);
	cr_assert_null(b.data);
	sbuf_init(&b, 1 << 20);
	for (i = 0; i < 1000; i++)
		cr_assert_eq(sbuf_add(&b, "abcdefgh", 8), 0);
	cr_assert_eq(b.len, 8000);
	cr_assert_eq(memcmp(b.data + 7992, "abcdefgh", 8), 0);
	sbuf_free(&b);
}

Test(util, base64)
{
	struct {
		const char *in, *out;
	} ok[] = {
		{ "", "" },
		{ "Zg==", "f" },
		{ "Zm8=", "fo" },
		{ "Zm9v", "foo" },
		{ "Zm9vYg", "foob" },
		{ "Zm9vYmE=", "fooba" },
		{ "Zm9vYmFy", "foobar" },
	};
	const char *bad[] = { "Zm9v!", "Z", "Zm9vY", "Zg=a", "====" };
	struct sbuf b;
	size_t      i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		sbuf_init(&b, 64);
		cr_assert_eq(util_base64_decode(ok[i].in, strlen(ok[i].in), &b), 0, "%s", ok[i].in);
		cr_assert_eq(b.len, strlen(ok[i].out));
		cr_assert_eq(memcmp(b.data, ok[i].out, b.len), 0);
		sbuf_free(&b);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sbuf_init(&b, 64);
		cr_assert_eq(util_base64_decode(bad[i], strlen(bad[i]), &b), -1, "%s", bad[i]);
		sbuf_free(&b);
	}
}

Test(util, durations)
{
	int64_t ms;
	char    buf[32];

	cr_assert_eq(util_parse_duration_ms("24h", &ms), 0);
	cr_assert_eq(ms, 86400000);
	cr_assert_eq(util_parse_duration_ms("1h30m", &ms), 0);
	cr_assert_eq(ms, 5400000);
	cr_assert_eq(util_parse_duration_ms("250ms", &ms), 0);
	cr_assert_eq(ms, 250);
	cr_assert_eq(util_parse_duration_ms("90", &ms), 0);
	cr_assert_eq(ms, 90000);
	cr_assert_eq(util_parse_duration_ms("1.5s", &ms), 0);
	cr_assert_eq(ms, 1500);
	cr_assert_eq(util_parse_duration_ms("", &ms), -1);
	cr_assert_eq(
	    util_parse_duration_ms("1d", &ms), 0, "days, as check --warn-within takes them");
	cr_assert_eq(ms, 86400000);
	cr_assert_eq(util_parse_duration_ms("7d12h", &ms), 0);
	cr_assert_eq(ms, (7 * 24 + 12) * 3600000LL);
	cr_assert_eq(util_parse_duration_ms("5w", &ms), -1);
	cr_assert_eq(util_parse_duration_ms("d", &ms), -1);
	cr_assert_eq(util_parse_duration_ms("-5s", &ms), -1);
	cr_assert_eq(util_parse_duration_ms("h", &ms), -1);
	util_format_duration(86400000, buf, sizeof(buf));
	cr_assert_str_eq(buf, "24h0m0s");
	util_format_duration(90000, buf, sizeof(buf));
	cr_assert_str_eq(buf, "1m30s");
}

Test(util, token_digest_and_compare)
{
	unsigned char d[32];

	cr_assert_eq(util_token_digest("  abc.def\n", 10, d), 0);
	cr_assert(util_token_ok("abc.def", 7, d));
	cr_assert_not(util_token_ok("abc.de", 6, d));
	cr_assert_not(util_token_ok("abc.def ", 8, d), "presented tokens are compared exactly");
	cr_assert_not(util_token_ok("", 0, d));
	cr_assert_eq(util_token_digest(" \n\t", 3, d), -1);
}

Test(util, read_file_bounded)
{
	char        path[] = "/tmp/tcs-util-XXXXXX";
	int         fd = mkstemp(path);
	struct sbuf b;

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "hello world", 11), 11);
	close(fd);
	cr_assert_eq(util_read_file(path, 64, &b), 0);
	cr_assert_eq(b.len, 11);
	cr_assert_str_eq((char *)b.data, "hello world");
	sbuf_free(&b);
	cr_assert_eq(util_read_file(path, 5, &b), -1);
	cr_assert_eq(errno, EFBIG);
	cr_assert_eq(util_read_file("/nonexistent/x", 5, &b), -1);
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(util_read_file("/tmp", 5, &b), -1, "a directory is not a file");
	unlink(path);
}
