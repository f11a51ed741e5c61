/*
 * util.h: small shared pieces with no policy: the scrubbed, bounded byte
 * buffer (struct sbuf) that every secret passes through, bounded file
 * reading, base64, durations, hex, and the constant-time token digest check.
 */
#ifndef TCS_UTIL_H
#define TCS_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/sha.h>

/*
 * A growable byte buffer with a hard size limit. It is always NUL-terminated
 * (the terminator is not counted in len). Growing allocates a new block,
 * copies and wipes the old one, so secrets never linger in freed memory.
 * sbuf_free() wipes the contents.
 */
struct sbuf {
	unsigned char *data;
	size_t         len;
	size_t         cap;
	size_t         max;
};

/* Initialises an empty buffer that may hold at most `max` bytes. */
void sbuf_init(struct sbuf *, size_t max);
/* Appends; -1 (and the buffer unchanged) if it would exceed max or on ENOMEM. */
int sbuf_add(struct sbuf *, const void *, size_t);
/* Wipes the contents and frees the storage; the buffer is empty afterwards. */
void sbuf_free(struct sbuf *);
/* Wipes the contents but keeps the storage. */
void sbuf_reset(struct sbuf *);
/* Detaches the data (caller frees with freezero(p, len + 1)); buffer empty. */
unsigned char *sbuf_take(struct sbuf *, size_t *len);

/*
 * Reads a whole regular file of at most `max` bytes into `out` (initialised
 * here). Returns 0, or -1 with errno set (EFBIG when too large).
 */
int util_read_file(const char *path, size_t max, struct sbuf *out);

/* Frees `p` of `len` bytes after wiping it; NULL is fine. */
void freezero(void *p, size_t len);

/* Decodes standard base64 (padding optional, no whitespace). 0 or -1. */
int util_base64_decode(const char *in, size_t inlen, struct sbuf *out);

/*
 * Parses a duration: Go style ("90s", "10m", "1h30m", "250ms"), plus days
 * ("1d", "7d12h"), or plain seconds ("3600"). Stores milliseconds. 0 or -1.
 */
int util_parse_duration_ms(const char *, int64_t *ms);
/* What util_parse_duration_ms() accepts, for error messages. */
#define UTIL_DURATION_FORMAT "a duration such as 1d, 24h, 1h30m, 90s, 250ms or plain seconds"

/* Formats milliseconds back as "24h0m0s"-like text. */
void util_format_duration(int64_t ms, char *buf, size_t len);

/* Lowercase hex of `n` bytes into buf (2n+1 bytes needed); returns buf. */
char *util_hex(const unsigned char *, size_t n, char *buf);

/* SHA-256 of a token after trimming trailing whitespace; 0 or -1. */
int util_token_digest(const char *tok, size_t len, unsigned char out[SHA256_DIGEST_LENGTH]);
/* Constant-time check of a presented token against a stored digest: 1/0. */
int util_token_ok(const char *got, size_t len, const unsigned char want[SHA256_DIGEST_LENGTH]);

/*
 * Thread stack sizes for the daemon's own threads. glibc's default (8 MiB,
 * from RLIMIT_STACK) is reserved per thread; our threads use a few tens of
 * KiB (the high-water marks are in docs/performance.md). Sanitizer builds
 * get four times as much: their frames carry redzones.
 */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UTIL_STACK_SCALE 4
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UTIL_STACK_SCALE 4
#endif
#endif
#ifndef UTIL_STACK_SCALE
#define UTIL_STACK_SCALE 1
#endif
#define UTIL_STACK_SMALL  (256 * 1024 * UTIL_STACK_SCALE)  /* file watcher */
#define UTIL_STACK_MEDIUM (512 * 1024 * UTIL_STACK_SCALE)  /* gRPC workers, events (TLS, curl) */
#define UTIL_STACK_LARGE  (1024 * 1024 * UTIL_STACK_SCALE) /* Secret watcher (nested JSON) */

/*
 * pthread_create() with a stack of `stack` bytes. 0, or an error number
 * (as pthread_create() returns).
 */
int util_thread_start(pthread_t *, size_t stack, void *(*fn)(void *), void *arg);

/* Monotonic and real-time clocks in milliseconds. */
int64_t util_mono_ms(void);
int64_t util_real_ms(void);
/* The CLOCK_REALTIME instant `ms` from now, for pthread_cond_timedwait(). */
struct timespec util_abstime_ms(int64_t ms);

#endif /* TCS_UTIL_H */
