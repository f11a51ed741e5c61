/*
 * cli_request.c: the `request` subcommand.
 *
 * DESIGN
 * Runs instead of the daemon, on main, with no other thread of ours.
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
 * Threads: main only. Owns: everything it allocates, freed before returning.
 * Secrets (token, keys) are wiped.
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

#define CLI_MAX_SANS 512
#define CLI_MAX_FILE (1024 * 1024)
#define CLI_SKEW_S   300 /* notBefore tolerance for clock skew */

enum family { FAM_ED25519, FAM_ECDSA, FAM_RSA, FAM__MAX };

static const char *const family_names[FAM__MAX] = { "ed25519", "ecdsa", "rsa" };

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
		if (cli_flag_value(argc, argv, &i, "--endpoint", &v)) {
			if (v == NULL || o->nendpoints == CLI_MAX_ENDPOINTS)
				goto bad;
			o->endpoints[o->nendpoints++] = v;
		} else if (cli_flag_value(argc, argv, &i, "--ca", &v)) {
			o->ca_path = v;
		} else if (cli_flag_value(argc, argv, &i, "--token-file", &v)) {
			o->token_file = v;
		} else if (cli_flag_value(argc, argv, &i, "--cn", &v)) {
			o->cn = v;
		} else if (cli_flag_value(argc, argv, &i, "--org", &v)) {
			o->org = v;
		} else if (cli_flag_value(argc, argv, &i, "--dns", &v)) {
			if (v == NULL || o->ndns == CLI_MAX_SANS)
				goto bad;
			o->dns[o->ndns++] = v;
		} else if (cli_flag_value(argc, argv, &i, "--ip", &v)) {
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
		} else if (cli_flag_value(argc, argv, &i, "--key-type", &v)) {
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
		} else if (cli_flag_value(argc, argv, &i, "--rsa-bits", &v)) {
			char *end;

			n = v ? strtol(v, &end, 10) : 0;
			if (v == NULL || *end != '\0' || n < 512 || n > 16384)
				goto bad;
			o->rsa_bits = (int)n;
		} else if (cli_flag_value(argc, argv, &i, "--timeout", &v)) {
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

	if ((fd = cli_dial(ip, port, timeout_ms, why, whylen)) == -1)
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
	cli_fmt_name(X509_get_subject_name(leaf), subj, sizeof(subj));
	cli_fmt_name(X509_get_issuer_name(leaf), iss, sizeof(iss));
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
		cli_ip_sans(leaf, ips, sizeof(ips));
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
	cli_fmt_name(X509_get_subject_name(leaf), is->subject, sizeof(is->subject));
	cli_fmt_name(X509_get_issuer_name(leaf), is->issuer, sizeof(is->issuer));
	cli_fmt_sans(leaf, is->sans, sizeof(is->sans), is->sanlist, &is->nsans,
	    sizeof(is->sanlist) / sizeof(is->sanlist[0]));
	cli_fmt_time(nb, is->not_before, sizeof(is->not_before));
	cli_fmt_time(na, is->not_after, sizeof(is->not_after));
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
	cli_json_str(stdout, endpoint);
	printf(",\"subject\":");
	cli_json_str(stdout, is->subject);
	printf(",\"sans\":[");
	for (i = 0; i < is->nsans; i++) {
		printf(i ? "," : "");
		cli_json_str(stdout, is->sanlist[i]);
	}
	printf("],\"issuer\":");
	cli_json_str(stdout, is->issuer);
	printf(",\"not_before\":\"%s\",\"not_after\":\"%s\",\"lifetime_seconds\":%lld,"
	       "\"serial\":\"%s\",\"key_type\":\"%s\",\"ca_certificates\":%d,\"failed_attempts\":[",
	    is->not_before, is->not_after, is->lifetime, is->serial, is->key_type, is->nca);
	for (i = 0; i < natt; i++) {
		printf("%s{\"endpoint\":", i ? "," : "");
		cli_json_str(stdout, att[i].endpoint);
		printf(",\"exit_code\":%d,\"error\":", att[i].code);
		cli_json_str(stdout, att[i].error);
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
	cli_json_str(stdout, natt ? att[natt - 1].error : "no attempt");
	printf(",\"kind\":");
	cli_json_str(stdout, natt ? status_words[att[natt - 1].code] : "internal error");
	printf(",\"failed_attempts\":[");
	for (i = 0; i < natt; i++) {
		printf("%s{\"endpoint\":", i ? "," : "");
		cli_json_str(stdout, att[i].endpoint);
		printf(",\"exit_code\":%d,\"kind\":", att[i].code);
		cli_json_str(stdout, status_words[att[i].code]);
		printf(",\"error\":");
		cli_json_str(stdout, att[i].error);
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
