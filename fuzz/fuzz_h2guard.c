/*
 * fuzz_h2guard.c: the HTTP/2 frame guard (h2guard_feed()).
 *
 * Input: the first byte seeds the chunking and the limits; the rest is the
 * client's decrypted byte stream. It is fed in one piece and cut into
 * pieces of 1 to 64 bytes, both at one instant: both feeds must give the
 * same verdict and count the same requests (the "any split" contract). A
 * third feed advances the clock per piece, for the RST_STREAM window.
 * Then the same bytes are fed as the server's stream, after the client's,
 * once whole and once stopping at every frame boundary: every stop must be
 * a boundary, nothing may be lost, and both must leave the same live set
 * and read the same GOAWAY id; no live stream is above it, and the drain
 * GOAWAY repeats it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "h2guard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct h2guard_limits lim;
	struct h2guard        whole, cut, timed, sw, ss;
	enum h2guard_verdict  vw, vc = H2G_OK, vt = H2G_OK;
	unsigned              seed;
	size_t                off, n;
	int64_t               now = 0;
	unsigned char         drain[H2GUARD_DRAIN_LEN];

	if (size < 1)
		return 0;
	seed = data[0];
	data++, size--;
	/* Small limits (from the seed), so that every cap is reachable. */
	lim.max_header_block = 64u << (seed & 3);
	lim.max_open_streams = 1u + (seed >> 2 & 7);
	lim.max_rst_per_sec = 1u + (seed >> 5 & 7);
	lim.max_bytes_before_request = 4096;

	h2guard_init(&whole, &lim);
	vw = h2guard_feed(&whole, data, size, 0);

	h2guard_init(&cut, &lim);
	h2guard_init(&timed, &lim);
	for (off = 0; off < size; off += n) {
		n = 1 + (size_t)((seed * 31u + off * 7u + data[off]) % 64u);
		if (n > size - off)
			n = size - off;
		vc = h2guard_feed(&cut, data + off, n, 0);
		now += data[off] * 4;
		vt = h2guard_feed(&timed, data + off, n, now);
	}
	if (size > 0 && vc != vw)
		abort(); /* the verdict depends on how the bytes arrived */
	if (size > 0 && vw == H2G_OK && h2guard_requests(&cut) != h2guard_requests(&whole))
		abort();
	if (vt >= H2G__MAX || h2guard_verdict_name(vt) == NULL)
		abort();

	memcpy(&sw, &whole, sizeof(sw));
	memcpy(&ss, &whole, sizeof(ss));
	if (h2guard_feed_server(&sw, data, size, 0) != size)
		abort();
	for (off = 0; off < size; off += n) {
		n = h2guard_feed_server(&ss, data + off, size - off, 1);
		if (n == 0 || n > size - off)
			abort(); /* no progress, or more than was given */
		if (off + n < size && !h2guard_server_boundary(&ss))
			abort(); /* stopped between two frame boundaries */
	}
	if (h2guard_live(&ss) != h2guard_live(&sw) ||
	    h2guard_server_boundary(&ss) != h2guard_server_boundary(&sw) ||
	    h2guard_live(&sw) > h2guard_live(&whole) || ss.s_goaway != sw.s_goaway)
		abort();
	/* No live stream above the server's GOAWAY; the drain GOAWAY repeats its id. */
	for (off = 0; off < sw.nlive; off++)
		if ((sw.live[off] & 0x7fffffffu) > sw.s_goaway)
			abort();
	h2guard_drain_frames(&sw, drain);
	if ((((uint32_t)drain[9] << 24) | ((uint32_t)drain[10] << 16) | ((uint32_t)drain[11] << 8) |
		drain[12]) != sw.s_goaway)
		abort();
	return 0;
}
