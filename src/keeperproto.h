/*
 * keeperproto.h: the messages between the network process and the keeper
 * (the process that alone holds the CA key), and their codec.
 *
 * Wire form, every message (all integers big-endian):
 *
 *   offset 0  2 bytes  magic "KP"
 *          2  1 byte   version (KP_VERSION)
 *          3  1 byte   type (enum kp_type)
 *          4  4 bytes  request id (0 when not a request or reply)
 *          8  4 bytes  payload length (<= KP_MAX_PAYLOAD)
 *         12  payload: fields, each  tag (1 byte), length (4 bytes), value
 *
 * Each type has a set of required and allowed tags (keeperproto.c's table);
 * an unknown tag, a duplicated tag, a missing required one, a length beyond
 * the field's limit, a text holding NUL or a type the reading side must not
 * receive is a protocol error: the reader closes the channel (both sides
 * are the same binary; a bad message means a bug or a compromised peer).
 * Version rule: a change of any field's meaning, or a new required tag,
 * bumps KP_VERSION; a reader refuses any other version. Both processes
 * come from one binary, so there is no negotiation.
 *
 * Directions (kp_decode() refuses a type that does not travel its way):
 *   network -> keeper  KP_SIGN    csr, peer, trace?           (request id)
 *                      KP_AUDIT   kind, peer?, message, related?
 *                      KP_RELOAD  (SIGHUP forwarded)
 *   keeper -> network  KP_SIGNED  status, message, crt?, ca_bundle? (both iff status OK:
 *                                 the bundle of the snapshot that signed; same request id)
 *                      KP_CREDS   gen, tls_cert, tls_key, ca_bundle, digests, tls_digest,
 *                                 tls_fp, tls_not_after, ca_not_after
 *                      KP_WAITING message (what the keeper waits for; "" clears)
 * The CA key has no tag: no message can carry it.
 *
 * The codec is pure (no I/O, no globals): kp_encode() appends one whole
 * message to a scrubbed buffer, kp_decode() checks one and points into it.
 * kp_write()/kp_read() move whole messages over a stream socket.
 */
#ifndef TCS_KEEPERPROTO_H
#define TCS_KEEPERPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define KP_VERSION     1
#define KP_HEADER_LEN  12
#define KP_MAX_PAYLOAD (6u * 1024 * 1024) /* KP_CREDS: serving pair, CA bundle */
#define KP_MAX_CSR     (1024 * 1024)
#define KP_MAX_TEXT    639 /* message, peer, trace, related, fingerprint */
#define KP_MAX_DIGESTS 16  /* CREDS_MAX_TOKENS */
#define KP_DIGEST_LEN  32

enum kp_type { KP_SIGN = 1, KP_SIGNED, KP_CREDS, KP_WAITING, KP_AUDIT, KP_RELOAD, KP__MAX };

/* Which side is reading: each accepts only the types sent to it. */
enum kp_dir {
	KP_TO_KEEPER,  /* the keeper reads what the network side sent */
	KP_TO_NETWORK, /* the network side reads what the keeper sent */
	KP_DIR__MAX
};

/*
 * One message, decoded or to encode. Byte fields point into the buffer
 * given to kp_decode() (or the caller's data for kp_encode()); texts are
 * copied and NUL-terminated. Fields not used by `type` are ignored by
 * kp_encode() and zero after kp_decode().
 */
struct kp_msg {
	enum kp_type type;
	uint32_t     id;
	/* KP_SIGN */
	const unsigned char *csr;
	size_t               csr_len;
	char                 peer[KP_MAX_TEXT + 1]; /* also KP_AUDIT */
	char                 trace[KP_MAX_TEXT + 1];
	/* KP_SIGNED, KP_WAITING, KP_AUDIT */
	int                  status; /* enum signer_status */
	char                 message[KP_MAX_TEXT + 1];
	const unsigned char *crt;
	size_t               crt_len;
	/* KP_CREDS (ca_bundle also in KP_SIGNED) */
	uint64_t             gen;
	const unsigned char *tls_cert, *tls_key, *ca_bundle;
	size_t               tls_cert_len, tls_key_len, ca_bundle_len;
	const unsigned char *digests; /* ndigests * KP_DIGEST_LEN bytes */
	size_t               ndigests;
	unsigned char        tls_digest[KP_DIGEST_LEN];
	char                 tls_fp[KP_MAX_TEXT + 1];
	int64_t              tls_not_after, ca_not_after;
	/* KP_AUDIT */
	int  kind; /* enum audit_kind */
	char related[KP_MAX_TEXT + 1];
};

/* Clears a message (every field zero/empty) and sets its type. */
void kp_init(struct kp_msg *, enum kp_type);

/*
 * Appends the whole message (header and payload) to `out`, which the caller
 * initialised (sbuf_init with KP_HEADER_LEN + KP_MAX_PAYLOAD or more) and
 * wipes with sbuf_free() (a KP_CREDS holds the serving key). 0, or -1 when
 * a field is over its limit or memory runs out (out unchanged in length).
 */
int kp_encode(struct sbuf *out, const struct kp_msg *);

/*
 * Checks the header: magic, version, a known type and a payload length
 * within the limit. Fills type, id and the payload length. 0 or -1. Pure.
 */
int kp_header(
    const unsigned char hdr[KP_HEADER_LEN], enum kp_type *type, uint32_t *id, uint32_t *len);

/*
 * Decodes exactly one whole message (header + payload, `len` bytes) that
 * `dir`'s reader may receive into `m` (initialised here; its byte fields
 * point into buf). 0, or -1 with a one-line reason in err. Pure.
 */
int kp_decode(const unsigned char *buf, size_t len, enum kp_dir dir, struct kp_msg *m, char *err,
    size_t errlen);

/* "sign", "signed", ... for logs. */
const char *kp_type_name(enum kp_type);

/*
 * Writes one encoded message (`len` bytes) whole on a blocking stream
 * socket (retrying short writes and EINTR; MSG_NOSIGNAL). 0 or -1 (errno).
 */
int kp_write(int fd, const void *buf, size_t len);
/*
 * Reads one whole message into `in` (reset first). timeout_ms < 0 waits
 * forever; the timeout covers the whole message. Returns 1 with a message,
 * 0 on end of file at a message boundary, -1 on error (errno: ETIMEDOUT,
 * EPROTO for a bad header or a truncated message, or the read's own).
 */
int kp_read(int fd, struct sbuf *in, int timeout_ms);

/*
 * A buffered reader for a request channel, the hot path: one recv() usually
 * brings a whole message (and any that follow are kept for the next call),
 * instead of one read for the header and one for the payload. Not for the
 * control channel (its buffer is not wiped between messages; KP_CREDS holds
 * the serving key): use kp_read() there. One thread at a time.
 */
struct kp_reader {
	int         fd;
	struct sbuf buf;
	size_t      start;      /* first unread byte in buf */
	int         timeout_ms; /* SO_RCVTIMEO in force, -1: none */
};

void kp_reader_init(struct kp_reader *, int fd);
/*
 * Returns 1 with the next whole message in *msg (valid until the next call),
 * 0 on end of file at a message boundary, -1 on error (errno: ETIMEDOUT when
 * nothing came within timeout_ms (<0: wait forever), EPROTO for a bad header
 * or a truncated message).
 */
int kp_reader_next(struct kp_reader *, int timeout_ms, const unsigned char **msg, size_t *len);
/*
 * 1 if the next kp_reader_next() returns without reading the socket (a
 * whole message, or a bad header, is already buffered), else 0.
 */
int  kp_reader_buffered(const struct kp_reader *);
void kp_reader_free(struct kp_reader *);

#endif /* TCS_KEEPERPROTO_H */
