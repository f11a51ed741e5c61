/*
 * fuzz_request.c: the gRPC request message decoder, protobuf-c's
 * securityapi__certificate_request__unpack() from the code generated at
 * build time out of proto/security.proto.
 *
 * Checked beyond "no crash": a decoded message re-encodes, and the re-encoded
 * bytes decode to the same csr field.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "security.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Securityapi__CertificateRequest *req, *again;
	uint8_t                         *buf;
	size_t                           n;

	if ((req = securityapi__certificate_request__unpack(NULL, size, data)) == NULL)
		return 0;
	if (req->csr.len > 0 && req->csr.data == NULL)
		abort();
	n = securityapi__certificate_request__get_packed_size(req);
	if ((buf = malloc(n > 0 ? n : 1)) == NULL)
		abort();
	if (securityapi__certificate_request__pack(req, buf) != n)
		abort();
	/*
	 * Unknown fields are re-encoded as protobuf-c stored them, and it
	 * stores some that it would not accept again (field number 0 behind a
	 * non-minimal tag, e.g. 80 00 2d), so only a message without unknown
	 * fields must survive the round trip. The daemon never re-encodes a
	 * request: it reads csr and ignores the rest.
	 */
	again = securityapi__certificate_request__unpack(NULL, n, buf);
	if (again == NULL && req->base.n_unknown_fields == 0)
		abort();
	if (again != NULL &&
	    (again->csr.len != req->csr.len ||
		(req->csr.len > 0 && memcmp(again->csr.data, req->csr.data, req->csr.len) != 0)))
		abort();
	if (again != NULL)
		securityapi__certificate_request__free_unpacked(again, NULL);
	securityapi__certificate_request__free_unpacked(req, NULL);
	free(buf);
	return 0;
}
