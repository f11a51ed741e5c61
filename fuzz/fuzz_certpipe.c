/*
 * fuzz_certpipe.c: one whole Certificate call without a server: the token
 * rules, the protobuf decode, the in-process sign step and the response
 * packing (certpipe_run()), against a fixed snapshot built once.
 *
 * Input: one knob byte, then the serialised CertificateRequest as gRPC
 * would deliver it. Knob bits: 0-1 the number of `token` values (0..3),
 * 2 whether a message arrived at all, 3 whether the token is the right one,
 * 4 a rate limit of one request (reached on the second call of an input).
 *
 * Checked beyond "no crash": the status code is the table's for the
 * outcome; only CP_OK carries a response, and that response decodes with
 * `ca` equal to the snapshot's bundle and one PEM certificate in `crt`.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "security.pb-c.h"

#include "certpipe.h"
#include "creds.h"
#include "fuzzpki.h"
#include "ratelimit.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct creds         *snap;
static struct certpipe_local local;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snap = fuzzpki_snapshot("fuzz_certpipe");
	signer_policy_defaults(&local.params.policy);
	local.params.ttl_ms = 24LL * 3600 * 1000;
	local.params.backdate_ms = 60 * 1000;
	return 0;
}

static void
check(const struct certpipe_result *r)
{
	Securityapi__CertificateResponse *resp;

	if (r->code != certpipe_code(r->outcome))
		abort();
	if (r->outcome != CP_OK) {
		if (r->response != NULL || r->code == 0)
			abort();
		return;
	}
	resp = securityapi__certificate_response__unpack(NULL, r->response_len, r->response);
	if (resp == NULL || resp->ca.len != snap->ca_bundle_len ||
	    memcmp(resp->ca.data, snap->ca_bundle, resp->ca.len) != 0 || resp->crt.len < 27 ||
	    memcmp(resp->crt.data, "-----BEGIN CERTIFICATE-----", 27) != 0)
		abort();
	securityapi__certificate_response__free_unpacked(resp, NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct certpipe_issuer iss = { certpipe_issue_local, NULL, &local };
	struct certpipe_call   c;
	struct certpipe_result r;
	struct ratelimit      *rl = NULL;
	uint8_t                knob;
	int                    i, rounds;

	if (size < 1)
		return 0;
	knob = data[0];
	memset(&c, 0, sizeof(c));
	c.peer_ip = "10.0.0.5";
	c.ntokens = knob & 3;
	c.has_message = (knob & 4) != 0;
	c.token = (knob & 8) ? FUZZPKI_TOKEN : "abcdef.0123456789abcdeX";
	c.token_len = strlen(c.token);
	c.message = data + 1;
	c.message_len = size - 1;
	rounds = 1;
	if ((knob & 16) && (rl = ratelimit_new(0.001, 1, 4)) != NULL)
		rounds = 2;
	for (i = 0; i < rounds; i++) {
		certpipe_run(&c, snap, rl, &iss, &r);
		check(&r);
		if (i == 1 && r.outcome != CP_RATE_LIMITED && r.outcome != CP_RESET)
			abort();
		certpipe_result_free(&r);
	}
	ratelimit_free(rl);
	return 0;
}
