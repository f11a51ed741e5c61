/*
 * config.h: the daemon's one immutable, validated configuration.
 *
 * Every setting is an environment variable (the Go signer's names kept
 * unchanged: PORT, CA_CERT_PATH, CA_KEY_PATH, TLS_CERT_PATH, TLS_KEY_PATH,
 * TALOS_TOKEN) and, except secrets, also a flag (--lower-case-with-dashes);
 * a flag wins over the environment, which wins over the default. One table
 * in config.c describes every setting; --help is printed from it.
 *
 * Built once by main before any thread starts, then read-only. The only
 * secret here, the token given in TALOS_TOKEN, is copied, wiped from the
 * environment, and wiped again by config_free().
 */
#ifndef TCS_CONFIG_H
#define TCS_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"
#include "signer.h"

struct config {
	int             port;
	char           *listen_address; /* "" = every address */
	char           *ca_cert_path, *ca_key_path;
	char           *tls_cert_path, *tls_key_path;
	char           *token; /* TALOS_TOKEN (secret) */
	char           *token_path;
	char           *accepted_cas_path;
	char           *accepted_tokens_path;
	int64_t         cert_ttl_ms, cert_backdate_ms;
	enum log_format log_format;
	enum log_level  log_level;
	int64_t         max_connection_age_ms;
	int64_t         shutdown_grace_ms;
	int             grpc_threads;
	size_t          max_request_bytes;

	/* Front door (frontdoor.c, h2guard.c): admission and HTTP/2 limits. */
	int     max_connections, max_connections_per_source;
	int64_t handshake_timeout_ms, first_request_timeout_ms;
	size_t  h2_max_header_block, h2_max_bytes_before_request;
	int     h2_max_open_streams, h2_max_rst_per_sec;

	/* Kubernetes mode. */
	char *ca_secret, *tls_secret;
	char *kube_api_url, *kube_token_path, *kube_ca_path;
	char *kube_namespace;
	char *pod_name, *pod_namespace, *pod_uid;

	/* Operability and policy. */
	char                *http_addr;
	int64_t              health_probe_interval_ms, health_probe_timeout_ms;
	int64_t              health_probe_fail_after_ms;
	struct signer_policy policy;
	double               rate_limit_rps;
	int                  rate_limit_burst;
	int                  rate_limit_table;
};

/*
 * Fills `cfg` from defaults, the environment and argv (flags start at
 * argv[first]). Returns 0, or -1 with a one-line reason naming the setting
 * in err. Unknown flags and positional arguments are errors.
 */
int config_load(struct config *cfg, int argc, char **argv, int first, char *err, size_t errlen);
/* Frees every string; wipes the token. */
void config_free(struct config *);
/* Prints the settings table (for --help). */
void config_usage(FILE *);
/* 1 if the configuration reads credentials from Kubernetes Secrets. */
int config_kube_mode(const struct config *);

#endif /* TCS_CONFIG_H */
