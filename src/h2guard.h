/*
 * h2guard.h: a small HTTP/2 frame guard for one relayed connection, in
 * front of the gRPC core: the decrypted client-to-server stream is checked,
 * the server-to-client stream is followed, and the connection can be drained.
 *
 * It is not a second HTTP/2 implementation: it checks the client preface and
 * reads frame headers only (length, type, flags, stream id), plus the total
 * length of each header block (HEADERS + CONTINUATION). Payloads are skipped,
 * never decoded (HPACK stays gRPC's job); the one exception is the 8 bytes of
 * a PING acknowledgement while draining. It enforces the caps of struct
 * h2guard_limits and reports the first violation; after one, every further
 * feed returns the same verdict.
 *
 * Client side (h2guard_feed): the preface, the caps, and the streams the
 * client opens. Server side (h2guard_feed_server, gRPC's bytes before they are
 * relayed): frame boundaries and the streams the server ends. A stream is
 * live from the client's HEADERS until the server ends it (END_STREAM or
 * RST_STREAM) or the client resets it. More than H2GUARD_MAX_LIVE live streams
 * means the client ignored the server's SETTINGS_MAX_CONCURRENT_STREAMS
 * (RFC 9113 5.1.2): H2G_STREAMS.
 *
 * Draining (RFC 9113 6.8), before the gRPC core hears of a shutdown (its own
 * shutdown cancels the calls that have arrived but not been picked up yet):
 * at a server frame boundary the relay inserts h2guard_drain_frames(), a
 * GOAWAY with the highest stream id (NO_ERROR: "open no new stream here") and
 * a PING. The GOAWAY never raises the last stream id the server itself has
 * sent (gRPC does at MAX_CONNECTION_AGE; a client must treat a rise as a
 * connection error): after one of the server's, it repeats that id. Streams
 * above that id are never live, whether opened before or after it: the
 * server will not answer them, and the client retries them elsewhere. The
 * client's acknowledgement of the PING proves it has seen the GOAWAY, so
 * every stream it will ever open here has arrived. The connection
 * is quiet (h2guard_quiet) once that acknowledgement came and no stream is
 * live: the gRPC core can then shut down without cancelling anything.
 *
 * Pure: no allocation, no I/O, no clock of its own (the caller passes the
 * monotonic time). One struct per connection, used by one thread at a time.
 * Input may be split at any byte.
 */
#ifndef TCS_H2GUARD_H
#define TCS_H2GUARD_H

#include <stddef.h>
#include <stdint.h>

#define H2GUARD_PREFACE_LEN 24
#define H2GUARD_MAX_OPEN    128 /* upper bound of max_open_streams */
#define H2GUARD_MAX_LIVE    256 /* streams the server has not ended yet */
#define H2GUARD_DRAIN_LEN   34  /* GOAWAY (17 bytes) + PING (17 bytes) */

struct h2guard_limits {
	uint32_t max_header_block;         /* bytes of HEADERS+CONTINUATION per stream */
	uint32_t max_open_streams;         /* streams opened, neither ended nor reset */
	uint32_t max_rst_per_sec;          /* RST_STREAM frames per one-second window */
	uint32_t max_bytes_before_request; /* before the first complete request */
};

enum h2guard_verdict {
	H2G_OK,
	H2G_BAD_PREFACE,  /* not an HTTP/2 client preface */
	H2G_PROTOCOL,     /* CONTINUATION out of place, stream 0 HEADERS, ... */
	H2G_HEADER_BLOCK, /* header block over max_header_block */
	H2G_STREAMS,      /* more than max_open_streams open at once */
	H2G_RST_RATE,     /* more than max_rst_per_sec in one second */
	H2G_PRE_REQUEST,  /* max_bytes_before_request without a request */
	H2G__MAX
};

enum h2guard_phase { H2P_PREFACE, H2P_HEADER, H2P_PAYLOAD, H2P__MAX };
enum h2guard_drain { H2D_NONE, H2D_SENT, H2D_ACKED, H2D__MAX };

struct h2guard {
	struct h2guard_limits lim;
	enum h2guard_phase    phase;
	enum h2guard_verdict  verdict;
	uint32_t              need; /* bytes left in the preface or payload */
	uint8_t               hdr[9];
	uint8_t               hlen; /* bytes of hdr filled */
	uint8_t               type, flags;
	uint32_t              stream;
	/* The header block in progress (0: none). */
	uint32_t block_stream;
	uint32_t block_bytes;
	int      block_end_stream; /* its HEADERS carried END_STREAM */
	/*
	 * Live streams: ids opened by the client, not yet ended by the server
	 * nor reset. The top bit (ids have 31) marks those whose client half is
	 * still open (neither ended nor reset by the client); nopen counts them.
	 */
	uint32_t live[H2GUARD_MAX_LIVE];
	uint32_t nlive, nopen;
	uint32_t last_stream;
	/* RST_STREAM rate: a fixed one-second window. */
	int64_t  rst_window_ms;
	uint32_t rst_count;
	/* Progress. */
	uint64_t bytes;    /* fed so far */
	uint64_t requests; /* complete requests seen */
	uint64_t streams;  /* streams opened */
	/* The server's stream: frame headers only. */
	uint8_t  s_hdr[9];
	uint8_t  s_hlen;
	uint32_t s_need;   /* payload bytes left in the current server frame */
	uint64_t s_frames; /* complete server frame headers seen */
	/* The server's GOAWAYs: the lowest last stream id so far (2^31-1: none yet). */
	uint32_t s_goaway;
	uint8_t  s_gbuf[4]; /* the last stream id being read */
	uint8_t  s_glen;    /* bytes of s_gbuf filled */
	int      s_gcapture;
	/* Draining: the PING sent, its acknowledgement being read. */
	enum h2guard_drain drain;
	uint8_t            ack[8];
	uint8_t            ack_len;     /* bytes of ack filled */
	int                ack_capture; /* this PING ACK's payload is read */
};

/* Initialises a guard for a new connection. */
void h2guard_init(struct h2guard *, const struct h2guard_limits *);
/*
 * Feeds `len` bytes of the client's stream received at monotonic time
 * `now_ms`. Returns H2G_OK or the (sticky) first violation.
 */
enum h2guard_verdict h2guard_feed(struct h2guard *, const void *buf, size_t len, int64_t now_ms);
/* Complete requests seen so far (END_STREAM from the client on a stream). */
uint64_t h2guard_requests(const struct h2guard *);
/*
 * Feeds bytes of the server's stream (gRPC's, before they are relayed).
 * Returns how many were taken: all `len`, or with `stop` set, only those up
 * to the first frame boundary reached (see h2guard_server_boundary), so
 * that the caller can insert frames there. Never refuses anything.
 */
size_t h2guard_feed_server(struct h2guard *, const void *buf, size_t len, int stop);
/*
 * 1 if the server's stream is between two frames, after its first frame
 * (the server's SETTINGS, which must come first): frames may go in here.
 */
int h2guard_server_boundary(const struct h2guard *);
/* Writes the drain frames (GOAWAY, PING) to `out`; the PING is now awaited. */
void h2guard_drain_frames(struct h2guard *, unsigned char out[H2GUARD_DRAIN_LEN]);
/* The drain PING was acknowledged and no stream is live (see above). */
int h2guard_quiet(const struct h2guard *);
/* Streams live now (opened by the client, not ended by the server). */
uint32_t h2guard_live(const struct h2guard *);
/* Short name of a verdict for logs and metric labels ("header_block", ...). */
const char *h2guard_verdict_name(enum h2guard_verdict);

#endif /* TCS_H2GUARD_H */
