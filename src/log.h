/*
 * log.h: structured logging (JSON lines by default, logfmt-style text on
 * request) on stderr, in the shape of OpenBSD httpd's log.h.
 *
 * Every line is one record: time (RFC 3339 UTC, milliseconds), level, msg and
 * optional typed fields. Any thread may log; a record is written with a single
 * write(2) so lines never interleave. Secrets never reach this module: callers
 * log fingerprints, serials and resourceVersions, never tokens or key bytes.
 */
#ifndef TCS_LOG_H
#define TCS_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG__MAX };
enum log_format { LOG_JSON, LOG_TEXT, LOG_FORMAT__MAX };

enum log_field_type { LF_STR, LF_INT, LF_BOOL, LF_STRV, LF__MAX };

/* One typed key/value of a record. LF_STRV is an array of `n` strings. */
struct log_field {
	const char         *key;
	enum log_field_type type;
	const char         *s;
	long long           i;
	const char *const  *v;
	size_t              n;
};

#define LF_S(k, val)                                                                               \
	{                                                                                          \
		.key = (k), .type = LF_STR, .s = (val)                                             \
	}
#define LF_I(k, val)                                                                               \
	{                                                                                          \
		.key = (k), .type = LF_INT, .i = (long long)(val)                                  \
	}
#define LF_B(k, val)                                                                               \
	{                                                                                          \
		.key = (k), .type = LF_BOOL, .i = !!(val)                                          \
	}
#define LF_V(k, arr, cnt)                                                                          \
	{                                                                                          \
		.key = (k), .type = LF_STRV, .v = (arr), .n = (cnt)                                \
	}

/* Sets the format and the minimum level; call before starting threads. */
void log_init(enum log_format, enum log_level);
/*
 * Names the process in every later record ("proc" field, last): "keeper"
 * or "net" after the fork. Before any thread starts.
 */
void log_set_proc(const char *name);
/* Parses "debug|info|warn|error" and "json|text"; 0 or -1. */
int log_level_parse(const char *, enum log_level *);
int log_format_parse(const char *, enum log_format *);
/* 1 if a record of this level would be written. */
int log_enabled(enum log_level);

/* Writes one record with fields. */
void log_record(enum log_level, const char *msg, const struct log_field *, size_t nfields);

void log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
/* log_warn appends strerror(errno); log_warnx does not. */
void log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *, ...) __attribute__((format(printf, 1, 2)));
/* Logs a warning with the drained OpenSSL error queue appended. */
void log_ssl(const char *, ...) __attribute__((format(printf, 1, 2)));
/* Start-up and impossible states only: log and exit(1). */
void fatal(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));

/*
 * Drains the OpenSSL error queue of the calling thread into `buf` as
 * "reason; reason" (no file names); returns buf.
 */
char *log_ssl_errors(char *buf, size_t len);

#endif /* TCS_LOG_H */
