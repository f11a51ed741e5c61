/*
 * test_httpd.c: HTTP_ADDR parsing, the readiness rules, and the real
 * listener on an ephemeral loopback port (mirrors src/httpd.c).
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "creds.h"
#include "credstore.h"
#include "httpd.h"
#include "metrics.h"
#include "testutil.h"

Test(httpd, parse_addr)
{
	char host[64];
	int  port;

	cr_assert_eq(httpd_parse_addr(":8081", host, sizeof(host), &port), 0);
	cr_assert_str_eq(host, "");
	cr_assert_eq(port, 8081);
	cr_assert_eq(httpd_parse_addr("127.0.0.1:0", host, sizeof(host), &port), 0);
	cr_assert_str_eq(host, "127.0.0.1");
	cr_assert_eq(port, 0);
	cr_assert_eq(httpd_parse_addr("[::1]:9090", host, sizeof(host), &port), 0);
	cr_assert_str_eq(host, "::1");
	cr_assert_eq(port, 9090);
	cr_assert_eq(httpd_parse_addr("8081", host, sizeof(host), &port), -1);
	cr_assert_eq(httpd_parse_addr("::1:8081", host, sizeof(host), &port), -1);
	cr_assert_eq(httpd_parse_addr("127.0.0.1:", host, sizeof(host), &port), -1);
	cr_assert_eq(httpd_parse_addr("127.0.0.1:65536", host, sizeof(host), &port), -1);
	cr_assert_eq(httpd_parse_addr("127.0.0.1:80x", host, sizeof(host), &port), -1);
	cr_assert_eq(httpd_parse_addr("[::1]8081", host, sizeof(host), &port), -1);
}

Test(httpd, empty_addr_disables_and_bad_addr_names_the_setting)
{
	struct credstore *cs = credstore_new();
	struct httpd     *h = (struct httpd *)1;
	char              err[256] = "";

	cr_assert_eq(httpd_start("", cs, &h, err, sizeof(err)), 0);
	cr_assert_null(h);
	cr_assert_eq(httpd_start("localhost:8081", cs, &h, err, sizeof(err)), -1);
	cr_assert_null(h);
	cr_assert(strstr(err, "HTTP_ADDR") != NULL, "%s", err);
	cr_assert_eq(httpd_start("nonsense", cs, &h, err, sizeof(err)), -1);
	cr_assert(strstr(err, "HTTP_ADDR") != NULL, "%s", err);
	httpd_stop(NULL);
	credstore_free(cs);
}

Test(httpd, readiness_rules)
{
	struct credstore      *cs = credstore_new();
	struct creds          *c = tu_creds(TU_ED25519, NULL);
	struct httpd_readiness r;
	long long              now = (long long)time(NULL), tls_na = c->tls_not_after;
	long long              ca_na = c->ca_not_after;

	httpd_readiness(cs, now, &r);
	cr_assert_eq(r.ready, 0);
	cr_assert(strstr(r.reason, "no valid credentials") != NULL, "%s", r.reason);

	/* What the source waits for (the watcher's 403, a missing Secret) is the reason. */
	credstore_set_waiting(cs, "waiting for Secret tcs/talos-ca: list: HTTP 403: forbidden");
	httpd_readiness(cs, now, &r);
	cr_assert_eq(r.ready, 0);
	cr_assert_str_eq(r.reason, "waiting for Secret tcs/talos-ca: list: HTTP 403: forbidden");
	credstore_set_waiting(cs, "");
	httpd_readiness(cs, now, &r);
	cr_assert(strstr(r.reason, "no valid credentials") != NULL, "%s", r.reason);

	credstore_publish(cs, c);
	httpd_readiness(cs, now, &r);
	cr_assert_eq(r.ready, 0, "credentials alone are not enough");
	cr_assert(strstr(r.reason, "gRPC port not bound") != NULL, "%s", r.reason);

	metrics_set_serving(1);
	httpd_readiness(cs, now, &r);
	cr_assert_eq(r.ready, 1, "%s", r.reason);
	cr_assert_str_eq(r.reason, "ready");

	/* The test serving certificate lives a day, the CA ten years. */
	cr_assert_lt(tls_na, ca_na);
	httpd_readiness(cs, tls_na + 1, &r);
	cr_assert_eq(r.ready, 0);
	cr_assert(strstr(r.reason, "serving certificate expired") != NULL, "%s", r.reason);
	httpd_readiness(cs, ca_na + 1, &r);
	cr_assert_eq(r.ready, 0);
	cr_assert(strstr(r.reason, "CA certificate expired") != NULL, "%s", r.reason);

	metrics_set_serving(0);
	httpd_readiness(cs, now, &r);
	cr_assert_eq(r.ready, 0);
	credstore_free(cs);
}

/* One HTTP/1.0 exchange; returns the status code and the body in `body`. */
static int
http(int port, const char *method, const char *path, char *body, size_t bodylen)
{
	struct sockaddr_in sin;
	char               req[256], resp[65536], *p;
	size_t             got = 0;
	ssize_t            n;
	int                fd, status = -1;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0, "connect");
	snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: x\r\n\r\n", method, path);
	cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	while (got < sizeof(resp) - 1 && (n = read(fd, resp + got, sizeof(resp) - 1 - got)) > 0)
		got += (size_t)n;
	resp[got] = '\0';
	close(fd);
	sscanf(resp, "HTTP/1.%*d %d", &status);
	body[0] = '\0';
	if ((p = strstr(resp, "\r\n\r\n")) != NULL)
		snprintf(body, bodylen, "%s", p + 4);
	return status;
}

Test(httpd, serves_probes_and_metrics_on_loopback)
{
	struct credstore *cs = credstore_new();
	struct httpd     *h = NULL;
	char              err[256], body[65536];
	int               port;

	cr_assert_eq(httpd_start("127.0.0.1:0", cs, &h, err, sizeof(err)), 0, "%s", err);
	cr_assert_not_null(h);
	port = httpd_port(h);
	cr_assert_gt(port, 0);

	cr_assert_eq(http(port, "GET", "/healthz", body, sizeof(body)), 200);
	cr_assert_str_eq(body, "ok\n");
	cr_assert_eq(http(port, "GET", "/readyz", body, sizeof(body)), 503);
	cr_assert(strstr(body, "not ready: no valid credentials") != NULL, "%s", body);

	credstore_publish(cs, tu_creds(TU_P256, NULL));
	metrics_set_serving(1);
	cr_assert_eq(http(port, "GET", "/readyz", body, sizeof(body)), 200);
	cr_assert_str_eq(body, "ready\n");

	metrics_request(AK_ISSUED);
	cr_assert_eq(http(port, "GET", "/metrics", body, sizeof(body)), 200);
	cr_assert(strstr(body, "talos_csr_signer_requests_total{result=\"issued\"} 1\n") != NULL);
	cr_assert(
	    strstr(body, "# TYPE talos_csr_signer_signing_duration_seconds histogram") != NULL);

	cr_assert_eq(http(port, "GET", "/nope", body, sizeof(body)), 404);
	cr_assert_eq(http(port, "POST", "/metrics", body, sizeof(body)), 405);
	cr_assert_eq(http(port, "HEAD", "/healthz", body, sizeof(body)), 200);
	cr_assert_str_eq(body, "", "HEAD carries no body");

	httpd_stop(h);
	credstore_free(cs);
}
