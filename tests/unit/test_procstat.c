/*
 * test_procstat.c: the /proc parsers behind the process_* metrics (mirrors
 * src/procstat.c), on fixed text, and one live read of this process.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "procstat.h"

/* A real /proc/pid/stat line, with a command name holding ") (" and spaces. */
static const char STAT[] =
    "4242 (talos (csr) signer) S 1 4242 4242 0 -1 4194560 1800 0 0 0 "
    "250 150 0 0 20 0 5 0 1234500 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 "
    "4096 0 0 0 17 1 0 0 0 0 0\n";

Test(procstat, parses_cpu_rss_and_start_time)
{
	struct procstat ps;

	memset(&ps, 0, sizeof(ps));
	cr_assert_eq(procstat_parse_stat(STAT, 100, 4096, 1700000000LL, &ps), 0);
	cr_assert_float_eq(ps.cpu_seconds, 4.0, 1e-9);              /* (250 + 150) / 100 */
	cr_assert_float_eq(ps.resident_bytes, 2048.0 * 4096, 1e-9); /* rss pages */
	cr_assert_float_eq(ps.start_time, 1700000000.0 + 12345.0, 1e-6);
}

Test(procstat, refuses_malformed_text)
{
	struct procstat ps;

	cr_assert_eq(procstat_parse_stat("", 100, 4096, 1, &ps), -1);
	cr_assert_eq(procstat_parse_stat("4242 (x S 1 2 3", 100, 4096, 1, &ps), -1);
	cr_assert_eq(procstat_parse_stat("4242 (x) S 1 2 3\n", 100, 4096, 1, &ps), -1);
	cr_assert_eq(procstat_parse_stat(STAT, 0, 4096, 1, &ps), -1);
}

Test(procstat, finds_btime)
{
	cr_assert_eq(procstat_parse_btime("cpu  1 2 3\ncpu0 1 2 3\nintr 5\nbtime 1700000123\n"
					  "processes 9\n"),
	    1700000123LL);
	cr_assert_eq(procstat_parse_btime("cpu 1\nbtimex 5\n"), -1);
	cr_assert_eq(procstat_parse_btime(""), -1);
}

Test(procstat, reads_this_process)
{
	struct procstat ps;

	cr_assert_eq(procstat_read(&ps), 0);
	cr_assert_gt(ps.resident_bytes, 0);
	cr_assert_geq(ps.open_fds, 3); /* stdin, stdout, stderr at least */
	cr_assert_gt(ps.max_fds, 0);
	cr_assert(ps.start_time > 1.6e9 && ps.start_time <= (double)time(NULL) + 1);
}
