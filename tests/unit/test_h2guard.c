/*
 * test_h2guard.c: the HTTP/2 frame guard (mirrors src/h2guard.c). Streams
 * are built frame by frame, then fed whole, byte by byte and at every split
 * point: the verdict must never depend on how the bytes arrive.
 */
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include "h2guard.h"

#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

struct stream {
	unsigned char b[1 << 20];
	size_t        n;
};

static const struct h2guard_limits lim = { 16384, 100, 100, 131072 };

static void
frame(struct stream *s, uint32_t len, uint8_t type, uint8_t flags, uint32_t id)
{
	unsigned char *p = s->b + s->n;

	cr_assert(s->n + 9 + len <= sizeof(s->b));
	p[0] = (unsigned char)(len >> 16);
	p[1] = (unsigned char)(len >> 8);
	p[2] = (unsigned char)len;
	p[3] = type;
	p[4] = flags;
	p[5] = (unsigned char)((id >> 24) & 0x7f);
	p[6] = (unsigned char)(id >> 16);
	p[7] = (unsigned char)(id >> 8);
	p[8] = (unsigned char)id;
	memset(p + 9, 0xA5, len);
	s->n += 9 + len;
}

static void
preface(struct stream *s)
{
	memcpy(s->b, PREFACE, 24);
	s->n = 24;
	frame(s, 18, 0x4, 0, 0); /* SETTINGS */
	frame(s, 4, 0x8, 0, 0);  /* WINDOW_UPDATE */
}

/* One unary gRPC call: HEADERS (END_HEADERS), DATA (END_STREAM). */
static void
call(struct stream *s, uint32_t id)
{
	frame(s, 200, 0x1, 0x4, id);
	frame(s, 600, 0x0, 0x1, id);
}

/* The verdict fed whole, byte by byte and split at every 97th point must agree. */
static enum h2guard_verdict
verdict(const struct stream *s, const struct h2guard_limits *l)
{
	struct h2guard       g;
	enum h2guard_verdict whole, v = H2G_OK;
	size_t               i, cut;

	h2guard_init(&g, l);
	whole = h2guard_feed(&g, s->b, s->n, 0);
	h2guard_init(&g, l);
	for (i = 0; i < s->n; i++)
		v = h2guard_feed(&g, s->b + i, 1, 0);
	cr_assert_eq(v, whole, "byte by byte: %s, whole: %s", h2guard_verdict_name(v),
	    h2guard_verdict_name(whole));
	for (cut = 1; cut < s->n; cut += 97) {
		h2guard_init(&g, l);
		h2guard_feed(&g, s->b, cut, 0);
		v = h2guard_feed(&g, s->b + cut, s->n - cut, 0);
		cr_assert_eq(v, whole, "split at %zu", cut);
	}
	return whole;
}

static struct stream s;

Test(h2guard, a_talos_request_passes_and_counts)
{
	struct h2guard g;

	preface(&s);
	call(&s, 1);
	cr_assert_eq(verdict(&s, &lim), H2G_OK);
	h2guard_init(&g, &lim);
	h2guard_feed(&g, s.b, s.n, 0);
	cr_assert_eq(h2guard_requests(&g), 1);
}

/* The server's side of one unary call: HEADERS, DATA, trailers (END_STREAM). */
static void
reply(struct stream *out, uint32_t id)
{
	frame(out, 40, 0x1, 0x4, id);
	frame(out, 700, 0x0, 0x0, id);
	frame(out, 30, 0x1, 0x5, id);
}

Test(h2guard, many_calls_on_one_connection_pass)
{
	struct h2guard g;
	struct stream  srv;
	uint32_t       id;

	/* Far more calls than max_open_streams or the live set, one at a time. */
	h2guard_init(&g, &lim);
	preface(&s);
	srv.n = 0;
	frame(&srv, 0, 0x4, 0, 0); /* the server's SETTINGS */
	cr_assert_eq(h2guard_feed(&g, s.b, s.n, 0), H2G_OK);
	cr_assert_eq(h2guard_feed_server(&g, srv.b, srv.n, 0), srv.n);
	for (id = 1; id < 2 * 1000; id += 2) {
		s.n = srv.n = 0;
		call(&s, id);
		reply(&srv, id);
		cr_assert_eq(h2guard_feed(&g, s.b, s.n, 0), H2G_OK, "call %u", id);
		cr_assert_eq(h2guard_live(&g), 1);
		h2guard_feed_server(&g, srv.b, srv.n, 0);
		cr_assert_eq(h2guard_live(&g), 0, "the server ended stream %u", id);
	}
	cr_assert_eq(h2guard_requests(&g), 1000);
}

Test(h2guard, more_live_streams_than_any_server_allows_are_refused)
{
	uint32_t id;

	/* Each request is complete (client half closed) but none is answered. */
	preface(&s);
	for (id = 1; id < 2 * H2GUARD_MAX_LIVE; id += 2)
		call(&s, id);
	cr_assert_eq(verdict(&s, &lim), H2G_OK, "%d live streams", H2GUARD_MAX_LIVE);
	call(&s, 2 * H2GUARD_MAX_LIVE + 1);
	cr_assert_eq(verdict(&s, &lim), H2G_STREAMS, "one more");
}

Test(h2guard, streams_end_by_server_end_server_reset_or_client_reset)
{
	struct h2guard g;
	struct stream  srv;

	h2guard_init(&g, &lim);
	preface(&s);
	call(&s, 1);
	call(&s, 3);
	frame(&s, 50, 0x1, 0x4, 5); /* open, not ended by the client */
	cr_assert_eq(h2guard_feed(&g, s.b, s.n, 0), H2G_OK);
	cr_assert_eq(h2guard_live(&g), 3);
	srv.n = 0;
	frame(&srv, 0, 0x4, 0, 0);
	frame(&srv, 30, 0x1, 0x5, 1); /* trailers-only answer */
	frame(&srv, 4, 0x3, 0x0, 3);  /* RST_STREAM */
	frame(&srv, 30, 0x1, 0x5, 9); /* a stream nobody opened: ignored */
	h2guard_feed_server(&g, srv.b, srv.n, 0);
	cr_assert_eq(h2guard_live(&g), 1);
	s.n = 0;
	frame(&s, 4, 0x3, 0x0, 5); /* the client resets the last one */
	cr_assert_eq(h2guard_feed(&g, s.b, s.n, 0), H2G_OK);
	cr_assert_eq(h2guard_live(&g), 0);
}

Test(h2guard, server_feed_stops_at_each_frame_boundary)
{
	struct h2guard g;
	struct stream  srv;
	size_t         ends[8], nends = 0, off = 0, n;

	h2guard_init(&g, &lim);
	srv.n = 0;
	cr_assert_eq(h2guard_server_boundary(&g), 0, "nothing before the server's SETTINGS");
	frame(&srv, 6, 0x4, 0, 0);
	ends[nends++] = srv.n;
	frame(&srv, 0, 0x4, 0x1, 0); /* an empty frame: a boundary right after its header */
	ends[nends++] = srv.n;
	frame(&srv, 40, 0x1, 0x4, 1);
	ends[nends++] = srv.n;
	frame(&srv, 700, 0x0, 0x0, 1);
	ends[nends++] = srv.n;
	while (off < srv.n) {
		n = h2guard_feed_server(&g, srv.b + off, srv.n - off, 1);
		cr_assert_gt(n, 0);
		off += n;
		cr_assert(h2guard_server_boundary(&g), "stopped at %zu, not a boundary", off);
		cr_assert(nends > 0 && off == ends[0], "stopped at %zu, want %zu", off, ends[0]);
		memmove(ends, ends + 1, --nends * sizeof(ends[0]));
	}
	/* Byte by byte, the boundary shows exactly at the frame ends. */
	h2guard_init(&g, &lim);
	for (off = 0; off < srv.n; off++) {
		h2guard_feed_server(&g, srv.b + off, 1, 0);
		cr_assert_eq(h2guard_server_boundary(&g),
		    off + 1 == 15 || off + 1 == 24 || off + 1 == 73 || off + 1 == srv.n, "at %zu",
		    off + 1);
	}
}

/* Feeds the client's bytes one at a time. */
static enum h2guard_verdict
feed_bytes(struct h2guard *g, const struct stream *c)
{
	enum h2guard_verdict v = H2G_OK;
	size_t               i;

	for (i = 0; i < c->n; i++)
		v = h2guard_feed(g, c->b + i, 1, 0);
	return v;
}

/* A PING frame from the client with the given flags and payload. */
static void
ping(struct stream *c, uint8_t flags, const unsigned char payload[8])
{
	frame(c, 8, 0x6, flags, 0);
	memcpy(c->b + c->n - 8, payload, 8);
}

Test(h2guard, drain_frames_are_a_goaway_then_a_ping)
{
	struct h2guard      g;
	unsigned char       f[H2GUARD_DRAIN_LEN];
	const unsigned char goaway[17] = { 0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0,
		0, 0, 0 };

	h2guard_init(&g, &lim);
	h2guard_drain_frames(&g, f);
	cr_assert_eq(memcmp(f, goaway, sizeof(goaway)), 0, "GOAWAY 2^31-1 NO_ERROR");
	cr_assert_eq(f[17], 0);
	cr_assert_eq(f[18], 0);
	cr_assert_eq(f[19], 8, "PING length");
	cr_assert_eq(f[20], 0x6, "PING type");
	cr_assert_eq(f[21], 0, "not an ACK");
	cr_assert_eq(f[22] | f[23] | f[24] | f[25], 0, "stream 0");
}

Test(h2guard, quiet_needs_the_ping_ack_and_no_live_stream)
{
	struct h2guard g;
	struct stream  srv;
	unsigned char  f[H2GUARD_DRAIN_LEN], other[8] = "otherpng";

	h2guard_init(&g, &lim);
	preface(&s);
	call(&s, 1);
	cr_assert_eq(h2guard_feed(&g, s.b, s.n, 0), H2G_OK);
	cr_assert_eq(h2guard_quiet(&g), 0, "not draining");
	h2guard_drain_frames(&g, f);

	s.n = 0;
	ping(&s, 0x1, other);      /* an ACK of someone else's PING */
	ping(&s, 0x0, f + 26);     /* our payload, but not an ACK */
	frame(&s, 7, 0x6, 0x1, 0); /* malformed length */
	cr_assert_eq(feed_bytes(&g, &s), H2G_OK);
	cr_assert_eq(g.drain, H2D_SENT, "none of those is the acknowledgement");

	s.n = 0;
	ping(&s, 0x1, f + 26);
	cr_assert_eq(feed_bytes(&g, &s), H2G_OK);
	cr_assert_eq(g.drain, H2D_ACKED);
	cr_assert_eq(h2guard_quiet(&g), 0, "stream 1 is still live");

	srv.n = 0;
	frame(&srv, 0, 0x4, 0, 0);
	reply(&srv, 1);
	h2guard_feed_server(&g, srv.b, srv.n, 0);
	cr_assert_eq(h2guard_quiet(&g), 1);
}

/* A server GOAWAY (NO_ERROR) with the given last stream id. */
static void
goaway(struct stream *out, uint32_t last)
{
	frame(out, 8, 0x7, 0, 0);
	out->b[out->n - 8] = (unsigned char)(last >> 24);
	out->b[out->n - 7] = (unsigned char)(last >> 16);
	out->b[out->n - 6] = (unsigned char)(last >> 8);
	out->b[out->n - 5] = (unsigned char)last;
	memset(out->b + out->n - 4, 0, 4);
}

/* The last stream id of the GOAWAY that h2guard_drain_frames() writes. */
static uint32_t
drain_last(struct h2guard *g)
{
	unsigned char f[H2GUARD_DRAIN_LEN];

	h2guard_drain_frames(g, f);
	return ((uint32_t)f[9] << 24) | ((uint32_t)f[10] << 16) | ((uint32_t)f[11] << 8) | f[12];
}

/*
 * gRPC's MAX_CONNECTION_AGE: a GOAWAY with 2^31-1, later one with the last
 * stream it took. The drain GOAWAY must not raise that id (a grpc-go client
 * drops the connection on a rise, failing the calls in flight), and the
 * streams above it are not waited for: gRPC will never answer them.
 */
Test(h2guard, drain_goaway_never_raises_the_servers_last_stream_id)
{
	struct h2guard g;
	struct stream  srv;
	unsigned char  f[H2GUARD_DRAIN_LEN];
	size_t         i;

	h2guard_init(&g, &lim);
	preface(&s);
	frame(&s, 50, 0x1, 0x5, 1);
	frame(&s, 50, 0x1, 0x5, 3);
	frame(&s, 50, 0x1, 0x5, 5);
	cr_assert_eq(h2guard_feed(&g, s.b, s.n, 0), H2G_OK);
	cr_assert_eq(h2guard_live(&g), 3);
	cr_assert_eq(drain_last(&g), 0x7fffffff, "no GOAWAY from the server yet");

	srv.n = 0;
	frame(&srv, 0, 0x4, 0, 0);
	goaway(&srv, 0x7fffffff); /* gRPC's first GOAWAY: nothing refused yet */
	goaway(&srv, 3);          /* its final one: stream 5 was not taken */
	frame(&srv, 9, 0x0, 0x0, 1);
	h2guard_init(&g, &lim);
	cr_assert_eq(h2guard_feed(&g, s.b, s.n, 0), H2G_OK);
	for (i = 0; i < srv.n; i++) /* split at every byte, the id's bytes too */
		h2guard_feed_server(&g, srv.b + i, 1, 0);
	cr_assert_eq(h2guard_live(&g), 2, "streams 1 and 3 are live, 5 will not be answered");
	cr_assert_eq(drain_last(&g), 3);
	s.n = 0;
	frame(&s, 50, 0x1, 0x5, 7); /* sent before the client read the GOAWAY */
	cr_assert_eq(h2guard_feed(&g, s.b, s.n, 0), H2G_OK);
	cr_assert_eq(h2guard_live(&g), 2, "stream 7 will not be answered either");

	/* A later GOAWAY may lower the id, never raise it. */
	srv.n = 0;
	goaway(&srv, 0x7fffffff);
	goaway(&srv, 1);
	h2guard_feed_server(&g, srv.b, srv.n, 0);
	cr_assert_eq(h2guard_live(&g), 1);
	cr_assert_eq(drain_last(&g), 1);

	/* Drained: the acknowledgement and stream 1's end make the connection quiet. */
	h2guard_drain_frames(&g, f);
	s.n = 0;
	ping(&s, 0x1, f + 26);
	cr_assert_eq(h2guard_feed(&g, s.b, s.n, 0), H2G_OK);
	cr_assert_eq(h2guard_quiet(&g), 0, "stream 1 is still live");
	srv.n = 0;
	frame(&srv, 30, 0x1, 0x5, 1);
	h2guard_feed_server(&g, srv.b, srv.n, 0);
	cr_assert_eq(h2guard_quiet(&g), 1);
}

/* A GOAWAY too short to hold a last stream id changes nothing. */
Test(h2guard, short_server_goaway_is_not_read)
{
	struct h2guard g;
	struct stream  srv;

	h2guard_init(&g, &lim);
	srv.n = 0;
	frame(&srv, 0, 0x4, 0, 0);
	frame(&srv, 4, 0x7, 0, 0); /* payload 0xA5...: would read as a huge id */
	frame(&srv, 8, 0x6, 0, 0); /* then a PING whose payload must not be taken for one */
	h2guard_feed_server(&g, srv.b, srv.n, 0);
	cr_assert_eq(drain_last(&g), 0x7fffffff);
}

Test(h2guard, wrong_preface_is_refused)
{
	memcpy(s.b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
	s.n = 27;
	cr_assert_eq(verdict(&s, &lim), H2G_BAD_PREFACE);
}

Test(h2guard, header_block_over_the_cap_in_one_frame)
{
	preface(&s);
	frame(&s, 16385, 0x1, 0x4, 1);
	cr_assert_eq(verdict(&s, &lim), H2G_HEADER_BLOCK);
}

Test(h2guard, endless_continuation_is_refused)
{
	int i;

	preface(&s);
	frame(&s, 100, 0x1, 0x0, 1); /* no END_HEADERS */
	for (i = 0; i < 200; i++)
		frame(&s, 100, 0x9, 0x0, 1);
	cr_assert_eq(verdict(&s, &lim), H2G_HEADER_BLOCK);
}

Test(h2guard, continuation_ending_the_block_completes_the_request)
{
	struct h2guard g;

	preface(&s);
	frame(&s, 100, 0x1, 0x1, 1); /* END_STREAM, no END_HEADERS */
	frame(&s, 100, 0x9, 0x4, 1);
	cr_assert_eq(verdict(&s, &lim), H2G_OK);
	h2guard_init(&g, &lim);
	h2guard_feed(&g, s.b, s.n, 0);
	cr_assert_eq(h2guard_requests(&g), 1);
}

Test(h2guard, frames_inside_a_header_block_are_a_protocol_error)
{
	preface(&s);
	frame(&s, 100, 0x1, 0x0, 1);
	frame(&s, 8, 0x6, 0x0, 0); /* PING in the middle */
	cr_assert_eq(verdict(&s, &lim), H2G_PROTOCOL);
	preface(&s);
	frame(&s, 100, 0x9, 0x4, 1); /* CONTINUATION without HEADERS */
	cr_assert_eq(verdict(&s, &lim), H2G_PROTOCOL);
	preface(&s);
	frame(&s, 100, 0x1, 0x0, 1);
	frame(&s, 100, 0x9, 0x4, 3); /* another stream's CONTINUATION */
	cr_assert_eq(verdict(&s, &lim), H2G_PROTOCOL);
	preface(&s);
	frame(&s, 10, 0x1, 0x4, 0); /* HEADERS on stream 0 */
	cr_assert_eq(verdict(&s, &lim), H2G_PROTOCOL);
}

Test(h2guard, too_many_open_streams)
{
	uint32_t id;

	preface(&s);
	for (id = 1; id <= 2 * 100 + 1; id += 2)
		frame(&s, 50, 0x1, 0x4, id); /* opened, never ended */
	cr_assert_eq(verdict(&s, &lim), H2G_STREAMS, "the 101st open stream");
	preface(&s);
	for (id = 1; id <= 2 * 99 + 1; id += 2)
		frame(&s, 50, 0x1, 0x4, id);
	frame(&s, 600, 0x0, 0x1, 1); /* one ends: room again */
	frame(&s, 50, 0x1, 0x4, 401);
	cr_assert_eq(verdict(&s, &lim), H2G_OK);
}

Test(h2guard, rapid_reset_is_refused_slow_resets_are_not)
{
	struct h2guard g;
	uint32_t       id;
	int            i;

	preface(&s);
	frame(&s, 100, 0x1, 0x5, 1); /* one complete request first */
	for (id = 3; id < 3 + 2 * 150; id += 2) {
		frame(&s, 50, 0x1, 0x4, id);
		frame(&s, 4, 0x3, 0x0, id);
	}
	cr_assert_eq(verdict(&s, &lim), H2G_RST_RATE);

	/* 50 resets a second for 10 s stay under 100/s. */
	h2guard_init(&g, &lim);
	preface(&s);
	cr_assert_eq(h2guard_feed(&g, s.b, s.n, 0), H2G_OK);
	for (i = 0, id = 1; i < 500; i++, id += 2) {
		s.n = 0;
		frame(&s, 50, 0x1, 0x4, id);
		frame(&s, 4, 0x3, 0x0, id);
		cr_assert_eq(h2guard_feed(&g, s.b, s.n, (int64_t)i * 20), H2G_OK, "reset %d", i);
	}
}

Test(h2guard, bytes_before_the_first_request_are_capped)
{
	int i;

	preface(&s);
	for (i = 0; i < 20; i++)
		frame(&s, 8192, 0x0, 0x0, 1); /* DATA without END_STREAM */
	cr_assert_eq(verdict(&s, &lim), H2G_PRE_REQUEST);
	/* After a complete request the cap no longer applies. */
	preface(&s);
	call(&s, 1);
	for (i = 0; i < 20; i++)
		frame(&s, 8192, 0x0, 0x0, 3);
	cr_assert_eq(verdict(&s, &lim), H2G_OK);
}

Test(h2guard, a_violation_is_sticky)
{
	struct h2guard g;

	h2guard_init(&g, &lim);
	cr_assert_eq(h2guard_feed(&g, "XRI", 3, 0), H2G_BAD_PREFACE);
	cr_assert_eq(h2guard_feed(&g, PREFACE, 24, 0), H2G_BAD_PREFACE);
	cr_assert_str_eq(h2guard_verdict_name(H2G_RST_RATE), "rst_rate");
	cr_assert_str_eq(h2guard_verdict_name(H2G__MAX), "unknown");
}
