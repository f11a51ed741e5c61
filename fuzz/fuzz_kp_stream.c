/*
 * fuzz_kp_stream.c: the keeper protocol's stream reader (kp_reader_next,
 * kp_reader_buffered) on what a compromised network process can write to a
 * request channel: any bytes, cut anywhere, many messages back to back. Each
 * message it returns is then decoded as the keeper decodes it (fuzzkp.h).
 *
 * Input: the byte stream itself (at most 64 KiB). It goes into a socketpair
 * in pieces whose sizes follow from the input (1 byte to 8 KiB), in one
 * thread: a piece is sent only when the reader could not return without
 * waiting, so its recv() sees the cuts, or several pieces at once, and the
 * run is deterministic. One reader serves the whole run, as one serves a
 * channel for the daemon's life: its buffer keeps the size the largest
 * message gave it.
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
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "fuzzkp.h"

#define MAX_INPUT  65536
#define MAX_PIECES 64 /* pieces in the socket at once; then the rest in one */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The next piece's size, 1 to 8,192 bytes and at most `left` (a small LCG). */
static size_t
piece(uint32_t *x, size_t left)
{
	size_t n;

	*x = *x * 1103515245u + 12345u;
	n = 1 + ((*x >> 8) & ((1u << ((*x >> 4) % 14)) - 1));
	return n < left ? n : left;
}

/*
 * What the `n` bytes at p start with, by kp_header() alone: the length of a
 * whole message, 0 when it is not all there yet, -1 for a bad header.
 */
static long
frame(const uint8_t *p, size_t n)
{
	enum kp_type type;
	uint32_t     id, plen;

	if (n < KP_HEADER_LEN)
		return 0;
	if (kp_header(p, &type, &id, &plen) == -1)
		return -1;
	return n - KP_HEADER_LEN >= plen ? (long)(KP_HEADER_LEN + plen) : 0;
}

/* Whether the reader can return without waiting: a bad header or a whole message. */
static int
complete(const uint8_t *p, size_t n)
{
	return frame(p, n) != 0;
}

/* Where the stream's whole messages end: the expected result of the reader. */
static size_t
walk(const uint8_t *data, size_t size, size_t *nmsg)
{
	size_t off = 0;
	long   m;

	*nmsg = 0;
	while ((m = frame(data + off, size - off)) > 0) {
		off += (size_t)m;
		(*nmsg)++;
	}
	return off;
}

/* The reader's unread bytes must be the stream's next ones (`rest`); returns their count. */
static size_t
held(const struct kp_reader *rd, const uint8_t *rest, size_t restlen)
{
	size_t have = rd->buf.len - rd->start;

	if (have > restlen || (have > 0 && memcmp(rd->buf.data + rd->start, rest, have) != 0))
		abort();
	return have;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kp_reader rd; /* one for the run, like a channel's reader for its life */
	static int              ready;
	struct timeval          tv = { 10, 0 };
	const unsigned char    *msg;
	size_t                  len, off = 0, written = 0, got = 0, want_msgs, end, i, n;
	uint32_t                x = 2166136261u;
	int                     sv[2], r = 1, buffered = 0, eof = 0, pending = 0;

	if (size > MAX_INPUT)
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1 ||
	    setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1)
		abort();
	for (i = 0; i < size && i < 64; i++)
		x = (x ^ data[i]) * 16777619u;
	end = walk(data, size, &want_msgs);
	if (!ready) {
		kp_reader_init(&rd, -1);
		ready = 1;
	}
	/* A new channel: nothing buffered, no receive timeout set on it yet. */
	rd.fd = sv[1];
	rd.start = rd.buf.len = 0;
	rd.timeout_ms = -1;
	while (r == 1) {
		if (!eof && !complete(data + off, written - off)) {
			/* The reader would wait: send it more, or the end of the stream. */
			if (written == size) {
				shutdown(sv[0], SHUT_WR);
				eof = 1;
				continue;
			}
			n = pending < MAX_PIECES ? piece(&x, size - written) : size - written;
			if (kp_write(sv[0], data + written, n) == -1)
				abort(); /* the socket buffer is full: the harness's own limit, not a finding */
			written += n;
			pending++;
			continue;
		}
		buffered = kp_reader_buffered(&rd);
		if (buffered != complete(data + off, held(&rd, data + off, size - off)))
			abort();
		r = kp_reader_next(&rd, 10000, &msg, &len);
		if (r == 1) {
			if (got == want_msgs || len > size - off ||
			    memcmp(msg, data + off, len) != 0)
				abort();
			off += len;
			got++;
			fuzz_kp_one(msg, len, KP_TO_KEEPER);
			if (off + held(&rd, data + off, size - off) == written)
				pending = 0; /* the socket is empty */
		}
	}
	if (got != want_msgs || off != end)
		abort();
	if (r == 0 ? end != size : (r != -1 || errno != EPROTO || end == size))
		abort();
	if (buffered && r == 0)
		abort();
	close(sv[0]);
	close(sv[1]);
	return 0;
}
