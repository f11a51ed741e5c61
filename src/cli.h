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

#endif /* TCS_CLI_H */
