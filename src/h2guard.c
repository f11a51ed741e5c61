/*
 * h2guard.c: HTTP/2 frame guard (see h2guard.h).
 *
 * DESIGN
 * A byte-at-a-time state machine over three phases: the 24-byte client
 * preface, the 9-byte frame header, then the payload, which is skipped
 * without being looked at. Every decision is taken on the frame header, so
 * an oversized header block is refused before its bytes arrive.
 *
 * Threads: none of its own; one guard is used by one thread at a time (the
 * front door's). Owns nothing outside the struct.
 */
#include "h2guard.h"

#include <string.h>

#define F_DATA         0x0
#define F_HEADERS      0x1
#define F_RST_STREAM   0x3
#define F_CONTINUATION 0x9
#define FL_END_STREAM  0x1
#define FL_END_HEADERS 0x4

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

/* Forgets `id` among the open streams; 1 if it was there. */
static int
close_stream(struct h2guard *g, uint32_t id)
{
	uint32_t i;

	for (i = 0; i < g->nopen; i++)
		if (g->open[i] == id) {
			g->open[i] = g->open[--g->nopen];
			return 1;
		}
	return 0;
}

/* The client ended stream `id` (END_STREAM): one complete request. */
static void
end_stream(struct h2guard *g, uint32_t id)
{
	close_stream(g, id);
	g->requests++;
}

/* Takes the decision a complete frame header allows. */
static enum h2guard_verdict
on_header(struct h2guard *g, int64_t now_ms)
{
	uint32_t len = ((uint32_t)g->hdr[0] << 16) | ((uint32_t)g->hdr[1] << 8) | g->hdr[2];
	uint32_t id;

	g->type = g->hdr[3];
	g->flags = g->hdr[4];
	id = (((uint32_t)g->hdr[5] << 24) | ((uint32_t)g->hdr[6] << 16) |
		 ((uint32_t)g->hdr[7] << 8) | g->hdr[8]) &
	    0x7fffffffu;
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
			if (g->nopen >= g->lim.max_open_streams)
				return H2G_STREAMS;
			g->open[g->nopen++] = id;
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
		close_stream(g, id);
		break;
	default: break; /* SETTINGS, PING, WINDOW_UPDATE, PRIORITY, GOAWAY, unknown */
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
			p += n, len -= n, g->bytes += n;
			if ((g->need -= (uint32_t)n) == 0)
				g->phase = H2P_HEADER;
			break;
		default: g->verdict = H2G_PROTOCOL; break;
		}
		if (g->verdict == H2G_OK && g->requests == 0 &&
		    g->bytes > g->lim.max_bytes_before_request)
			g->verdict = H2G_PRE_REQUEST;
	}
	return g->verdict;
}
