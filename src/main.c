/*
 * main.c: talos-csr-signer entry point; wiring only.
 *
 * DESIGN
 * main parses the configuration, hardens the process (no core dumps, not
 * dumpable), blocks the signals it handles so every thread inherits the mask,
 * starts the HTTP probe listener (so that /readyz can say what it waits for
 * while there are no credentials yet), builds the first credential snapshot
 * (a failure here is a configuration error: one log record in LOG_FORMAT,
 * exit 1), starts the credential source(s) and the gRPC server, then waits
 * in sigwait(): SIGHUP forces a credential reload,
 * SIGTERM/SIGINT drain and stop everything in reverse order, exit 0.
 *
 * Threads started from here: the file watcher (filesrc) and, in Kubernetes
 * mode, the Secret watcher (watch) and the Events poster (events); the front
 * door (frontdoor: accept, TLS, HTTP/2 guard, relay); the gRPC
 * completion-queue workers (grpcsrv) and gRPC's own internal threads; the
 * HTTP probe/metrics threads (httpd, libmicrohttpd's); the self-probe of the
 * gRPC port (probe), which /healthz and /readyz consult. Subcommands `request`
 * and `check` (cli.c) run before any of this and start none of them.
 */
#include <sys/prctl.h>
#include <sys/resource.h>

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "audit.h"
#include "cli.h"
#include "config.h"
#include "creds.h"
#include "credsrc.h"
#include "credstore.h"
#include "ed25519.h"
#include "events.h"
#include "filesrc.h"
#include "frontdoor.h"
#include "grpcsrv.h"
#include "httpd.h"
#include "kube.h"
#include "log.h"
#include "metrics.h"
#include "probe.h"
#include "ratelimit.h"
#include "secret.h"
#include "watch.h"

static void
print_version(void)
{
	printf("talos-csr-signer %s (commit %s)\n", TCS_VERSION, TCS_COMMIT);
	printf("  grpc-core   %s\n", grpcsrv_grpc_version());
	printf("  openssl     %s\n", OpenSSL_version(OPENSSL_VERSION));
	printf("  libsodium   %s\n", ed25519_sodium_version());
	printf("  protobuf-c  %s\n", grpcsrv_protobuf_c_version());
	printf("  microhttpd  %s\n", httpd_mhd_version());
	printf("  libcurl     %s\n", kube_curl_version());
	printf("  cjson       %s\n", secret_cjson_version());
}

/* One start-up error record on stderr, in the configured log format. */
static void
startup_error(const char *what, const char *err)
{
	struct log_field f[] = { LF_S("error", err) };

	log_record(LOG_ERROR, what, f, sizeof(f) / sizeof(f[0]));
}

static void
harden(void)
{
	struct rlimit rl = { 0, 0 };

	if (setrlimit(RLIMIT_CORE, &rl) == -1)
		log_warn("setrlimit(RLIMIT_CORE)");
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		log_warn("prctl(PR_SET_DUMPABLE)");
}

/*
 * Kubernetes mode: waits until the first valid snapshot is published, logging
 * every 10 s. Returns 0, or -1 if SIGTERM/SIGINT arrived first.
 */
static int
wait_first_creds(struct credstore *store, struct watch *w, const sigset_t *set)
{
	struct timespec ts = { 0, 100 * 1000 * 1000 };
	int64_t         next = util_mono_ms();
	int             sig;

	while (credstore_generation(store) == 0) {
		if (util_mono_ms() >= next) {
			log_info("waiting for valid credentials from %s", watch_describe(w));
			next = util_mono_ms() + 10000;
		}
		sig = sigtimedwait(set, NULL, &ts);
		if (sig == SIGTERM || sig == SIGINT) {
			log_info("%s before the first credentials: shutting down",
			    sig == SIGTERM ? "SIGTERM" : "SIGINT");
			return -1;
		}
		if (sig == SIGHUP)
			watch_resync(w);
	}
	return 0;
}

int
main(int argc, char **argv)
{
	struct config     cfg;
	struct credstore *store = NULL;
	struct credsrc   *src = NULL;
	struct filesrc   *files = NULL;
	struct ratelimit *rl = NULL;
	struct grpcsrv   *srv = NULL;
	struct frontdoor *door = NULL;
	struct httpd     *http = NULL;
	struct probe     *probe = NULL;
	struct kube      *kube = NULL;
	struct watch     *watcher = NULL;
	struct events    *events = NULL;
	sigset_t          set;
	char              err[512];
	unsigned          fgroups = CF_GROUP_ALL;
	struct timespec   housekeeping = { 30, 0 };
	int               sig, rc = 1;

	if (argc > 1 && strcmp(argv[1], "request") == 0)
		return cli_request(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "check") == 0)
		return cli_check(argc - 1, argv + 1);
	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		config_usage(stdout);
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		print_version();
		return 0;
	}
	if (config_load(&cfg, argc, argv, 1, err, sizeof(err)) == -1) {
		/* No configuration: the log format as --log-format or LOG_FORMAT says, else JSON. */
		enum log_format lf = LOG_JSON;
		const char     *want = getenv("LOG_FORMAT");
		int             i;

		for (i = 1; i < argc; i++)
			if (strncmp(argv[i], "--log-format=", 13) == 0)
				want = argv[i] + 13;
			else if (strcmp(argv[i], "--log-format") == 0 && i + 1 < argc)
				want = argv[++i];
		if (want == NULL || log_format_parse(want, &lf) == -1)
			lf = LOG_JSON;
		log_init(lf, LOG_INFO);
		startup_error("configuration error", err);
		config_free(&cfg);
		return 1;
	}
	log_init(cfg.log_format, cfg.log_level);
	harden();

	/* Before any thread exists, so that all of them inherit the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if ((store = credstore_new()) == NULL || (src = credsrc_new(store)) == NULL)
		fatalx("out of memory");
	/* First, so that probes answer (and /readyz says why) before any credential. */
	if (httpd_start(cfg.http_addr, store, &http, err, sizeof(err)) == -1) {
		startup_error("configuration error", err);
		goto out;
	}
	if (config_kube_mode(&cfg)) {
		if (kube_global_init() == -1) /* libcurl is loaded for this mode only */
			fatalx("cannot initialise libcurl");
		/* Secrets through the API; files (if any) supply the other group. */
		if ((kube = kube_new(&cfg, err, sizeof(err))) == NULL ||
		    (watcher = watch_new(kube, &cfg, src, err, sizeof(err))) == NULL ||
		    (events = events_new(kube, &cfg, err, sizeof(err))) == NULL) {
			startup_error("configuration error", err);
			goto out;
		}
		fgroups = CF_GROUP_ALL & ~credsrc_expected(src); /* the Secrets registered */
		audit_set_sink(events_sink, events);             /* before any emitter thread */
		if (events_start(events) == -1)
			goto out;
	}
	if (fgroups != 0) {
		if ((files = filesrc_new(&cfg, src, fgroups, err, sizeof(err))) == NULL) {
			startup_error("configuration error", err);
			goto out;
		}
		if (filesrc_load(files, err, sizeof(err)) == -1) {
			startup_error("configuration error", err);
			goto out;
		}
		if (filesrc_start(files) == -1)
			goto out;
	}
	if (watcher != NULL) {
		if (watch_start(watcher) == -1)
			goto out;
		if (wait_first_creds(store, watcher, &set) == -1) {
			rc = 0; /* stopped by a signal before serving */
			goto out;
		}
	}
	if (cfg.rate_limit_rps > 0 &&
	    (rl = ratelimit_new(
		 cfg.rate_limit_rps, cfg.rate_limit_burst, (size_t)cfg.rate_limit_table)) == NULL)
		fatalx("out of memory");
	if ((srv = grpcsrv_start(&cfg, store, rl, err, sizeof(err))) == NULL) {
		startup_error("cannot serve", err);
		goto out;
	}
	if ((door = frontdoor_start(&cfg, store, srv, err, sizeof(err))) == NULL) {
		startup_error("cannot serve", err);
		goto out;
	}
	{
		struct probe_params pp = { cfg.health_probe_interval_ms,
			cfg.health_probe_timeout_ms, cfg.health_probe_fail_after_ms };
		char                host[64];

		probe_target(cfg.listen_address, host, sizeof(host));
		if (probe_start(host, frontdoor_port(door), store, &pp, &probe) == -1)
			goto out;
		httpd_set_probe(http, probe);
	}
	{
		char             v[32];
		struct log_field f[] = {
			LF_S("version", TCS_VERSION),
			LF_S("commit", TCS_COMMIT),
			LF_I("port", frontdoor_port(door)),
			LF_S("cert_ttl", (util_format_duration(cfg.cert_ttl_ms, v, sizeof(v)), v)),
		};
		log_record(LOG_INFO, "serving", f, sizeof(f) / sizeof(f[0]));
	}

	for (;;) {
		/*
		 * Every 30 s without a signal, hand freed heap back to the
		 * kernel: gRPC's per-connection buffers are freed when a
		 * connection closes, but glibc keeps them in its per-thread
		 * arenas, so RSS would stay at a connection storm's peak.
		 */
		if ((sig = sigtimedwait(&set, NULL, &housekeeping)) == -1) {
			if (errno == EAGAIN)
				malloc_trim(0);
			continue;
		}
		if (sig == SIGHUP) {
			log_info("SIGHUP: reloading credentials");
			filesrc_reload(files);
			if (watcher != NULL)
				watch_resync(watcher); /* relist both Secrets */
			continue;
		}
		log_info("%s: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
		break;
	}
	rc = 0;
out:
	httpd_stop(http); /* joins the only reader of the probe */
	probe_stop(probe);
	/* Drain: no new connections, in-flight calls finish through the relay. */
	frontdoor_stop_accepting(door);
	grpcsrv_shutdown(srv, cfg.shutdown_grace_ms);
	frontdoor_free(door);
	audit_flush_summaries(1);
	watch_free(watcher);
	filesrc_free(files);
	if (events != NULL)
		audit_set_sink(NULL, NULL); /* every emitter has stopped */
	events_free(events);
	kube_free(kube);
	kube_global_cleanup();
	ratelimit_free(rl);
	credsrc_free(src);
	credstore_free(store);
	config_free(&cfg);
	if (rc == 0)
		log_info("stopped");
	return rc;
}
