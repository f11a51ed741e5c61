/*
 * log.c: structured records on stderr.
 *
 * Threads: any. State: the format and level, set once by log_init() before
 * threads start, then read-only. Each record is formatted into a local buffer
 * and written with one write(2), so concurrent records do not interleave.
 * Records longer than LOG_MAX_LINE are cut and marked with "truncated":true.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

#define LOG_MAX_LINE 8192
#define LOG_MAX_MSG  2048

static enum log_format log_fmt = LOG_JSON;
static enum log_level  log_min = LOG_INFO;
static const char     *log_proc; /* "keeper" or "net" after the fork, else NULL */

static const char *const level_names[LOG__MAX] = { "debug", "info", "warn", "error" };

struct out {
	char  *p;
	size_t len, cap;
	int    cut;
};

static void
put(struct out *o, const char *s, size_t n)
{
	if (o->len + n >= o->cap) {
		n = o->cap - o->len - 1;
		o->cut = 1;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
}

static void
puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s, or 0 if it is not valid. */
static int
utf8_len(const unsigned char *s)
{
	int n, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	for (i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

/*
 * JSON string body escaping; also used for text values in quotes. Bytes that
 * are not valid UTF-8 (a CSR's subject is attacker-chosen) become U+FFFD.
 */
static void
put_escaped(struct out *o, const char *s)
{
	char          esc[8];
	unsigned char c;
	int           n;

	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		if (c >= 0x80) {
			if ((n = utf8_len((const unsigned char *)s)) == 0)
				puts_(o, "\ufffd");
			else {
				put(o, s, (size_t)n);
				s += n - 1;
			}
			continue;
		}
		switch (c) {
		case '"': puts_(o, "\\\""); break;
		case '\\': puts_(o, "\\\\"); break;
		case '\n': puts_(o, "\\n"); break;
		case '\r': puts_(o, "\\r"); break;
		case '\t': puts_(o, "\\t"); break;
		default:
			if (c < 0x20 || c == 0x7f) {
				snprintf(esc, sizeof(esc), "\\u%04x", c);
				puts_(o, esc);
			} else
				put(o, (const char *)&c, 1);
		}
	}
}

static void
put_str(struct out *o, const char *s)
{
	puts_(o, "\"");
	put_escaped(o, s == NULL ? "" : s);
	puts_(o, "\"");
}

static void
put_key(struct out *o, const char *k)
{
	if (log_fmt == LOG_JSON) {
		puts_(o, ",");
		put_str(o, k);
		puts_(o, ":");
	} else {
		puts_(o, " ");
		puts_(o, k);
		puts_(o, "=");
	}
}

static void
put_field(struct out *o, const struct log_field *f)
{
	char   num[32];
	size_t i;

	put_key(o, f->key);
	switch (f->type) {
	case LF_STR: put_str(o, f->s); break;
	case LF_INT:
		snprintf(num, sizeof(num), "%lld", f->i);
		puts_(o, num);
		break;
	case LF_BOOL: puts_(o, f->i ? "true" : "false"); break;
	case LF_STRV:
		puts_(o, log_fmt == LOG_JSON ? "[" : "\"");
		for (i = 0; i < f->n; i++) {
			if (i > 0)
				puts_(o, ",");
			if (log_fmt == LOG_JSON)
				put_str(o, f->v[i]);
			else
				put_escaped(o, f->v[i]);
		}
		puts_(o, log_fmt == LOG_JSON ? "]" : "\"");
		break;
	default: puts_(o, "null");
	}
}

void
log_set_proc(const char *name)
{
	log_proc = name;
}

void
log_init(enum log_format fmt, enum log_level min)
{
	if (fmt < LOG_FORMAT__MAX)
		log_fmt = fmt;
	if (min < LOG__MAX)
		log_min = min;
}

int
log_level_parse(const char *s, enum log_level *out)
{
	int i;

	for (i = 0; i < LOG__MAX; i++)
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	if (strcmp(s, "warning") == 0) {
		*out = LOG_WARN;
		return 0;
	}
	return -1;
}

int
log_format_parse(const char *s, enum log_format *out)
{
	if (strcmp(s, "json") == 0)
		*out = LOG_JSON;
	else if (strcmp(s, "text") == 0 || strcmp(s, "logfmt") == 0)
		*out = LOG_TEXT;
	else
		return -1;
	return 0;
}

int
log_enabled(enum log_level lvl)
{
	return lvl >= log_min;
}

void
log_record(enum log_level lvl, const char *msg, const struct log_field *f, size_t n)
{
	char            buf[LOG_MAX_LINE], ts[64];
	struct out      o = { buf, 0, sizeof(buf) - 2, 0 };
	struct timespec now;
	struct tm       tm;
	size_t          i;
	ssize_t         w;
	int             saved = errno;

	if (lvl >= LOG__MAX || lvl < log_min)
		return;
	buf[0] = '\0';
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
	    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);
	if (log_fmt == LOG_JSON) {
		puts_(&o, "{\"time\":\"");
		puts_(&o, ts);
		puts_(&o, "\",\"level\":\"");
		puts_(&o, level_names[lvl]);
		puts_(&o, "\",\"msg\":");
		put_str(&o, msg);
	} else {
		puts_(&o, "time=");
		puts_(&o, ts);
		puts_(&o, " level=");
		puts_(&o, level_names[lvl]);
		puts_(&o, " msg=");
		put_str(&o, msg);
	}
	for (i = 0; i < n; i++)
		put_field(&o, &f[i]);
	if (log_proc != NULL) {
		struct log_field pf = LF_S("proc", log_proc);

		put_field(&o, &pf);
	}
	if (o.cut) {
		/* Keep the line parseable: drop the cut tail, close it. */
		o.cut = 0;
		o.cap = sizeof(buf);
		if (log_fmt == LOG_JSON) {
			o.len = 0;
			buf[0] = '\0';
			puts_(&o, "{\"time\":\"");
			puts_(&o, ts);
			puts_(&o, "\",\"level\":\"");
			puts_(&o, level_names[lvl]);
			puts_(&o, "\",\"msg\":");
			put_str(&o, msg);
			puts_(&o, ",\"truncated\":true");
		} else
			puts_(&o, " truncated=true");
	}
	o.cap = sizeof(buf);
	if (log_fmt == LOG_JSON)
		puts_(&o, "}");
	puts_(&o, "\n");
	do {
		w = write(STDERR_FILENO, buf, o.len);
	} while (w < 0 && errno == EINTR);
	errno = saved;
}

static void vlog(enum log_level, int, const char *, va_list) __attribute__((format(printf, 3, 0)));

static void
vlog(enum log_level lvl, int with_errno, const char *fmt, va_list ap)
{
	char   msg[LOG_MAX_MSG];
	size_t len;
	int    saved = errno;

	if (lvl < log_min)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (with_errno) {
		len = strlen(msg);
		snprintf(msg + len, sizeof(msg) - len, ": %s", strerror(saved));
	}
	log_record(lvl, msg, NULL, 0);
}

#define LOGFN(name, lvl, err)                                                                      \
	void name(const char *fmt, ...)                                                            \
	{                                                                                          \
		va_list ap;                                                                        \
		va_start(ap, fmt);                                                                 \
		vlog(lvl, err, fmt, ap);                                                           \
		va_end(ap);                                                                        \
	}

LOGFN(log_debug, LOG_DEBUG, 0)
LOGFN(log_info, LOG_INFO, 0)
LOGFN(log_warn, LOG_WARN, 1)
LOGFN(log_warnx, LOG_WARN, 0)
LOGFN(log_error, LOG_ERROR, 0)

char *
log_ssl_errors(char *buf, size_t len)
{
	unsigned long e;
	size_t        used = 0;
	const char   *r;
	int           w;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		if ((r = ERR_reason_error_string(e)) == NULL)
			r = "unknown error";
		if (used + 1 >= len)
			continue; /* keep draining */
		w = snprintf(buf + used, len - used, "%s%s", used ? "; " : "", r);
		if (w > 0)
			used += (size_t)w < len - used ? (size_t)w : len - used - 1;
	}
	return buf;
}

void
log_ssl(const char *fmt, ...)
{
	char    msg[LOG_MAX_MSG], errs[512];
	va_list ap;
	size_t  len;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_ssl_errors(errs, sizeof(errs));
	len = strlen(msg);
	snprintf(msg + len, sizeof(msg) - len, ": %s", errs[0] ? errs : "unknown OpenSSL error");
	log_record(LOG_WARN, msg, NULL, 0);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_ERROR, 1, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}
