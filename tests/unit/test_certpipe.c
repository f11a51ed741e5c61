/*
 * test_certpipe.c: the Certificate pipeline without gRPC (mirrors
 * src/certpipe.c): the status table, the token rules, the decode step, the
 * issuer hook (in process, and one that cannot be reached), the packed
 * response and the request metric.
 */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <openssl/pem.h>

#include "security.pb-c.h"

#include "certpipe.h"
#include "creds.h"
#include "metrics.h"
#include "ratelimit.h"
#include "testutil.h"

static struct creds          *snap;
static struct tu_pki          pki;
static struct certpipe_local  local;
static struct certpipe_issuer issuer;
static unsigned char         *msg;
static size_t                 msg_len;

static void
setup(void)
{
	Securityapi__CertificateRequest req = SECURITYAPI__CERTIFICATE_REQUEST__INIT;
	EVP_PKEY                       *k = tu_key(TU_ED25519);
	const char *const               ips[] = { "10.0.0.5", NULL };
	char                           *csr = tu_csr_pem(k, "worker-1", "os:admin", NULL, ips, 0);

	snap = tu_creds(TU_ED25519, &pki);
	local.params = tu_signer_params();
	issuer.issue = certpipe_issue_local;
	issuer.arg = &local;
	req.csr.data = (uint8_t *)csr;
	req.csr.len = strlen(csr);
	msg_len = securityapi__certificate_request__get_packed_size(&req);
	msg = malloc(msg_len);
	securityapi__certificate_request__pack(&req, msg);
	free(csr);
	EVP_PKEY_free(k);
}

static void
teardown(void)
{
	creds_release(snap);
	tu_pki_free(&pki);
	free(msg);
}

static struct certpipe_call
good_call(void)
{
	struct certpipe_call c = { "10.0.0.5", 1, TU_TOKEN, sizeof(TU_TOKEN) - 1, 1, NULL, 0 };

	c.message = msg;
	c.message_len = msg_len;
	return c;
}

TestSuite(certpipe, .init = setup, .fini = teardown);

Test(certpipe, every_outcome_has_a_row)
{
	int o;

	for (o = 0; o < CP__MAX; o++) {
		cr_assert(certpipe_audit((enum certpipe_outcome)o) < AK__MAX);
		if (o == CP_OK)
			cr_assert_eq(certpipe_code(CP_OK), CPC_OK);
		else
			cr_assert_neq(
			    certpipe_code((enum certpipe_outcome)o), CPC_OK, "outcome %d", o);
	}
	cr_assert_eq(certpipe_code(CP_MISSING_TOKEN), 16);
	cr_assert_str_eq(certpipe_message(CP_MISSING_TOKEN), "missing token");
	cr_assert_str_eq(certpipe_message(CP_INVALID_TOKEN), "invalid token");
	cr_assert_eq(certpipe_code(CP_UNAVAILABLE), 14);
	cr_assert_eq(certpipe_code(CP_KEEPER_DOWN), 14);
	cr_assert_eq(certpipe_code(CP_RATE_LIMITED), 8);
	cr_assert_eq(certpipe_code(CP_BAD_PARSE), 3);
	cr_assert_eq(certpipe_code(CP_DENIED), 7);
	cr_assert_null(certpipe_message(CP_BAD_PARSE)); /* the signer's own text */
	cr_assert_eq(certpipe_from_signer(SIGNER_OK), CP_OK);
	cr_assert_eq(certpipe_from_signer(SIGNER_BAD_DECODE), CP_BAD_DECODE);
	cr_assert_eq(certpipe_from_signer(SIGNER_DENIED), CP_DENIED);
	cr_assert_eq(certpipe_from_signer(SIGNER_INTERNAL), CP_INTERNAL);
	cr_assert_eq(certpipe_from_signer((enum signer_status)99), CP_INTERNAL);
}

Test(certpipe, issues_and_packs_ca_and_crt)
{
	struct certpipe_call              c = good_call();
	struct certpipe_result            r;
	Securityapi__CertificateResponse *resp;
	uint64_t                          before = metrics_request_count(AK_ISSUED);

	certpipe_run(&c, snap, NULL, &issuer, &r);
	cr_assert_eq(r.outcome, CP_OK, "%s", r.message);
	cr_assert_eq(r.code, 0);
	cr_assert_not_null(r.response);
	resp = securityapi__certificate_response__unpack(NULL, r.response_len, r.response);
	cr_assert_not_null(resp);
	cr_assert_eq(resp->ca.len, snap->ca_bundle_len);
	cr_assert(memcmp(resp->ca.data, snap->ca_bundle, resp->ca.len) == 0);
	cr_assert_eq(resp->crt.len, r.res.crt_len);
	cr_assert(memcmp(resp->crt.data, "-----BEGIN CERTIFICATE-----", 27) == 0);
	cr_assert_eq(metrics_request_count(AK_ISSUED), before + 1);
	securityapi__certificate_response__free_unpacked(resp, NULL);
	certpipe_result_free(&r);
}

Test(certpipe, token_rules)
{
	struct certpipe_call   c = good_call();
	struct certpipe_result r;

	c.ntokens = 0;
	certpipe_run(&c, snap, NULL, &issuer, &r);
	cr_assert_eq(r.outcome, CP_MISSING_TOKEN);
	cr_assert_str_eq(r.message, "missing token");
	cr_assert_null(r.response);
	certpipe_result_free(&r);

	c.ntokens = 2; /* duplicated, even if the first is right */
	certpipe_run(&c, snap, NULL, &issuer, &r);
	cr_assert_eq(r.outcome, CP_INVALID_TOKEN);
	certpipe_result_free(&r);

	c.ntokens = 1;
	c.token = "abcdef.0123456789abcdeX";
	certpipe_run(&c, snap, NULL, &issuer, &r);
	cr_assert_eq(r.outcome, CP_INVALID_TOKEN);
	cr_assert_eq(r.code, CPC_UNAUTHENTICATED);
	certpipe_result_free(&r);
}

Test(certpipe, no_snapshot_is_unavailable)
{
	struct certpipe_call   c = good_call();
	struct certpipe_result r;

	certpipe_run(&c, NULL, NULL, &issuer, &r);
	cr_assert_eq(r.outcome, CP_UNAVAILABLE);
	cr_assert_eq(r.code, CPC_UNAVAILABLE);
	certpipe_result_free(&r);
}

Test(certpipe, ended_before_message_without_token_is_a_reset)
{
	struct certpipe_call   c = good_call();
	struct certpipe_result r;

	c.has_message = 0;
	c.ntokens = 0;
	certpipe_run(&c, snap, NULL, &issuer, &r);
	cr_assert_eq(r.outcome, CP_RESET);
	cr_assert_eq(r.code, CPC_CANCELLED);
	certpipe_result_free(&r);

	c.ntokens = 1; /* with the right token: a bad message, audited */
	certpipe_run(&c, snap, NULL, &issuer, &r);
	cr_assert_eq(r.outcome, CP_BAD_MESSAGE);
	certpipe_result_free(&r);
}

Test(certpipe, undecodable_message_and_csr)
{
	struct certpipe_call   c = good_call();
	struct certpipe_result r;
	unsigned char          junk[] = { 0x0a, 0x7f, 0x01 }; /* field 1, length past the end */
	unsigned char          empty_csr[] = { 0x0a, 0x00 };

	c.message = junk;
	c.message_len = sizeof(junk);
	certpipe_run(&c, snap, NULL, &issuer, &r);
	cr_assert_eq(r.outcome, CP_BAD_MESSAGE);
	cr_assert_str_eq(r.message, "failed to decode request message");
	certpipe_result_free(&r);

	c.message = empty_csr;
	c.message_len = sizeof(empty_csr);
	certpipe_run(&c, snap, NULL, &issuer, &r);
	cr_assert_eq(r.outcome, CP_BAD_DECODE);
	cr_assert_eq(r.code, CPC_INVALID_ARGUMENT);
	cr_assert_str_eq(r.message, "failed to decode CSR");
	certpipe_result_free(&r);
}

static int
unreachable(void *arg, const struct creds *cr, const unsigned char *csr, size_t len,
    const char *peer, struct signer_result *res, struct certpipe_signed *sig)
{
	(void)arg, (void)cr, (void)csr, (void)len, (void)peer, (void)res;
	sig->audited = 1; /* must be ignored: nothing was audited */
	return -1;
}

Test(certpipe, issuer_down_is_unavailable)
{
	struct certpipe_call   c = good_call();
	struct certpipe_result r;
	struct certpipe_issuer down = { unreachable, NULL, NULL };
	uint64_t               before = metrics_request_count(AK_UNAVAILABLE);

	certpipe_run(&c, snap, NULL, &down, &r);
	cr_assert_eq(r.outcome, CP_KEEPER_DOWN);
	cr_assert_eq(r.code, CPC_UNAVAILABLE);
	cr_assert_null(r.response);
	cr_assert_eq(metrics_request_count(AK_UNAVAILABLE), before + 1);
	certpipe_result_free(&r);
}

Test(certpipe, rate_limit_comes_before_the_token)
{
	struct certpipe_call   c = good_call();
	struct certpipe_result r;
	struct ratelimit      *rl = ratelimit_new(0.001, 1, 16);

	cr_assert_not_null(rl);
	certpipe_run(&c, snap, rl, &issuer, &r);
	cr_assert_eq(r.outcome, CP_OK);
	certpipe_result_free(&r);
	c.ntokens = 0;
	certpipe_run(&c, snap, rl, &issuer, &r);
	cr_assert_eq(r.outcome, CP_RATE_LIMITED);
	cr_assert_eq(r.code, CPC_RESOURCE_EXHAUSTED);
	certpipe_result_free(&r);
	ratelimit_free(rl);
}
