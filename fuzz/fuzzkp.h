/*
 * fuzzkp.h: the one body of the two keeper protocol targets (fuzz_kp_keeper,
 * fuzz_kp_network); each target is this check run in one direction.
 *
 * Input: one whole message as it comes off the socket (header and payload).
 * Checked beyond "no crash": a message that decodes re-encodes to the same
 * bytes' meaning (decode(encode(decode(x))) equals decode(x) field by field),
 * and one that does not decode leaves the message cleared.
 */
#ifndef TCS_FUZZKP_H
#define TCS_FUZZKP_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keeperproto.h"

static void
same(const struct kp_msg *a, const struct kp_msg *b)
{
	if (a->type != b->type || a->id != b->id || a->csr_len != b->csr_len ||
	    (a->csr_len && memcmp(a->csr, b->csr, a->csr_len) != 0) ||
	    strcmp(a->peer, b->peer) != 0 || strcmp(a->trace, b->trace) != 0 ||
	    a->status != b->status || strcmp(a->message, b->message) != 0 ||
	    a->crt_len != b->crt_len || (a->crt_len && memcmp(a->crt, b->crt, a->crt_len) != 0) ||
	    a->gen != b->gen || a->tls_cert_len != b->tls_cert_len ||
	    a->tls_key_len != b->tls_key_len || a->ca_bundle_len != b->ca_bundle_len ||
	    a->ndigests != b->ndigests ||
	    (a->ndigests && memcmp(a->digests, b->digests, a->ndigests * KP_DIGEST_LEN) != 0) ||
	    memcmp(a->tls_digest, b->tls_digest, KP_DIGEST_LEN) != 0 ||
	    strcmp(a->tls_fp, b->tls_fp) != 0 || a->tls_not_after != b->tls_not_after ||
	    a->ca_not_after != b->ca_not_after || a->kind != b->kind ||
	    strcmp(a->related, b->related) != 0)
		abort();
}

static int
fuzz_kp_one(const uint8_t *data, size_t size, enum kp_dir dir)
{
	static struct kp_msg m, again;
	struct sbuf          out;
	char                 err[256];

	if (kp_decode(data, size, dir, &m, err, sizeof(err)) == -1) {
		if (m.type != 0 || m.csr != NULL || m.crt != NULL || err[0] == '\0')
			abort();
		return 0;
	}
	sbuf_init(&out, KP_HEADER_LEN + KP_MAX_PAYLOAD);
	if (kp_encode(&out, &m) == -1 ||
	    kp_decode(out.data, out.len, dir, &again, err, sizeof(err)) == -1)
		abort();
	same(&m, &again);
	sbuf_free(&out);
	return 0;
}

#endif /* TCS_FUZZKP_H */
