/*
 * fuzz_kp_stream.c: the keeper protocol's stream reader (kp_reader_next,
 * kp_reader_buffered) on what a compromised network process can write to a
 * request channel: any bytes, cut anywhere, many messages back to back. Each
 * message it returns is then decoded as the keeper decodes it (fuzzkp.h).
 *
 * One reader serves the whole run, as one serves a channel for the
 * daemon's life: its buffer keeps the size the largest message gave it.
 *
 * Input: the byte stream itself. A writer thread sends it into a socketpair
 * in pieces whose sizes follow from the input (1 byte to 8 KiB), then shuts
 * its end; the reader's recv() sees those cuts or, when the writer is ahead,
 * several of them at once, as in the daemon.
 *
 * Checked beyond "no crash", against a walk of the same bytes with
 * kp_header() alone:
 *   - the messages come out whole, in order, with the stream's own bytes;
 *   - the end is 0 exactly when the stream ends on a message boundary, and
 *     otherwise -1 with EPROTO (a bad header, or a message cut short);
 *   - before each call, what the reader holds unread is the stream's next
 *     bytes, and kp_reader_buffered() says 1 exactly when those bytes are a
 *     bad header or a whole message (so the keeper never holds its replies
 *     while the next call would wait on the socket); after a 1, the call
 *     returns a message or EPROTO, never end of file or a timeout.
 */
#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzzkp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct feed {
	int            fd;
	const uint8_t *data;
	size_t         size;
};

/* The writer: the input in pieces of 1 to 8,192 bytes (a small LCG seeded by the input). */
static void *
writer(void *arg)
{
	const struct feed *f = arg;
	uint32_t           x = 2166136261u;
	size_t             off = 0, n;
	size_t             i;

	for (i = 0; i < f->size && i < 64; i++)
		x = (x ^ f->data[i]) * 16777619u;
	while (off < f->size) {
		x = x * 1103515245u + 12345u;
		n = 1 + ((x >> 8) & ((1u << ((x >> 4) % 14)) - 1));
		if (n > f->size - off)
			n = f->size - off;
		if (kp_write(f->fd, f->data + off, n) == -1)
			break; /* the reader stopped early and closed its end */
		off += n;
	}
	shutdown(f->fd, SHUT_WR);
	return NULL;
}

/* Where the stream's messages end, by kp_header() alone: the expected result of the reader. */
static size_t
walk(const uint8_t *data, size_t size, size_t *nmsg)
{
	enum kp_type type;
	uint32_t     id, plen;
	size_t       off = 0;

	*nmsg = 0;
	while (size - off >= KP_HEADER_LEN && kp_header(data + off, &type, &id, &plen) == 0 &&
	    size - off - KP_HEADER_LEN >= plen) {
		off += KP_HEADER_LEN + plen;
		(*nmsg)++;
	}
	return off;
}

/*
 * Checks that the reader's unread bytes are the stream's next ones (`rest`);
 * returns whether they are a bad header or a whole message.
 */
static int
held(const struct kp_reader *rd, const uint8_t *rest, size_t restlen)
{
	enum kp_type type;
	uint32_t     id, plen;
	size_t       have = rd->buf.len - rd->start;

	if (have > restlen || (have > 0 && memcmp(rd->buf.data + rd->start, rest, have) != 0))
		abort();
	if (have < KP_HEADER_LEN)
		return 0;
	return kp_header(rest, &type, &id, &plen) == -1 || have - KP_HEADER_LEN >= plen;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kp_reader rd; /* one for the run, like a channel's reader for its life */
	static int              ready;
	struct feed             f;
	pthread_t               th;
	const unsigned char    *msg;
	size_t                  len, off = 0, got = 0, want_msgs, end;
	int                     sv[2], r, buffered;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
		abort();
	f = (struct feed){ sv[0], data, size };
	if (pthread_create(&th, NULL, writer, &f) != 0)
		abort();
	end = walk(data, size, &want_msgs);
	if (!ready) {
		kp_reader_init(&rd, -1);
		ready = 1;
	}
	/* A new channel: nothing buffered, no receive timeout set on it yet. */
	rd.fd = sv[1];
	rd.start = rd.buf.len = 0;
	rd.timeout_ms = -1;
	for (;;) {
		buffered = kp_reader_buffered(&rd);
		if (buffered != held(&rd, data + off, size - off))
			abort();
		r = kp_reader_next(&rd, 10000, &msg, &len);
		if (r != 1)
			break;
		if (got == want_msgs || len > size - off || memcmp(msg, data + off, len) != 0)
			abort();
		off += len;
		got++;
		fuzz_kp_one(msg, len, KP_TO_KEEPER);
	}
	if (got != want_msgs || off != end)
		abort();
	if (r == 0 ? end != size : (r != -1 || errno != EPROTO || end == size))
		abort();
	if (buffered && r == 0)
		abort();
	/* Unblocks a writer still sending after an early EPROTO. */
	shutdown(sv[1], SHUT_RDWR);
	pthread_join(th, NULL);
	close(sv[0]);
	close(sv[1]);
	return 0;
}
