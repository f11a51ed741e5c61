/*
 * test_cli.c: the pure helpers of the request and check subcommands
 * (mirrors src/cli.c). The subcommands themselves run against the daemon in
 * tests/ops/run.sh.
 */
#include <string.h>

#include <criterion/criterion.h>

#include "cli.h"

Test(cli, talos_token_shape)
{
	cr_assert(cli_token_looks_valid("abcdef.0123456789abcdef", 23));
	cr_assert(cli_token_looks_valid("abcdef.0123456789abcdef\n", 24), "trailing newline");
	cr_assert(cli_token_looks_valid("a1b2c3.zzzzzzzzzzzzzzzz  \n", 26));
	cr_assert_not(cli_token_looks_valid("ABCDEF.0123456789abcdef", 23), "upper case");
	cr_assert_not(cli_token_looks_valid("abcdef-0123456789abcdef", 23), "no dot");
	cr_assert_not(cli_token_looks_valid("abcde.0123456789abcdefg", 23), "dot misplaced");
	cr_assert_not(cli_token_looks_valid("abcdef.0123456789abcde", 22), "too short");
	cr_assert_not(cli_token_looks_valid("abcdef.0123456789abcdef0", 24), "too long");
	cr_assert_not(cli_token_looks_valid(" abcdef.0123456789abcde", 23), "leading space");
	cr_assert_not(cli_token_looks_valid("abcdef.0123456789abcd_f", 23), "underscore");
	cr_assert_not(cli_token_looks_valid("", 0));
}

Test(cli, endpoint_forms)
{
	char ip[64];
	int  port;

	cr_assert_eq(cli_parse_endpoint("10.0.0.1", ip, sizeof(ip), &port), 0);
	cr_assert_str_eq(ip, "10.0.0.1");
	cr_assert_eq(port, 50001);
	cr_assert_eq(cli_parse_endpoint("127.0.0.1:1234", ip, sizeof(ip), &port), 0);
	cr_assert_str_eq(ip, "127.0.0.1");
	cr_assert_eq(port, 1234);
	cr_assert_eq(cli_parse_endpoint("::1", ip, sizeof(ip), &port), 0);
	cr_assert_str_eq(ip, "::1");
	cr_assert_eq(port, 50001);
	cr_assert_eq(cli_parse_endpoint("[fd00::5]:50002", ip, sizeof(ip), &port), 0);
	cr_assert_str_eq(ip, "fd00::5");
	cr_assert_eq(port, 50002);
	cr_assert_eq(cli_parse_endpoint("[fd00::5]", ip, sizeof(ip), &port), 0);
	cr_assert_eq(port, 50001);
	/* Workers dial IP literals only. */
	cr_assert_eq(cli_parse_endpoint("signer.example.org", ip, sizeof(ip), &port), -1);
	cr_assert_eq(cli_parse_endpoint("signer:50001", ip, sizeof(ip), &port), -1);
	cr_assert_eq(cli_parse_endpoint("10.0.0.1:0", ip, sizeof(ip), &port), -1);
	cr_assert_eq(cli_parse_endpoint("10.0.0.1:70000", ip, sizeof(ip), &port), -1);
	cr_assert_eq(cli_parse_endpoint("10.0.0.1:", ip, sizeof(ip), &port), -1);
	cr_assert_eq(cli_parse_endpoint("[::1]x", ip, sizeof(ip), &port), -1);
}
