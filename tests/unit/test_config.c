/*
 * test_config.c: defaults equal to the Go signer's, environment, flags
 * winning over the environment, errors naming the setting, the token kept out
 * of the environment (mirrors src/config.c).
 */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "config.h"
#include "pki.h"

static void
clean_env(void)
{
	const char *vars[] = { "PORT", "CA_CERT_PATH", "CA_KEY_PATH", "TLS_CERT_PATH",
		"TLS_KEY_PATH", "TALOS_TOKEN", "TOKEN_PATH", "CERT_TTL", "CERT_BACKDATE",
		"LOG_LEVEL", "LOG_FORMAT", "ALLOWED_KEY_TYPES", "RATE_LIMIT_RPS",
		"RATE_LIMIT_BURST", "REQUIRE_PEER_IP_SAN", NULL };
	int         i;

	for (i = 0; vars[i] != NULL; i++)
		unsetenv(vars[i]);
}

static int
load(struct config *c, char **argv, int argc, char *err)
{
	return config_load(c, argc, argv, 0, err, 256);
}

Test(config, defaults_match_the_go_signer, .init = clean_env)
{
	struct config c;
	char          err[256];

	setenv("TALOS_TOKEN", "abcdef.0123456789abcdef", 1);
	cr_assert_eq(load(&c, NULL, 0, err), 0, "%s", err);
	cr_assert_eq(c.port, 50001);
	cr_assert_str_eq(c.ca_cert_path, "/etc/talos-ca/tls.crt");
	cr_assert_str_eq(c.ca_key_path, "/etc/talos-ca/tls.key");
	cr_assert_str_eq(c.tls_cert_path, "/etc/talos-server-crt/tls.crt");
	cr_assert_str_eq(c.tls_key_path, "/etc/talos-server-crt/tls.key");
	cr_assert_str_eq(c.token, "abcdef.0123456789abcdef");
	cr_assert_null(getenv("TALOS_TOKEN"), "token left in the environment");
	cr_assert_eq(c.cert_ttl_ms, 86400000);
	cr_assert_eq(c.cert_backdate_ms, 60000);
	cr_assert_eq(c.log_format, LOG_JSON);
	cr_assert_eq(c.log_level, LOG_INFO);
	cr_assert_eq(c.policy.allowed_families, KEYFAM_ALL);
	cr_assert_eq(c.policy.require_peer_ip_san, 0);
	cr_assert_eq(config_kube_mode(&c), 0);
	config_free(&c);
}

Test(config, flags_win_over_environment, .init = clean_env)
{
	struct config c;
	char          err[256];
	char         *argv[] = { "--port", "6000", "--cert-ttl=1h", "--log-format", "text",
			"--require-peer-ip-san", "--allowed-key-types", "ed25519,rsa", "--token-path",
			"/t" };

	setenv("PORT", "5000", 1);
	setenv("CERT_TTL", "2h", 1);
	cr_assert_eq(load(&c, argv, 10, err), 0, "%s", err);
	cr_assert_eq(c.port, 6000);
	cr_assert_eq(c.cert_ttl_ms, 3600000);
	cr_assert_eq(c.log_format, LOG_TEXT);
	cr_assert_eq(c.policy.require_peer_ip_san, 1);
	cr_assert_eq(c.policy.allowed_families, KEYFAM_ED25519 | KEYFAM_RSA);
	cr_assert_str_eq(c.token_path, "/t");
	config_free(&c);
	/* The environment alone. */
	cr_assert_eq(load(&c, argv + 9, 0, err), -1, "no token at all must fail");
	setenv("TOKEN_PATH", "/x", 1);
	cr_assert_eq(load(&c, NULL, 0, err), 0, "%s", err);
	cr_assert_eq(c.port, 5000);
	cr_assert_eq(c.cert_ttl_ms, 7200000);
	config_free(&c);
}

Test(config, durations_take_days, .init = clean_env)
{
	struct config c;
	char          err[256];

	setenv("TALOS_TOKEN", "t", 1);
	setenv("CERT_TTL", "1d", 1);
	cr_assert_eq(load(&c, NULL, 0, err), 0, "%s", err);
	cr_assert_eq(c.cert_ttl_ms, 86400000LL);
	config_free(&c);
}

Test(config, errors_name_the_setting, .init = clean_env)
{
	struct {
		const char *env, *val, *needle;
	} cases[] = {
		{ "PORT", "70000", "PORT: invalid value" },
		{ "PORT", "abc", "PORT: invalid value" },
		{ "CERT_TTL", "1x",
		    "CERT_TTL: invalid value \"1x\" (from environment): want a "
		    "duration such as 1d, 24h" },
		{ "CERT_BACKDATE", "soon", "want a duration such as 1d" },
		{ "CERT_TTL", "30s", "CERT_TTL: must be at least 1m" },
		{ "LOG_LEVEL", "loud", "LOG_LEVEL: invalid value" },
		{ "ALLOWED_KEY_TYPES", "dsa", "ALLOWED_KEY_TYPES: invalid value" },
		{ "REQUIRE_PEER_IP_SAN", "maybe", "REQUIRE_PEER_IP_SAN: invalid value" },
	};
	struct config c;
	char          err[256];
	char         *argv[] = { "--no-such-flag" }, *argv2[] = { "positional" };
	size_t        i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		clean_env();
		setenv("TALOS_TOKEN", "t", 1);
		setenv(cases[i].env, cases[i].val, 1);
		cr_assert_eq(
		    load(&c, NULL, 0, err), -1, "%s=%s accepted", cases[i].env, cases[i].val);
		cr_assert(strstr(err, cases[i].needle) != NULL, "\"%s\" lacks \"%s\"", err,
		    cases[i].needle);
		config_free(&c);
	}
	clean_env();
	setenv("TALOS_TOKEN", "t", 1);
	cr_assert_eq(load(&c, argv, 1, err), -1);
	cr_assert(strstr(err, "unknown flag --no-such-flag") != NULL, "%s", err);
	config_free(&c);
	setenv("TALOS_TOKEN", "t", 1);
	cr_assert_eq(load(&c, argv2, 1, err), -1);
	config_free(&c);
	clean_env();
	cr_assert_eq(load(&c, NULL, 0, err), -1);
	cr_assert(strstr(err, "TALOS_TOKEN: required") != NULL, "%s", err);
	config_free(&c);
}

Test(config, token_never_in_errors, .init = clean_env)
{
	struct config c;
	char          err[256];

	/* TALOS_TOKEN has no flag: secrets never come from the command line. */
	char *argv[] = { "--talos-token", "secret-value" };
	setenv("TOKEN_PATH", "/x", 1);
	cr_assert_eq(load(&c, argv, 2, err), -1);
	cr_assert_null(strstr(err, "secret-value"));
	config_free(&c);
}
