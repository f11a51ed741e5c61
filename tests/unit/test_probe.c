/*
 * test_probe.c: the self-probe's verdicts (probe_state_*) as pure functions
 * of (state, now), the target address, and probe_once() against listeners
 * that refuse, or accept and never speak. A passing probe against the real
 * daemon is asserted by tests/ops and tests/abuse.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "probe.h"
#include "util.h"

Test(probe, fresh_state_is_alive_but_not_ready)
{
	struct probe_state s;
	char               why[160] = "";

	probe_state_init(&s);
	cr_assert_eq(probe_state_alive(&s, 1000000, 30000, why, sizeof(why)), 1);
	cr_assert_eq(probe_state_ready(&s, why, sizeof(why)), 0);
	cr_assert(strstr(why, "pending") != NULL, "%s", why);
}

Test(probe, liveness_fails_only_after_a_continuous_streak)
{
	struct probe_state s;
	char               why[160] = "";

	probe_state_init(&s);
	probe_state_record(&s, 1000, 10, 1, NULL);
	cr_assert_eq(probe_state_ready(&s, why, sizeof(why)), 1);
	/* Failures from t=5000 (the probe began at 5000 and took 3000 ms). */
	probe_state_record(&s, 8000, 3000, 0, "TLS handshake timed out");
	cr_assert_eq(probe_state_ready(&s, why, sizeof(why)), 0);
	cr_assert(strstr(why, "TLS handshake timed out") != NULL, "%s", why);
	cr_assert_eq(probe_state_alive(&s, 8000, 30000, why, sizeof(why)), 1);
	probe_state_record(&s, 20000, 3000, 0, "connect: timed out");
	cr_assert_eq(probe_state_alive(&s, 34999, 30000, why, sizeof(why)), 1, "29.999 s");
	cr_assert_eq(probe_state_alive(&s, 35000, 30000, why, sizeof(why)), 0, "30 s");
	cr_assert(strstr(why, "failing for 30 s") != NULL, "%s", why);
	cr_assert(strstr(why, "connect: timed out") != NULL, "the latest reason: %s", why);
	cr_assert_eq(s.fail_total, 2);
	cr_assert_eq(s.ok_total, 1);
}

Test(probe, one_pass_ends_the_streak)
{
	struct probe_state s;
	char               why[160];

	probe_state_init(&s);
	probe_state_record(&s, 1000, 100, 0, "x");
	probe_state_record(&s, 40000, 100, 1, NULL);
	cr_assert_eq(probe_state_alive(&s, 100000, 30000, why, sizeof(why)), 1);
	cr_assert_eq(probe_state_ready(&s, why, sizeof(why)), 1);
	cr_assert_eq(s.failing_since, -1);
	probe_state_record(&s, 100000, 100, 0, "y");
	cr_assert_eq(probe_state_alive(&s, 129000, 30000, why, sizeof(why)), 1,
	    "a new streak starts from zero");
}

Test(probe, waiting_for_credentials_is_not_deaf)
{
	struct probe_state s;
	char               why[160];

	probe_state_init(&s);
	probe_state_record(&s, 1000, 100, 0, "TLS handshake failed");
	probe_state_skip(&s, 20000); /* the snapshot went away: nothing to probe */
	cr_assert_eq(probe_state_alive(&s, 100000, 30000, why, sizeof(why)), 1);
	cr_assert_eq(s.skipped_total, 1);
}

Test(probe, target_replaces_wildcards_with_loopback)
{
	char h[64];

	probe_target("", h, sizeof(h));
	cr_assert_str_eq(h, "127.0.0.1");
	probe_target(NULL, h, sizeof(h));
	cr_assert_str_eq(h, "127.0.0.1");
	probe_target("0.0.0.0", h, sizeof(h));
	cr_assert_str_eq(h, "127.0.0.1");
	probe_target("::", h, sizeof(h));
	cr_assert_str_eq(h, "::1");
	probe_target("10.1.2.3,::1", h, sizeof(h));
	cr_assert_str_eq(h, "10.1.2.3");
	probe_target("fd00::7, 10.0.0.1", h, sizeof(h));
	cr_assert_str_eq(h, "fd00::7");
}

/* A loopback listener on a free port; returns its fd and sets *port. */
static int
listener(int *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t          len = sizeof(sin);
	int                fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(fd, 8), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

Test(probe, refused_connection_fails_at_once)
{
	char    why[128];
	int     port, fd = listener(&port);
	int64_t t0;

	close(fd); /* nothing listens there now */
	t0 = util_mono_ms();
	cr_assert_eq(probe_once("127.0.0.1", port, 2000, why, sizeof(why)), -1);
	cr_assert(strstr(why, "connect") != NULL, "%s", why);
	cr_assert_lt(util_mono_ms() - t0, 1000);
}

/* The deaf listener of the issue: the kernel accepts, nobody speaks TLS. */
Test(probe, silent_listener_times_out_within_the_deadline)
{
	char    why[128];
	int     port, fd = listener(&port);
	int64_t t0 = util_mono_ms(), took;

	cr_assert_eq(probe_once("127.0.0.1", port, 300, why, sizeof(why)), -1);
	took = util_mono_ms() - t0;
	cr_assert(strstr(why, "TLS handshake timed out") != NULL, "%s", why);
	cr_assert_geq(took, 290);
	cr_assert_lt(took, 2000);
	close(fd);
}

Test(probe, not_an_address)
{
	char why[128];

	cr_assert_eq(probe_once("localhost", 1, 100, why, sizeof(why)), -1);
	cr_assert(strstr(why, "not an IP address") != NULL, "%s", why);
}
