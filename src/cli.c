/*
 * cli.c: the `request` and `check` subcommands.
 *
 * DESIGN
 * Both run instead of the daemon, on main, with no other thread of ours.
 *
 * request: generates a fresh key of the chosen family and a CSR shaped like
 * a Talos worker's (CN, DNS and IP SANs in the extensionRequest, no O unless
 * asked), then for each --endpoint in turn: a TLS probe with OpenSSL that
 * checks what a worker's Go TLS client checks (ALPN h2, chain to --ca, the
 * dialed IP among the IP SANs) so that a failure gets a precise exit code,
 * then the Certificate call itself through grpccli.c (gRPC verifies again),
 * then the answer is verified as apid on the worker would use it. The first
 * endpoint that yields a good certificate wins; otherwise the exit code is
 * the last endpoint's. The generated key never leaves memory.
 *
 * check: loads the configuration with config_load() exactly as the daemon
 * does, inspects each credential file on its own so that every problem is
 * reported (not just the first), then runs the daemon's own pipeline
 * (filesrc -> credsrc -> creds_build) for the final verdict.
 *
 * Owns: everything it allocates, freed before returning. Secrets (token,
 * keys) are wiped.
 */
#include "cli.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "creds.h"
#include "credsrc.h"
#include "credstore.h"
#include "filesrc.h"
#include "audit.h"
#include "grpccli.h"
#include "kube.h"
#include "log.h"
#include "pki.h"
#include "secret.h"
#include "util.h"

#define CLI_DEFAULT_PORT  50001
#define CLI_MAX_ENDPOINTS 16
#define CLI_MAX_SANS      512
#define CLI_MAX_FILE      (1024 * 1024)
#define CLI_SKEW_S        300 /* notBefore tolerance for clock skew */

enum family { FAM_ED25519, FAM_ECDSA, FAM_RSA, FAM__MAX };

static const char *const family_names[FAM__MAX] = { "ed25519", "ecdsa", "rsa" };

/* --- small shared helpers ------------------------------------------------ */

int
cli_token_looks_valid(const char *tok, size_t len)
{
	return creds_token_is_talos(tok, len);
}

int
cli_parse_endpoint(const char *s, char *ip, size_t iplen, int *port)
{
	unsigned char buf[16];
	const char   *h = s, *hend, *p = NULL;
	char         *end;
	long          n;

	*port = CLI_DEFAULT_PORT;
	if (s[0] == '[') {
		h = s + 1;
		if ((hend = strchr(h, ']')) == NULL)
			return -1;
		if (hend[1] == ':')
			p = hend + 2;
		else if (hend[1] != '\0')
			return -1;
	} else if ((hend = strchr(s, ':')) != NULL && strchr(hend + 1, ':') == NULL) {
		p = hend + 1; /* IPv4:port */
	} else
		hend = s + strlen(s); /* bare IPv4 or IPv6 */
	if ((size_t)(hend - h) + 1 > iplen)
		return -1;
	memcpy(ip, h, (size_t)(hend - h));
	ip[hend - h] = '\0';
	if (inet_pton(AF_INET, ip, buf) != 1 && inet_pton(AF_INET6, ip, buf) != 1)
		return -1;
	if (p != NULL) {
		errno = 0;
		n = strtol(p, &end, 10);
		if (*p == '\0' || *end != '\0' || errno != 0 || n < 1 || n > 65535)
			return -1;
		*port = (int)n;
	}
	return 0;
}

/* "7d", or a Go-style duration; stored in seconds. 0 or -1. */
static int
parse_window(const char *s, long long *secs)
{
	int64_t ms;

	if (util_parse_duration_ms(s, &ms) == -1 || ms > 36500LL * 86400 * 1000)
		return -1;
	*secs = ms / 1000;
	return 0;
}

static void
fmt_time(long long t, char *buf, size_t len)
{
	time_t    tt = (time_t)t;
	struct tm tm;

	if (t < 0 || gmtime_r(&tt, &tm) == NULL)
		snprintf(buf, len, "unknown");
	else
		strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* "in 3d 4h" / "2h ago" */
static void
fmt_rel(long long secs, char *buf, size_t len)
{
	long long a = secs < 0 ? -secs : secs;

	if (a >= 86400)
		snprintf(buf, len, "%s%lldd%lldh%s", secs < 0 ? "" : "in ", a / 86400,
		    (a % 86400) / 3600, secs < 0 ? " ago" : "");
	else if (a >= 3600)
		snprintf(buf, len, "%s%lldh%lldm%s", secs < 0 ? "" : "in ", a / 3600,
		    (a % 3600) / 60, secs < 0 ? " ago" : "");
	else
		snprintf(buf, len, "%s%llds%s", secs < 0 ? "" : "in ", a, secs < 0 ? " ago" : "");
}

/* One-line RFC 2253 form of a name into buf. */
static void
fmt_name(const X509_NAME *n, char *buf, size_t len)
{
	BIO *b;
	int  got;

	buf[0] = '\0';
	if ((b = BIO_new(BIO_s_mem())) == NULL)
		return;
	if (X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) >= 0 &&
	    (got = BIO_read(b, buf, (int)len - 1)) > 0)
		buf[got] = '\0';
	BIO_free(b);
	if (buf[0] == '\0')
		snprintf(buf, len, "(empty)");
}

/* SANs as "DNS:a, IP:1.2.3.4" (and into `list` for JSON when non-NULL). */
static void
fmt_sans(X509 *x, char *buf, size_t len, char list[][80], size_t *nlist, size_t maxlist)
{
	GENERAL_NAMES       *g;
	const GENERAL_NAME  *gn;
	const unsigned char *d;
	char                 one[80], ipt[INET6_ADDRSTRLEN];
	size_t               used = 0;
	int                  i, n;

	buf[0] = '\0';
	if (nlist != NULL)
		*nlist = 0;
	if ((g = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL)) == NULL)
		return;
	for (i = 0; i < sk_GENERAL_NAME_num(g); i++) {
		gn = sk_GENERAL_NAME_value(g, i);
		if (gn->type == GEN_DNS) {
			d = ASN1_STRING_get0_data(gn->d.dNSName);
			n = ASN1_STRING_length(gn->d.dNSName);
			snprintf(one, sizeof(one), "DNS:%.*s", n > 70 ? 70 : n, (const char *)d);
		} else if (gn->type == GEN_IPADD) {
			d = ASN1_STRING_get0_data(gn->d.iPAddress);
			n = ASN1_STRING_length(gn->d.iPAddress);
			if ((n == 4 && inet_ntop(AF_INET, d, ipt, sizeof(ipt)) != NULL) ||
			    (n == 16 && inet_ntop(AF_INET6, d, ipt, sizeof(ipt)) != NULL))
				snprintf(one, sizeof(one), "IP:%s", ipt);
			else
				snprintf(one, sizeof(one), "IP:invalid");
		} else
			snprintf(one, sizeof(one), "other");
		if (used + strlen(one) + 3 < len) {
			used +=
			    (size_t)snprintf(buf + used, len - used, "%s%s", used ? ", " : "", one);
		}
		if (list != NULL && *nlist < maxlist)
			snprintf(list[(*nlist)++], 80, "%s", one);
	}
	GENERAL_NAMES_free(g);
}

static void
json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* Fetches the value of a flag given as "--name value" or "--name=value". */
static int
flag_value(int argc, char **argv, int *i, const char *name, const char **val)
{
	const char *a = argv[*i];
	size_t      n = strlen(name);

	if (strncmp(a, name, n) != 0)
		return 0;
	if (a[n] == '=') {
		*val = a + n + 1;
		return 1;
	}
	if (a[n] != '\0')
		return 0;
	if (*i + 1 >= argc) {
		*val = NULL;
		return 1;
	}
	*val = argv[++*i];
	return 1;
}

/* --- request ------------------------------------------------------------- */

struct rq_opts {
	const char *endpoints[CLI_MAX_ENDPOINTS];
	size_t      nendpoints;
	const char *ca_path, *token_file, *cn, *org;
	const char *dns[CLI_MAX_SANS];
	size_t      ndns;
	const char *ips[CLI_MAX_SANS];
	size_t      nips;
	enum family fam;
	int         rsa_bits;
	int64_t     timeout_ms;
	int         json, verbose;
};

/* One failed endpoint. */
struct rq_attempt {
	char endpoint[80];
	int  code;
	char error[1024];
};

/* What a good answer looks like, for the summary. */
struct rq_issued {
	char      subject[256], issuer[256], sans[1024], serial[80];
	char      sanlist[64][80];
	size_t    nsans;
	char      not_before[32], not_after[32];
	long long lifetime;
	int       nca;
	char      key_type[16];
};

static void
request_usage(FILE *f)
{
	fprintf(f,
	    "usage: talos-csr-signer request --endpoint IP[:PORT] [--endpoint ...] --ca FILE\n"
	    "           [--token-file FILE] [--key-type ed25519|ecdsa|rsa] [--rsa-bits N]\n"
	    "           [--cn NAME] [--dns NAME]... [--ip IP]... [--org O] [--timeout 10s]\n"
	    "           [--json] [--verbose]\n\n"
	    "Asks for an apid certificate exactly as a Talos worker does: a fresh key and\n"
	    "CSR, TLS verified against --ca with the server name set to the dialed IP,\n"
	    "the token as gRPC metadata. Endpoints are tried in turn until one answers\n"
	    "with a certificate that apid on the worker would accept.\n\n"
	    "  --endpoint IP[:PORT]  signer address (IP literal, like a worker; port 50001)\n"
	    "  --ca FILE             CAs the serving certificate must chain to\n"
	    "                        (the worker's machine.acceptedCAs + machine.ca)\n"
	    "  --token-file FILE     machine token; default: the TALOS_TOKEN variable\n"
	    "  --key-type FAMILY     ed25519 (default), ecdsa (P-256) or rsa\n"
	    "  --rsa-bits N          RSA key size (default 4096, like Talos)\n"
	    "  --cn NAME             subject CN (default: this host's name)\n"
	    "  --dns NAME, --ip IP   SANs to request (repeatable)\n"
	    "  --org O               add an Organization (the signer must strip it)\n"
	    "  --timeout DURATION    per endpoint (default 10s)\n"
	    "  --json                print one JSON object instead of the summary\n"
	    "  --verbose, -v         also print debug log lines and the gRPC library's own\n"
	    "                        diagnostics on stderr (why a connection or handshake\n"
	    "                        failed); the token is never printed\n\n"
	    "Exit codes:\n"
	    "   0  certificate issued and verified\n"
	    "   1  unexpected local failure\n"
	    "   2  usage error\n"
	    "   3  token or --ca missing or unreadable\n"
	    "   4  cannot connect (TCP)\n"
	    "   5  TLS handshake failed (protocol, ALPN h2 not selected)\n"
	    "   6  CA not accepted: the serving certificate does not chain to --ca\n"
	    "   7  TLS name mismatch: the serving certificate lacks the dialed IP as IP SAN\n"
	    "   8  token refused (UNAUTHENTICATED)\n"
	    "   9  CSR refused (PERMISSION_DENIED by policy, or INVALID_ARGUMENT)\n"
	    "  10  rate limited (RESOURCE_EXHAUSTED)\n"
	    "  11  server unavailable or other gRPC error\n"
	    "  12  the answer would break apid (key mismatch, bad ca, wrong usage, SANs)\n"
	    "With several endpoints, the exit code is the last endpoint's.\n");
}

/* Parses the flags into o: 0, 1 when --help was printed, -1 on a usage error. */
static int
request_args(int argc, char **argv, struct rq_opts *o)
{
	const char *v;
	long        n;
	int         i;

	memset(o, 0, sizeof(*o));
	o->fam = FAM_ED25519;
	o->rsa_bits = 4096;
	o->timeout_ms = 10000;
	for (i = 1; i < argc; i++) {
		v = NULL;
		if (strcmp(argv[i], "--json") == 0) {
			o->json = 1;
			continue;
		}
		if (strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0) {
			o->verbose = 1;
			continue;
		}
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			request_usage(stdout);
			return 1;
		}
		if (flag_value(argc, argv, &i, "--endpoint", &v)) {
			if (v == NULL || o->nendpoints == CLI_MAX_ENDPOINTS)
				goto bad;
			o->endpoints[o->nendpoints++] = v;
		} else if (flag_value(argc, argv, &i, "--ca", &v)) {
			o->ca_path = v;
		} else if (flag_value(argc, argv, &i, "--token-file", &v)) {
			o->token_file = v;
		} else if (flag_value(argc, argv, &i, "--cn", &v)) {
			o->cn = v;
		} else if (flag_value(argc, argv, &i, "--org", &v)) {
			o->org = v;
		} else if (flag_value(argc, argv, &i, "--dns", &v)) {
			if (v == NULL || o->ndns == CLI_MAX_SANS)
				goto bad;
			o->dns[o->ndns++] = v;
		} else if (flag_value(argc, argv, &i, "--ip", &v)) {
			unsigned char buf[16];

			if (v == NULL || o->nips == CLI_MAX_SANS ||
			    (inet_pton(AF_INET, v, buf) != 1 && inet_pton(AF_INET6, v, buf) != 1)) {
				fprintf(stderr,
				    "talos-csr-signer request: --ip: \"%s\" is not an IP "
				    "address\n",
				    v ? v : "");
				return -1;
			}
			o->ips[o->nips++] = v;
		} else if (flag_value(argc, argv, &i, "--key-type", &v)) {
			int f;

			for (f = 0; f < FAM__MAX && v != NULL; f++)
				if (strcmp(v, family_names[f]) == 0)
					break;
			if (v == NULL || f == FAM__MAX) {
				fprintf(stderr,
				    "talos-csr-signer request: --key-type: want ed25519, "
				    "ecdsa or rsa\n");
				return -1;
			}
			o->fam = (enum family)f;
		} else if (flag_value(argc, argv, &i, "--rsa-bits", &v)) {
			char *end;

			n = v ? strtol(v, &end, 10) : 0;
			if (v == NULL || *end != '\0' || n < 512 || n > 16384)
				goto bad;
			o->rsa_bits = (int)n;
		} else if (flag_value(argc, argv, &i, "--timeout", &v)) {
			if (v == NULL || util_parse_duration_ms(v, &o->timeout_ms) == -1 ||
			    o->timeout_ms < 100 || o->timeout_ms > 3600000)
				goto bad;
		} else {
			fprintf(stderr,
			    "talos-csr-signer request: unknown argument \"%s\" "
			    "(see request --help)\n",
			    argv[i]);
			return -1;
		}
		if (v == NULL)
			goto bad;
		continue;
	bad:
		fprintf(stderr,
		    "talos-csr-signer request: %s: missing or invalid value "
		    "(see request --help)\n",
		    argv[i]);
		return -1;
	}
	if (o->nendpoints == 0 || o->ca_path == NULL) {
		fprintf(stderr,
		    "talos-csr-signer request: --endpoint and --ca are required "
		    "(see request --help)\n");
		return -1;
	}
	return 0;
}

static EVP_PKEY *
gen_key(enum family f, int bits)
{
	switch (f) {
	case FAM_ED25519: return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	case FAM_ECDSA: return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	case FAM_RSA: return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
	default: return NULL;
	}
}

static int
push_san(GENERAL_NAMES *gens, int type, const char *v)
{
	GENERAL_NAME      *g = NULL;
	ASN1_IA5STRING    *s = NULL;
	ASN1_OCTET_STRING *os = NULL;

	if ((g = GENERAL_NAME_new()) == NULL)
		return -1;
	if (type == GEN_DNS) {
		if ((s = ASN1_IA5STRING_new()) == NULL || !ASN1_STRING_set(s, v, -1))
			goto fail;
		GENERAL_NAME_set0_value(g, GEN_DNS, s);
	} else {
		if ((os = a2i_IPADDRESS(v)) == NULL)
			goto fail;
		GENERAL_NAME_set0_value(g, GEN_IPADD, os);
	}
	if (!sk_GENERAL_NAME_push(gens, g)) {
		GENERAL_NAME_free(g);
		return -1;
	}
	return 0;
fail:
	ASN1_IA5STRING_free(s);
	GENERAL_NAME_free(g);
	return -1;
}

/* A PEM CSR signed by `key`, like a Talos worker's; appended to out. 0 or -1. */
static int
make_csr(EVP_PKEY *key, const struct rq_opts *o, const char *cn, struct sbuf *out)
{
	X509_REQ                 *req = NULL;
	X509_NAME                *nm;
	GENERAL_NAMES            *gens = NULL;
	STACK_OF(X509_EXTENSION) *exts = NULL;
	X509_EXTENSION           *ext = NULL;
	BIO                      *b = NULL;
	BUF_MEM                  *mem;
	const EVP_MD             *md;
	size_t                    i;
	int                       rc = -1;

	md = o->fam == FAM_ED25519 ? NULL : (o->fam == FAM_RSA ? EVP_sha512() : EVP_sha256());
	if ((req = X509_REQ_new()) == NULL || !X509_REQ_set_version(req, 0))
		goto out;
	nm = X509_REQ_get_subject_name(req);
	if (o->org != NULL &&
	    !X509_NAME_add_entry_by_txt(
		nm, "O", MBSTRING_UTF8, (const unsigned char *)o->org, -1, -1, 0))
		goto out;
	if (cn != NULL && *cn != '\0' &&
	    !X509_NAME_add_entry_by_txt(
		nm, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0))
		goto out;
	if (o->ndns + o->nips > 0) {
		if ((gens = sk_GENERAL_NAME_new_null()) == NULL)
			goto out;
		for (i = 0; i < o->ndns; i++)
			if (push_san(gens, GEN_DNS, o->dns[i]) == -1)
				goto out;
		for (i = 0; i < o->nips; i++)
			if (push_san(gens, GEN_IPADD, o->ips[i]) == -1)
				goto out;
		if ((exts = sk_X509_EXTENSION_new_null()) == NULL ||
		    (ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens)) == NULL ||
		    !sk_X509_EXTENSION_push(exts, ext))
			goto out;
		ext = NULL;
		if (!X509_REQ_add_extensions(req, exts))
			goto out;
	}
	if (!X509_REQ_set_pubkey(req, key) || X509_REQ_sign(req, key, md) <= 0)
		goto out;
	if ((b = BIO_new(BIO_s_mem())) == NULL || !PEM_write_bio_X509_REQ(b, req))
		goto out;
	BIO_get_mem_ptr(b, &mem);
	if (sbuf_add(out, mem->data, mem->length) == -1)
		goto out;
	rc = 0;
out:
	if (rc == -1)
		log_ssl("request: building the CSR");
	BIO_free(b);
	X509_EXTENSION_free(ext);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	GENERAL_NAMES_free(gens);
	X509_REQ_free(req);
	return rc;
}

/* TCP connect with a timeout; the socket is left blocking with I/O timeouts. */
static int
dial(const char *ip, int port, int timeout_ms, char *why, size_t whylen)
{
	struct sockaddr_storage ss;
	struct sockaddr_in     *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6    *sin6 = (struct sockaddr_in6 *)&ss;
	struct timeval          tv;
	struct pollfd           pfd;
	socklen_t               sl, el = sizeof(int);
	int                     fd, fl, e = 0;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		sl = sizeof(*sin);
	} else if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		sl = sizeof(*sin6);
	} else {
		snprintf(why, whylen, "not an IP address");
		return -1;
	}
	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		snprintf(why, whylen, "socket: %s", strerror(errno));
		return -1;
	}
	fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	if (connect(fd, (struct sockaddr *)&ss, sl) == -1) {
		if (errno != EINPROGRESS) {
			e = errno;
			goto fail;
		}
		pfd.fd = fd;
		pfd.events = POLLOUT;
		if (poll(&pfd, 1, timeout_ms) != 1) {
			e = ETIMEDOUT;
			goto fail;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == -1 || e != 0)
			goto fail;
	}
	fcntl(fd, F_SETFL, fl);
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
fail:
	snprintf(why, whylen, "cannot connect: %s", strerror(e ? e : errno));
	close(fd);
	return -1;
}

/* Lists the IP SANs of x as text into buf. */
static void
ip_sans(X509 *x, char *buf, size_t len)
{
	char   all[1024], *p, *tok;
	size_t used = 0;

	fmt_sans(x, all, sizeof(all), NULL, NULL, 0);
	buf[0] = '\0';
	p = all;
	while ((tok = strsep(&p, ",")) != NULL) {
		while (*tok == ' ')
			tok++;
		if (strncmp(tok, "IP:", 3) == 0 && used + strlen(tok) + 3 < len)
			used += (size_t)snprintf(
			    buf + used, len - used, "%s%s", used ? ", " : "", tok + 3);
	}
	if (buf[0] == '\0')
		snprintf(buf, len, "none");
}

/*
 * What a worker's Go TLS client checks, done with OpenSSL so that each
 * failure has its own exit code: ALPN h2, chain to the roots (serverAuth),
 * the dialed IP among the IP SANs. Returns an RQ_* code.
 */
static int
probe_tls(const char *ip, int port, X509_STORE *roots, int timeout_ms, char *why, size_t whylen)
{
	SSL_CTX             *ctx = NULL;
	SSL                 *ssl = NULL;
	X509_STORE_CTX      *vctx = NULL;
	X509                *leaf;
	STACK_OF(X509)      *chain;
	const unsigned char *alpn = NULL;
	unsigned int         alpnlen = 0;
	char                 errs[300], subj[200], iss[200], ips[256];
	int                  fd, rc = RQ_INTERNAL;

	if ((fd = dial(ip, port, timeout_ms, why, whylen)) == -1)
		return RQ_CONNECT;
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL ||
	    !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x02h2", 3) != 0 ||
	    (ssl = SSL_new(ctx)) == NULL || !SSL_set_fd(ssl, fd)) {
		snprintf(why, whylen, "cannot set up TLS: %s", log_ssl_errors(errs, sizeof(errs)));
		goto out;
	}
	SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL); /* verified below, step by step */
	if (SSL_connect(ssl) != 1) {
		log_ssl_errors(errs, sizeof(errs));
		snprintf(why, whylen, "TLS handshake failed: %s",
		    errs[0] ? errs : "connection closed by the server");
		rc = RQ_TLS;
		goto out;
	}
	SSL_get0_alpn_selected(ssl, &alpn, &alpnlen);
	if (alpnlen != 2 || memcmp(alpn, "h2", 2) != 0) {
		snprintf(why, whylen,
		    "TLS: the server did not select ALPN \"h2\" "
		    "(grpc-go clients refuse it)");
		rc = RQ_TLS;
		goto out;
	}
	if ((leaf = SSL_get0_peer_certificate(ssl)) == NULL) {
		snprintf(why, whylen, "TLS: the server sent no certificate");
		rc = RQ_TLS;
		goto out;
	}
	chain = SSL_get_peer_cert_chain(ssl);
	fmt_name(X509_get_subject_name(leaf), subj, sizeof(subj));
	fmt_name(X509_get_issuer_name(leaf), iss, sizeof(iss));
	if ((vctx = X509_STORE_CTX_new()) == NULL ||
	    !X509_STORE_CTX_init(vctx, roots, leaf, chain)) {
		snprintf(why, whylen, "cannot verify: out of memory");
		goto out;
	}
	X509_STORE_CTX_set_purpose(vctx, X509_PURPOSE_SSL_SERVER);
	if (X509_verify_cert(vctx) != 1) {
		snprintf(why, whylen,
		    "CA not accepted: the serving certificate (subject %s, "
		    "issuer %s) does not verify against --ca: %s",
		    subj, iss, X509_verify_cert_error_string(X509_STORE_CTX_get_error(vctx)));
		rc = RQ_CA_NOT_ACCEPTED;
		goto out;
	}
	if (X509_check_ip_asc(leaf, ip, 0) != 1) {
		ip_sans(leaf, ips, sizeof(ips));
		snprintf(why, whylen,
		    "TLS name mismatch: the serving certificate is valid for "
		    "IP %s, not %s (workers check the dialed IP against IP SANs only)",
		    ips, ip);
		rc = RQ_NAME_MISMATCH;
		goto out;
	}
	rc = RQ_OK;
out:
	ERR_clear_error();
	X509_STORE_CTX_free(vctx);
	if (ssl != NULL && rc == RQ_OK)
		SSL_shutdown(ssl);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	return rc;
}

/* Verifies a good answer as apid on the worker will use it; RQ_OK or RQ_BAD_RESPONSE. */
static int
verify_answer(const struct grpccli_result *res, EVP_PKEY *key, const struct rq_opts *o,
    struct rq_issued *is, char *why, size_t whylen)
{
	STACK_OF(X509) *crt = NULL, *ca = NULL;
	X509_STORE     *st = NULL;
	X509_STORE_CTX *vctx = NULL;
	X509           *leaf;
	char            err[256];
	long long       now = (long long)time(NULL), nb, na;
	uint32_t        xku;
	size_t          i;
	int             j, rc = RQ_BAD_RESPONSE;

	if ((crt = pki_load_certs(res->crt, res->crt_len, err, sizeof(err))) == NULL) {
		snprintf(why, whylen, "crt is not a PEM certificate: %s", err);
		goto out;
	}
	leaf = sk_X509_value(crt, 0);
	if (X509_check_private_key(leaf, key) != 1) {
		snprintf(why, whylen, "crt does not carry the public key of the request");
		goto out;
	}
	if ((ca = pki_load_certs(res->ca, res->ca_len, err, sizeof(err))) == NULL) {
		snprintf(why, whylen,
		    "ca holds no parseable PEM certificate (apid: failed "
		    "to parse CA certs): %s",
		    err);
		goto out;
	}
	if ((st = X509_STORE_new()) == NULL || (vctx = X509_STORE_CTX_new()) == NULL)
		goto oom;
	for (j = 0; j < sk_X509_num(ca); j++)
		X509_STORE_add_cert(st, sk_X509_value(ca, j));
	if (!X509_STORE_CTX_init(vctx, st, leaf, crt))
		goto oom;
	X509_STORE_CTX_set_purpose(vctx, X509_PURPOSE_SSL_SERVER);
	if (X509_verify_cert(vctx) != 1) {
		snprintf(why, whylen, "crt does not verify against the returned ca: %s",
		    X509_verify_cert_error_string(X509_STORE_CTX_get_error(vctx)));
		goto out;
	}
	xku = X509_get_extended_key_usage(leaf);
	if (!(X509_get_extension_flags(leaf) & EXFLAG_XKUSAGE) || !(xku & XKU_SSL_SERVER)) {
		snprintf(why, whylen, "crt lacks the serverAuth extended key usage");
		goto out;
	}
	if (xku & XKU_SSL_CLIENT) {
		snprintf(why, whylen,
		    "crt allows clientAuth: it could impersonate a client "
		    "(CVE-2022-36103)");
		goto out;
	}
	if (X509_NAME_get_index_by_NID(X509_get_subject_name(leaf), NID_organizationName, -1) >=
	    0) {
		snprintf(why, whylen,
		    "crt keeps an Organization in its subject (client roles "
		    "come from O; CVE-2022-36103)");
		goto out;
	}
	if (!(X509_get_key_usage(leaf) & KU_DIGITAL_SIGNATURE)) {
		snprintf(why, whylen, "crt lacks the digitalSignature key usage");
		goto out;
	}
	for (i = 0; i < o->ndns; i++)
		if (X509_check_host(leaf, o->dns[i], 0,
			X509_CHECK_FLAG_NEVER_CHECK_SUBJECT | X509_CHECK_FLAG_NO_WILDCARDS,
			NULL) != 1) {
			snprintf(why, whylen, "crt lacks the requested DNS SAN %s", o->dns[i]);
			goto out;
		}
	for (i = 0; i < o->nips; i++)
		if (X509_check_ip_asc(leaf, o->ips[i], 0) != 1) {
			snprintf(why, whylen, "crt lacks the requested IP SAN %s", o->ips[i]);
			goto out;
		}
	nb = pki_not_before(leaf);
	na = pki_not_after(leaf);
	if (nb > now + CLI_SKEW_S || na <= now) {
		snprintf(
		    why, whylen, "crt is not valid now (notBefore %lld, notAfter %lld)", nb, na);
		goto out;
	}
	fmt_name(X509_get_subject_name(leaf), is->subject, sizeof(is->subject));
	fmt_name(X509_get_issuer_name(leaf), is->issuer, sizeof(is->issuer));
	fmt_sans(leaf, is->sans, sizeof(is->sans), is->sanlist, &is->nsans,
	    sizeof(is->sanlist) / sizeof(is->sanlist[0]));
	fmt_time(nb, is->not_before, sizeof(is->not_before));
	fmt_time(na, is->not_after, sizeof(is->not_after));
	is->lifetime = na - nb;
	is->nca = sk_X509_num(ca);
	{
		const ASN1_INTEGER *sn = X509_get0_serialNumber(leaf);
		BIGNUM             *bn = ASN1_INTEGER_to_BN(sn, NULL);
		char               *hex = bn ? BN_bn2hex(bn) : NULL;

		snprintf(is->serial, sizeof(is->serial), "%s", hex ? hex : "?");
		for (i = 0; is->serial[i] != '\0'; i++)
			is->serial[i] = (char)tolower((unsigned char)is->serial[i]);
		OPENSSL_free(hex);
		BN_free(bn);
	}
	snprintf(
	    is->key_type, sizeof(is->key_type), "%s", pki_key_type_name(pki_key_type(key, NULL)));
	rc = RQ_OK;
	goto out;
oom:
	snprintf(why, whylen, "out of memory");
	rc = RQ_INTERNAL;
out:
	ERR_clear_error();
	X509_STORE_CTX_free(vctx);
	X509_STORE_free(st);
	sk_X509_pop_free(crt, X509_free);
	sk_X509_pop_free(ca, X509_free);
	return rc;
}

static int
status_exit(int status)
{
	switch (status) {
	case GRPCCLI_OK: return RQ_OK;
	case GRPCCLI_UNAUTHENTICATED: return RQ_TOKEN_REFUSED;
	case GRPCCLI_PERMISSION_DENIED:
	case GRPCCLI_INVALID_ARGUMENT: return RQ_CSR_REFUSED;
	case GRPCCLI_RESOURCE_EXHAUSTED: return RQ_RATE_LIMITED;
	default: return RQ_SERVER;
	}
}

static const char *const status_words[RQ__MAX] = {
	[RQ_OK] = "ok",
	[RQ_INTERNAL] = "internal error",
	[RQ_USAGE] = "usage error",
	[RQ_LOCAL] = "local input error",
	[RQ_CONNECT] = "cannot connect",
	[RQ_TLS] = "TLS handshake failed",
	[RQ_CA_NOT_ACCEPTED] = "CA not accepted",
	[RQ_NAME_MISMATCH] = "TLS name mismatch",
	[RQ_TOKEN_REFUSED] = "token refused",
	[RQ_CSR_REFUSED] = "CSR refused",
	[RQ_RATE_LIMITED] = "rate limited",
	[RQ_SERVER] = "server error",
	[RQ_BAD_RESPONSE] = "bad response",
};

static void
print_success(const struct rq_opts *o, const char *endpoint, const struct rq_issued *is,
    const struct rq_attempt *att, size_t natt)
{
	char   life[32];
	size_t i;

	util_format_duration(is->lifetime * 1000, life, sizeof(life));
	if (!o->json) {
		printf("endpoint   %s (TLS verified against --ca, IP SAN matches, ALPN h2)\n",
		    endpoint);
		printf("subject    %s\n", is->subject);
		printf("sans       %s\n", is->sans[0] ? is->sans : "(none)");
		printf("issuer     %s\n", is->issuer);
		printf("validity   %s .. %s (%s)\n", is->not_before, is->not_after, life);
		printf("serial     %s\n", is->serial);
		printf("key        %s (generated for this request, not kept)\n", is->key_type);
		printf("ca         %d certificate(s) returned; the certificate chains to them\n",
		    is->nca);
		printf("result     ok: apid on a worker would accept this certificate\n");
		return;
	}
	printf("{\"ok\":true,\"exit_code\":0,\"endpoint\":");
	json_str(stdout, endpoint);
	printf(",\"subject\":");
	json_str(stdout, is->subject);
	printf(",\"sans\":[");
	for (i = 0; i < is->nsans; i++) {
		printf(i ? "," : "");
		json_str(stdout, is->sanlist[i]);
	}
	printf("],\"issuer\":");
	json_str(stdout, is->issuer);
	printf(",\"not_before\":\"%s\",\"not_after\":\"%s\",\"lifetime_seconds\":%lld,"
	       "\"serial\":\"%s\",\"key_type\":\"%s\",\"ca_certificates\":%d,\"failed_attempts\":[",
	    is->not_before, is->not_after, is->lifetime, is->serial, is->key_type, is->nca);
	for (i = 0; i < natt; i++) {
		printf("%s{\"endpoint\":", i ? "," : "");
		json_str(stdout, att[i].endpoint);
		printf(",\"exit_code\":%d,\"error\":", att[i].code);
		json_str(stdout, att[i].error);
		printf("}");
	}
	printf("]}\n");
}

static void
print_failure(const struct rq_opts *o, const struct rq_attempt *att, size_t natt)
{
	size_t i;

	if (!o->json) {
		for (i = 0; i < natt; i++)
			fprintf(stderr, "talos-csr-signer request: %s: %s (exit %d): %s\n",
			    att[i].endpoint, status_words[att[i].code], att[i].code, att[i].error);
		return;
	}
	printf("{\"ok\":false,\"exit_code\":%d,\"error\":", natt ? att[natt - 1].code : 1);
	json_str(stdout, natt ? att[natt - 1].error : "no attempt");
	printf(",\"kind\":");
	json_str(stdout, natt ? status_words[att[natt - 1].code] : "internal error");
	printf(",\"failed_attempts\":[");
	for (i = 0; i < natt; i++) {
		printf("%s{\"endpoint\":", i ? "," : "");
		json_str(stdout, att[i].endpoint);
		printf(",\"exit_code\":%d,\"kind\":", att[i].code);
		json_str(stdout, status_words[att[i].code]);
		printf(",\"error\":");
		json_str(stdout, att[i].error);
		printf("}");
	}
	printf("]}\n");
}

/* Local failure before any endpoint was tried. */
static int local_failure(const struct rq_opts *o, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
local_failure(const struct rq_opts *o, int code, const char *fmt, ...)
{
	struct rq_attempt a;
	va_list           ap;

	memset(&a, 0, sizeof(a));
	snprintf(a.endpoint, sizeof(a.endpoint), "local");
	a.code = code;
	va_start(ap, fmt);
	vsnprintf(a.error, sizeof(a.error), fmt, ap);
	va_end(ap);
	print_failure(o, &a, 1);
	return code;
}

int
cli_request(int argc, char **argv)
{
	struct rq_opts        o;
	struct rq_attempt     att[CLI_MAX_ENDPOINTS];
	struct rq_issued      is;
	struct grpccli_result res;
	struct sbuf           token, roots, csr;
	STACK_OF(X509)       *rootcerts = NULL;
	X509_STORE           *store = NULL;
	EVP_PKEY             *key = NULL;
	char                 *env;
	char                  host[256], err[300], ep[80], ip[64];
	size_t                natt = 0, i;
	int                   port, code, rc = RQ_INTERNAL;

	sbuf_init(&token, 4096);
	sbuf_init(&roots, CLI_MAX_FILE);
	sbuf_init(&csr, 1024 * 1024);
	memset(&res, 0, sizeof(res));
	switch (request_args(argc, argv, &o)) {
	case 0: break;
	case 1: return RQ_OK;
	default: return RQ_USAGE;
	}
	log_init(LOG_TEXT, o.verbose ? LOG_DEBUG : LOG_ERROR);
	for (i = 0; i < o.nendpoints; i++)
		if (cli_parse_endpoint(o.endpoints[i], ip, sizeof(ip), &port) == -1) {
			fprintf(stderr,
			    "talos-csr-signer request: --endpoint \"%s\": want an IP "
			    "address, optionally with :PORT (workers dial IP addresses)\n",
			    o.endpoints[i]);
			return RQ_USAGE;
		}

	/* The token: --token-file, else TALOS_TOKEN. */
	if (o.token_file != NULL) {
		if (util_read_file(o.token_file, 4096, &token) == -1) {
			rc = local_failure(&o, RQ_LOCAL, "--token-file %s: %s", o.token_file,
			    errno == EFBIG ? "file too large" : strerror(errno));
			goto out;
		}
	} else if ((env = getenv("TALOS_TOKEN")) != NULL && *env != '\0') {
		sbuf_add(&token, env, strlen(env));
		OPENSSL_cleanse(env, strlen(env));
		unsetenv("TALOS_TOKEN");
	}
	while (token.len > 0 && isspace(token.data[token.len - 1]))
		token.data[--token.len] = '\0';
	if (token.len == 0) {
		rc = local_failure(
		    &o, RQ_LOCAL, "no token: use --token-file FILE or set TALOS_TOKEN");
		goto out;
	}

	/* The roots a worker trusts. */
	if (util_read_file(o.ca_path, CLI_MAX_FILE, &roots) == -1) {
		rc = local_failure(&o, RQ_LOCAL, "--ca %s: %s", o.ca_path, strerror(errno));
		goto out;
	}
	if ((rootcerts = pki_load_certs(roots.data, roots.len, err, sizeof(err))) == NULL) {
		rc = local_failure(&o, RQ_LOCAL, "--ca %s: %s", o.ca_path, err);
		goto out;
	}
	if ((store = X509_STORE_new()) == NULL)
		goto out;
	for (i = 0; i < (size_t)sk_X509_num(rootcerts); i++)
		X509_STORE_add_cert(store, sk_X509_value(rootcerts, (int)i));

	/* A fresh key and CSR, as a worker makes for every attempt. */
	if (o.cn == NULL) {
		if (gethostname(host, sizeof(host)) == -1)
			snprintf(host, sizeof(host), "talos-worker");
		host[sizeof(host) - 1] = '\0';
	}
	if ((key = gen_key(o.fam, o.rsa_bits)) == NULL) {
		log_ssl_errors(err, sizeof(err));
		rc = local_failure(
		    &o, RQ_INTERNAL, "cannot generate a %s key: %s", family_names[o.fam], err);
		goto out;
	}
	if (make_csr(key, &o, o.cn != NULL ? o.cn : host, &csr) == -1) {
		rc = local_failure(&o, RQ_INTERNAL, "cannot build the CSR");
		goto out;
	}

	for (i = 0; i < o.nendpoints; i++) {
		struct rq_attempt *a = &att[natt];

		cli_parse_endpoint(o.endpoints[i], ip, sizeof(ip), &port);
		snprintf(ep, sizeof(ep), strchr(ip, ':') ? "[%s]:%d" : "%s:%d", ip, port);
		memset(a, 0, sizeof(*a));
		snprintf(a->endpoint, sizeof(a->endpoint), "%s", ep);
		code = probe_tls(ip, port, store, (int)o.timeout_ms, a->error, sizeof(a->error));
		if (code != RQ_OK) {
			a->code = code;
			natt++;
			continue;
		}
		if (grpccli_certificate(ip, port, (const char *)roots.data,
			(const char *)token.data, token.len, csr.data, csr.len, (int)o.timeout_ms,
			&res) == -1) {
			a->code = RQ_INTERNAL;
			snprintf(a->error, sizeof(a->error), "%s", res.message);
			natt++;
			continue;
		}
		if ((code = status_exit(res.status)) != RQ_OK) {
			a->code = code;
			snprintf(a->error, sizeof(a->error), "%s: %s",
			    grpccli_status_name(res.status), res.message);
			grpccli_result_free(&res);
			natt++;
			continue;
		}
		memset(&is, 0, sizeof(is));
		code = verify_answer(&res, key, &o, &is, a->error, sizeof(a->error));
		grpccli_result_free(&res);
		if (code != RQ_OK) {
			a->code = code;
			natt++;
			continue;
		}
		print_success(&o, ep, &is, att, natt);
		rc = RQ_OK;
		goto out;
	}
	print_failure(&o, att, natt);
	rc = natt > 0 ? att[natt - 1].code : RQ_INTERNAL;
out:
	grpccli_result_free(&res);
	EVP_PKEY_free(key);
	X509_STORE_free(store);
	sk_X509_pop_free(rootcerts, X509_free);
	sbuf_free(&token);
	sbuf_free(&roots);
	sbuf_free(&csr);
	return rc;
}

/* --- check --------------------------------------------------------------- */

enum ck_sev { CK_SEV_OK, CK_SEV_WARN, CK_SEV_ERROR, CK_SEV__MAX };

struct ck {
	int       errors, warnings;
	long long now, warn_s;
	int       json, nlines;
	int       refused; /* the validator refused the credentials (already said) */
};

static void ck_say(struct ck *ck, enum ck_sev sev, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
ck_say(struct ck *ck, enum ck_sev sev, const char *fmt, ...)
{
	static const char *const tags[CK_SEV__MAX] = { "ok", "warning", "error" };
	char                     line[1024];
	va_list                  ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (sev == CK_SEV_WARN)
		ck->warnings++;
	else if (sev == CK_SEV_ERROR)
		ck->errors++;
	if (ck->json) {
		printf("%s{\"severity\":\"%s\",\"message\":", ck->nlines ? "," : "", tags[sev]);
		json_str(stdout, line);
		printf("}");
	} else
		printf("%-8s %s\n", tags[sev], line);
	ck->nlines++;
}

/* Reads one configured file; reports and returns -1 when it cannot. */
static int
ck_read(struct ck *ck, const char *setting, const char *path, struct sbuf *out)
{
	if (path == NULL || *path == '\0') {
		ck_say(ck, CK_SEV_ERROR, "%s: not set", setting);
		return -1;
	}
	if (util_read_file(path, CREDS_MAX_PART, out) == -1) {
		ck_say(ck, CK_SEV_ERROR, "%s (%s): cannot read: %s", setting, path,
		    errno == EFBIG ? "file too large" : strerror(errno));
		return -1;
	}
	return 0;
}

/* Validity window of a certificate against now and the warning window. */
static void
ck_validity(struct ck *ck, const char *what, X509 *x)
{
	long long na = pki_not_after(x), nb = pki_not_before(x);
	char      when[32], rel[48];

	fmt_time(na, when, sizeof(when));
	fmt_rel(na - ck->now, rel, sizeof(rel));
	if (nb > ck->now) {
		fmt_time(nb, when, sizeof(when));
		ck_say(ck, CK_SEV_ERROR, "%s: not valid before %s", what, when);
	} else if (na < ck->now)
		ck_say(ck, CK_SEV_ERROR, "%s: expired at %s (%s)", what, when, rel);
	else if (na - ck->now < ck->warn_s)
		ck_say(ck, CK_SEV_WARN, "%s: expires at %s (%s), within the warning window", what,
		    when, rel);
	else
		ck_say(ck, CK_SEV_OK, "%s: valid until %s (%s)", what, when, rel);
}

static void
check_usage(FILE *f)
{
	fprintf(f,
	    "usage: talos-csr-signer check [--endpoint IP]... [--warn-within 7d] [--json]\n"
	    "           [daemon settings as flags or environment, see --help]\n\n"
	    "Loads the configuration and the credentials exactly as serving would and\n"
	    "reports every problem, without serving: unreadable files, a CA key that does\n"
	    "not match the CA certificate, a CA or serving certificate that is expired or\n"
	    "expires within --warn-within, a serving certificate that does not chain to an\n"
	    "accepted CA, lacks an IP SAN (or the IP of an --endpoint), or does not match\n"
	    "its key, and a token that does not look like a Talos token\n"
	    "([a-z0-9]{6}.[a-z0-9]{16}). Its verdict comes from the daemon's own validator:\n"
	    "what the daemon refuses is an error, what it serves with a warning is a warning.\n"
	    "With CA_SECRET/TLS_SECRET (Kubernetes mode) it reads the Secrets through the API\n"
	    "as the daemon would (the in-cluster account, or KUBE_API_URL, KUBE_TOKEN_PATH and\n"
	    "KUBE_CA_PATH, e.g. a token from 'kubectl create token'), so a missing RoleBinding,\n"
	    "a wrong namespace or a name typo shows up before installing.\n\n"
	    "  --endpoint IP         an address workers dial: it must be an IP SAN of the\n"
	    "                        serving certificate (repeatable)\n"
	    "  --warn-within DUR     warn when a certificate expires this soon (7d, 48h)\n"
	    "  --json                print {\"ok\":..,\"errors\":..,\"findings\":[..]}\n\n"
	    "Exit codes:\n"
	    "   0  all is well\n"
	    "   1  warnings only (e.g. a certificate expires within --warn-within)\n"
	    "   2  at least one error (the daemon would refuse to start, or workers\n"
	    "      would refuse it), including a configuration error\n"
	    "   3  usage error in the flags of check itself\n");
}

/* The CA group: certificate, key, token, accepted CAs. Fills ca/accepted for later. */
static void
check_ca(struct ck *ck, const struct config *cfg, X509 **ca_out, STACK_OF(X509) *accepted)
{
	struct sbuf     b;
	STACK_OF(X509) *sk = NULL;
	EVP_PKEY       *key = NULL;
	X509           *ca = NULL, *x;
	char            err[300], subj[256], what[400];

	*ca_out = NULL;
	sbuf_init(&b, CREDS_MAX_PART);
	if (ck_read(ck, "CA_CERT_PATH", cfg->ca_cert_path, &b) == 0) {
		if ((sk = pki_load_certs(b.data, b.len, err, sizeof(err))) == NULL)
			ck_say(ck, CK_SEV_ERROR, "CA_CERT_PATH (%s): %s", cfg->ca_cert_path, err);
		else {
			ca = sk_X509_shift(sk);
			fmt_name(X509_get_subject_name(ca), subj, sizeof(subj));
			snprintf(what, sizeof(what), "CA certificate %s (%s)", subj,
			    pki_key_type_name(pki_key_type(X509_get0_pubkey(ca), NULL)));
			if (X509_check_ca(ca) == 0)
				ck_say(ck, CK_SEV_ERROR, "%s: not a CA certificate", what);
			ck_validity(ck, what, ca);
		}
		sk_X509_pop_free(sk, X509_free);
		sk = NULL;
	}
	sbuf_free(&b);
	if (ck_read(ck, "CA_KEY_PATH", cfg->ca_key_path, &b) == 0) {
		if ((key = pki_load_key(b.data, b.len, err, sizeof(err))) == NULL)
			ck_say(ck, CK_SEV_ERROR, "CA_KEY_PATH (%s): %s", cfg->ca_key_path, err);
		else if (!creds_key_usable(key, err, sizeof(err)))
			ck_say(ck, CK_SEV_ERROR, "CA_KEY_PATH (%s): %s", cfg->ca_key_path, err);
		else if (ca != NULL && X509_check_private_key(ca, key) != 1)
			ck_say(ck, CK_SEV_ERROR,
			    "CA key (%s) does not match the CA certificate (%s)", cfg->ca_key_path,
			    cfg->ca_cert_path);
		else if (ca != NULL)
			ck_say(ck, CK_SEV_OK, "CA key matches the CA certificate (%s)",
			    pki_key_type_name(pki_key_type(key, NULL)));
	}
	EVP_PKEY_free(key);
	sbuf_free(&b);

	/*
	 * The token: TOKEN_PATH wins over TALOS_TOKEN, as in the daemon. Whether
	 * it (and each accepted token) looks like a Talos token is the shared
	 * validator's warning, reported with the verdict below.
	 */
	if (cfg->token_path != NULL && *cfg->token_path != '\0') {
		if (ck_read(ck, "TOKEN_PATH", cfg->token_path, &b) == 0)
			ck_say(ck, CK_SEV_OK, "token read from TOKEN_PATH (%s)", cfg->token_path);
		sbuf_free(&b);
	} else if (cfg->token != NULL && *cfg->token != '\0')
		ck_say(ck, CK_SEV_OK, "token set in TALOS_TOKEN");
	else
		ck_say(ck, CK_SEV_ERROR, "no token: set TOKEN_PATH or TALOS_TOKEN");
	if (cfg->accepted_tokens_path != NULL && *cfg->accepted_tokens_path != '\0' &&
	    ck_read(ck, "ACCEPTED_TOKENS_PATH", cfg->accepted_tokens_path, &b) == 0) {
		ck_say(ck, CK_SEV_OK, "accepted tokens read from ACCEPTED_TOKENS_PATH (%s)",
		    cfg->accepted_tokens_path);
		sbuf_free(&b);
	}

	if (cfg->accepted_cas_path != NULL && *cfg->accepted_cas_path != '\0' &&
	    ck_read(ck, "ACCEPTED_CAS_PATH", cfg->accepted_cas_path, &b) == 0) {
		if ((sk = pki_load_certs(b.data, b.len, err, sizeof(err))) == NULL)
			ck_say(ck, CK_SEV_ERROR, "ACCEPTED_CAS_PATH (%s): %s",
			    cfg->accepted_cas_path, err);
		while (sk != NULL && (x = sk_X509_shift(sk)) != NULL) {
			fmt_name(X509_get_subject_name(x), subj, sizeof(subj));
			snprintf(what, sizeof(what), "accepted CA %s", subj);
			if (X509_check_ca(x) == 0)
				ck_say(ck, CK_SEV_ERROR, "%s: not a CA certificate", what);
			ck_validity(ck, what, x);
			if (!sk_X509_push(accepted, x))
				X509_free(x);
		}
		sk_X509_free(sk);
		sbuf_free(&b);
	}
	*ca_out = ca;
}

/* The serving group: certificate chain and key, the endpoints among its IP SANs. */
static void
check_tls(struct ck *ck, const struct config *cfg, const char *const *endpoints, size_t nendpoints)
{
	struct sbuf     b;
	STACK_OF(X509) *chain = NULL;
	EVP_PKEY       *key = NULL;
	X509           *leaf = NULL;
	char            err[300], subj[256], ips[256];
	size_t          i;

	sbuf_init(&b, CREDS_MAX_PART);
	if (ck_read(ck, "TLS_CERT_PATH", cfg->tls_cert_path, &b) == 0) {
		if ((chain = pki_load_certs(b.data, b.len, err, sizeof(err))) == NULL)
			ck_say(ck, CK_SEV_ERROR, "TLS_CERT_PATH (%s): %s", cfg->tls_cert_path, err);
		else
			leaf = sk_X509_value(chain, 0);
	}
	sbuf_free(&b);
	if (leaf != NULL) {
		fmt_name(X509_get_subject_name(leaf), subj, sizeof(subj));
		{
			char what[400];

			snprintf(what, sizeof(what), "serving certificate %s", subj);
			ck_validity(ck, what, leaf);
		}
		/*
		 * No IP SAN, no serverAuth, no chain to an accepted CA: the shared
		 * validator's warnings, reported with the verdict. Here only what
		 * the daemon cannot know: the addresses workers dial.
		 */
		ip_sans(leaf, ips, sizeof(ips));
		if (pki_has_any_ip_san(leaf))
			ck_say(ck, CK_SEV_OK, "serving certificate IP SANs: %s", ips);
		for (i = 0; i < nendpoints; i++) {
			if (pki_has_ip_san(leaf, endpoints[i]))
				ck_say(ck, CK_SEV_OK,
				    "endpoint %s is an IP SAN of the serving "
				    "certificate",
				    endpoints[i]);
			else
				ck_say(ck, CK_SEV_ERROR,
				    "endpoint %s is not an IP SAN of the serving "
				    "certificate (IP SANs: %s): workers dialing it will refuse it",
				    endpoints[i], ips);
		}
	}
	if (ck_read(ck, "TLS_KEY_PATH", cfg->tls_key_path, &b) == 0) {
		if ((key = pki_load_key(b.data, b.len, err, sizeof(err))) == NULL)
			ck_say(ck, CK_SEV_ERROR, "TLS_KEY_PATH (%s): %s", cfg->tls_key_path, err);
		else if (!creds_key_usable(key, err, sizeof(err)))
			ck_say(ck, CK_SEV_ERROR, "TLS_KEY_PATH (%s): %s", cfg->tls_key_path, err);
		else if (leaf != NULL && X509_check_private_key(leaf, key) != 1)
			ck_say(ck, CK_SEV_ERROR,
			    "serving key (%s) does not match the serving "
			    "certificate (%s)",
			    cfg->tls_key_path, cfg->tls_cert_path);
		else if (leaf != NULL)
			ck_say(ck, CK_SEV_OK, "serving key matches the serving certificate (%s)",
			    pki_key_type_name(pki_key_type(key, NULL)));
	}
	ERR_clear_error();
	EVP_PKEY_free(key);
	sbuf_free(&b);
	sk_X509_pop_free(chain, X509_free);
}

/*
 * The shared validator's findings reach `check` the way they reach an
 * operator of the daemon: as audit records (CredentialsWarning,
 * CredentialsInvalid). Main thread only; installed for the verdict.
 */
static void
ck_audit(const struct audit_rec *r, void *arg)
{
	struct ck *ck = arg;

	if (r->kind == AK_CREDS_WARNING)
		ck_say(ck, CK_SEV_WARN, "%s", r->message ? r->message : "");
	else if (r->kind == AK_CREDS_INVALID && ++ck->refused)
		ck_say(ck, CK_SEV_ERROR, "the daemon would refuse these credentials: %s",
		    r->message ? r->message : "");
}

/*
 * Kubernetes mode: reads each configured Secret the way the watcher does
 * (a LIST with a name field selector, through the in-cluster account or
 * KUBE_API_URL/KUBE_TOKEN_PATH/KUBE_CA_PATH) and submits it; the groups not
 * held in Secrets come from the files, as in the daemon. Each Secret is
 * registered with the assembler first, then submitted after all were read.
 */
static void
check_kube(struct ck *ck, const struct config *cfg, struct credsrc *src)
{
	static const atomic_int nostop = 0;
	const char             *spec[2] = { cfg->ca_secret, cfg->tls_secret };
	const char             *setting[2] = { "CA_SECRET", "TLS_SECRET" };
	struct kube            *k = NULL;
	struct kube_call       *call = NULL;
	struct creds_input      in[2];
	struct credsrc_source  *h[2] = { NULL, NULL };
	const struct sbuf      *body;
	char ns[KUBE_NS_MAX], name[KUBE_NAME_MAX], label[KUBE_NS_MAX + KUBE_NAME_MAX + 8];
	char path[512], sel[300], err[512], msg[400];
	long st;
	int  i, got[2] = { 0, 0 };

	creds_input_init(&in[0]);
	creds_input_init(&in[1]);
	if ((k = kube_new(cfg, err, sizeof(err))) == NULL) {
		ck_say(ck, CK_SEV_ERROR, "Kubernetes client: %s", err);
		return;
	}
	if ((call = kube_call_new(k, &nostop)) == NULL)
		goto out;
	for (i = 0; i < 2; i++) {
		if (spec[i] == NULL || *spec[i] == '\0')
			continue;
		if (kube_object_ref(spec[i], kube_namespace(k), ns, name) == -1) {
			ck_say(ck, CK_SEV_ERROR, "%s: \"%s\" is not a valid name or namespace/name",
			    setting[i], spec[i]);
			continue;
		}
		snprintf(label, sizeof(label), "%s/%s", ns, name);
		snprintf(msg, sizeof(msg), "Secret %s", label);
		if ((h[i] = credsrc_register(src, secret_groups(i == 0 ? SECRET_CA : SECRET_TLS),
			 msg, i == 0 ? MS_CA_SECRET : MS_TLS_SECRET, err, sizeof(err))) == NULL) {
			ck_say(ck, CK_SEV_ERROR, "%s: %s", setting[i], err);
			continue;
		}
		snprintf(sel, sizeof(sel), "metadata.name=%s", name);
		snprintf(path, sizeof(path), "/api/v1/namespaces/%s/secrets?fieldSelector=%s", ns,
		    kube_escape(sel, msg, sizeof(msg)));
		if (kube_request(call, "GET", path, NULL, NULL) == -1) {
			ck_say(ck, CK_SEV_ERROR, "%s (Secret %s): cannot reach %s: %s", setting[i],
			    label, kube_url(k), kube_call_error(call));
			continue;
		}
		body = kube_call_body(call);
		if ((st = kube_call_status(call)) != 200) {
			secret_status_message(body->data, body->len, msg, sizeof(msg));
			ck_say(ck, CK_SEV_ERROR, "%s (Secret %s): HTTP %ld%s%s", setting[i], label,
			    st, *msg ? ": " : "", msg);
			continue;
		}
		if (secret_decode_list(body->data, body->len, i == 0 ? SECRET_CA : SECRET_TLS,
			label, &in[i], err, sizeof(err)) == -1)
			ck_say(ck, CK_SEV_ERROR, "%s: %s", setting[i], err);
		else {
			ck_say(ck, CK_SEV_OK, "%s: Secret %s read from %s", setting[i], label,
			    kube_url(k));
			got[i] = 1;
		}
	}
	for (i = 0; i < 2; i++)
		if (got[i])
			credsrc_submit(h[i], &in[i], NULL, err, sizeof(err));
out:
	creds_input_free(&in[0]);
	creds_input_free(&in[1]);
	kube_call_free(call);
	kube_free(k);
}

int
cli_check(int argc, char **argv)
{
	struct config     cfg;
	struct ck         ck;
	struct credstore *store = NULL;
	struct credsrc   *src = NULL;
	struct filesrc   *files = NULL;
	STACK_OF(X509)   *accepted = NULL;
	X509             *ca = NULL;
	const char       *endpoints[CLI_MAX_ENDPOINTS], *v;
	char            **rest = NULL, err[512], ip[64];
	unsigned          fgroups = CF_GROUP_ALL;
	size_t            nendpoints = 0;
	int               i, nrest = 0, port, rc = CK_ERRORS, kube_mode = 0;

	memset(&ck, 0, sizeof(ck));
	memset(&cfg, 0, sizeof(cfg));
	ck.now = (long long)time(NULL);
	ck.warn_s = 7 * 86400;
	if ((rest = calloc((size_t)argc + 1, sizeof(*rest))) == NULL)
		return CK_ERRORS;
	rest[nrest++] = argv[0];
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			check_usage(stdout);
			free(rest);
			return CK_OK;
		}
		if (strcmp(argv[i], "--json") == 0) {
			ck.json = 1;
			continue;
		}
		if (flag_value(argc, argv, &i, "--endpoint", &v)) {
			if (v == NULL || nendpoints == CLI_MAX_ENDPOINTS ||
			    cli_parse_endpoint(v, ip, sizeof(ip), &port) == -1 ||
			    strcmp(ip, v) != 0) {
				fprintf(stderr,
				    "talos-csr-signer check: --endpoint: want an IP "
				    "address\n");
				free(rest);
				return CK_USAGE;
			}
			endpoints[nendpoints++] = v;
			continue;
		}
		if (flag_value(argc, argv, &i, "--warn-within", &v)) {
			if (v == NULL || parse_window(v, &ck.warn_s) == -1) {
				fprintf(stderr,
				    "talos-csr-signer check: --warn-within: want "
				    "%s\n",
				    UTIL_DURATION_FORMAT);
				free(rest);
				return CK_USAGE;
			}
			continue;
		}
		rest[nrest++] = argv[i]; /* a daemon setting */
	}
	/* Our own report says everything; keep the daemon's warnings off stderr. */
	log_init(LOG_TEXT, LOG_ERROR);
	if (ck.json)
		printf("{\"findings\":[");
	if (config_load(&cfg, nrest, rest, 1, err, sizeof(err)) == -1) {
		ck_say(&ck, CK_SEV_ERROR, "configuration: %s", err);
		goto done;
	}
	ck_say(&ck, CK_SEV_OK, "configuration loaded (gRPC port %d)", cfg.port);
	if ((accepted = sk_X509_new_null()) == NULL)
		goto done;
	if (!config_kube_mode(&cfg)) {
		check_ca(&ck, &cfg, &ca, accepted);
		check_tls(&ck, &cfg, endpoints, nendpoints);
	}

	/*
	 * The daemon's own pipeline and its one validator decide whether it
	 * would serve; their findings arrive through the audit sink.
	 */
	if ((store = credstore_new()) == NULL || (src = credsrc_new(store)) == NULL) {
		ck_say(&ck, CK_SEV_ERROR, "out of memory");
		goto done;
	}
	audit_set_sink(ck_audit, &ck);
	if (config_kube_mode(&cfg)) {
		if (kube_global_init() == -1) {
			ck_say(&ck, CK_SEV_ERROR, "curl_global_init failed");
			goto done;
		}
		kube_mode = 1;
		/* Registered before any Secret is submitted: the assembler expects both. */
		if (cfg.ca_secret != NULL && *cfg.ca_secret != '\0')
			fgroups &= ~(unsigned)CF_GROUP_CA;
		if (cfg.tls_secret != NULL && *cfg.tls_secret != '\0')
			fgroups &= ~(unsigned)CF_GROUP_TLS;
	}
	if (fgroups != 0 && (files = filesrc_new(&cfg, src, fgroups, err, sizeof(err))) == NULL) {
		ck_say(&ck, CK_SEV_ERROR, "%s", err);
		goto done;
	}
	if (kube_mode)
		check_kube(&ck, &cfg, src);
	if (files != NULL && filesrc_load(files, err, sizeof(err)) == -1 && !ck.refused)
		ck_say(&ck, CK_SEV_ERROR, "the daemon would not start: %s", err);
	if (credstore_generation(store) == 0 && !ck.refused)
		ck_say(&ck, CK_SEV_ERROR, "the daemon would have no credentials to serve");
	else if (credstore_generation(store) == 0)
		;
	else
		ck_say(&ck, CK_SEV_OK, "the daemon would load and serve these credentials");
done:
	audit_set_sink(NULL, NULL);
	if (kube_mode)
		kube_global_cleanup();
	rc = ck.errors ? CK_ERRORS : ck.warnings ? CK_WARNINGS : CK_OK;
	if (ck.json)
		printf("],\"ok\":%s,\"errors\":%d,\"warnings\":%d,\"exit_code\":%d}\n",
		    rc == CK_OK ? "true" : "false", ck.errors, ck.warnings, rc);
	else if (rc == CK_OK)
		printf("check: all is well\n");
	else
		printf("check: %d error(s), %d warning(s)\n", ck.errors, ck.warnings);
	filesrc_free(files);
	credsrc_free(src);
	credstore_free(store);
	X509_free(ca);
	sk_X509_pop_free(accepted, X509_free);
	config_free(&cfg);
	free(rest);
	return rc;
}
