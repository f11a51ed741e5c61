/*
 * cli_check.c: the `check` subcommand.
 *
 * DESIGN
 * Runs instead of the daemon, on main, with no other thread of ours.
 *
 * check: loads the configuration with config_load() exactly as the daemon
 * does, inspects each credential file on its own so that every problem is
 * reported (not just the first), then runs the daemon's own pipeline
 * (filesrc -> credsrc -> creds_build) for the final verdict.
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
		cli_json_str(stdout, line);
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

	cli_fmt_time(na, when, sizeof(when));
	cli_fmt_rel(na - ck->now, rel, sizeof(rel));
	if (nb > ck->now) {
		cli_fmt_time(nb, when, sizeof(when));
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
			cli_fmt_name(X509_get_subject_name(ca), subj, sizeof(subj));
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
			cli_fmt_name(X509_get_subject_name(x), subj, sizeof(subj));
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
		cli_fmt_name(X509_get_subject_name(leaf), subj, sizeof(subj));
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
		cli_ip_sans(leaf, ips, sizeof(ips));
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
		if (cli_flag_value(argc, argv, &i, "--endpoint", &v)) {
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
		if (cli_flag_value(argc, argv, &i, "--warn-within", &v)) {
			if (v == NULL || cli_parse_window(v, &ck.warn_s) == -1) {
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
