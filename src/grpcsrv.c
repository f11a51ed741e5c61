/*
 * grpcsrv.c: completion-queue server for /securityapi.SecurityService/Certificate.
 *
 * DESIGN
 * Threads: grpcsrv_start() and grpcsrv_shutdown() run on main. N worker
 * threads block in grpc_completion_queue_next() on one shared CQ; a call's
 * state is advanced only by the thread that pops its tag, so per-call data
 * needs no lock. gRPC binds no port and terminates no TLS: the front door
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

#include "security.pb-c.h"

#include "audit.h"
#include "config.h"
#include "creds.h"
#include "credstore.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "signer.h"
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

/* gRPC status codes, spelled out to keep the mapping table readable. */
enum rpc_outcome {
	OUT_OK,
	OUT_UNAVAILABLE,
	OUT_MISSING_TOKEN,
	OUT_INVALID_TOKEN,
	OUT_BAD_MESSAGE,
	OUT_SIGNER, /* status taken from signer_result */
	OUT_RATE_LIMITED,
	OUT__MAX
};

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
};

struct grpcsrv {
	const struct config     *cfg;
	struct credstore        *store;
	struct ratelimit        *rl;
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
	pthread_mutex_t mtx; /* shutdown_done */
	pthread_cond_t  cond;
	int             shutdown_done;
};

/* One table maps every rejection to its wire status and message. */
static const struct {
	grpc_status_code code;
	const char      *message;
	enum audit_kind  audit;
} outcomes[OUT__MAX] = {
	[OUT_OK] = { GRPC_STATUS_OK, "", AK_ISSUED },
	[OUT_UNAVAILABLE] = { GRPC_STATUS_UNAVAILABLE, "no credentials loaded yet",
	    AK_UNAVAILABLE },
	[OUT_MISSING_TOKEN] = { GRPC_STATUS_UNAUTHENTICATED, "missing token", AK_AUTH_FAILED },
	[OUT_INVALID_TOKEN] = { GRPC_STATUS_UNAUTHENTICATED, "invalid token", AK_AUTH_FAILED },
	[OUT_BAD_MESSAGE] = { GRPC_STATUS_INVALID_ARGUMENT, "failed to decode request message",
	    AK_INVALID_CSR },
	[OUT_SIGNER] = { GRPC_STATUS_INTERNAL, NULL, AK_INTERNAL },
	[OUT_RATE_LIMITED] = { GRPC_STATUS_RESOURCE_EXHAUSTED,
	    "too many requests from this address, retry later", AK_RATE_LIMITED },
};

static const struct {
	grpc_status_code code;
	enum audit_kind  audit;
} signer_map[SIGNER__MAX] = {
	[SIGNER_OK] = { GRPC_STATUS_OK, AK_ISSUED },
	[SIGNER_BAD_DECODE] = { GRPC_STATUS_INVALID_ARGUMENT, AK_INVALID_CSR },
	[SIGNER_BAD_PARSE] = { GRPC_STATUS_INVALID_ARGUMENT, AK_INVALID_CSR },
	[SIGNER_DENIED] = { GRPC_STATUS_PERMISSION_DENIED, AK_POLICY_DENIED },
	[SIGNER_INTERNAL] = { GRPC_STATUS_INTERNAL, AK_INTERNAL },
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

/* Counts `token` entries and checks the single one in constant time. */
static enum rpc_outcome
check_token(const struct call *c, const struct creds *cr)
{
	const grpc_metadata *tok = NULL;
	size_t               i, n = 0;

	for (i = 0; i < c->md.count; i++)
		if (grpc_slice_str_cmp(c->md.metadata[i].key, "token") == 0) {
			tok = &c->md.metadata[i];
			n++;
		}
	if (n == 0)
		return OUT_MISSING_TOKEN;
	if (n > 1)
		return OUT_INVALID_TOKEN; /* never guess which value counts */
	if (!creds_token_ok(
		cr, (const char *)GRPC_SLICE_START_PTR(tok->value), GRPC_SLICE_LENGTH(tok->value)))
		return OUT_INVALID_TOKEN;
	return OUT_OK;
}

static grpc_byte_buffer *
pack_response(const struct creds *cr, const struct signer_result *res)
{
	Securityapi__CertificateResponse resp = SECURITYAPI__CERTIFICATE_RESPONSE__INIT;
	grpc_byte_buffer                *bb;
	grpc_slice                       out;
	size_t                           len;

	resp.ca.data = cr->ca_bundle;
	resp.ca.len = cr->ca_bundle_len;
	resp.crt.data = res->crt_pem;
	resp.crt.len = res->crt_len;
	len = securityapi__certificate_response__get_packed_size(&resp);
	out = grpc_slice_malloc(len);
	securityapi__certificate_response__pack(&resp, GRPC_SLICE_START_PTR(out));
	bb = grpc_raw_byte_buffer_create(&out, 1);
	grpc_slice_unref(out);
	return bb;
}

static void
handle_certificate(struct call *c)
{
	struct grpcsrv                  *s = c->srv;
	struct creds                    *cr = NULL;
	struct signer_result             res;
	struct signer_params             sp;
	struct audit_rec                 ar;
	Securityapi__CertificateRequest *req = NULL;
	grpc_byte_buffer_reader          rd;
	grpc_slice                       all = grpc_empty_slice();
	enum rpc_outcome                 out;
	grpc_status_code                 code;
	const char                      *msg;
	char                            *peer, ip[64];

	memset(&res, 0, sizeof(res));
	memset(&ar, 0, sizeof(ar));
	peer = grpc_call_get_peer(c->call);
	if (real_peer(s, peer, ip, sizeof(ip)) == -1)
		snprintf(ip, sizeof(ip), "unknown");
	gpr_free(peer);

	if (c->recv == NULL && (cr = credstore_acquire(s->store)) != NULL &&
	    check_token(c, cr) != OUT_OK) {
		/* Ended before its message, unauthenticated: a summary, not a record. */
		audit_note_reset(ip);
		finish(c, GRPC_STATUS_CANCELLED, "request ended before its message");
		creds_release(cr);
		return;
	}
	creds_release(cr);
	cr = NULL;
	if (s->rl != NULL && !ratelimit_allow(s->rl, ip)) {
		out = OUT_RATE_LIMITED;
		goto reply;
	}
	if ((cr = credstore_acquire(s->store)) == NULL) {
		out = OUT_UNAVAILABLE;
		goto reply;
	}
	if ((out = check_token(c, cr)) != OUT_OK)
		goto reply;
	if (c->recv == NULL || !grpc_byte_buffer_reader_init(&rd, c->recv)) {
		out = OUT_BAD_MESSAGE;
		goto reply;
	}
	all = grpc_byte_buffer_reader_readall(&rd);
	grpc_byte_buffer_reader_destroy(&rd);
	req = securityapi__certificate_request__unpack(
	    NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
	if (req == NULL) {
		out = OUT_BAD_MESSAGE;
		goto reply;
	}
	memset(&sp, 0, sizeof(sp));
	sp.policy = s->cfg->policy;
	sp.ttl_ms = s->cfg->cert_ttl_ms;
	sp.backdate_ms = s->cfg->cert_backdate_ms;
	sp.now = (long long)time(NULL);
	sp.peer_ip = ip;
	{
		struct timespec a, b;

		clock_gettime(CLOCK_MONOTONIC, &a);
		signer_issue(cr, req->csr.data, req->csr.len, &sp, &res);
		clock_gettime(CLOCK_MONOTONIC, &b);
		metrics_sign_latency_us(
		    (b.tv_sec - a.tv_sec) * 1000000 + (b.tv_nsec - a.tv_nsec) / 1000);
	}
	out = OUT_SIGNER;
	if (res.status == SIGNER_OK)
		c->send = pack_response(cr, &res);
reply:
	if (out == OUT_SIGNER) {
		code = signer_map[res.status].code;
		msg = res.message;
		ar.kind = signer_map[res.status].audit;
	} else {
		code = outcomes[out].code;
		msg = outcomes[out].message;
		ar.kind = outcomes[out].audit;
	}
	ar.peer = ip;
	ar.cn = res.cn;
	ar.sans = res.sans;
	ar.nsans = res.nsans;
	ar.serial = res.serial;
	ar.key_type = res.key_type;
	ar.org_removed = res.org_removed;
	ar.message = code == GRPC_STATUS_OK ? "certificate issued" : msg;
	metrics_request(ar.kind);
	audit_emit(&ar);
	finish(c, code, msg);
	if (req != NULL)
		securityapi__certificate_request__free_unpacked(req, NULL);
	grpc_slice_unref(all);
	signer_result_free(&res);
	creds_release(cr);
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

struct grpcsrv *
grpcsrv_start(const struct config *cfg, struct credstore *store, struct ratelimit *rl, char *err,
    size_t errlen)
{
	struct grpcsrv   *s;
	grpc_arg          args[6];
	grpc_channel_args chargs;
	long              ncpu;
	int               i;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->cfg = cfg;
	s->store = store;
	s->rl = rl;
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

	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	s->nthreads = cfg->grpc_threads > 0 ? cfg->grpc_threads : (ncpu > 0 ? (int)ncpu : 2);
	for (i = 0; i < s->nthreads * GRPCSRV_PENDING_PER_THREAD; i++)
		request_call(s, CALL_CERT);
	for (i = 0; i < GRPCSRV_PENDING_GENERIC; i++)
		request_call(s, CALL_GENERIC);
	if ((s->threads = calloc((size_t)s->nthreads, sizeof(*s->threads))) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail_started;
	}
	for (i = 0; i < s->nthreads; i++)
		if (pthread_create(&s->threads[i], NULL, worker, s) != 0) {
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

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
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
