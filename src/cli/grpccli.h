/*
 * grpccli.h: one Certificate call as a Talos worker makes it, over gRPC C
 * core (client side), for the `request` subcommand.
 *
 * gRPC is confined to grpcsrv.c (server) and grpccli.c (client): this header
 * exposes no gRPC type, only plain bytes and the numeric status codes, which
 * are part of the gRPC wire protocol and never change.
 *
 * The channel is TLS (ALPN h2), verified against the given roots, with the
 * server name set to the dialed IP literal, exactly as a worker's grpc-go
 * client sets it: the serving certificate must carry that IP as an IP SAN.
 * No client certificate is sent. The token travels as metadata "token".
 */
#ifndef TCS_GRPCCLI_H
#define TCS_GRPCCLI_H

#include <stddef.h>

/* gRPC status codes (wire values). */
#define GRPCCLI_OK                 0
#define GRPCCLI_INVALID_ARGUMENT   3
#define GRPCCLI_DEADLINE_EXCEEDED  4
#define GRPCCLI_PERMISSION_DENIED  7
#define GRPCCLI_RESOURCE_EXHAUSTED 8
#define GRPCCLI_UNIMPLEMENTED      12
#define GRPCCLI_INTERNAL           13
#define GRPCCLI_UNAVAILABLE        14
#define GRPCCLI_UNAUTHENTICATED    16

/* What came back; free with grpccli_result_free(). */
struct grpccli_result {
	int            status;       /* a GRPCCLI_* code */
	char           message[512]; /* status details */
	unsigned char *ca;           /* CertificateResponse.ca (NUL-terminated) */
	size_t         ca_len;
	unsigned char *crt; /* CertificateResponse.crt (NUL-terminated) */
	size_t         crt_len;
};

/*
 * Calls /securityapi.SecurityService/Certificate on ip:port with `csr` (PEM)
 * and the token, within timeout_ms. `roots_pem` (NUL-terminated) are the CAs
 * the server certificate must chain to. Fills `res` (initialised here) and
 * returns 0 when the call completed with a status (res->status says which),
 * or -1 if it could not be made at all (res->message says why). Does not
 * keep any argument. Main thread of the CLI; initialises and shuts down
 * gRPC itself.
 */
int grpccli_certificate(const char *ip, int port, const char *roots_pem, const char *token,
    size_t token_len, const unsigned char *csr, size_t csr_len, int timeout_ms,
    struct grpccli_result *res);
/* Frees what grpccli_certificate() allocated. */
void grpccli_result_free(struct grpccli_result *);
/* "OK", "UNAUTHENTICATED", ... for a status code (static strings). */
const char *grpccli_status_name(int);

#endif /* TCS_GRPCCLI_H */
