/*
 * grpccli.c: a worker-like Certificate call over gRPC C core (client).
 *
 * DESIGN
 * gRPC is confined to grpcsrv.c (server) and grpccli.c (client); nothing
 * else includes <grpc/...>. One call per grpccli_certificate(): initialise
 * gRPC, build TLS channel credentials from the given roots, open a channel
 * to "ipv4:IP:PORT" / "ipv6:[IP]:PORT" (no resolver, the authority and thus
 * the TLS server name are the IP literal, as for a Talos worker), run one
 * batch {send metadata + message + close, receive metadata + message +
 * status} on a private completion queue, and tear everything down. gRPC's
 * own log lines are routed to log_debug() so the CLI's output stays clean.
 *
 * Threads: the CLI's main thread only (gRPC's internal threads come and go
 * with grpc_init()/grpc_shutdown()). Owns nothing across calls.
 */
#include "grpccli.h"

#include <arpa/inet.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#include <protobuf-c/protobuf-c.h>

#include "security.pb-c.h"

#include "log.h"

#define GRPCCLI_MAX_RESPONSE (256 * 1024)

static const char method_path[] = "/securityapi.SecurityService/Certificate";

static const struct {
	int         code;
	const char *name;
} status_names[] = {
	{ 0, "OK" },
	{ 1, "CANCELLED" },
	{ 2, "UNKNOWN" },
	{ 3, "INVALID_ARGUMENT" },
	{ 4, "DEADLINE_EXCEEDED" },
	{ 5, "NOT_FOUND" },
	{ 6, "ALREADY_EXISTS" },
	{ 7, "PERMISSION_DENIED" },
	{ 8, "RESOURCE_EXHAUSTED" },
	{ 9, "FAILED_PRECONDITION" },
	{ 10, "ABORTED" },
	{ 11, "OUT_OF_RANGE" },
	{ 12, "UNIMPLEMENTED" },
	{ 13, "INTERNAL" },
	{ 14, "UNAVAILABLE" },
	{ 15, "DATA_LOSS" },
	{ 16, "UNAUTHENTICATED" },
};

const char *
grpccli_status_name(int code)
{
	size_t i;

	for (i = 0; i < sizeof(status_names) / sizeof(status_names[0]); i++)
		if (status_names[i].code == code)
			return status_names[i].name;
	return "UNKNOWN";
}

void
grpccli_result_free(struct grpccli_result *r)
{
	free(r->ca);
	free(r->crt);
	r->ca = r->crt = NULL;
	r->ca_len = r->crt_len = 0;
}

/* gRPC's log callback: keep its lines out of the CLI's output. */
static void
quiet_log(gpr_log_func_args *a)
{
	log_debug("grpc: %s", a->message);
}

static unsigned char *
dup_bytes(const unsigned char *p, size_t n)
{
	unsigned char *d;

	if ((d = malloc(n + 1)) == NULL)
		return NULL;
	if (n > 0)
		memcpy(d, p, n);
	d[n] = '\0';
	return d;
}

/* Unpacks a CertificateResponse into res; 0 or -1. */
static int
unpack(grpc_byte_buffer *bb, struct grpccli_result *res)
{
	Securityapi__CertificateResponse *resp = NULL;
	grpc_byte_buffer_reader           rd;
	grpc_slice                        all;
	int                               rc = -1;

	if (!grpc_byte_buffer_reader_init(&rd, bb))
		return -1;
	all = grpc_byte_buffer_reader_readall(&rd);
	grpc_byte_buffer_reader_destroy(&rd);
	if (GRPC_SLICE_LENGTH(all) > GRPCCLI_MAX_RESPONSE)
		goto out;
	resp = securityapi__certificate_response__unpack(
	    NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
	if (resp == NULL)
		goto out;
	if ((res->ca = dup_bytes(resp->ca.data, resp->ca.len)) == NULL ||
	    (res->crt = dup_bytes(resp->crt.data, resp->crt.len)) == NULL)
		goto out;
	res->ca_len = resp->ca.len;
	res->crt_len = resp->crt.len;
	rc = 0;
out:
	if (resp != NULL)
		securityapi__certificate_response__free_unpacked(resp, NULL);
	grpc_slice_unref(all);
	return rc;
}

int
grpccli_certificate(const char *ip, int port, const char *roots_pem, const char *token,
    size_t token_len, const unsigned char *csr, size_t csr_len, int timeout_ms,
    struct grpccli_result *res)
{
	Securityapi__CertificateRequest req = SECURITYAPI__CERTIFICATE_REQUEST__INIT;
	grpc_channel_credentials       *creds = NULL;
	grpc_channel                   *ch = NULL;
	grpc_completion_queue          *cq = NULL;
	grpc_call                      *call = NULL;
	grpc_byte_buffer               *send = NULL, *recv = NULL;
	grpc_metadata_array             md_initial, md_trailing;
	grpc_metadata                   tok;
	grpc_slice                      payload, details = grpc_empty_slice();
	grpc_status_code                status = GRPC_STATUS_UNKNOWN;
	grpc_arg                        args[2];
	grpc_channel_args               chargs;
	grpc_op                         ops[6];
	grpc_event                      ev;
	gpr_timespec                    deadline;
	unsigned char                   a6[16];
	char                            target[96], *msg;
	int                             rc = -1, tag = 1;
	size_t                          n = 0;

	memset(res, 0, sizeof(*res));
	res->status = -1;
	if (inet_pton(AF_INET6, ip, a6) == 1)
		snprintf(target, sizeof(target), "ipv6:[%s]:%d", ip, port);
	else
		snprintf(target, sizeof(target), "ipv4:%s:%d", ip, port);

	gpr_set_log_function(quiet_log);
	grpc_init();
	grpc_metadata_array_init(&md_initial);
	grpc_metadata_array_init(&md_trailing);

	if ((creds = grpc_ssl_credentials_create(roots_pem, NULL, NULL, NULL)) == NULL) {
		snprintf(res->message, sizeof(res->message), "cannot create TLS credentials");
		goto out;
	}
	/* The TLS name is the dialed IP (as a worker's round-robin resolver sets it). */
	args[0] = (grpc_arg){ GRPC_ARG_STRING, GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
		{ .string = (char *)ip } };
	args[1] = (grpc_arg){ GRPC_ARG_INTEGER, GRPC_ARG_ENABLE_RETRIES, { .integer = 0 } };
	chargs.num_args = 2;
	chargs.args = args;
	if ((ch = grpc_channel_create(target, creds, &chargs)) == NULL) {
		snprintf(
		    res->message, sizeof(res->message), "cannot create a channel to %s", target);
		goto out;
	}
	cq = grpc_completion_queue_create_for_next(NULL);
	deadline = gpr_time_add(
	    gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
	call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
	    grpc_slice_from_static_string(method_path), NULL, deadline, NULL);
	if (call == NULL) {
		snprintf(res->message, sizeof(res->message), "cannot create the call");
		goto out;
	}

	req.csr.data = (uint8_t *)csr;
	req.csr.len = csr_len;
	payload = grpc_slice_malloc(securityapi__certificate_request__get_packed_size(&req));
	securityapi__certificate_request__pack(&req, GRPC_SLICE_START_PTR(payload));
	send = grpc_raw_byte_buffer_create(&payload, 1);
	grpc_slice_unref(payload);

	memset(&tok, 0, sizeof(tok));
	tok.key = grpc_slice_from_static_string("token");
	tok.value = grpc_slice_from_copied_buffer(token, token_len);

	memset(ops, 0, sizeof(ops));
	ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[n].data.send_initial_metadata.count = 1;
	ops[n++].data.send_initial_metadata.metadata = &tok;
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n++].data.send_message.send_message = send;
	ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[n++].data.recv_initial_metadata.recv_initial_metadata = &md_initial;
	ops[n].op = GRPC_OP_RECV_MESSAGE;
	ops[n++].data.recv_message.recv_message = &recv;
	ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[n].data.recv_status_on_client.trailing_metadata = &md_trailing;
	ops[n].data.recv_status_on_client.status = &status;
	ops[n++].data.recv_status_on_client.status_details = &details;
	if (grpc_call_start_batch(call, ops, n, &tag, NULL) != GRPC_CALL_OK) {
		grpc_slice_unref(tok.value);
		snprintf(res->message, sizeof(res->message), "cannot start the call");
		goto out;
	}
	/* The deadline is enforced by gRPC; the batch always completes. */
	do {
		ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	} while (ev.type != GRPC_OP_COMPLETE || ev.tag != &tag);
	grpc_slice_unref(tok.value);

	res->status = (int)status;
	msg = grpc_slice_to_c_string(details);
	snprintf(res->message, sizeof(res->message), "%s", msg != NULL ? msg : "");
	gpr_free(msg);
	if (status == GRPC_STATUS_OK) {
		if (recv == NULL || unpack(recv, res) == -1) {
			res->status = GRPC_STATUS_INTERNAL;
			snprintf(res->message, sizeof(res->message),
			    "the response is not a CertificateResponse message");
		}
	}
	rc = 0;
out:
	if (send != NULL)
		grpc_byte_buffer_destroy(send);
	if (recv != NULL)
		grpc_byte_buffer_destroy(recv);
	grpc_slice_unref(details);
	grpc_metadata_array_destroy(&md_initial);
	grpc_metadata_array_destroy(&md_trailing);
	if (call != NULL)
		grpc_call_unref(call);
	if (ch != NULL)
		grpc_channel_destroy(ch);
	if (cq != NULL) {
		grpc_completion_queue_shutdown(cq);
		while (
		    grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
		    GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(cq);
	}
	if (creds != NULL)
		grpc_channel_credentials_release(creds);
	grpc_shutdown();
	return rc;
}
