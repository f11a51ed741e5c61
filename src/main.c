/*
 * main.c: talos-csr-signer entry point; wiring only.
 *
 * DESIGN
 * main parses the configuration, hardens the process (no core dumps, not
 * dumpable), blocks the signals it handles (SIGINT, SIGTERM, SIGHUP,
 * SIGCHLD) so every thread inherits the mask, moves the metrics into a
 * shared mapping, and forks the keeper (keeper.h) before any thread exists:
 * gRPC, libcurl and OpenSSL start their threads after the fork, and only in
 * the process that uses them.
 *
 * Two processes from here:
 * - the keeper (child): credential sources, the CA key, the signer, Events;
 *   keeper_main() and exit. It never returns into the code below.
 * - the network side (parent, the container's main process): receives the
 *   serving credentials from the keeper (keeperc.h), starts the HTTP probe
 *   listener (so /readyz says what it waits for), waits for the first
 *   credentials, then the gRPC server (each Certificate call's sign step
 *   asks the keeper), the front door and the self-probe, then waits in
 *   sigwait(): SIGHUP is forwarded to the keeper (reload); SIGCHLD means the
 *   keeper died: log why, stop, exit 1 so the Pod restarts; SIGTERM/SIGINT:
 *   stop in reverse order and exit 0.
 *
 * Shutdown order (SIGTERM): stop the probes and the HTTP port, drain the
 * connections at the front door within SHUTDOWN_GRACE (no new connection;
 * each client told to open no new stream; the calls in flight finish and
 * still reach the keeper), shut gRPC down, let the front door deliver the
 * last bytes, flush the audit summaries, close every keeper channel (the keeper
 * reads end of file, stops its sources, flushes its Events, wipes the CA key
 * and exits), reap it with waitpid (SIGKILL after KEEPER_REAP_MS), exit 0.
 * A configuration error the keeper finds at start-up (a bad file) is logged
 * by the keeper; the network side then exits with its status (1).
 *
 * Threads of the network side: the front door (accept, TLS, HTTP/2 guard,
 * relay); the gRPC completion-queue workers and gRPC's own threads; the
 * HTTP probe/metrics threads (libmicrohttpd's); the self-probe; the keeper
 * control reader (keeperc). Subcommands `request` and `check` (cli.c) run
 * before any of this, in one process, and start none of them.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

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
#include "certpipe.h"
#include "cli.h"
#include "config.h"
#include "creds.h"
#include "credstore.h"
#include "ed25519.h"
#include "frontdoor.h"
#include "grpcsrv.h"
#include "httpd.h"
#include "keeper.h"
#include "keeperc.h"
#include "kube.h"
#include "log.h"
#include "metrics.h"
#include "probe.h"
#include "ratelimit.h"
#include "secret.h"

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

#define KEEPER_REAP_MS 10000
#define GRPC_LAST_MS   1000 /* gRPC's shutdown after the drain, at least */

/* Logs how the keeper ended; returns the exit status main should use. */
static int
keeper_ended(int status, int quiet)
{
	if (WIFEXITED(status) && WEXITSTATUS(status) == 1 && quiet)
		return 1; /* a start-up error the keeper has already logged */
	if (WIFSIGNALED(status))
		log_warnx("keeper process killed by signal %d: stopping so that the Pod restarts",
		    WTERMSIG(status));
	else
		log_warnx("keeper process exited with status %d: stopping so that the Pod restarts",
		    WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	return 1;
}

/* Reaps the keeper if it has ended (SIGCHLD); 1 and its status if so. */
static int
keeper_reaped(pid_t keeper, int *status)
{
	return waitpid(keeper, status, WNOHANG) == keeper;
}

/*
 * Waits until the keeper sent the first valid credentials. Returns 0, 1 if
 * SIGTERM/SIGINT arrived first, or -1 if the keeper ended (*status set).
 */
static int
wait_first_creds(
    struct credstore *store, struct keeperc *kc, pid_t keeper, const sigset_t *set, int *status)
{
	struct timespec ts = { 0, 50 * 1000 * 1000 };
	int             sig;

	while (credstore_generation(store) == 0) {
		sig = sigtimedwait(set, NULL, &ts);
		if (sig == SIGTERM || sig == SIGINT) {
			log_info("%s before the first credentials: shutting down",
			    sig == SIGTERM ? "SIGTERM" : "SIGINT");
			return 1;
		}
		if (sig == SIGHUP)
			keeperc_reload(kc);
		if (keeper_reaped(keeper, status))
			return -1;
	}
	return 0;
}

/*
 * Waits up to KEEPER_REAP_MS for the keeper to exit, then kills it. Returns
 * 0 if it exited with status 0, else -1 (logged).
 */
static int
reap_keeper(pid_t keeper)
{
	int64_t end = util_mono_ms() + KEEPER_REAP_MS;
	int     status = 0;

	while (waitpid(keeper, &status, WNOHANG) == 0) {
		if (util_mono_ms() >= end) {
			log_warnx("keeper did not exit within %d ms: killing it", KEEPER_REAP_MS);
			kill(keeper, SIGKILL);
			waitpid(keeper, &status, 0);
			return -1;
		}
		usleep(10 * 1000);
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	log_warnx("keeper ended with %s %d during shutdown",
	    WIFSIGNALED(status) ? "signal" : "status",
	    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	return -1;
}

/*
 * Forks the keeper with its channels: one control socketpair and `n`
 * request socketpairs. In the child, runs the keeper and exits. In the
 * parent, returns the keeper's pid and the network side's ends.
 */
static pid_t
fork_keeper(const struct config *cfg, int *ctrl, int *req, int n)
{
	int   c[2], (*r)[2] = NULL, i, rc;
	pid_t parent = getpid(), pid;

	if ((r = calloc((size_t)n, sizeof(*r))) == NULL)
		fatalx("out of memory");
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c) == -1)
		fatal("socketpair");
	for (i = 0; i < n; i++)
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, r[i]) == -1)
			fatal("socketpair");
	if ((pid = fork()) == -1)
		fatal("fork");
	if (pid == 0) {
		int *kreq;

		if ((kreq = calloc((size_t)n, sizeof(*kreq))) == NULL)
			_exit(1);
		close(c[0]);
		for (i = 0; i < n; i++) {
			close(r[i][0]);
			kreq[i] = r[i][1];
		}
		free(r);
		log_set_proc("keeper");
		rc = keeper_main(cfg, c[1], kreq, n, (int)parent);
		free(kreq);
		config_free((struct config *)cfg);
		exit(rc);
	}
	close(c[1]);
	*ctrl = c[0];
	for (i = 0; i < n; i++) {
		close(r[i][1]);
		req[i] = r[i][0];
	}
	free(r);
	return pid;
}

int
main(int argc, char **argv)
{
	struct config          cfg;
	struct credstore      *store = NULL;
	struct keeperc        *kc = NULL;
	struct ratelimit      *rl = NULL;
	struct grpcsrv        *srv = NULL;
	struct frontdoor      *door = NULL;
	struct httpd          *http = NULL;
	struct probe          *probe = NULL;
	struct certpipe_issuer issuer;
	sigset_t               set;
	char                   err[512];
	struct timespec        housekeeping = { 30, 0 };
	pid_t                  keeper = -1;
	int                    sig, status, nreq, ctrl = -1, *req = NULL, reaped = 0, rc = 1;

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
	sigaddset(&set, SIGCHLD);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* The keeper: forked now, while this process has one thread. */
	if (metrics_share() == -1)
		fatal("mmap (shared metrics)");
	nreq = grpcsrv_nthreads(&cfg);
	if ((req = calloc((size_t)nreq, sizeof(*req))) == NULL)
		fatalx("out of memory");
	keeper = fork_keeper(&cfg, &ctrl, req, nreq);
	log_set_proc("net");

	if ((store = credstore_new()) == NULL ||
	    (kc = keeperc_new(ctrl, req, nreq, store, KEEPERC_REPLY_TIMEOUT_MS)) == NULL)
		fatalx("out of memory");
	if (keeperc_start(kc) == -1)
		goto out;
	if (config_kube_mode(&cfg))
		audit_set_sink(keeperc_audit_sink, kc); /* the keeper posts the Events */
	/* First, so that probes answer (and /readyz says why) before any credential. */
	if (httpd_start(cfg.http_addr, store, &http, err, sizeof(err)) == -1) {
		startup_error("configuration error", err);
		goto out;
	}
	switch (wait_first_creds(store, kc, keeper, &set, &status)) {
	case 1: rc = 0; goto out; /* stopped by a signal before serving */
	case -1:
		reaped = 1;
		rc = keeper_ended(status, 1);
		goto out;
	}
	if (cfg.rate_limit_rps > 0 &&
	    (rl = ratelimit_new(
		 cfg.rate_limit_rps, cfg.rate_limit_burst, (size_t)cfg.rate_limit_table)) == NULL)
		fatalx("out of memory");
	issuer.issue = keeperc_issue;
	issuer.submit = keeperc_submit; /* the workers do not wait for the keeper */
	issuer.arg = kc;
	if ((srv = grpcsrv_start(&cfg, store, rl, &issuer, err, sizeof(err))) == NULL) {
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
			keeperc_reload(kc);
			continue;
		}
		if (sig == SIGCHLD) {
			if (!keeper_reaped(keeper, &status))
				continue;
			reaped = 1;
			rc = keeper_ended(status, 0);
			goto out;
		}
		log_info("%s: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
		break;
	}
	rc = 0;
out:
	httpd_stop(http); /* joins the only reader of the probe */
	probe_stop(probe);
	/*
	 * Drain (frontdoor.h): no new connections, clients told to open no new
	 * stream, calls in flight finish, all while gRPC still serves; gRPC then
	 * shuts down with what is left of the grace (at least GRPC_LAST_MS, for
	 * its own GOAWAY round trip), and the front door delivers its last bytes.
	 */
	if (reaped) {
		frontdoor_stop_accepting(door);
		grpcsrv_shutdown(srv, 0);
	} else {
		int64_t t0 = util_mono_ms(), left;

		frontdoor_drain(door, cfg.shutdown_grace_ms);
		left = cfg.shutdown_grace_ms - (util_mono_ms() - t0);
		grpcsrv_shutdown(srv, left > GRPC_LAST_MS ? left : GRPC_LAST_MS);
	}
	frontdoor_free(door);
	audit_flush_summaries(1);
	audit_set_sink(NULL, NULL); /* every emitter has stopped */
	keeperc_free(kc);           /* the keeper reads end of file and exits */
	if (keeper > 0 && !reaped && reap_keeper(keeper) == -1 && rc == 0)
		rc = 1; /* the keeper failed to stop cleanly: say so with the exit status */
	ratelimit_free(rl);
	credstore_free(store);
	free(req);
	config_free(&cfg);
	if (rc == 0)
		log_info("stopped");
	return rc;
}
