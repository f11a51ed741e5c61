/*
 * config.c: settings table, environment and flag parsing, validation.
 *
 * Threads: main only, before any other thread exists.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "pki.h"
#include "util.h"

enum setting_type {
	ST_STR,
	ST_PORT,
	ST_INT,
	ST_SIZE,
	ST_DURATION,
	ST_BOOL,
	ST_DOUBLE,
	ST_LOGLEVEL,
	ST_LOGFORMAT,
	ST_KEYTYPES,
	ST__MAX
};

struct setting {
	const char       *env;
	const char       *flag; /* NULL: environment only */
	enum setting_type type;
	size_t            off;
	const char       *def;
	const char       *help;
};

#define OFF(f) offsetof(struct config, f)

static const struct setting settings[] = {
	{ "PORT", "port", ST_PORT, OFF(port), "50001", "gRPC (TLS) port" },
	{ "LISTEN_ADDRESS", "listen-address", ST_STR, OFF(listen_address), "",
	    "comma-separated IP addresses to bind; empty binds every IPv4 and IPv6 address" },
	{ "CA_CERT_PATH", "ca-cert-path", ST_STR, OFF(ca_cert_path), "/etc/talos-ca/tls.crt",
	    "Talos machine CA certificate (PEM)" },
	{ "CA_KEY_PATH", "ca-key-path", ST_STR, OFF(ca_key_path), "/etc/talos-ca/tls.key",
	    "Talos machine CA key (PEM; the ED25519 PRIVATE KEY label is accepted)" },
	{ "TLS_CERT_PATH", "tls-cert-path", ST_STR, OFF(tls_cert_path),
	    "/etc/talos-server-crt/tls.crt",
	    "serving certificate presented to workers (PEM, chain allowed)" },
	{ "TLS_KEY_PATH", "tls-key-path", ST_STR, OFF(tls_key_path),
	    "/etc/talos-server-crt/tls.key", "serving certificate key (PEM)" },
	{ "TALOS_TOKEN", NULL, ST_STR, OFF(token), "",
	    "machine token (secret: environment only; required unless TOKEN_PATH or CA_SECRET)" },
	{ "TOKEN_PATH", "token-path", ST_STR, OFF(token_path), "",
	    "file holding the machine token, re-read when it changes; wins over TALOS_TOKEN" },
	{ "ACCEPTED_CAS_PATH", "accepted-cas-path", ST_STR, OFF(accepted_cas_path), "",
	    "extra accepted CA certificates (PEM), returned before the issuing CA" },
	{ "ACCEPTED_TOKENS_PATH", "accepted-tokens-path", ST_STR, OFF(accepted_tokens_path), "",
	    "file of extra accepted machine tokens, one per line (for a token migration), "
	    "re-read when it changes" },
	{ "CERT_TTL", "cert-ttl", ST_DURATION, OFF(cert_ttl_ms), "24h",
	    "lifetime of issued certificates" },
	{ "CERT_BACKDATE", "cert-backdate", ST_DURATION, OFF(cert_backdate_ms), "1m",
	    "notBefore backdating, for clock skew" },
	{ "LOG_FORMAT", "log-format", ST_LOGFORMAT, OFF(log_format), "json", "json or text" },
	{ "LOG_LEVEL", "log-level", ST_LOGLEVEL, OFF(log_level), "info",
	    "debug, info, warn or error" },
	{ "MAX_CONNECTION_AGE", "max-connection-age", ST_DURATION, OFF(max_connection_age_ms), "1h",
	    "close client connections after this age, so they pick up a renewed serving "
	    "certificate" },
	{ "MAX_CONNECTIONS", "max-connections", ST_INT, OFF(max_connections), "1024",
	    "front door: client connections open at once; when full, the oldest that has not "
	    "asked for anything yet makes room" },
	{ "MAX_CONNECTIONS_PER_SOURCE", "max-connections-per-source", ST_INT,
	    OFF(max_connections_per_source), "128",
	    "front door: connections open at once from one IPv4 address or one IPv6 /64" },
	{ "HANDSHAKE_TIMEOUT", "handshake-timeout", ST_DURATION, OFF(handshake_timeout_ms), "10s",
	    "front door: time a client has to finish its TLS handshake" },
	{ "FIRST_REQUEST_TIMEOUT", "first-request-timeout", ST_DURATION,
	    OFF(first_request_timeout_ms), "10s",
	    "front door: time from accept to the first complete request on a connection" },
	{ "H2_MAX_HEADER_BLOCK", "h2-max-header-block", ST_SIZE, OFF(h2_max_header_block), "16384",
	    "front door: bytes of one request's HTTP/2 header block (HEADERS + CONTINUATION)" },
	{ "H2_MAX_OPEN_STREAMS", "h2-max-open-streams", ST_INT, OFF(h2_max_open_streams), "100",
	    "front door: streams one connection holds open at once (at most 128)" },
	{ "H2_MAX_RST_PER_SECOND", "h2-max-rst-per-second", ST_INT, OFF(h2_max_rst_per_sec), "100",
	    "front door: RST_STREAM frames one connection may send in a second" },
	{ "H2_MAX_BYTES_BEFORE_REQUEST", "h2-max-bytes-before-request", ST_SIZE,
	    OFF(h2_max_bytes_before_request), "131072",
	    "front door: bytes a connection may send before its first complete request" },
	{ "SHUTDOWN_GRACE", "shutdown-grace", ST_DURATION, OFF(shutdown_grace_ms), "5s",
	    "on SIGTERM, time for the drain (calls in flight answered) before the rest are "
	    "cancelled" },
	{ "GRPC_THREADS", "grpc-threads", ST_INT, OFF(grpc_threads), "0",
	    "completion-queue threads; 0 means one per CPU core" },
	{ "MAX_REQUEST_BYTES", "max-request-bytes", ST_SIZE, OFF(max_request_bytes), "65536",
	    "largest accepted gRPC request message" },
	{ "CA_SECRET", "ca-secret", ST_STR, OFF(ca_secret), "",
	    "Kubernetes mode: CA Secret as name or namespace/name (tls.crt, tls.key, token, "
	    "accepted-cas.crt, accepted-tokens)" },
	{ "TLS_SECRET", "tls-secret", ST_STR, OFF(tls_secret), "",
	    "Kubernetes mode: serving-certificate Secret as name or namespace/name (tls.crt, "
	    "tls.key)" },
	{ "KUBE_API_URL", "kube-api-url", ST_STR, OFF(kube_api_url), "",
	    "API server URL; default https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT" },
	{ "KUBE_TOKEN_PATH", "kube-token-path", ST_STR, OFF(kube_token_path),
	    "/var/run/secrets/kubernetes.io/serviceaccount/token", "service-account token file" },
	{ "KUBE_CA_PATH", "kube-ca-path", ST_STR, OFF(kube_ca_path),
	    "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt", "API server CA bundle" },
	{ "KUBE_NAMESPACE", "kube-namespace", ST_STR, OFF(kube_namespace), "",
	    "namespace of Secrets named without one; default: the service account's namespace" },
	{ "POD_NAME", NULL, ST_STR, OFF(pod_name), "", "own Pod name (downward API), for Events" },
	{ "POD_NAMESPACE", NULL, ST_STR, OFF(pod_namespace), "",
	    "own Pod namespace (downward API)" },
	{ "POD_UID", NULL, ST_STR, OFF(pod_uid), "", "own Pod UID (downward API)" },
	{ "HTTP_ADDR", "http-addr", ST_STR, OFF(http_addr), ":8081",
	    "plain-HTTP address for /healthz, /readyz and /metrics; empty disables" },
	{ "HEALTH_PROBE_INTERVAL", "health-probe-interval", ST_DURATION,
	    OFF(health_probe_interval_ms), "5s",
	    "self-probe (TLS + HTTP/2 handshake) of the gRPC port this often; 0 disables it" },
	{ "HEALTH_PROBE_TIMEOUT", "health-probe-timeout", ST_DURATION, OFF(health_probe_timeout_ms),
	    "3s", "a self-probe not finished in this time failed" },
	{ "HEALTH_PROBE_FAIL_AFTER", "health-probe-fail-after", ST_DURATION,
	    OFF(health_probe_fail_after_ms), "30s",
	    "/healthz fails once the self-probe has failed continuously this long" },
	{ "MAX_CSR_BYTES", "max-csr-bytes", ST_SIZE, OFF(policy.max_csr_bytes), "16384",
	    "policy: largest CSR accepted" },
	{ "MAX_SANS", "max-sans", ST_INT, OFF(policy.max_sans), "256",
	    "policy: most DNS+IP SANs in one CSR" },
	{ "ALLOWED_KEY_TYPES", "allowed-key-types", ST_KEYTYPES, OFF(policy.allowed_families),
	    "ed25519,ecdsa,rsa", "policy: CSR key families accepted" },
	{ "MIN_RSA_BITS", "min-rsa-bits", ST_INT, OFF(policy.min_rsa_bits), "2048",
	    "policy: smallest RSA CSR key" },
	{ "REQUIRE_PEER_IP_SAN", "require-peer-ip-san", ST_BOOL, OFF(policy.require_peer_ip_san),
	    "false", "policy: the caller's address must be one of the CSR's IP SANs" },
	{ "RATE_LIMIT_RPS", "rate-limit-rps", ST_DOUBLE, OFF(rate_limit_rps), "0",
	    "per-source-address request rate (token bucket); 0 disables" },
	{ "RATE_LIMIT_BURST", "rate-limit-burst", ST_INT, OFF(rate_limit_burst), "20",
	    "per-source-address burst" },
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

static int
parse_bool(const char *v, int *out)
{
	if (strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0 ||
	    strcasecmp(v, "on") == 0)
		*out = 1;
	else if (strcmp(v, "0") == 0 || strcasecmp(v, "false") == 0 || strcasecmp(v, "no") == 0 ||
	    strcasecmp(v, "off") == 0)
		*out = 0;
	else
		return -1;
	return 0;
}

static int
parse_long(const char *v, long long lo, long long hi, long long *out)
{
	char     *end;
	long long n;

	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || n < lo || n > hi)
		return -1;
	*out = n;
	return 0;
}

static int
parse_keytypes(const char *v, unsigned *out)
{
	char     buf[128], *s, *tok;
	unsigned m = 0;

	if (strlen(v) >= sizeof(buf))
		return -1;
	snprintf(buf, sizeof(buf), "%s", v);
	s = buf;
	while ((tok = strsep(&s, ",")) != NULL) {
		while (isspace((unsigned char)*tok))
			tok++;
		if (strcmp(tok, "ed25519") == 0)
			m |= KEYFAM_ED25519;
		else if (strcmp(tok, "ecdsa") == 0)
			m |= KEYFAM_ECDSA;
		else if (strcmp(tok, "rsa") == 0)
			m |= KEYFAM_RSA;
		else if (*tok != '\0')
			return -1;
	}
	if (m == 0)
		return -1;
	*out = m;
	return 0;
}

/* Stores `v` into the field of `s`; 0, or -1 with err set. */
static int
apply(struct config *cfg, const struct setting *s, const char *v, const char *src, char *err,
    size_t errlen)
{
	char     *base = (char *)cfg + s->off;
	long long n;
	int64_t   ms;
	double    d;
	char     *end, *copy;
	int       b;

	switch (s->type) {
	case ST_STR:
		if ((copy = strdup(v)) == NULL)
			goto bad;
		if (s->off == OFF(token) && *(char **)base != NULL)
			freezero(*(char **)base, strlen(*(char **)base) + 1);
		else
			free(*(char **)base);
		*(char **)base = copy;
		return 0;
	case ST_PORT:
		if (parse_long(v, 0, 65535, &n) == -1)
			goto bad;
		*(int *)base = (int)n;
		return 0;
	case ST_INT:
		if (parse_long(v, 0, 1000000000, &n) == -1)
			goto bad;
		*(int *)base = (int)n;
		return 0;
	case ST_SIZE:
		if (parse_long(v, 0, 1LL << 40, &n) == -1)
			goto bad;
		*(size_t *)base = (size_t)n;
		return 0;
	case ST_DURATION:
		if (util_parse_duration_ms(v, &ms) == -1)
			goto bad;
		*(int64_t *)base = ms;
		return 0;
	case ST_BOOL:
		if (parse_bool(v, &b) == -1)
			goto bad;
		*(int *)base = b;
		return 0;
	case ST_DOUBLE:
		errno = 0;
		d = strtod(v, &end);
		if (errno != 0 || end == v || *end != '\0' || d < 0 || d > 1e6)
			goto bad;
		memcpy(base, &d, sizeof(d)); /* the field is a double */
		return 0;
	case ST_LOGLEVEL:
		if (log_level_parse(v, (enum log_level *)base) == -1)
			goto bad;
		return 0;
	case ST_LOGFORMAT:
		if (log_format_parse(v, (enum log_format *)base) == -1)
			goto bad;
		return 0;
	case ST_KEYTYPES:
		if (parse_keytypes(v, (unsigned *)base) == -1)
			goto bad;
		return 0;
	default: break;
	}
bad:
	snprintf(err, errlen, "%s: invalid value \"%s\" (from %s)%s%s", s->env,
	    s->off == OFF(token) ? "<redacted>" : v, src, s->type == ST_DURATION ? ": want " : "",
	    s->type == ST_DURATION ? UTIL_DURATION_FORMAT : "");
	return -1;
}

static const struct setting *
find_flag(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < NSETTINGS; i++)
		if (settings[i].flag != NULL && strlen(settings[i].flag) == len &&
		    strncmp(settings[i].flag, name, len) == 0)
			return &settings[i];
	return NULL;
}

int
config_kube_mode(const struct config *cfg)
{
	return (cfg->ca_secret && *cfg->ca_secret) || (cfg->tls_secret && *cfg->tls_secret);
}

static int
validate(struct config *cfg, char *err, size_t errlen)
{
	if (cfg->cert_ttl_ms < 60 * 1000) {
		snprintf(err, errlen, "CERT_TTL: must be at least 1m");
		return -1;
	}
	if (cfg->cert_backdate_ms > cfg->cert_ttl_ms) {
		snprintf(err, errlen, "CERT_BACKDATE: must not exceed CERT_TTL");
		return -1;
	}
	if (cfg->max_request_bytes < 1024) {
		snprintf(err, errlen, "MAX_REQUEST_BYTES: must be at least 1024");
		return -1;
	}
	if (cfg->max_connections < 1 || cfg->max_connections_per_source < 1) {
		snprintf(err, errlen, "MAX_CONNECTIONS, MAX_CONNECTIONS_PER_SOURCE: at least 1");
		return -1;
	}
	if (cfg->handshake_timeout_ms < 100 || cfg->first_request_timeout_ms < 100) {
		snprintf(err, errlen, "HANDSHAKE_TIMEOUT, FIRST_REQUEST_TIMEOUT: at least 100ms");
		return -1;
	}
	if (cfg->h2_max_header_block < 1024 || cfg->h2_max_header_block > (1u << 24)) {
		snprintf(err, errlen, "H2_MAX_HEADER_BLOCK: between 1024 and 16777216");
		return -1;
	}
	if (cfg->h2_max_open_streams < 1 || cfg->h2_max_open_streams > 128) {
		snprintf(err, errlen, "H2_MAX_OPEN_STREAMS: between 1 and 128");
		return -1;
	}
	if (cfg->h2_max_rst_per_sec < 1) {
		snprintf(err, errlen, "H2_MAX_RST_PER_SECOND: at least 1");
		return -1;
	}
	if (cfg->h2_max_bytes_before_request < cfg->max_request_bytes + 1024 ||
	    cfg->h2_max_bytes_before_request > (1u << 30)) {
		snprintf(err, errlen,
		    "H2_MAX_BYTES_BEFORE_REQUEST: at least MAX_REQUEST_BYTES + 1024, at most 1 "
		    "GiB");
		return -1;
	}
	if (cfg->health_probe_interval_ms > 0 &&
	    (cfg->health_probe_timeout_ms < 100 ||
		cfg->health_probe_fail_after_ms < cfg->health_probe_interval_ms)) {
		snprintf(err, errlen,
		    "HEALTH_PROBE_TIMEOUT: at least 100ms, and HEALTH_PROBE_FAIL_AFTER at least "
		    "HEALTH_PROBE_INTERVAL");
		return -1;
	}
	if (cfg->grpc_threads > 256) {
		snprintf(err, errlen, "GRPC_THREADS: at most 256");
		return -1;
	}
	if ((cfg->ca_secret == NULL || *cfg->ca_secret == '\0') &&
	    (cfg->token_path == NULL || *cfg->token_path == '\0') &&
	    (cfg->token == NULL || *cfg->token == '\0')) {
		snprintf(err, errlen, "TALOS_TOKEN: required (or set TOKEN_PATH, or CA_SECRET)");
		return -1;
	}
	if (cfg->rate_limit_rps > 0 && cfg->rate_limit_burst < 1) {
		snprintf(
		    err, errlen, "RATE_LIMIT_BURST: must be at least 1 when RATE_LIMIT_RPS is set");
		return -1;
	}
	return 0;
}

int
config_load(struct config *cfg, int argc, char **argv, int first, char *err, size_t errlen)
{
	const struct setting *s;
	const char           *v, *arg, *eq;
	char                 *envv;
	size_t                i, nlen;
	int                   a;

	memset(cfg, 0, sizeof(*cfg));
	cfg->rate_limit_table = 4096;
	for (i = 0; i < NSETTINGS; i++)
		if (apply(cfg, &settings[i], settings[i].def, "default", err, errlen) == -1)
			return -1;
	for (i = 0; i < NSETTINGS; i++) {
		if ((envv = getenv(settings[i].env)) == NULL)
			continue;
		if (apply(cfg, &settings[i], envv, "environment", err, errlen) == -1)
			return -1;
		if (settings[i].off == OFF(token)) {
			/* Keep the token out of /proc/PID/environ. */
			OPENSSL_cleanse(envv, strlen(envv));
			unsetenv(settings[i].env);
		}
	}
	for (a = first; a < argc; a++) {
		arg = argv[a];
		if (strncmp(arg, "--", 2) != 0) {
			snprintf(err, errlen, "unexpected argument \"%s\" (see --help)", arg);
			return -1;
		}
		arg += 2;
		eq = strchr(arg, '=');
		nlen = eq ? (size_t)(eq - arg) : strlen(arg);
		if ((s = find_flag(arg, nlen)) == NULL) {
			snprintf(err, errlen, "unknown flag --%.*s (see --help)", (int)nlen, arg);
			return -1;
		}
		if (eq != NULL)
			v = eq + 1;
		else if (s->type == ST_BOOL &&
		    (a + 1 >= argc || strncmp(argv[a + 1], "--", 2) == 0))
			v = "true";
		else if (a + 1 < argc)
			v = argv[++a];
		else {
			snprintf(err, errlen, "--%s: needs a value", s->flag);
			return -1;
		}
		if (apply(cfg, s, v, "flag", err, errlen) == -1)
			return -1;
	}
	return validate(cfg, err, errlen);
}

void
config_free(struct config *cfg)
{
	size_t i;
	char **p;

	for (i = 0; i < NSETTINGS; i++) {
		if (settings[i].type != ST_STR)
			continue;
		p = (char **)((char *)cfg + settings[i].off);
		if (*p != NULL)
			freezero(*p, strlen(*p) + 1);
		*p = NULL;
	}
}

void
config_usage(FILE *f)
{
	char   left[64];
	size_t i;

	fprintf(f,
	    "usage: talos-csr-signer [--flag value ...]\n"
	    "       talos-csr-signer request ...   ask a signer for a certificate like a worker "
	    "(request --help)\n"
	    "       talos-csr-signer check ...     validate configuration and credentials (check "
	    "--help)\n"
	    "       talos-csr-signer --help | --version\n\n"
	    "Serves the Talos trustd Certificate API (securityapi.SecurityService) so that\n"
	    "Talos workers obtain apid certificates from a non-Talos control plane.\n\n"
	    "Settings (flag, environment variable, default); flags win over the environment:\n");
	for (i = 0; i < NSETTINGS; i++) {
		if (settings[i].flag != NULL)
			snprintf(left, sizeof(left), "--%s", settings[i].flag);
		else
			snprintf(left, sizeof(left), "(env only)");
		fprintf(f, "  %-24s %-20s %s", left, settings[i].env, settings[i].help);
		if (settings[i].def[0] != '\0')
			fprintf(f, " [default: %s]", settings[i].def);
		fputc('\n', f);
	}
}
