/*
 * cli.h: the operator subcommands.
 *
 *   talos-csr-signer request ...   behave like a Talos worker: fresh key and
 *                                  CSR, one Certificate call per endpoint in
 *                                  turn, verify the answer as apid would
 *   talos-csr-signer check ...     load the configuration and credentials as
 *                                  serving would and report every problem
 *
 * Both run on main, single-threaded, instead of the daemon; each returns the
 * process exit code (documented in its --help and below).
 */
#ifndef TCS_CLI_H
#define TCS_CLI_H

#include <stddef.h>
#include <stdio.h>

#include <openssl/x509.h>

/* Most --endpoint flags one command takes. */
#define CLI_MAX_ENDPOINTS 16

/* Exit codes of `request`. */
enum request_exit {
	RQ_OK = 0,              /* a certificate was issued and passed every check */
	RQ_INTERNAL = 1,        /* unexpected local failure */
	RQ_USAGE = 2,           /* bad flags */
	RQ_LOCAL = 3,           /* token or --ca missing or unreadable */
	RQ_CONNECT = 4,         /* TCP connection failed */
	RQ_TLS = 5,             /* TLS handshake failed (protocol, no ALPN h2) */
	RQ_CA_NOT_ACCEPTED = 6, /* server certificate does not chain to --ca */
	RQ_NAME_MISMATCH = 7,   /* server certificate lacks the dialed IP as IP SAN */
	RQ_TOKEN_REFUSED = 8,   /* UNAUTHENTICATED */
	RQ_CSR_REFUSED = 9,     /* PERMISSION_DENIED (policy) or INVALID_ARGUMENT */
	RQ_RATE_LIMITED = 10,   /* RESOURCE_EXHAUSTED */
	RQ_SERVER = 11,         /* UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, other status */
	RQ_BAD_RESPONSE = 12,   /* the answer would break apid on the worker */
	RQ__MAX
};

/* Exit codes of `check`. */
enum check_exit {
	CK_OK = 0,       /* all is well */
	CK_WARNINGS = 1, /* usable, but something needs attention soon */
	CK_ERRORS = 2,   /* at least one problem that breaks serving or workers */
	CK_USAGE = 3,    /* bad flags of check itself */
};

/* `talos-csr-signer request ...`; argv[0] is "request". Returns the exit code. */
int cli_request(int argc, char **argv);
/* `talos-csr-signer check ...`; argv[0] is "check". Returns the exit code. */
int cli_check(int argc, char **argv);

/* 1 if `tok` (trailing whitespace ignored) looks like [a-z0-9]{6}.[a-z0-9]{16}. */
int cli_token_looks_valid(const char *tok, size_t len);
/* Parses "IP", "IP:PORT" or "[IPV6]:PORT" (default port 50001); 0 or -1. */
int cli_parse_endpoint(const char *s, char *ip, size_t iplen, int *port);

/*
 * Shared by cli_request.c and cli_check.c (cli.c); main thread only.
 */
/* "7d", or a Go-style duration, into seconds (at most 100 years). 0 or -1. */
int cli_parse_window(const char *s, long long *secs);
/* Unix time t as "2006-01-02T15:04:05Z" ("unknown" if out of range). */
void cli_fmt_time(long long t, char *buf, size_t len);
/* A signed interval as "in 3d4h" or "2h10m ago". */
void cli_fmt_rel(long long secs, char *buf, size_t len);
/* One-line RFC 2253 form of a name ("(empty)" when it has none). */
void cli_fmt_name(const X509_NAME *n, char *buf, size_t len);
/* SANs as "DNS:a, IP:1.2.3.4" into buf, and one per entry into `list` (up to
 * maxlist, count in *nlist) when list is not NULL. */
void cli_fmt_sans(X509 *x, char *buf, size_t len, char list[][80], size_t *nlist, size_t maxlist);
/* Writes s to f as a JSON string (quoted, escaped). */
void cli_json_str(FILE *f, const char *s);
/* 1 if argv[*i] is flag `name` ("--name value" or "--name=value"), *val set
 * (NULL when the value is missing) and *i advanced past it; 0 otherwise. */
int cli_flag_value(int argc, char **argv, int *i, const char *name, const char **val);
/* TCP connect to ip:port within timeout_ms; returns the blocking socket
 * (with I/O timeouts; the caller closes it) or -1 with the reason in why. */
int cli_dial(const char *ip, int port, int timeout_ms, char *why, size_t whylen);
/* The IP SANs of x as text ("10.0.0.1, ::1") into buf. */
void cli_ip_sans(X509 *x, char *buf, size_t len);

#endif /* TCS_CLI_H */
