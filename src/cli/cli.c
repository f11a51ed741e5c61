/*
 * cli.c: what the operator subcommands (cli_request.c, cli_check.c) share:
 * flag parsing, endpoint and duration parsing, the text and JSON formatting of
 * names, SANs and times, and a TCP connect with a timeout.
 *
 * DESIGN
 * These files are the tools' own static library (tcs_cli), linked into the
 * binary only: the daemon's core library (tcs_core) does not contain them.
 *
 * Threads: main only (the subcommands run instead of the daemon). Owns:
 * nothing beyond each call.
 */
#include "cli.h"
#include <sys/socket.h>
#include <sys/time.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "creds.h"
#include "credsrc.h"
#include "credstore.h"
#include "filesrc.h"
#include "audit.h"
#include "grpccli.h"
#include "kube.h"
#include "log.h"
#include "pki.h"
#include "secret.h"
#include "util.h"

#define CLI_DEFAULT_PORT 50001

int
cli_token_looks_valid(const char *tok, size_t len)
{
	return creds_token_is_talos(tok, len);
}

int
cli_parse_endpoint(const char *s, char *ip, size_t iplen, int *port)
{
	unsigned char buf[16];
	const char   *h = s, *hend, *p = NULL;
	char         *end;
	long          n;

	*port = CLI_DEFAULT_PORT;
	if (s[0] == '[') {
		h = s + 1;
		if ((hend = strchr(h, ']')) == NULL)
			return -1;
		if (hend[1] == ':')
			p = hend + 2;
		else if (hend[1] != '\0')
			return -1;
	} else if ((hend = strchr(s, ':')) != NULL && strchr(hend + 1, ':') == NULL) {
		p = hend + 1; /* IPv4:port */
	} else
		hend = s + strlen(s); /* bare IPv4 or IPv6 */
	if ((size_t)(hend - h) + 1 > iplen)
		return -1;
	memcpy(ip, h, (size_t)(hend - h));
	ip[hend - h] = '\0';
	if (inet_pton(AF_INET, ip, buf) != 1 && inet_pton(AF_INET6, ip, buf) != 1)
		return -1;
	if (p != NULL) {
		errno = 0;
		n = strtol(p, &end, 10);
		if (*p == '\0' || *end != '\0' || errno != 0 || n < 1 || n > 65535)
			return -1;
		*port = (int)n;
	}
	return 0;
}

/* "7d", or a Go-style duration; stored in seconds. 0 or -1. */
int
cli_parse_window(const char *s, long long *secs)
{
	int64_t ms;

	if (util_parse_duration_ms(s, &ms) == -1 || ms > 36500LL * 86400 * 1000)
		return -1;
	*secs = ms / 1000;
	return 0;
}

void
cli_fmt_time(long long t, char *buf, size_t len)
{
	time_t    tt = (time_t)t;
	struct tm tm;

	if (t < 0 || gmtime_r(&tt, &tm) == NULL)
		snprintf(buf, len, "unknown");
	else
		strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* "in 3d 4h" / "2h ago" */
void
cli_fmt_rel(long long secs, char *buf, size_t len)
{
	long long a = secs < 0 ? -secs : secs;

	if (a >= 86400)
		snprintf(buf, len, "%s%lldd%lldh%s", secs < 0 ? "" : "in ", a / 86400,
		    (a % 86400) / 3600, secs < 0 ? " ago" : "");
	else if (a >= 3600)
		snprintf(buf, len, "%s%lldh%lldm%s", secs < 0 ? "" : "in ", a / 3600,
		    (a % 3600) / 60, secs < 0 ? " ago" : "");
	else
		snprintf(buf, len, "%s%llds%s", secs < 0 ? "" : "in ", a, secs < 0 ? " ago" : "");
}

/* One-line RFC 2253 form of a name into buf. */
void
cli_fmt_name(const X509_NAME *n, char *buf, size_t len)
{
	BIO *b;
	int  got;

	buf[0] = '\0';
	if ((b = BIO_new(BIO_s_mem())) == NULL)
		return;
	if (X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) >= 0 &&
	    (got = BIO_read(b, buf, (int)len - 1)) > 0)
		buf[got] = '\0';
	BIO_free(b);
	if (buf[0] == '\0')
		snprintf(buf, len, "(empty)");
}

/* SANs as "DNS:a, IP:1.2.3.4" (and into `list` for JSON when non-NULL). */
void
cli_fmt_sans(X509 *x, char *buf, size_t len, char list[][80], size_t *nlist, size_t maxlist)
{
	GENERAL_NAMES       *g;
	const GENERAL_NAME  *gn;
	const unsigned char *d;
	char                 one[80], ipt[INET6_ADDRSTRLEN];
	size_t               used = 0;
	int                  i, n;

	buf[0] = '\0';
	if (nlist != NULL)
		*nlist = 0;
	if ((g = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL)) == NULL)
		return;
	for (i = 0; i < sk_GENERAL_NAME_num(g); i++) {
		gn = sk_GENERAL_NAME_value(g, i);
		if (gn->type == GEN_DNS) {
			d = ASN1_STRING_get0_data(gn->d.dNSName);
			n = ASN1_STRING_length(gn->d.dNSName);
			snprintf(one, sizeof(one), "DNS:%.*s", n > 70 ? 70 : n, (const char *)d);
		} else if (gn->type == GEN_IPADD) {
			d = ASN1_STRING_get0_data(gn->d.iPAddress);
			n = ASN1_STRING_length(gn->d.iPAddress);
			if ((n == 4 && inet_ntop(AF_INET, d, ipt, sizeof(ipt)) != NULL) ||
			    (n == 16 && inet_ntop(AF_INET6, d, ipt, sizeof(ipt)) != NULL))
				snprintf(one, sizeof(one), "IP:%s", ipt);
			else
				snprintf(one, sizeof(one), "IP:invalid");
		} else
			snprintf(one, sizeof(one), "other");
		if (used + strlen(one) + 3 < len) {
			used +=
			    (size_t)snprintf(buf + used, len - used, "%s%s", used ? ", " : "", one);
		}
		if (list != NULL && *nlist < maxlist)
			snprintf(list[(*nlist)++], 80, "%s", one);
	}
	GENERAL_NAMES_free(g);
}

void
cli_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* Fetches the value of a flag given as "--name value" or "--name=value". */
int
cli_flag_value(int argc, char **argv, int *i, const char *name, const char **val)
{
	const char *a = argv[*i];
	size_t      n = strlen(name);

	if (strncmp(a, name, n) != 0)
		return 0;
	if (a[n] == '=') {
		*val = a + n + 1;
		return 1;
	}
	if (a[n] != '\0')
		return 0;
	if (*i + 1 >= argc) {
		*val = NULL;
		return 1;
	}
	*val = argv[++*i];
	return 1;
}

/* TCP connect with a timeout; the socket is left blocking with I/O timeouts. */
int
cli_dial(const char *ip, int port, int timeout_ms, char *why, size_t whylen)
{
	struct sockaddr_storage ss;
	struct sockaddr_in     *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6    *sin6 = (struct sockaddr_in6 *)&ss;
	struct timeval          tv;
	struct pollfd           pfd;
	socklen_t               sl, el = sizeof(int);
	int                     fd, fl, e = 0;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		sl = sizeof(*sin);
	} else if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		sl = sizeof(*sin6);
	} else {
		snprintf(why, whylen, "not an IP address");
		return -1;
	}
	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		snprintf(why, whylen, "socket: %s", strerror(errno));
		return -1;
	}
	fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	if (connect(fd, (struct sockaddr *)&ss, sl) == -1) {
		if (errno != EINPROGRESS) {
			e = errno;
			goto fail;
		}
		pfd.fd = fd;
		pfd.events = POLLOUT;
		if (poll(&pfd, 1, timeout_ms) != 1) {
			e = ETIMEDOUT;
			goto fail;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == -1 || e != 0)
			goto fail;
	}
	fcntl(fd, F_SETFL, fl);
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
fail:
	snprintf(why, whylen, "cannot connect: %s", strerror(e ? e : errno));
	close(fd);
	return -1;
}

/* Lists the IP SANs of x as text into buf. */
void
cli_ip_sans(X509 *x, char *buf, size_t len)
{
	char   all[1024], *p, *tok;
	size_t used = 0;

	cli_fmt_sans(x, all, sizeof(all), NULL, NULL, 0);
	buf[0] = '\0';
	p = all;
	while ((tok = strsep(&p, ",")) != NULL) {
		while (*tok == ' ')
			tok++;
		if (strncmp(tok, "IP:", 3) == 0 && used + strlen(tok) + 3 < len)
			used += (size_t)snprintf(
			    buf + used, len - used, "%s%s", used ? ", " : "", tok + 3);
	}
	if (buf[0] == '\0')
		snprintf(buf, len, "none");
}
