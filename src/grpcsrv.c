/*
 * grpcsrv.c: completion-queue server for /securityapi.SecurityService/Certificate.
 *
 * DESIGN
 * Threads: grpcsrv_start() and grpcsrv_shutdown() run on main. N worker
 * threads block in grpc_completion_queue_next() on one shared CQ; a call's
 * state is advanced only by the thread that pops its tag, or, while no tag
 * of it is outstanding, by the issuer's thread that answers it, so per-call
 * data needs no lock. gRPC binds no port and terminates no TLS: the front door
 * (frontdoor.c) hands it each admitted connection as a plaintext descriptor
 * (grpcsrv_add_fd(), from the front door's thread), with insecure
 * credentials; the client's real address travels with the descriptor.
 *
 * A call's life: REQUESTED (posted with the message read in the same step,
 * GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER) -> handled and answered with one
 * batch {initial metadata, message?, status, close} -> FINISHED (freed).
 * The status is always sent together with initial metadata: without it the
 * client sees DEADLINE_EXCEEDED instead of our status (grpc-c-core.md 3).
 *
 * What a Certificate call means (token, decode, sign, status) is decided
 * by certpipe.c; this file only collects the call's metadata, message and
 * peer, and sends the status certpipe chose, with the response. With an
 * issuer that submits (the keeper), the worker hands the CSR over and goes
 * back to the queue; the issuer's thread runs signed_done(), which sends the
 * answer (grpc_call_start_batch() may be called from any thread). The
 * FINISHING tag still comes back through the queue, so a call is freed by a
 * worker, once. Shutdown waits for every submitted call's answer before the
 * queue shuts down.
 *
 * Owns: the server, the CQ, the worker threads, every struct call, the
 * descriptor -> real peer table.
 */
#include "grpcsrv.h"

#include <arpa/inet.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <protobuf-c/protobuf-c.h>

#include "certpipe.h"
#include "config.h"
#include "creds.h"
#include "credstore.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "util.h"

#define GRPCSRV_PENDING_PER_THREAD 16 /* Certificate requests kept posted */
#define GRPCSRV_PENDING_GENERIC    2  /* for unknown methods */
#define GRPCSRV_PEER_LEN           48
#define GRPCSRV_MAX_STREAMS        64
#define GRPCSRV_HANDSHAKE_MS       10000
#define GRPCSRV_IDLE_MS            (5 * 60 * 1000)

static const char method_path[] = "/securityapi.SecurityService/Certificate";

enum call_kind { CALL_CERT, CALL_GENERIC, CALL_SHUTDOWN, CALL__MAX };
enum call_state { CS_REQUESTED, CS_FINISHING, CS__MAX };

struct call {
	struct grpcsrv     *srv;
	enum call_kind      kind;
	enum call_state     state;
	grpc_call          *call;
	gpr_timespec        deadline;
	grpc_metadata_array md;
	grpc_call_details   details;
	grpc_byte_buffer   *recv;
	grpc_byte_buffer   *send;
	int                 cancelled;
	/* While the issuer signs (issuer.submit): what certpipe_end() needs. */
	struct creds           *cr;
	char                    ip[64];
	struct certpipe_call    pc;
	struct certpipe_result  pr;
	struct certpipe_pending pend;
};

struct grpcsrv {
	const struct config     *cfg;
	struct credstore        *store;
	struct ratelimit        *rl;
	struct certpipe_issuer   issuer;
	grpc_server             *server;
	grpc_completion_queue   *cq;
	void                    *method;
	pthread_t               *threads;
	int                      nthreads;
	grpc_server_credentials *insecure;    /* for descriptors handed over */
	pthread_mutex_t          handoff_mtx; /* shutting_down vs add_fd; peers */
	char (*peers)[GRPCSRV_PEER_LEN];      /* real peer by descriptor */
	size_t          npeers;
	atomic_int      shutting_down;
	struct call     shutdown_tag;
	pthread_mutex_t mtx; /* shutdown_done, signing */
	pthread_cond_t  cond;
	int             shutdown_done;
	int             signing; /* calls waiting for issuer.submit's answer */
};

const char *
grpcsrv_grpc_version(void)
{
	return grpc_version_string();
}

const char *
grpcsrv_protobuf_c_version(void)
{
	return protobuf_c_version();
}

int
grpcsrv_peer_ip(const char *peer, char *out, size_t outlen)
{
	char              dec[128];
	static const char hexd[] = "0123456789abcdef0123456789ABCDEF";
	const char       *p, *end, *h1, *h2;
	size_t            i, n = 0;

	out[0] = '\0';
	if (peer == NULL)
		return -1;
	if (strncmp(peer, "ipv4:", 5) == 0 || strncmp(peer, "ipv6:", 5) == 0)
		peer += 5;
	/* Percent-decode ("%5B::1%5D:1234"). */
	for (i = 0; peer[i] != '\0' && n + 1 < sizeof(dec); i++) {
		if (peer[i] == '%' && peer[i + 1] != '\0' && peer[i + 2] != '\0' &&
		    (h1 = strchr(hexd, peer[i + 1])) != NULL &&
		    (h2 = strchr(hexd, peer[i + 2])) != NULL) {
			dec[n++] = (char)((((h1 - hexd) & 15) << 4) | ((h2 - hexd) & 15));
			i += 2;
		} else
			dec[n++] = peer[i];
	}
	dec[n] = '\0';
	if (dec[0] == '[') {
		p = dec + 1;
		if ((end = strchr(p, ']')) == NULL)
			return -1;
	} else {
		p = dec;
		if ((end = strrchr(p, ':')) == NULL)
			end = p + strlen(p);
	}
	if ((size_t)(end - p) + 1 > outlen)
		return -1;
	memcpy(out, p, (size_t)(end - p));
	out[end - p] = '\0';
	return 0;
}

/* --- handoff from the front door ------------------------------------------ */

int
grpcsrv_add_fd(struct grpcsrv *s, int fd, const char *peer_ip)
{
	char(*grown)[GRPCSRV_PEER_LEN];
	size_t n;

	pthread_mutex_lock(&s->handoff_mtx);
	if (atomic_load(&s->shutting_down))
		goto fail;
	if ((size_t)fd >= s->npeers) {
		n = s->npeers ? s->npeers : 1024;
		while (n <= (size_t)fd)
			n *= 2;
		if ((grown = calloc(n, sizeof(*grown))) == NULL)
			goto fail;
		if (s->npeers > 0)
			memcpy(grown, s->peers, s->npeers * sizeof(*grown));
		free(s->peers);
		s->peers = grown;
		s->npeers = n;
	}
	snprintf(s->peers[fd], sizeof(s->peers[fd]), "%s", peer_ip);
	/* Takes the descriptor; its channel args are the server's. */
	grpc_server_add_channel_from_fd(s->server, fd, s->insecure);
	pthread_mutex_unlock(&s->handoff_mtx);
	return 0;
fail:
	pthread_mutex_unlock(&s->handoff_mtx);
	close(fd);
	return -1;
}

/*
 * The client's address as text. A handed-over connection's peer reads
 * "fd:N": its real address was recorded by grpcsrv_add_fd() under N (a
 * descriptor number is only reused after gRPC closed it, i.e. after its
 * calls were delivered).
 */
static int
real_peer(struct grpcsrv *s, const char *peer, char *out, size_t outlen)
{
	char *end;
	long  fd;
	int   rc = -1;

	if (peer == NULL || strncmp(peer, "fd:", 3) != 0)
		return grpcsrv_peer_ip(peer, out, outlen);
	fd = strtol(peer + 3, &end, 10);
	if (end == peer + 3 || fd < 0)
		return -1;
	pthread_mutex_lock(&s->handoff_mtx);
	if ((size_t)fd < s->npeers && s->peers[fd][0] != '\0') {
		snprintf(out, outlen, "%s", s->peers[fd]);
		rc = 0;
	}
	pthread_mutex_unlock(&s->handoff_mtx);
	return rc;
}

/* --- calls --------------------------------------------------------------- */

static int
request_call(struct grpcsrv *s, enum call_kind kind)
{
	struct call    *c;
	grpc_call_error e;

	if (atomic_load(&s->shutting_down))
		return 0;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_warnx("grpcsrv: out of memory posting a call");
		return -1;
	}
	c->srv = s;
	c->kind = kind;
	c->state = CS_REQUESTED;
	grpc_metadata_array_init(&c->md);
	if (kind == CALL_CERT) {
		e = grpc_server_request_registered_call(s->server, s->method, &c->call,
		    &c->deadline, &c->md, &c->recv, s->cq, s->cq, c);
	} else {
		grpc_call_details_init(&c->details);
		e = grpc_server_request_call(
		    s->server, &c->call, &c->details, &c->md, s->cq, s->cq, c);
	}
	if (e != GRPC_CALL_OK) {
		log_warnx("grpcsrv: cannot post a call (%d)", (int)e);
		grpc_metadata_array_destroy(&c->md);
		if (kind == CALL_GENERIC)
			grpc_call_details_destroy(&c->details);
		free(c);
		return -1;
	}
	return 0;
}

static void
call_free(struct call *c)
{
	if (c->recv != NULL)
		grpc_byte_buffer_destroy(c->recv);
	if (c->send != NULL)
		grpc_byte_buffer_destroy(c->send);
	grpc_metadata_array_destroy(&c->md);
	if (c->kind == CALL_GENERIC)
		grpc_call_details_destroy(&c->details);
	if (c->call != NULL)
		grpc_call_unref(c->call);
	free(c);
}

/* Sends {initial metadata, message?, status, close} as the call's only batch. */
static void
finish(struct call *c, grpc_status_code code, const char *msg)
{
	grpc_op         ops[4];
	grpc_slice      details = grpc_slice_from_copied_string(msg ? msg : "");
	size_t          n = 0;
	grpc_call_error e;

	memset(ops, 0, sizeof(ops));
	ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	if (c->send != NULL) {
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = c->send;
	}
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = code;
	ops[n++].data.send_status_from_server.status_details = &details;
	ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
	c->state = CS_FINISHING;
	e = grpc_call_start_batch(c->call, ops, n, c, NULL);
	grpc_slice_unref(details);
	if (e != GRPC_CALL_OK) {
		log_warnx("grpcsrv: grpc_call_start_batch failed (%d)", (int)e);
		call_free(c);
	}
}

/* Sends what certpipe decided for the call, and lets go of what it held. */
static void
respond(struct call *c)
{
	grpc_slice out;

	if (c->pr.response != NULL) {
		out =
		    grpc_slice_from_copied_buffer((const char *)c->pr.response, c->pr.response_len);
		c->send = grpc_raw_byte_buffer_create(&out, 1);
		grpc_slice_unref(out);
	}
	/* Before finish(): from then on another worker may free the call. The
	 * status and its message (static, or inside pr.res) are not freed here. */
	certpipe_result_free(&c->pr);
	creds_release(c->cr);
	c->cr = NULL;
	finish(c, (grpc_status_code)c->pr.code, c->pr.message);
}

/* certpipe_done_fn: the issuer answered (on its own thread). */
static void
signed_done(void *ctx, int rc)
{
	struct call    *c = ctx;
	struct grpcsrv *s = c->srv;

	certpipe_end(&c->pc, c->cr, &c->pend, rc, &c->pr);
	respond(c);
	pthread_mutex_lock(&s->mtx);
	if (--s->signing == 0)
		pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->mtx);
}

/*
 * Collects what the call carried (its `token` values, its message, its real
 * peer) for certpipe, which decides; sends what it decided. With an issuer
 * that submits, the worker returns to the queue while the keeper signs, and
 * signed_done() answers the call.
 */
static void
handle_certificate(struct call *c)
{
	struct grpcsrv         *s = c->srv;
	struct certpipe_pending pend;
	grpc_byte_buffer_reader rd;
	grpc_slice              all = grpc_empty_slice();
	char                   *peer;
	size_t                  i;

	peer = grpc_call_get_peer(c->call);
	if (real_peer(s, peer, c->ip, sizeof(c->ip)) == -1)
		snprintf(c->ip, sizeof(c->ip), "unknown");
	gpr_free(peer);
	c->pc.peer_ip = c->ip;
	for (i = 0; i < c->md.count; i++)
		if (grpc_slice_str_cmp(c->md.metadata[i].key, "token") == 0 &&
		    c->pc.ntokens++ == 0) {
			c->pc.token = (const char *)GRPC_SLICE_START_PTR(c->md.metadata[i].value);
			c->pc.token_len = GRPC_SLICE_LENGTH(c->md.metadata[i].value);
		}
	if (c->recv != NULL && grpc_byte_buffer_reader_init(&rd, c->recv)) {
		all = grpc_byte_buffer_reader_readall(&rd);
		grpc_byte_buffer_reader_destroy(&rd);
		c->pc.has_message = 1;
		c->pc.message = GRPC_SLICE_START_PTR(all);
		c->pc.message_len = GRPC_SLICE_LENGTH(all);
	}
	c->cr = credstore_acquire(s->store);
	if (s->issuer.submit == NULL) {
		certpipe_run(&c->pc, c->cr, s->rl, &s->issuer, &c->pr);
	} else if (certpipe_begin(&c->pc, c->cr, s->rl, &c->pr, &c->pend) == 1) {
		/* The token and message are read: only the peer is needed from now on. */
		c->pc.token = NULL;
		c->pc.message = NULL;
		/* The request is this thread's to free: the call may be answered and
		 * freed before submit() returns. */
		pend = c->pend;
		c->pend.request = NULL;
		pthread_mutex_lock(&s->mtx);
		s->signing++;
		pthread_mutex_unlock(&s->mtx);
		if (s->issuer.submit(s->issuer.arg, pend.csr, pend.csr_len, c->ip, &c->pr.res,
			&c->pend.sig, signed_done, c) == -1)
			signed_done(c, -1); /* unreachable: answered here */
		certpipe_free_request(&pend);
		grpc_slice_unref(all);
		return;
	}
	grpc_slice_unref(all);
	respond(c);
}

static void
dispatch(struct call *c, int ok)
{
	struct grpcsrv *s = c->srv;

	if (c->kind == CALL_SHUTDOWN) {
		pthread_mutex_lock(&s->mtx);
		s->shutdown_done = 1;
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->mtx);
		return;
	}
	switch (c->state) {
	case CS_REQUESTED:
		if (!ok) { /* the server is shutting down */
			call_free(c);
			return;
		}
		request_call(s, c->kind); /* keep the pool of posted calls full */
		if (c->kind == CALL_CERT)
			handle_certificate(c);
		else
			finish(c, GRPC_STATUS_UNIMPLEMENTED, "unknown method");
		return;
	case CS_FINISHING: call_free(c); return;
	default: log_warnx("grpcsrv: call in impossible state %d", (int)c->state); call_free(c);
	}
}

static void *
worker(void *arg)
{
	struct grpcsrv *s = arg;
	grpc_event      ev;

	for (;;) {
		ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type == GRPC_OP_COMPLETE)
			dispatch(ev.tag, ev.success);
	}
	return NULL;
}

/* --- start and stop -------------------------------------------------------- */

int
grpcsrv_nthreads(const struct config *cfg)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	return cfg->grpc_threads > 0 ? cfg->grpc_threads : (ncpu > 0 ? (int)ncpu : 2);
}

struct grpcsrv *
grpcsrv_start(const struct config *cfg, struct credstore *store, struct ratelimit *rl,
    const struct certpipe_issuer *issuer, char *err, size_t errlen)
{
	struct grpcsrv   *s;
	grpc_arg          args[6];
	grpc_channel_args chargs;
	int               i;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->cfg = cfg;
	s->store = store;
	s->rl = rl;
	s->issuer = *issuer;
	s->shutdown_tag.kind = CALL_SHUTDOWN;
	s->shutdown_tag.srv = s;
	pthread_mutex_init(&s->mtx, NULL);
	pthread_cond_init(&s->cond, NULL);
	pthread_mutex_init(&s->handoff_mtx, NULL);
	atomic_init(&s->shutting_down, 0);

	grpc_init();
	args[0] = (grpc_arg){ GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
		{ .integer = (int)cfg->max_request_bytes } };
	args[1] = (grpc_arg){ GRPC_ARG_INTEGER, GRPC_ARG_MAX_CONNECTION_AGE_MS,
		{ .integer = cfg->max_connection_age_ms > INT32_MAX
			? INT32_MAX
			: (int)cfg->max_connection_age_ms } };
	args[2] = (grpc_arg){ GRPC_ARG_INTEGER, GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
		{ .integer = 10000 } };
	args[3] = (grpc_arg){ GRPC_ARG_INTEGER, GRPC_ARG_MAX_CONCURRENT_STREAMS,
		{ .integer = GRPCSRV_MAX_STREAMS } };
	args[4] = (grpc_arg){ GRPC_ARG_INTEGER, GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
		{ .integer = GRPCSRV_HANDSHAKE_MS } };
	args[5] = (grpc_arg){ GRPC_ARG_INTEGER, GRPC_ARG_MAX_CONNECTION_IDLE_MS,
		{ .integer = GRPCSRV_IDLE_MS } };
	chargs.num_args = sizeof(args) / sizeof(args[0]);
	chargs.args = args;

	s->cq = grpc_completion_queue_create_for_next(NULL);
	s->server = grpc_server_create(&chargs, NULL);
	grpc_server_register_completion_queue(s->server, s->cq, NULL);
	s->method = grpc_server_register_method(
	    s->server, method_path, NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
	s->insecure = grpc_insecure_server_credentials_create();
	grpc_server_start(s->server);

	s->nthreads = grpcsrv_nthreads(cfg);
	for (i = 0; i < s->nthreads * GRPCSRV_PENDING_PER_THREAD; i++)
		request_call(s, CALL_CERT);
	for (i = 0; i < GRPCSRV_PENDING_GENERIC; i++)
		request_call(s, CALL_GENERIC);
	if ((s->threads = calloc((size_t)s->nthreads, sizeof(*s->threads))) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail_started;
	}
	for (i = 0; i < s->nthreads; i++)
		if (util_thread_start(&s->threads[i], UTIL_STACK_MEDIUM, worker, s) != 0) {
			snprintf(err, errlen, "cannot start gRPC threads");
			s->nthreads = i;
			goto fail_started;
		}
	metrics_set_serving(1);
	return s;
fail_started:
	grpcsrv_shutdown(s, 0);
	return NULL;
}

/* Waits for the shutdown tag up to `ms` (negative: forever); 1 if it came. */
static int
wait_shutdown(struct grpcsrv *s, int64_t ms)
{
	struct timespec ts;
	int             done;

	ts = util_abstime_ms(ms);
	pthread_mutex_lock(&s->mtx);
	while (!s->shutdown_done) {
		if (ms < 0)
			pthread_cond_wait(&s->cond, &s->mtx);
		else if (pthread_cond_timedwait(&s->cond, &s->mtx, &ts) == ETIMEDOUT)
			break;
	}
	done = s->shutdown_done;
	pthread_mutex_unlock(&s->mtx);
	return done;
}

/*
 * With no worker thread (their start failed), main pops the CQ itself: until
 * the shutdown tag arrives, or (queue_down) until the queue is shut down.
 */
static void
drain_here(struct grpcsrv *s, int queue_down)
{
	grpc_event ev;

	do {
		ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_OP_COMPLETE)
			dispatch(ev.tag, ev.success);
	} while (queue_down ? ev.type != GRPC_QUEUE_SHUTDOWN : !s->shutdown_done);
}

void
grpcsrv_shutdown(struct grpcsrv *s, int64_t grace_ms)
{
	int i;

	if (s == NULL)
		return;
	metrics_set_serving(0);
	pthread_mutex_lock(&s->handoff_mtx);
	atomic_store(&s->shutting_down, 1);
	pthread_mutex_unlock(&s->handoff_mtx);
	grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
	if (s->nthreads == 0) {
		/* No worker to pop the tag: drain here. */
		grpc_server_cancel_all_calls(s->server);
	} else if (!wait_shutdown(s, grace_ms)) {
		log_info("shutdown grace over: cancelling the remaining calls");
		grpc_server_cancel_all_calls(s->server);
		wait_shutdown(s, -1);
	}
	/* No batch may start once the queue shuts down: wait for the issuer's
	 * last answers (it answers or times out every call it accepted). */
	pthread_mutex_lock(&s->mtx);
	while (s->signing > 0)
		pthread_cond_wait(&s->cond, &s->mtx);
	pthread_mutex_unlock(&s->mtx);
	if (s->nthreads == 0)
		drain_here(s, 0);
	grpc_server_destroy(s->server);
	grpc_completion_queue_shutdown(s->cq);
	for (i = 0; i < s->nthreads; i++)
		pthread_join(s->threads[i], NULL);
	if (s->nthreads == 0)
		drain_here(s, 1);
	grpc_completion_queue_destroy(s->cq);
	grpc_shutdown();
	free(s->threads);
	grpc_server_credentials_release(s->insecure);
	free(s->peers);
	pthread_mutex_destroy(&s->handoff_mtx);
	pthread_mutex_destroy(&s->mtx);
	pthread_cond_destroy(&s->cond);
	free(s);
}
