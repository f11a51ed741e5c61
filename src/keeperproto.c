/*
 * keeperproto.c: encode and decode the keeper's messages (see keeperproto.h
 * for the wire form), and move whole messages over a stream socket.
 *
 * DESIGN
 * One table says, for each message type, which side may receive it and
 * which tags it requires and allows; one table says, for each tag, its
 * form (bytes, text, u8, u64, fixed digest) and its length limit. The
 * decoder walks the fields once, refuses anything the tables do not allow,
 * then checks what they cannot express (crt present iff status OK, digests
 * a whole number of SHA-256 values). The encoder writes only the tags of the
 * message's type, so encode then decode is the identity on them.
 *
 * Threads: any; no state. Owns nothing: decoded byte fields point into the
 * caller's buffer.
 */
#include "keeperproto.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "signer.h"

enum kp_tag {
	KT_CSR = 1,
	KT_PEER,
	KT_TRACE,
	KT_STATUS,
	KT_MESSAGE,
	KT_CRT,
	KT_GEN,
	KT_TLS_CERT,
	KT_TLS_KEY,
	KT_CA_BUNDLE,
	KT_DIGESTS,
	KT_TLS_DIGEST,
	KT_TLS_FP,
	KT_TLS_NOT_AFTER,
	KT_CA_NOT_AFTER,
	KT_KIND,
	KT_RELATED,
	KT__MAX
};

enum kp_form { KF_BYTES, KF_TEXT, KF_U8, KF_U64, KF_FIXED };

static const struct {
	enum kp_form form;
	uint32_t     max; /* bytes, or the exact length for KF_FIXED */
} tags[KT__MAX] = {
	[KT_CSR] = { KF_BYTES, KP_MAX_CSR },
	[KT_PEER] = { KF_TEXT, KP_MAX_TEXT },
	[KT_TRACE] = { KF_TEXT, KP_MAX_TEXT },
	[KT_STATUS] = { KF_U8, 1 },
	[KT_MESSAGE] = { KF_TEXT, KP_MAX_TEXT },
	[KT_CRT] = { KF_BYTES, KP_MAX_CSR },
	[KT_GEN] = { KF_U64, 8 },
	[KT_TLS_CERT] = { KF_BYTES, 1024 * 1024 },
	[KT_TLS_KEY] = { KF_BYTES, 1024 * 1024 },
	[KT_CA_BUNDLE] = { KF_BYTES, 3 * 1024 * 1024 }, /* accepted CAs + the issuing CA */
	[KT_DIGESTS] = { KF_BYTES, KP_MAX_DIGESTS *KP_DIGEST_LEN },
	[KT_TLS_DIGEST] = { KF_FIXED, KP_DIGEST_LEN },
	[KT_TLS_FP] = { KF_TEXT, KP_MAX_TEXT },
	[KT_TLS_NOT_AFTER] = { KF_U64, 8 },
	[KT_CA_NOT_AFTER] = { KF_U64, 8 },
	[KT_KIND] = { KF_U8, 1 },
	[KT_RELATED] = { KF_TEXT, KP_MAX_TEXT },
};

#define T(t) (1u << (t))

static const struct {
	const char *name;
	enum kp_dir to;
	uint32_t    required, allowed;
} types[KP__MAX] = {
	[KP_SIGN] = { "sign", KP_TO_KEEPER, T(KT_CSR) | T(KT_PEER),
	    T(KT_CSR) | T(KT_PEER) | T(KT_TRACE) },
	[KP_SIGNED] = { "signed", KP_TO_NETWORK, T(KT_STATUS) | T(KT_MESSAGE),
	    T(KT_STATUS) | T(KT_MESSAGE) | T(KT_CRT) | T(KT_CA_BUNDLE) },
	[KP_CREDS] = { "creds", KP_TO_NETWORK,
	    T(KT_GEN) | T(KT_TLS_CERT) | T(KT_TLS_KEY) | T(KT_CA_BUNDLE) | T(KT_DIGESTS) |
		T(KT_TLS_DIGEST) | T(KT_TLS_FP) | T(KT_TLS_NOT_AFTER) | T(KT_CA_NOT_AFTER),
	    T(KT_GEN) | T(KT_TLS_CERT) | T(KT_TLS_KEY) | T(KT_CA_BUNDLE) | T(KT_DIGESTS) |
		T(KT_TLS_DIGEST) | T(KT_TLS_FP) | T(KT_TLS_NOT_AFTER) | T(KT_CA_NOT_AFTER) },
	[KP_WAITING] = { "waiting", KP_TO_NETWORK, T(KT_MESSAGE), T(KT_MESSAGE) },
	[KP_AUDIT] = { "audit", KP_TO_KEEPER, T(KT_KIND) | T(KT_MESSAGE),
	    T(KT_KIND) | T(KT_MESSAGE) | T(KT_PEER) | T(KT_RELATED) },
	[KP_RELOAD] = { "reload", KP_TO_KEEPER, 0, 0 },
};

const char *
kp_type_name(enum kp_type t)
{
	return t > 0 && t < KP__MAX ? types[t].name : "unknown";
}

void
kp_init(struct kp_msg *m, enum kp_type t)
{
	memset(m, 0, sizeof(*m));
	m->type = t;
}

static void
put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static uint32_t
get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Appends one field; 0 or -1 (over the tag's limit, or no memory). */
static int
field(struct sbuf *out, enum kp_tag t, const void *v, size_t len)
{
	unsigned char h[5];

	if (len > tags[t].max || (tags[t].form == KF_FIXED && len != tags[t].max))
		return -1;
	h[0] = (unsigned char)t;
	put32(h + 1, (uint32_t)len);
	return sbuf_add(out, h, sizeof(h)) == -1 || sbuf_add(out, v, len) == -1 ? -1 : 0;
}

static int
text(struct sbuf *out, enum kp_tag t, const char *s)
{
	return field(out, t, s, strlen(s));
}

static int
u64(struct sbuf *out, enum kp_tag t, uint64_t v)
{
	unsigned char b[8];

	put32(b, (uint32_t)(v >> 32));
	put32(b + 4, (uint32_t)v);
	return field(out, t, b, sizeof(b));
}

static int
u8(struct sbuf *out, enum kp_tag t, int v)
{
	unsigned char b = (unsigned char)v;

	return v < 0 || v > 255 ? -1 : field(out, t, &b, 1);
}

static int
payload(struct sbuf *o, const struct kp_msg *m)
{
	switch (m->type) {
	case KP_SIGN:
		return field(o, KT_CSR, m->csr, m->csr_len) || text(o, KT_PEER, m->peer) ||
			(m->trace[0] && text(o, KT_TRACE, m->trace))
		    ? -1
		    : 0;
	case KP_SIGNED:
		if ((m->status == SIGNER_OK) != (m->crt != NULL) ||
		    (m->crt != NULL) != (m->ca_bundle != NULL))
			return -1;
		return u8(o, KT_STATUS, m->status) || text(o, KT_MESSAGE, m->message) ||
			(m->crt != NULL &&
			    (field(o, KT_CRT, m->crt, m->crt_len) ||
				field(o, KT_CA_BUNDLE, m->ca_bundle, m->ca_bundle_len)))
		    ? -1
		    : 0;
	case KP_CREDS:
		if (m->ndigests < 1 || m->ndigests > KP_MAX_DIGESTS)
			return -1;
		return u64(o, KT_GEN, m->gen) ||
			field(o, KT_TLS_CERT, m->tls_cert, m->tls_cert_len) ||
			field(o, KT_TLS_KEY, m->tls_key, m->tls_key_len) ||
			field(o, KT_CA_BUNDLE, m->ca_bundle, m->ca_bundle_len) ||
			field(o, KT_DIGESTS, m->digests, m->ndigests * KP_DIGEST_LEN) ||
			field(o, KT_TLS_DIGEST, m->tls_digest, KP_DIGEST_LEN) ||
			text(o, KT_TLS_FP, m->tls_fp) ||
			u64(o, KT_TLS_NOT_AFTER, (uint64_t)m->tls_not_after) ||
			u64(o, KT_CA_NOT_AFTER, (uint64_t)m->ca_not_after)
		    ? -1
		    : 0;
	case KP_WAITING: return text(o, KT_MESSAGE, m->message);
	case KP_AUDIT:
		if (m->kind < 0 || m->kind >= AK__MAX)
			return -1;
		return u8(o, KT_KIND, m->kind) || text(o, KT_MESSAGE, m->message) ||
			(m->peer[0] && text(o, KT_PEER, m->peer)) ||
			(m->related[0] && text(o, KT_RELATED, m->related))
		    ? -1
		    : 0;
	case KP_RELOAD: return 0;
	default: return -1;
	}
}

int
kp_encode(struct sbuf *out, const struct kp_msg *m)
{
	unsigned char h[KP_HEADER_LEN] = { 'K', 'P', KP_VERSION, 0 };
	size_t        start = out->len;

	if (m->type <= 0 || m->type >= KP__MAX)
		return -1;
	h[3] = (unsigned char)m->type;
	put32(h + 4, m->id);
	if (sbuf_add(out, h, sizeof(h)) == -1 || payload(out, m) == -1 ||
	    out->len - start - KP_HEADER_LEN > KP_MAX_PAYLOAD) {
		/* Wipe what was appended (it may hold the serving key). */
		explicit_bzero(out->data + start, out->len - start);
		out->len = start;
		return -1;
	}
	put32(out->data + start + 8, (uint32_t)(out->len - start - KP_HEADER_LEN));
	return 0;
}

int
kp_header(const unsigned char h[KP_HEADER_LEN], enum kp_type *type, uint32_t *id, uint32_t *len)
{
	if (h[0] != 'K' || h[1] != 'P' || h[2] != KP_VERSION || h[3] == 0 || h[3] >= KP__MAX)
		return -1;
	*type = (enum kp_type)h[3];
	*id = get32(h + 4);
	*len = get32(h + 8);
	return *len <= KP_MAX_PAYLOAD ? 0 : -1;
}

static int
get_text(char *dst, const unsigned char *v, uint32_t n)
{
	if (memchr(v, '\0', n) != NULL)
		return -1;
	memcpy(dst, v, n);
	dst[n] = '\0';
	return 0;
}

static uint64_t
get64(const unsigned char *v)
{
	return (uint64_t)get32(v) << 32 | get32(v + 4);
}

/* Stores one checked field into m. */
static int
store(struct kp_msg *m, enum kp_tag t, const unsigned char *v, uint32_t n)
{
	switch (t) {
	case KT_CSR: m->csr = v, m->csr_len = n; return 0;
	case KT_PEER: return get_text(m->peer, v, n);
	case KT_TRACE: return get_text(m->trace, v, n);
	case KT_STATUS: m->status = v[0]; return m->status < SIGNER__MAX ? 0 : -1;
	case KT_MESSAGE: return get_text(m->message, v, n);
	case KT_CRT: m->crt = v, m->crt_len = n; return 0;
	case KT_GEN: m->gen = get64(v); return 0;
	case KT_TLS_CERT: m->tls_cert = v, m->tls_cert_len = n; return 0;
	case KT_TLS_KEY: m->tls_key = v, m->tls_key_len = n; return 0;
	case KT_CA_BUNDLE: m->ca_bundle = v, m->ca_bundle_len = n; return 0;
	case KT_DIGESTS:
		if (n == 0 || n % KP_DIGEST_LEN != 0)
			return -1;
		m->digests = v, m->ndigests = n / KP_DIGEST_LEN;
		return 0;
	case KT_TLS_DIGEST: memcpy(m->tls_digest, v, KP_DIGEST_LEN); return 0;
	case KT_TLS_FP: return get_text(m->tls_fp, v, n);
	case KT_TLS_NOT_AFTER: m->tls_not_after = (int64_t)get64(v); return 0;
	case KT_CA_NOT_AFTER: m->ca_not_after = (int64_t)get64(v); return 0;
	case KT_KIND: m->kind = v[0]; return m->kind < AK__MAX ? 0 : -1;
	case KT_RELATED: return get_text(m->related, v, n);
	default: return -1;
	}
}

int
kp_decode(const unsigned char *buf, size_t len, enum kp_dir dir, struct kp_msg *m, char *err,
    size_t errlen)
{
	enum kp_type type;
	uint32_t     id, plen, n, seen = 0;
	size_t       off = KP_HEADER_LEN;
	unsigned     t;

	kp_init(m, 0);
	if (len < KP_HEADER_LEN || kp_header(buf, &type, &id, &plen) == -1) {
		snprintf(err, errlen, "bad message header");
		return -1;
	}
	if (plen != len - KP_HEADER_LEN) {
		snprintf(err, errlen, "%s: payload length %u, %zu bytes given", kp_type_name(type),
		    plen, len - KP_HEADER_LEN);
		return -1;
	}
	if (types[type].to != dir) {
		snprintf(err, errlen, "%s: not a message this side receives", kp_type_name(type));
		return -1;
	}
	m->type = type;
	m->id = id;
	while (off < len) {
		if (len - off < 5) {
			snprintf(err, errlen, "%s: truncated field", kp_type_name(type));
			goto fail;
		}
		t = buf[off];
		n = get32(buf + off + 1);
		off += 5;
		if (t == 0 || t >= KT__MAX || !(types[type].allowed & T(t)) || (seen & T(t))) {
			snprintf(err, errlen, "%s: unexpected field %u", kp_type_name(type), t);
			goto fail;
		}
		if (n > len - off || n > tags[t].max ||
		    ((tags[t].form == KF_FIXED || tags[t].form == KF_U64 ||
			 tags[t].form == KF_U8) &&
			n != tags[t].max)) {
			snprintf(
			    err, errlen, "%s: field %u: bad length %u", kp_type_name(type), t, n);
			goto fail;
		}
		if (store(m, (enum kp_tag)t, buf + off, n) == -1) {
			snprintf(err, errlen, "%s: field %u: bad value", kp_type_name(type), t);
			goto fail;
		}
		seen |= T(t);
		off += n;
	}
	if ((seen & types[type].required) != types[type].required) {
		snprintf(err, errlen, "%s: a required field is missing", kp_type_name(type));
		goto fail;
	}
	if (type == KP_SIGNED &&
	    ((m->status == SIGNER_OK) != (m->crt != NULL) ||
		(m->crt != NULL) != (m->ca_bundle != NULL))) {
		snprintf(
		    err, errlen, "signed: a certificate and its CA bundle iff the status is OK");
		goto fail;
	}
	return 0;
fail:
	kp_init(m, 0);
	return -1;
}

/* --- whole messages over a stream socket ---------------------------------- */

int
kp_write(int fd, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	ssize_t              n;

	while (len > 0) {
		if ((n = send(fd, p, len, MSG_NOSIGNAL)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads exactly len bytes before `deadline` (util_mono_ms; <0: none). 1, 0 (EOF at start) or -1. */
static int
read_full(int fd, unsigned char *p, size_t len, int64_t deadline)
{
	struct pollfd pfd = { fd, POLLIN, 0 };
	size_t        got = 0;
	ssize_t       n;
	int64_t       left;
	int           r;

	while (got < len) {
		if (deadline >= 0) {
			if ((left = deadline - util_mono_ms()) <= 0) {
				errno = ETIMEDOUT;
				return -1;
			}
			if ((r = poll(&pfd, 1, (int)left)) == -1) {
				if (errno == EINTR)
					continue;
				return -1;
			}
			if (r == 0) {
				errno = ETIMEDOUT;
				return -1;
			}
		}
		if ((n = recv(fd, p + got, len - got, 0)) == -1) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -1;
		}
		if (n == 0) {
			if (got == 0)
				return 0;
			errno = EPROTO;
			return -1;
		}
		got += (size_t)n;
	}
	return 1;
}

int
kp_read(int fd, struct sbuf *in, int timeout_ms)
{
	unsigned char h[KP_HEADER_LEN];
	enum kp_type  type;
	uint32_t      id, len;
	int64_t       deadline = timeout_ms < 0 ? -1 : util_mono_ms() + timeout_ms;
	int           r;

	sbuf_reset(in);
	if ((r = read_full(fd, h, sizeof(h), deadline)) != 1)
		return r;
	if (kp_header(h, &type, &id, &len) == -1) {
		errno = EPROTO;
		return -1;
	}
	if (sbuf_add(in, h, sizeof(h)) == -1)
		return -1;
	/* Room for the whole message (zeros), then the payload read in place. */
	while (in->len < KP_HEADER_LEN + (size_t)len) {
		static const unsigned char zero[4096];
		size_t                     step = KP_HEADER_LEN + len - in->len;

		if (step > sizeof(zero))
			step = sizeof(zero);
		if (sbuf_add(in, zero, step) == -1)
			return -1;
	}
	if (len > 0 && (r = read_full(fd, in->data + KP_HEADER_LEN, len, deadline)) != 1) {
		if (r == 0)
			errno = EPROTO;
		return -1;
	}
	return 1;
}

/* --- buffered reader (request channels) ------------------------------------ */

#define KP_READER_CHUNK (64 * 1024)

void
kp_reader_init(struct kp_reader *r, int fd)
{
	r->fd = fd;
	sbuf_init(&r->buf, KP_HEADER_LEN + KP_MAX_PAYLOAD + KP_READER_CHUNK);
	r->start = 0;
	r->timeout_ms = -1;
}

int
kp_reader_buffered(const struct kp_reader *r)
{
	enum kp_type type;
	uint32_t     id, plen;
	size_t       have = r->buf.len - r->start;

	if (have < KP_HEADER_LEN)
		return 0;
	if (kp_header(r->buf.data + r->start, &type, &id, &plen) == -1)
		return 1; /* kp_reader_next() reports it at once */
	return have >= KP_HEADER_LEN + (size_t)plen;
}

void
kp_reader_free(struct kp_reader *r)
{
	sbuf_free(&r->buf);
	r->start = 0;
}

/* Makes room for `want` bytes from r->start; 0 or -1. */
static int
room(struct kp_reader *r, size_t want)
{
	static const unsigned char zero[4096];
	size_t                     have = r->buf.len - r->start, n;

	if (r->start > 0) { /* move the unread bytes to the front */
		memmove(r->buf.data, r->buf.data + r->start, have);
		r->buf.len = have;
		r->start = 0;
	}
	while (r->buf.cap < want + 1) { /* sbuf grows by doubling */
		n = want - r->buf.len < sizeof(zero) ? want - r->buf.len : sizeof(zero);
		if (sbuf_add(&r->buf, zero, n ? n : 1) == -1)
			return -1;
	}
	r->buf.len = have;
	return 0;
}

int
kp_reader_next(struct kp_reader *r, int timeout_ms, const unsigned char **msg, size_t *len)
{
	struct timeval tv;
	enum kp_type   type;
	uint32_t       id, plen;
	size_t         have, want;
	ssize_t        n;

	if (timeout_ms != r->timeout_ms) {
		tv.tv_sec = timeout_ms < 0 ? 0 : timeout_ms / 1000;
		tv.tv_usec = timeout_ms < 0 ? 0 : (timeout_ms % 1000) * 1000;
		if (setsockopt(r->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == -1)
			return -1;
		r->timeout_ms = timeout_ms;
	}
	for (;;) {
		have = r->buf.len - r->start;
		want = KP_HEADER_LEN;
		if (have >= KP_HEADER_LEN) {
			if (kp_header(r->buf.data + r->start, &type, &id, &plen) == -1) {
				errno = EPROTO;
				return -1;
			}
			want = KP_HEADER_LEN + (size_t)plen;
			if (have >= want) {
				*msg = r->buf.data + r->start;
				*len = want;
				r->start += want;
				return 1;
			}
		}
		if (room(r, want > KP_READER_CHUNK ? want : KP_READER_CHUNK) == -1)
			return -1;
		n = recv(r->fd, r->buf.data + r->buf.len, r->buf.cap - 1 - r->buf.len, 0);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				errno = ETIMEDOUT;
			return -1;
		}
		if (n == 0) {
			if (r->buf.len == r->start)
				return 0;
			errno = EPROTO;
			return -1;
		}
		r->buf.len += (size_t)n;
	}
}
