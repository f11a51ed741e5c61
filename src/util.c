/*
 * util.c: scrubbed buffers, bounded file reads, base64, durations.
 *
 * Threads: any; nothing here keeps state.
 */
#include "util.h"

#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

void
freezero(void *p, size_t len)
{
	if (p == NULL)
		return;
	OPENSSL_cleanse(p, len);
	free(p);
}

void
sbuf_init(struct sbuf *b, size_t max)
{
	b->data = NULL;
	b->len = b->cap = 0;
	b->max = max;
}

int
sbuf_add(struct sbuf *b, const void *p, size_t n)
{
	unsigned char *nd;
	size_t         ncap;

	if (n > b->max || b->len > b->max - n) {
		errno = EFBIG;
		return -1;
	}
	if (b->data == NULL || b->len + n + 1 > b->cap) {
		ncap = b->cap ? b->cap : 256;
		while (ncap < b->len + n + 1)
			ncap *= 2;
		if (ncap > b->max + 1)
			ncap = b->max + 1;
		/* Never realloc a buffer that may hold a secret. */
		if ((nd = malloc(ncap)) == NULL)
			return -1;
		if (b->len > 0 && b->data != NULL)
			memcpy(nd, b->data, b->len);
		freezero(b->data, b->cap);
		b->data = nd;
		b->cap = ncap;
	}
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

void
sbuf_reset(struct sbuf *b)
{
	if (b->data != NULL)
		OPENSSL_cleanse(b->data, b->cap);
	b->len = 0;
}

void
sbuf_free(struct sbuf *b)
{
	freezero(b->data, b->cap);
	b->data = NULL;
	b->len = b->cap = 0;
}

unsigned char *
sbuf_take(struct sbuf *b, size_t *len)
{
	unsigned char *p;

	if (b->data == NULL && sbuf_add(b, "", 0) == -1) {
		*len = 0;
		return NULL;
	}
	p = b->data;
	*len = b->len;
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}

int
util_read_file(const char *path, size_t max, struct sbuf *out)
{
	unsigned char chunk[4096];
	struct stat   st;
	ssize_t       r;
	int           fd, saved;

	sbuf_init(out, max);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	if (fstat(fd, &st) == -1)
		goto fail;
	if (!S_ISREG(st.st_mode)) {
		errno = EINVAL;
		goto fail;
	}
	for (;;) {
		r = read(fd, chunk, sizeof(chunk));
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			goto fail;
		if (r == 0)
			break;
		if (sbuf_add(out, chunk, (size_t)r) == -1)
			goto fail;
	}
	OPENSSL_cleanse(chunk, sizeof(chunk));
	close(fd);
	if (out->data == NULL)
		return sbuf_add(out, "", 0);
	return 0;
fail:
	saved = errno;
	OPENSSL_cleanse(chunk, sizeof(chunk));
	close(fd);
	sbuf_free(out);
	errno = saved;
	return -1;
}

static int
b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int
util_base64_decode(const char *in, size_t inlen, struct sbuf *out)
{
	unsigned char o[3];
	uint32_t      acc = 0;
	size_t        i, pad = 0;
	int           n = 0, v;

	while (inlen > 0 && in[inlen - 1] == '=' && pad < 2) {
		inlen--;
		pad++;
	}
	if ((inlen + pad) % 4 != 0 && pad != 0)
		return -1;
	if (inlen % 4 == 1)
		return -1;
	for (i = 0; i < inlen; i++) {
		if ((v = b64val((unsigned char)in[i])) < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		if (++n == 4) {
			o[0] = (unsigned char)(acc >> 16);
			o[1] = (unsigned char)(acc >> 8);
			o[2] = (unsigned char)acc;
			if (sbuf_add(out, o, 3) == -1)
				goto fail;
			n = 0;
			acc = 0;
		}
	}
	if (n == 2) {
		o[0] = (unsigned char)(acc >> 4);
		if (sbuf_add(out, o, 1) == -1)
			goto fail;
	} else if (n == 3) {
		o[0] = (unsigned char)(acc >> 10);
		o[1] = (unsigned char)(acc >> 2);
		if (sbuf_add(out, o, 2) == -1)
			goto fail;
	}
	OPENSSL_cleanse(o, sizeof(o));
	OPENSSL_cleanse(&acc, sizeof(acc));
	if (out->data == NULL)
		return sbuf_add(out, "", 0);
	return 0;
fail:
	OPENSSL_cleanse(o, sizeof(o));
	return -1;
}

int
util_parse_duration_ms(const char *s, int64_t *ms)
{
	const char *p = s;
	char       *end;
	double      v, total = 0, unit;
	int         any = 0;

	if (s == NULL || *s == '\0')
		return -1;
	/* Plain non-negative integer: seconds. */
	for (p = s; isdigit((unsigned char)*p); p++)
		;
	if (*p == '\0') {
		errno = 0;
		v = strtod(s, &end);
		if (errno != 0 || v > 1e12)
			return -1;
		*ms = (int64_t)(v * 1000);
		return 0;
	}
	p = s;
	while (*p != '\0') {
		if (!isdigit((unsigned char)*p) && *p != '.')
			return -1;
		errno = 0;
		v = strtod(p, &end);
		if (errno != 0 || end == p || v < 0)
			return -1;
		p = end;
		if (strncmp(p, "ms", 2) == 0) {
			unit = 1;
			p += 2;
		} else if (*p == 'd') {
			unit = 86400e3;
			p++;
		} else if (*p == 'h') {
			unit = 3600e3;
			p++;
		} else if (*p == 'm') {
			unit = 60e3;
			p++;
		} else if (*p == 's') {
			unit = 1e3;
			p++;
		} else
			return -1;
		total += v * unit;
		if (total > 1e15)
			return -1;
		any = 1;
	}
	if (!any)
		return -1;
	*ms = (int64_t)total;
	return 0;
}

void
util_format_duration(int64_t ms, char *buf, size_t len)
{
	int64_t h = ms / 3600000, m = (ms / 60000) % 60, s = (ms / 1000) % 60;

	if (ms % 1000 != 0 && ms < 1000)
		snprintf(buf, len, "%lldms", (long long)ms);
	else if (h > 0)
		snprintf(buf, len, "%lldh%lldm%llds", (long long)h, (long long)m, (long long)s);
	else if (m > 0)
		snprintf(buf, len, "%lldm%llds", (long long)m, (long long)s);
	else
		snprintf(buf, len, "%llds", (long long)s);
}

char *
util_hex(const unsigned char *p, size_t n, char *buf)
{
	static const char digits[] = "0123456789abcdef";
	size_t            i;

	for (i = 0; i < n; i++) {
		buf[2 * i] = digits[p[i] >> 4];
		buf[2 * i + 1] = digits[p[i] & 0xf];
	}
	buf[2 * n] = '\0';
	return buf;
}

int
util_token_digest(const char *tok, size_t len, unsigned char out[SHA256_DIGEST_LENGTH])
{
	while (len > 0 && isspace((unsigned char)tok[len - 1]))
		len--;
	while (len > 0 && isspace((unsigned char)*tok)) {
		tok++;
		len--;
	}
	if (len == 0)
		return -1;
	return SHA256((const unsigned char *)tok, len, out) == NULL ? -1 : 0;
}

int
util_token_ok(const char *got, size_t len, const unsigned char want[SHA256_DIGEST_LENGTH])
{
	unsigned char h[SHA256_DIGEST_LENGTH];
	int           ok;

	ok = SHA256((const unsigned char *)got, len, h) != NULL &&
	    CRYPTO_memcmp(h, want, sizeof(h)) == 0;
	OPENSSL_cleanse(h, sizeof(h));
	return ok;
}

int64_t
util_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct timespec
util_abstime_ms(int64_t ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

int64_t
util_real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
util_thread_start(pthread_t *t, size_t stack, void *(*fn)(void *), void *arg)
{
	pthread_attr_t a;
	int            rc;

	if ((rc = pthread_attr_init(&a)) != 0)
		return rc;
	if ((rc = pthread_attr_setstacksize(&a, stack)) == 0)
		rc = pthread_create(t, &a, fn, arg);
	pthread_attr_destroy(&a);
	return rc;
}
