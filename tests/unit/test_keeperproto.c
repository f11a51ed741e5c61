/*
 * test_keeperproto.c: the keeper's message codec (mirrors
 * src/keeperproto.c): every type round-trips, each side refuses the other
 * side's types, and the header and field rules refuse what they should;
 * kp_write/kp_read move whole messages over a socketpair, with EOF and a
 * timeout told apart.
 */
#include <sys/socket.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "audit.h"
#include "keeperproto.h"
#include "signer.h"

static struct sbuf buf;
static char        err[256];

static void
setup(void)
{
	sbuf_init(&buf, KP_HEADER_LEN + KP_MAX_PAYLOAD);
}

static void
teardown(void)
{
	sbuf_free(&buf);
}

TestSuite(keeperproto, .init = setup, .fini = teardown);

Test(keeperproto, sign_round_trip)
{
	struct kp_msg m, d;

	kp_init(&m, KP_SIGN);
	m.id = 0x01020304;
	m.csr = (const unsigned char *)"-----BEGIN CERTIFICATE REQUEST-----";
	m.csr_len = 35;
	snprintf(m.peer, sizeof(m.peer), "10.0.0.5");
	cr_assert_eq(kp_encode(&buf, &m), 0);
	cr_assert_eq(buf.data[0], 'K');
	cr_assert_eq(buf.data[2], KP_VERSION);
	cr_assert_eq(
	    kp_decode(buf.data, buf.len, KP_TO_KEEPER, &d, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(d.type, KP_SIGN);
	cr_assert_eq(d.id, 0x01020304u);
	cr_assert_eq(d.csr_len, 35);
	cr_assert(memcmp(d.csr, m.csr, 35) == 0);
	cr_assert_str_eq(d.peer, "10.0.0.5");
	cr_assert_str_eq(d.trace, "");
	/* The network side never receives a sign request. */
	cr_assert_eq(kp_decode(buf.data, buf.len, KP_TO_NETWORK, &d, err, sizeof(err)), -1);
	cr_assert(strstr(err, "not a message this side receives") != NULL, "%s", err);
}

Test(keeperproto, signed_needs_crt_iff_ok)
{
	struct kp_msg m, d;

	kp_init(&m, KP_SIGNED);
	m.id = 7;
	m.status = SIGNER_OK;
	cr_assert_eq(kp_encode(&buf, &m), -1, "OK without a certificate");
	cr_assert_eq(buf.len, 0);
	m.crt = (const unsigned char *)"PEM";
	m.crt_len = 3;
	cr_assert_eq(kp_encode(&buf, &m), -1, "a certificate without its CA bundle");
	m.ca_bundle = (const unsigned char *)"CA";
	m.ca_bundle_len = 2;
	cr_assert_eq(kp_encode(&buf, &m), 0);
	cr_assert_eq(
	    kp_decode(buf.data, buf.len, KP_TO_NETWORK, &d, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(d.status, SIGNER_OK);
	cr_assert_eq(d.crt_len, 3);
	cr_assert_eq(d.ca_bundle_len, 2);
	cr_assert_eq(d.id, 7);
	sbuf_reset(&buf);
	m.status = SIGNER_DENIED;
	cr_assert_eq(kp_encode(&buf, &m), -1, "a refusal with a certificate");
	m.crt = NULL;
	cr_assert_eq(kp_encode(&buf, &m), -1, "a refusal with a CA bundle");
	m.ca_bundle = NULL;
	snprintf(m.message, sizeof(m.message), "peer address not in the CSR");
	cr_assert_eq(kp_encode(&buf, &m), 0);
	cr_assert_eq(
	    kp_decode(buf.data, buf.len, KP_TO_NETWORK, &d, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(d.status, SIGNER_DENIED);
	cr_assert_null(d.crt);
	cr_assert_str_eq(d.message, "peer address not in the CSR");
}

Test(keeperproto, creds_round_trip)
{
	struct kp_msg m, d;
	unsigned char dig[3 * KP_DIGEST_LEN];

	memset(dig, 0xab, sizeof(dig));
	kp_init(&m, KP_CREDS);
	m.gen = 0x1122334455667788ULL;
	m.tls_cert = (const unsigned char *)"cert";
	m.tls_cert_len = 4;
	m.tls_key = (const unsigned char *)"key";
	m.tls_key_len = 3;
	m.ca_bundle = (const unsigned char *)"bundle";
	m.ca_bundle_len = 6;
	m.digests = dig;
	m.ndigests = 3;
	memset(m.tls_digest, 0x5a, sizeof(m.tls_digest));
	snprintf(m.tls_fp, sizeof(m.tls_fp), "%064d", 0);
	m.tls_not_after = 1900000000;
	m.ca_not_after = -5;
	cr_assert_eq(kp_encode(&buf, &m), 0);
	cr_assert_eq(
	    kp_decode(buf.data, buf.len, KP_TO_NETWORK, &d, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(d.gen, m.gen);
	cr_assert_eq(d.ndigests, 3);
	cr_assert(memcmp(d.digests, dig, sizeof(dig)) == 0);
	cr_assert_eq(d.tls_key_len, 3);
	cr_assert(memcmp(d.tls_digest, m.tls_digest, KP_DIGEST_LEN) == 0);
	cr_assert_eq(d.tls_not_after, 1900000000);
	cr_assert_eq(d.ca_not_after, -5);
	cr_assert_str_eq(d.tls_fp, m.tls_fp);
	cr_assert_eq(kp_decode(buf.data, buf.len, KP_TO_KEEPER, &d, err, sizeof(err)), -1);
}

Test(keeperproto, audit_waiting_reload)
{
	struct kp_msg m, d;

	kp_init(&m, KP_AUDIT);
	m.kind = AK_RATE_LIMITED;
	snprintf(m.peer, sizeof(m.peer), "::1");
	snprintf(m.message, sizeof(m.message), "too many requests");
	cr_assert_eq(kp_encode(&buf, &m), 0);
	cr_assert_eq(
	    kp_decode(buf.data, buf.len, KP_TO_KEEPER, &d, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(d.kind, AK_RATE_LIMITED);
	cr_assert_str_eq(d.peer, "::1");
	m.kind = AK__MAX;
	sbuf_reset(&buf);
	cr_assert_eq(kp_encode(&buf, &m), -1);

	kp_init(&m, KP_WAITING);
	snprintf(m.message, sizeof(m.message), "waiting for Secret talos/talos-ca");
	cr_assert_eq(kp_encode(&buf, &m), 0);
	cr_assert_eq(
	    kp_decode(buf.data, buf.len, KP_TO_NETWORK, &d, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(d.message, "waiting for Secret talos/talos-ca");

	sbuf_reset(&buf);
	kp_init(&m, KP_RELOAD);
	cr_assert_eq(kp_encode(&buf, &m), 0);
	cr_assert_eq(buf.len, KP_HEADER_LEN);
	cr_assert_eq(
	    kp_decode(buf.data, buf.len, KP_TO_KEEPER, &d, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(d.type, KP_RELOAD);
}

static void
sign_msg(void)
{
	struct kp_msg m;

	sbuf_reset(&buf);
	kp_init(&m, KP_SIGN);
	m.csr = (const unsigned char *)"x";
	m.csr_len = 1;
	snprintf(m.peer, sizeof(m.peer), "1.2.3.4");
	cr_assert_eq(kp_encode(&buf, &m), 0);
}

Test(keeperproto, refusals)
{
	struct kp_msg d;
	unsigned char saved[64];
	size_t        n;

	sign_msg();
	n = buf.len;
	cr_assert(n < sizeof(saved));
	memcpy(saved, buf.data, n);

	buf.data[2] = KP_VERSION + 1; /* another version */
	cr_assert_eq(kp_decode(buf.data, n, KP_TO_KEEPER, &d, err, sizeof(err)), -1);
	memcpy(buf.data, saved, n);
	buf.data[0] = 'X'; /* magic */
	cr_assert_eq(kp_decode(buf.data, n, KP_TO_KEEPER, &d, err, sizeof(err)), -1);
	memcpy(buf.data, saved, n);
	buf.data[3] = KP__MAX; /* unknown type */
	cr_assert_eq(kp_decode(buf.data, n, KP_TO_KEEPER, &d, err, sizeof(err)), -1);
	memcpy(buf.data, saved, n);
	/* Truncated: the header's length no longer matches. */
	cr_assert_eq(kp_decode(buf.data, n - 1, KP_TO_KEEPER, &d, err, sizeof(err)), -1);
	cr_assert_eq(kp_decode(buf.data, 5, KP_TO_KEEPER, &d, err, sizeof(err)), -1);
	/* A field's length past the end. */
	buf.data[KP_HEADER_LEN + 4] = 0x7f;
	cr_assert_eq(kp_decode(buf.data, n, KP_TO_KEEPER, &d, err, sizeof(err)), -1);
	memcpy(buf.data, saved, n);
	/* A NUL inside a text (the peer is the last field: 7 bytes at the end). */
	buf.data[n - 3] = '\0';
	cr_assert_eq(kp_decode(buf.data, n, KP_TO_KEEPER, &d, err, sizeof(err)), -1);
	memcpy(buf.data, saved, n);
	/* A field this type does not allow: the CSR's tag turned into the CRT's. */
	buf.data[KP_HEADER_LEN] = 6;
	cr_assert_eq(kp_decode(buf.data, n, KP_TO_KEEPER, &d, err, sizeof(err)), -1);
	cr_assert(strstr(err, "unexpected field") != NULL, "%s", err);
	memcpy(buf.data, saved, n);
	/* A duplicated field. */
	buf.data[KP_HEADER_LEN] = 2; /* CSR -> a second PEER */
	cr_assert_eq(kp_decode(buf.data, n, KP_TO_KEEPER, &d, err, sizeof(err)), -1);
	memcpy(buf.data, saved, n);
	cr_assert_eq(kp_decode(buf.data, n, KP_TO_KEEPER, &d, err, sizeof(err)), 0, "%s", err);
}

Test(keeperproto, missing_required_field)
{
	unsigned char m[KP_HEADER_LEN] = { 'K', 'P', KP_VERSION, KP_SIGN, 0, 0, 0, 1, 0, 0, 0, 0 };
	struct kp_msg d;

	cr_assert_eq(kp_decode(m, sizeof(m), KP_TO_KEEPER, &d, err, sizeof(err)), -1);
	cr_assert(strstr(err, "required") != NULL, "%s", err);
}

Test(keeperproto, header_limits)
{
	unsigned char h[KP_HEADER_LEN] = { 'K', 'P', KP_VERSION, KP_CREDS, 0, 0, 0, 0,
		(unsigned char)(KP_MAX_PAYLOAD >> 24), (unsigned char)(KP_MAX_PAYLOAD >> 16),
		(unsigned char)(KP_MAX_PAYLOAD >> 8), (unsigned char)KP_MAX_PAYLOAD };
	enum kp_type  t;
	uint32_t      id, len;

	cr_assert_eq(kp_header(h, &t, &id, &len), 0); /* the limit exactly */
	cr_assert_eq(len, KP_MAX_PAYLOAD);
	h[11] |= 1;
	cr_assert_eq(kp_header(h, &t, &id, &len), -1);
	h[11] &= (unsigned char)~1;
	h[3] = 0;
	cr_assert_eq(kp_header(h, &t, &id, &len), -1);
}

Test(keeperproto, over_limit_fields_do_not_encode)
{
	struct kp_msg m;
	char          big[KP_MAX_TEXT + 2];

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	kp_init(&m, KP_WAITING);
	memcpy(m.message, big, sizeof(m.message) - 1); /* exactly the limit: fine */
	cr_assert_eq(kp_encode(&buf, &m), 0);
	sbuf_reset(&buf);
	kp_init(&m, KP_CREDS); /* no digest */
	cr_assert_eq(kp_encode(&buf, &m), -1);
	cr_assert_eq(buf.len, 0);
}

Test(keeperproto, write_and_read_over_a_socketpair)
{
	struct sbuf   in;
	struct kp_msg d;
	int           sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	sbuf_init(&in, KP_HEADER_LEN + KP_MAX_PAYLOAD);
	sign_msg();
	cr_assert_eq(kp_write(sv[0], buf.data, buf.len), 0);
	cr_assert_eq(kp_write(sv[0], buf.data, buf.len), 0);
	cr_assert_eq(kp_read(sv[1], &in, 1000), 1);
	cr_assert_eq(in.len, buf.len);
	cr_assert_eq(kp_decode(in.data, in.len, KP_TO_KEEPER, &d, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(kp_read(sv[1], &in, 1000), 1);
	/* Nothing more: a timeout, not an end of file. */
	errno = 0;
	cr_assert_eq(kp_read(sv[1], &in, 50), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	/* Half a message then EOF: a protocol error. */
	cr_assert_eq(kp_write(sv[0], buf.data, 5), 0);
	close(sv[0]);
	cr_assert_eq(kp_read(sv[1], &in, 1000), -1);
	cr_assert_eq(errno, EPROTO);
	cr_assert_eq(kp_read(sv[1], &in, 1000), 0); /* then a clean EOF */
	close(sv[1]);
	sbuf_free(&in);
}

Test(keeperproto, reader_keeps_what_follows_and_joins_pieces)
{
	struct kp_reader     rd;
	struct kp_msg        d;
	const unsigned char *msg;
	unsigned char        copy[256];
	size_t               len, one;
	int                  sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	kp_reader_init(&rd, sv[1]);
	sign_msg();
	one = buf.len;
	/* Two messages in one write, then one in three pieces. */
	cr_assert(one <= sizeof(copy));
	memcpy(copy, buf.data, one);
	cr_assert_eq(sbuf_add(&buf, copy, one), 0);
	cr_assert_eq(kp_write(sv[0], buf.data, buf.len), 0);
	cr_assert_eq(kp_reader_next(&rd, 1000, &msg, &len), 1);
	cr_assert_eq(len, one);
	cr_assert_eq(kp_decode(msg, len, KP_TO_KEEPER, &d, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(kp_reader_next(&rd, 1000, &msg, &len), 1, "the second was kept");
	cr_assert_eq(kp_decode(msg, len, KP_TO_KEEPER, &d, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(kp_write(sv[0], buf.data, 3), 0);
	cr_assert_eq(kp_write(sv[0], buf.data + 3, 10), 0);
	cr_assert_eq(kp_write(sv[0], buf.data + 13, one - 13), 0);
	cr_assert_eq(kp_reader_next(&rd, 1000, &msg, &len), 1);
	cr_assert_eq(kp_decode(msg, len, KP_TO_KEEPER, &d, err, sizeof(err)), 0, "%s", err);
	errno = 0;
	cr_assert_eq(kp_reader_next(&rd, 50, &msg, &len), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	close(sv[0]);
	cr_assert_eq(kp_reader_next(&rd, 1000, &msg, &len), 0);
	kp_reader_free(&rd);
	close(sv[1]);
}
