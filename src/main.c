/*
 * main.c: talos-csr-signer entry point; wiring only.
 *
 * DESIGN
 * main parses the configuration, hardens the process (no core dumps, not
 * dumpable), blocks the signals it handles so every thread inherits the mask,
 * builds the first credential snapshot (a failure here is a configuration
 * error: one line on stderr, exit 1), starts the credential source(s) and the
 * gRPC server, then waits in sigwait(): SIGHUP forces a credential reload,
 * SIGTERM/SIGINT drain and stop everything in reverse order, exit 0.
 *
 * Threads started from here: the file watcher (filesrc), the gRPC
 * completion-queue workers (grpcsrv), and gRPC's own internal threads.
 */
#include <sys/prctl.h>
#include <sys/resource.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "config.h"
#include "creds.h"
#include "credsrc.h"
#include "credstore.h"
#include "filesrc.h"
#include "grpcsrv.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"

static void
print_version(void)
{
	printf("talos-csr-signer %s (commit %s)\n", TCS_VERSION, TCS_COMMIT);
	printf("  grpc-core   %s\n", grpcsrv_grpc_version());
	printf("  openssl     %s\n", OpenSSL_version(OPENSSL_VERSION));
	printf("  protobuf-c  %s\n", grpcsrv_protobuf_c_version());
}

static void
harden(void)
{
	struct rlimit	rl = { 0, 0 };

	if (setrlimit(RLIMIT_CORE, &rl) == -1)
		log_warn("setrlimit(RLIMIT_CORE)");
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		log_warn("prctl(PR_SET_DUMPABLE)");
}

int
main(int argc, char **argv)
{
	struct config		 cfg;
	struct credstore	*store = NULL;
	struct credsrc		*src = NULL;
	struct filesrc		*files = NULL;
	struct ratelimit	*rl = NULL;
	struct grpcsrv		*srv = NULL;
	sigset_t		 set;
	char			 err[512];
	unsigned		 expect = CF_GROUP_CA | CF_GROUP_TLS;
	int			 sig, rc = 1;

	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		config_usage(stdout);
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		print_version();
		return 0;
	}
	if (config_load(&cfg, argc, argv, 1, err, sizeof(err)) == -1) {
		fprintf(stderr, "talos-csr-signer: configuration error: %s\n", err);
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
	if (config_kube_mode(&cfg)) {
		fprintf(stderr, "talos-csr-signer: configuration error: CA_SECRET/TLS_SECRET: "
		    "Kubernetes mode is not available in this build\n");
		goto out;
	}
	if ((files = filesrc_new(&cfg, src, expect, expect)) == NULL)
		fatalx("out of memory");
	if (filesrc_load(files, err, sizeof(err)) == -1) {
		fprintf(stderr, "talos-csr-signer: configuration error: %s\n", err);
		goto out;
	}
	if (filesrc_start(files) == -1)
		goto out;
	if (cfg.rate_limit_rps > 0 &&
	    (rl = ratelimit_new(cfg.rate_limit_rps, cfg.rate_limit_burst,
	    (size_t)cfg.rate_limit_table)) == NULL)
		fatalx("out of memory");
	if ((srv = grpcsrv_start(&cfg, store, rl, err, sizeof(err))) == NULL) {
		fprintf(stderr, "talos-csr-signer: %s\n", err);
		goto out;
	}
	{
		char v[32];
		struct log_field f[] = {
			LF_S("version", TCS_VERSION), LF_S("commit", TCS_COMMIT),
			LF_I("port", grpcsrv_port(srv)), LF_S("cert_ttl", (util_format_duration(
			    cfg.cert_ttl_ms, v, sizeof(v)), v)),
		};
		log_record(LOG_INFO, "serving", f, sizeof(f) / sizeof(f[0]));
	}

	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			log_info("SIGHUP: reloading credentials");
			filesrc_reload(files);
			continue;
		}
		log_info("%s: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
		break;
	}
	rc = 0;
out:
	grpcsrv_shutdown(srv, cfg.shutdown_grace_ms);
	filesrc_free(files);
	ratelimit_free(rl);
	credsrc_free(src);
	credstore_free(store);
	config_free(&cfg);
	if (rc == 0)
		log_info("stopped");
	return rc;
}
