/*
 * h2guard.h: a small HTTP/2 frame guard for the decrypted client-to-server
 * byte stream, in front of the gRPC core.
 *
 * It is not a second HTTP/2 implementation: it checks the client preface and
 * reads frame headers only (length, type, flags, stream id), plus the total
 * length of each header block (HEADERS + CONTINUATION). Payloads are skipped,
 * never decoded (HPACK stays gRPC's job). It enforces the caps of struct
 * h2guard_limits and reports the first violation; after one, every further
 * feed returns the same verdict.
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
	/* Open streams: ids opened by the client, neither ended nor reset. */
	uint32_t open[H2GUARD_MAX_OPEN];
	uint32_t nopen;
	uint32_t last_stream;
	/* RST_STREAM rate: a fixed one-second window. */
	int64_t  rst_window_ms;
	uint32_t rst_count;
	/* Progress. */
	uint64_t bytes;    /* fed so far */
	uint64_t requests; /* complete requests seen */
	uint64_t streams;  /* streams opened */
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
/* Short name of a verdict for logs and metric labels ("header_block", ...). */
const char *h2guard_verdict_name(enum h2guard_verdict);

#endif /* TCS_H2GUARD_H */
