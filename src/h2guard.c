/*
 * h2guard.c: HTTP/2 frame guard (see h2guard.h).
 *
 * DESIGN
 * A byte-at-a-time state machine over three phases: the 24-byte client
 * preface, the 9-byte frame header, then the payload, which is skipped
 * without being looked at (but for the drain PING's acknowledgement). Every
 * decision is taken on the frame header, so an oversized header block is
 * refused before its bytes arrive. The server's stream gets a second,
 * smaller machine (header, payload; no preface: the server starts with its
 * SETTINGS frame) that ends streams and reads the last stream id of each
 * GOAWAY (the only server payload bytes it looks at).
 *
 * The live set is a small array searched linearly: it holds at most
 * H2GUARD_MAX_LIVE ids, and gRPC advertises far fewer concurrent streams.
 *
 * Threads: none of its own; one guard is used by one thread at a time (the
 * front door's). Owns nothing outside the struct.
 */
#include "h2guard.h"

#include <string.h>

#define F_DATA         0x0
#define F_HEADERS      0x1
#define F_RST_STREAM   0x3
#define F_PING         0x6
#define F_GOAWAY       0x7
#define F_CONTINUATION 0x9
#define FL_END_STREAM  0x1
#define FL_ACK         0x1
#define FL_END_HEADERS 0x4

#define CLIENT_OPEN    0x80000000u /* in live[]: the client half is open */
#define LAST_STREAM_ID 0x7fffffffu

/* The drain PING's payload; the client echoes it in its acknowledgement. */
static const unsigned char drain_opaque[8] = { 't', 'c', 's', '-', 'd', 'r', 'a', 'i' };

static const char preface[H2GUARD_PREFACE_LEN + 1] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

void
h2guard_init(struct h2guard *g, const struct h2guard_limits *lim)
{
	memset(g, 0, sizeof(*g));
	g->lim = *lim;
	if (g->lim.max_open_streams > H2GUARD_MAX_OPEN)
		g->lim.max_open_streams = H2GUARD_MAX_OPEN;
	g->phase = H2P_PREFACE;
	g->need = H2GUARD_PREFACE_LEN;
	g->rst_window_ms = -1;
	g->s_goaway = LAST_STREAM_ID;
}

uint64_t
h2guard_requests(const struct h2guard *g)
{
	return g->requests;
}

const char *
h2guard_verdict_name(enum h2guard_verdict v)
{
	static const char *const names[H2G__MAX] = {
		[H2G_OK] = "ok",
		[H2G_BAD_PREFACE] = "bad_preface",
		[H2G_PROTOCOL] = "protocol",
		[H2G_HEADER_BLOCK] = "header_block",
		[H2G_STREAMS] = "streams",
		[H2G_RST_RATE] = "rst_rate",
		[H2G_PRE_REQUEST] = "pre_request_bytes",
	};

	return v < H2G__MAX ? names[v] : "unknown";
}

/* The index of `id` in the live set, or -1. */
static int
live_find(const struct h2guard *g, uint32_t id)
{
	uint32_t i;

	for (i = 0; i < g->nlive; i++)
		if ((g->live[i] & ~CLIENT_OPEN) == id)
			return (int)i;
	return -1;
}

/* Drops the entry at index `i`; the last entry takes its place. */
static void
live_drop_at(struct h2guard *g, uint32_t i)
{
	if (g->live[i] & CLIENT_OPEN)
		g->nopen--;
	g->live[i] = g->live[--g->nlive];
}

/* Stream `id` is over (the server ended it, or either side reset it). */
static void
live_remove(struct h2guard *g, uint32_t id)
{
	int i = live_find(g, id);

	if (i >= 0)
		live_drop_at(g, (uint32_t)i);
}

/* The client ended stream `id` (END_STREAM): one complete request. */
static void
end_stream(struct h2guard *g, uint32_t id)
{
	int i = live_find(g, id);

	if (i >= 0 && (g->live[i] & CLIENT_OPEN)) {
		g->live[i] &= ~CLIENT_OPEN;
		g->nopen--;
	}
	g->requests++;
}

/* The payload length and the stream id of a 9-byte frame header (both directions). */
static uint32_t
frame_len(const uint8_t h[9])
{
	return ((uint32_t)h[0] << 16) | ((uint32_t)h[1] << 8) | h[2];
}

/* A 31-bit stream id in 4 bytes, network order, reserved bit cleared. */
static uint32_t
stream_id(const uint8_t p[4])
{
	return (((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]) &
	    LAST_STREAM_ID;
}

static uint32_t
frame_stream(const uint8_t h[9])
{
	return stream_id(h + 5);
}

/* Takes the decision a complete frame header allows. */
static enum h2guard_verdict
on_header(struct h2guard *g, int64_t now_ms)
{
	uint32_t len = frame_len(g->hdr);
	uint32_t id = frame_stream(g->hdr);

	g->type = g->hdr[3];
	g->flags = g->hdr[4];
	g->stream = id;
	g->need = len;

	/* Inside a header block only its CONTINUATION frames may come (RFC 9113 6.10). */
	if (g->block_stream != 0 && (g->type != F_CONTINUATION || id != g->block_stream))
		return H2G_PROTOCOL;
	switch (g->type) {
	case F_HEADERS:
		if (id == 0 || (id & 1) == 0)
			return H2G_PROTOCOL;
		if (len > g->lim.max_header_block)
			return H2G_HEADER_BLOCK;
		if (id > g->last_stream) { /* a new stream */
			g->last_stream = id;
			g->streams++;
			if (g->nopen >= g->lim.max_open_streams || g->nlive >= H2GUARD_MAX_LIVE)
				return H2G_STREAMS;
			if (id <= g->s_goaway) { /* above it, the server never answers */
				g->live[g->nlive++] = id | CLIENT_OPEN;
				g->nopen++;
			}
		}
		if (g->flags & FL_END_HEADERS) {
			if (g->flags & FL_END_STREAM)
				end_stream(g, id);
		} else {
			g->block_stream = id;
			g->block_bytes = len;
			g->block_end_stream = (g->flags & FL_END_STREAM) != 0;
		}
		break;
	case F_CONTINUATION:
		if (g->block_stream == 0)
			return H2G_PROTOCOL;
		if (len > g->lim.max_header_block - g->block_bytes)
			return H2G_HEADER_BLOCK;
		g->block_bytes += len;
		if (g->flags & FL_END_HEADERS) {
			if (g->block_end_stream)
				end_stream(g, id);
			g->block_stream = 0;
			g->block_bytes = 0;
		}
		break;
	case F_DATA:
		if (id != 0 && (g->flags & FL_END_STREAM))
			end_stream(g, id);
		break;
	case F_RST_STREAM:
		if (g->rst_window_ms < 0 || now_ms - g->rst_window_ms >= 1000) {
			g->rst_window_ms = now_ms;
			g->rst_count = 0;
		}
		if (++g->rst_count > g->lim.max_rst_per_sec)
			return H2G_RST_RATE;
		live_remove(g, id);
		break;
	case F_PING:
		/* Only the acknowledgement of the drain PING is read. */
		g->ack_capture = g->drain == H2D_SENT && (g->flags & FL_ACK) && len == 8;
		g->ack_len = 0;
		break;
	default: break; /* SETTINGS, WINDOW_UPDATE, PRIORITY, GOAWAY, unknown */
	}
	return H2G_OK;
}

enum h2guard_verdict
h2guard_feed(struct h2guard *g, const void *buf, size_t len, int64_t now_ms)
{
	const unsigned char *p = buf;
	size_t               n;

	while (g->verdict == H2G_OK && len > 0) {
		switch (g->phase) {
		case H2P_PREFACE:
			if (*p != (unsigned char)preface[H2GUARD_PREFACE_LEN - g->need]) {
				g->verdict = H2G_BAD_PREFACE;
				break;
			}
			p++, len--, g->bytes++;
			if (--g->need == 0)
				g->phase = H2P_HEADER;
			break;
		case H2P_HEADER:
			g->hdr[g->hlen++] = *p++;
			len--, g->bytes++;
			if (g->hlen < sizeof(g->hdr))
				break;
			g->hlen = 0;
			if ((g->verdict = on_header(g, now_ms)) != H2G_OK)
				break;
			g->phase = g->need > 0 ? H2P_PAYLOAD : H2P_HEADER;
			break;
		case H2P_PAYLOAD:
			n = len < g->need ? len : g->need;
			if (g->ack_capture) {
				memcpy(g->ack + g->ack_len, p, n); /* need <= 8 here */
				g->ack_len += (uint8_t)n;
			}
			p += n, len -= n, g->bytes += n;
			if ((g->need -= (uint32_t)n) > 0)
				break;
			g->phase = H2P_HEADER;
			if (g->ack_capture && memcmp(g->ack, drain_opaque, sizeof(g->ack)) == 0)
				g->drain = H2D_ACKED;
			g->ack_capture = 0;
			break;
		default: g->verdict = H2G_PROTOCOL; break;
		}
		if (g->verdict == H2G_OK && g->requests == 0 &&
		    g->bytes > g->lim.max_bytes_before_request)
			g->verdict = H2G_PRE_REQUEST;
	}
	return g->verdict;
}

/* --- the server's stream ------------------------------------------------------ */

/* A complete server frame header: the server ending a stream ends it here. */
static void
on_server_header(struct h2guard *g)
{
	uint8_t  type = g->s_hdr[3], flags = g->s_hdr[4];
	uint32_t id = frame_stream(g->s_hdr);

	g->s_need = frame_len(g->s_hdr);
	g->s_frames++;
	if (id == 0) {
		/* GOAWAY: last stream id (4 bytes), error code (4), debug data. */
		g->s_gcapture = type == F_GOAWAY && g->s_need >= 8;
		g->s_glen = 0;
		return;
	}
	if (((type == F_HEADERS || type == F_DATA) && (flags & FL_END_STREAM)) ||
	    type == F_RST_STREAM)
		live_remove(g, id);
}

/*
 * Reads the last stream id from the first `n` payload bytes of a server
 * GOAWAY (split anywhere). The server will not answer the streams above it.
 */
static void
goaway_read(struct h2guard *g, const unsigned char *p, size_t n)
{
	uint32_t last, i;

	while (n > 0 && g->s_glen < sizeof(g->s_gbuf))
		g->s_gbuf[g->s_glen++] = *p++, n--;
	if (g->s_glen < sizeof(g->s_gbuf))
		return;
	g->s_gcapture = 0;
	last = stream_id(g->s_gbuf);
	if (last >= g->s_goaway)
		return;
	g->s_goaway = last;
	/* Downwards: the entry moved into slot i was already kept. */
	for (i = g->nlive; i-- > 0;)
		if ((g->live[i] & ~CLIENT_OPEN) > last)
			live_drop_at(g, i);
}

size_t
h2guard_feed_server(struct h2guard *g, const void *buf, size_t len, int stop)
{
	const unsigned char *p = buf;
	size_t               n, taken = 0;

	while (taken < len) {
		if (stop && h2guard_server_boundary(g) && taken > 0)
			break;
		if (g->s_need > 0) {
			n = len - taken < g->s_need ? len - taken : g->s_need;
			if (g->s_gcapture)
				goaway_read(g, p + taken, n);
			taken += n;
			g->s_need -= (uint32_t)n;
			continue;
		}
		g->s_hdr[g->s_hlen++] = p[taken++];
		if (g->s_hlen == sizeof(g->s_hdr)) {
			g->s_hlen = 0;
			on_server_header(g);
		}
	}
	return taken;
}

int
h2guard_server_boundary(const struct h2guard *g)
{
	return g->s_frames > 0 && g->s_hlen == 0 && g->s_need == 0;
}

/* Writes one frame header at `p`. */
static void
put_header(unsigned char *p, uint32_t len, uint8_t type, uint8_t flags, uint32_t id)
{
	p[0] = (unsigned char)(len >> 16);
	p[1] = (unsigned char)(len >> 8);
	p[2] = (unsigned char)len;
	p[3] = type;
	p[4] = flags;
	p[5] = (unsigned char)(id >> 24);
	p[6] = (unsigned char)(id >> 16);
	p[7] = (unsigned char)(id >> 8);
	p[8] = (unsigned char)id;
}

void
h2guard_drain_frames(struct h2guard *g, unsigned char out[H2GUARD_DRAIN_LEN])
{
	/*
	 * GOAWAY, NO_ERROR: last stream id 2^31-1 (every stream opened so far),
	 * or the server's own if it sent one (never raised).
	 */
	put_header(out, 8, F_GOAWAY, 0, 0);
	out[9] = (unsigned char)(g->s_goaway >> 24);
	out[10] = (unsigned char)(g->s_goaway >> 16);
	out[11] = (unsigned char)(g->s_goaway >> 8);
	out[12] = (unsigned char)g->s_goaway;
	memset(out + 13, 0, 4);
	put_header(out + 17, 8, F_PING, 0, 0);
	memcpy(out + 26, drain_opaque, sizeof(drain_opaque));
	g->drain = H2D_SENT;
}

int
h2guard_quiet(const struct h2guard *g)
{
	return g->drain == H2D_ACKED && g->nlive == 0;
}

uint32_t
h2guard_live(const struct h2guard *g)
{
	return g->nlive;
}
