/*
 * keeper.c: the keeper process (see keeper.h): credential sources, the CA
 * key, the signer and Events, behind the keeper channels.
 *
 * DESIGN
 * keeper_main() runs in the child main() forked before any thread existed.
 * Start-up mirrors what the single process did: the credential store and
 * assembler, then in Kubernetes mode the kube client, the Secret watcher and
 * the Events poster, then the file source (loaded synchronously: a bad file
 * is a configuration error, exit 1, and the network side exits 1 with it).
 * Then one thread per request channel, then the seccomp filter (all threads
 * at once, TSYNC), then the control loop on the main thread.
 *
 * Threads: the main thread runs the control loop: it alone writes the
 * control channel (KP_CREDS, KP_WAITING, woken by the store's eventfd) and
 * reads it (KP_AUDIT handed to the Events queue, KP_RELOAD). Request
 * threads each own one request channel: read KP_SIGN, sign against the
 * current snapshot, write the audit record, reply KP_SIGNED (several
 * replies in one write while requests are queued: see serve()). The sources'
 * and Events' own threads are as in their modules.
 * Owns: the store with the CA key, the sources, the kube client, the
 * Events poster, the request threads, every channel descriptor it was given.
 *
 * Shutdown: end of file on the control channel (the network side closed
 * it after draining its calls), or a protocol error: stop the sources, close
 * the request channels, join, flush Events, wipe the store, exit.
 */
#include "keeper.h"

#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "certpipe.h"
#include "config.h"
#include "creds.h"
#include "credsrc.h"
#include "credstore.h"
#include "events.h"
#include "filesrc.h"
#include "keeperproto.h"
#include "kube.h"
#include "log.h"
#include "sandbox.h"
#include "signer.h"
#include "watch.h"

#define KEEPER_REPLY_BATCH 8 /* replies at most in one write to a request channel */

struct keeper;

struct rchan {
	struct keeper *kp;
	int            fd;
	pthread_t      th;
	int            started;
};

struct keeper {
	const struct config *cfg;
	struct credstore    *store;
	struct signer_params params;
	int                  ctrl;
	int                  wake; /* eventfd: store changes, protocol errors */
	atomic_int           stop;
	struct rchan        *chans;
	int                  nchans;
};

static void
startup_error(const char *err)
{
	struct log_field f[] = { LF_S("error", err) };

	log_record(LOG_ERROR, "configuration error", f, sizeof(f) / sizeof(f[0]));
}

static void
wake(struct keeper *kp)
{
	uint64_t one = 1;

	if (write(kp->wake, &one, sizeof(one)) == -1 && errno != EAGAIN)
		log_warn("keeper: eventfd write");
}

/*
 * Signs one request and appends its KP_SIGNED to `out`; 0, or -1 if it
 * could not be encoded (a protocol error).
 */
static int
answer(struct keeper *kp, const struct kp_msg *m, struct sbuf *out)
{
	struct signer_params sp = kp->params;
	struct signer_result res;
	struct creds        *cr;
	struct kp_msg        r;
	int                  rc;

	memset(&res, 0, sizeof(res));
	if ((cr = credstore_acquire(kp->store)) == NULL) {
		res.status = SIGNER_INTERNAL;
		snprintf(res.message, sizeof(res.message), "no credentials loaded yet");
	} else {
		sp.now = (long long)time(NULL);
		sp.peer_ip = m->peer;
		signer_issue(cr, m->csr, m->csr_len, &sp, &res);
	}
	certpipe_audit_signed(m->peer, &res);
	kp_init(&r, KP_SIGNED);
	r.id = m->id;
	r.status = (int)res.status;
	snprintf(r.message, sizeof(r.message), "%s", res.message);
	if (res.status == SIGNER_OK && cr != NULL) { /* with the bundle of the CA that signed */
		r.crt = res.crt_pem;
		r.crt_len = res.crt_len;
		r.ca_bundle = cr->ca_bundle;
		r.ca_bundle_len = cr->ca_bundle_len;
	}
	rc = kp_encode(out, &r); /* a certificate and a CA bundle: nothing secret */
	signer_result_free(&res);
	creds_release(cr);
	return rc;
}

/*
 * A request channel. Replies are written as soon as no other request is
 * waiting in the buffer; while requests queue up (the network side sends
 * faster than this thread signs) up to KEEPER_REPLY_BATCH replies go out in
 * one write, so that the network side's reader wakes once for several: a
 * reply is never held while this thread could block.
 */
static void *
serve(void *arg)
{
	struct rchan        *ch = arg;
	struct keeper       *kp = ch->kp;
	struct kp_reader     rd;
	struct sbuf          out;
	struct kp_msg        m;
	const unsigned char *msg;
	size_t               len;
	char                 err[256];
	int                  r, held = 0;

	kp_reader_init(&rd, ch->fd);
	sbuf_init(&out, KEEPER_REPLY_BATCH * (KP_HEADER_LEN + KP_MAX_PAYLOAD));
	while (!atomic_load(&kp->stop)) {
		if ((r = kp_reader_next(&rd, -1, &msg, &len)) != 1) {
			if (r == -1 && !atomic_load(&kp->stop))
				log_warn("keeper: request channel");
			break;
		}
		err[0] = '\0';
		if (kp_decode(msg, len, KP_TO_KEEPER, &m, err, sizeof(err)) == -1 ||
		    m.type != KP_SIGN || answer(kp, &m, &out) == -1) {
			log_warnx("keeper: protocol error on a request channel: %s",
			    err[0] ? err : "not a sign request, or a reply too large");
			atomic_store(&kp->stop, 1);
			wake(kp);
			break;
		}
		if (++held < KEEPER_REPLY_BATCH && kp_reader_buffered(&rd))
			continue;
		if (kp_write(ch->fd, out.data, out.len) == -1)
			break;
		out.len = 0;
		held = 0;
	}
	if (held > 0 && out.len > 0 && kp_write(ch->fd, out.data, out.len) == -1)
		log_warn("keeper: request channel");
	kp_reader_free(&rd);
	sbuf_free(&out);
	return NULL;
}

/* Sends the store's state when it changed; 0 or -1 (the channel is gone). */
static int
forward(struct keeper *kp, uint64_t *sent_gen, char *sent_wait, size_t wlen)
{
	struct creds *c;
	struct kp_msg m;
	struct sbuf   out;
	char          waiting[CREDSTORE_WAITING_MAX];
	uint64_t      gen = credstore_generation(kp->store);
	int           rc = 0;

	sbuf_init(&out, KP_HEADER_LEN + KP_MAX_PAYLOAD);
	if (gen != *sent_gen && (c = credstore_acquire(kp->store)) != NULL) {
		kp_init(&m, KP_CREDS);
		m.gen = c->gen;
		m.tls_cert = (const unsigned char *)c->tls_cert_pem;
		m.tls_cert_len = c->tls_cert_len;
		m.tls_key = (const unsigned char *)c->tls_key_pem;
		m.tls_key_len = c->tls_key_len;
		m.ca_bundle = c->ca_bundle;
		m.ca_bundle_len = c->ca_bundle_len;
		m.digests = &c->token_digests[0][0];
		m.ndigests = c->ntokens;
		memcpy(m.tls_digest, c->tls_digest, sizeof(m.tls_digest));
		snprintf(m.tls_fp, sizeof(m.tls_fp), "%s", c->tls_fp);
		m.tls_not_after = c->tls_not_after;
		m.ca_not_after = c->ca_not_after;
		if (kp_encode(&out, &m) == -1)
			log_warnx("keeper: cannot encode credentials generation %llu",
			    (unsigned long long)c->gen);
		else if ((rc = kp_write(kp->ctrl, out.data, out.len)) == 0)
			*sent_gen = c->gen;
		creds_release(c);
		sbuf_reset(&out);
	}
	credstore_waiting(kp->store, waiting, sizeof(waiting));
	if (rc == 0 && strcmp(waiting, sent_wait) != 0) {
		kp_init(&m, KP_WAITING);
		snprintf(m.message, sizeof(m.message), "%s", waiting);
		if (kp_encode(&out, &m) == 0 && (rc = kp_write(kp->ctrl, out.data, out.len)) == 0)
			snprintf(sent_wait, wlen, "%s", waiting);
	}
	sbuf_free(&out);
	return rc;
}

/* Handles one control message from the network side. */
static void
control(const struct kp_msg *m, struct events *events, struct filesrc *files, struct watch *watcher)
{
	struct audit_rec ar;

	switch (m->type) {
	case KP_AUDIT:
		/* Already logged by the network side: only the Event is left. */
		if (events == NULL)
			return;
		memset(&ar, 0, sizeof(ar));
		ar.kind = (enum audit_kind)m->kind;
		ar.peer = m->peer[0] ? m->peer : NULL;
		ar.message = m->message;
		ar.related = m->related[0] ? m->related : NULL;
		events_sink(&ar, events);
		return;
	case KP_RELOAD:
		log_info("keeper: reloading credentials");
		filesrc_reload(files);
		if (watcher != NULL)
			watch_resync(watcher);
		return;
	default: log_warnx("keeper: unexpected %s on the control channel", kp_type_name(m->type));
	}
}

static int
loop(struct keeper *kp, struct events *events, struct filesrc *files, struct watch *watcher)
{
	struct pollfd pfd[2];
	struct sbuf   in;
	struct kp_msg m;
	uint64_t      sent_gen = 0, n;
	char          sent_wait[CREDSTORE_WAITING_MAX] = "", err[256];
	int64_t       next_note = util_mono_ms() + 10000;
	int           r, rc = 1;

	sbuf_init(&in, KP_HEADER_LEN + KP_MAX_PAYLOAD);
	if (forward(kp, &sent_gen, sent_wait, sizeof(sent_wait)) == -1)
		goto out;
	for (;;) {
		pfd[0] = (struct pollfd){ kp->ctrl, POLLIN, 0 };
		pfd[1] = (struct pollfd){ kp->wake, POLLIN, 0 };
		if (poll(pfd, 2, 10000) == -1) {
			if (errno == EINTR)
				continue;
			log_warn("keeper: poll");
			goto out;
		}
		if (atomic_load(&kp->stop))
			goto out; /* a protocol error on a request channel */
		if (pfd[1].revents & POLLIN) {
			if (read(kp->wake, &n, sizeof(n)) == -1 && errno != EAGAIN)
				log_warn("keeper: eventfd read");
			if (forward(kp, &sent_gen, sent_wait, sizeof(sent_wait)) == -1) {
				log_warn("keeper: control channel");
				goto out;
			}
		}
		if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			if ((r = kp_read(kp->ctrl, &in, 5000)) == 0) {
				rc = 0; /* the network side closed: the normal end */
				goto out;
			}
			if (r == -1) {
				log_warn("keeper: control channel");
				goto out;
			}
			if (kp_decode(in.data, in.len, KP_TO_KEEPER, &m, err, sizeof(err)) == -1) {
				log_warnx("keeper: protocol error on the control channel: %s", err);
				goto out;
			}
			control(&m, events, files, watcher);
		}
		if (watcher != NULL && sent_gen == 0 && util_mono_ms() >= next_note) {
			log_info("waiting for valid credentials from %s", watch_describe(watcher));
			next_note = util_mono_ms() + 10000;
		}
	}
out:
	sbuf_free(&in);
	return rc;
}

int
keeper_main(const struct config *cfg, int ctrl, const int *req, int n, int parent)
{
	struct keeper   kp;
	struct credsrc *src = NULL;
	struct filesrc *files = NULL;
	struct kube    *kube = NULL;
	struct watch   *watcher = NULL;
	struct events  *events = NULL;
	unsigned        fgroups = CF_GROUP_ALL;
	char            err[512];
	int             i, rc = 1;

	/* The network side's death kills the keeper even if it is blocked. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) == -1 || getppid() != parent)
		return 1;
	memset(&kp, 0, sizeof(kp));
	kp.cfg = cfg;
	kp.ctrl = ctrl;
	kp.nchans = n;
	kp.wake = -1;
	atomic_init(&kp.stop, 0);
	kp.params.policy = cfg->policy;
	kp.params.ttl_ms = cfg->cert_ttl_ms;
	kp.params.backdate_ms = cfg->cert_backdate_ms;
	if ((kp.wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) == -1 ||
	    (kp.chans = calloc((size_t)n, sizeof(*kp.chans))) == NULL ||
	    (kp.store = credstore_new()) == NULL || (src = credsrc_new(kp.store)) == NULL) {
		log_warn("keeper: start-up");
		goto out;
	}
	for (i = 0; i < n; i++) {
		kp.chans[i].kp = &kp;
		kp.chans[i].fd = req[i];
	}
	credstore_set_notify(kp.store, kp.wake);
	if (config_kube_mode(cfg)) {
		if (kube_global_init() == -1) { /* libcurl is loaded for this mode only */
			startup_error("cannot initialise libcurl");
			goto out;
		}
		/* Secrets through the API; files (if any) supply the other group. */
		if ((kube = kube_new(cfg, err, sizeof(err))) == NULL ||
		    (watcher = watch_new(kube, cfg, src, err, sizeof(err))) == NULL ||
		    (events = events_new(kube, cfg, err, sizeof(err))) == NULL) {
			startup_error(err);
			goto out;
		}
		fgroups = CF_GROUP_ALL & ~credsrc_expected(src); /* the Secrets registered */
		audit_set_sink(events_sink, events);             /* before any emitter thread */
		if (events_start(events) == -1)
			goto out;
	}
	if (fgroups != 0) {
		if ((files = filesrc_new(cfg, src, fgroups, err, sizeof(err))) == NULL) {
			startup_error(err);
			goto out;
		}
		if (filesrc_load(files, err, sizeof(err)) == -1) {
			startup_error(err);
			goto out;
		}
		if (filesrc_start(files) == -1)
			goto out;
	}
	if (watcher != NULL && watch_start(watcher) == -1)
		goto out;
	for (i = 0; i < n; i++) {
		if (util_thread_start(&kp.chans[i].th, UTIL_STACK_MEDIUM, serve, &kp.chans[i]) !=
		    0) {
			log_warnx("keeper: cannot start request threads");
			goto out;
		}
		kp.chans[i].started = 1;
	}
	if (sandbox_keeper(err, sizeof(err)) == -1) {
		log_warnx("keeper: seccomp filter: %s (the keeper does not run unfiltered; "
			  "%s=off disables the filter, for debugging only)",
		    err, SANDBOX_ENV);
		goto out;
	}
	rc = loop(&kp, events, files, watcher);
out:
	atomic_store(&kp.stop, 1);
	watch_free(watcher);
	filesrc_free(files);
	for (i = 0; i < n; i++)
		shutdown(req[i], SHUT_RDWR);
	for (i = 0; kp.chans != NULL && i < n; i++)
		if (kp.chans[i].started)
			pthread_join(kp.chans[i].th, NULL);
	if (events != NULL)
		audit_set_sink(NULL, NULL); /* every emitter has stopped */
	events_free(events);
	kube_free(kube);
	kube_global_cleanup();
	credsrc_free(src);
	credstore_free(kp.store); /* wipes the CA key */
	for (i = 0; i < n; i++)
		close(req[i]);
	close(ctrl);
	if (kp.wake >= 0)
		close(kp.wake);
	free(kp.chans);
	if (rc == 0)
		log_info("keeper: stopped");
	return rc;
}
