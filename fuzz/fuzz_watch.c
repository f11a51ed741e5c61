/*
 * fuzz_watch.c: the Kubernetes watch-stream parser (watch_feed()) and, for
 * each event it delivers, the Secret decoder the watcher runs on it.
 *
 * Input: the first byte seeds the chunking; the rest is the stream. The
 * stream is fed twice: in one piece, and cut into pieces of 1 to 64 bytes
 * (mid-line, mid-UTF-8, mid-base64). Both feeds must agree: same return
 * code, same number and sequence of events. That is the parser's contract
 * ("any split").
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "creds.h"
#include "fuzzpki.h"
#include "secret.h"
#include "watch.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct trace {
	size_t   n;
	uint64_t h; /* FNV-1a over event types and decode outcomes */
};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzzpki_quiet();
	return 0;
}

static void
mix(struct trace *t, unsigned v)
{
	t->h = (t->h ^ v) * 1099511628211ULL;
}

static int
on_event(enum watch_evtype type, const struct cJSON *obj, void *arg)
{
	struct trace      *t = arg;
	struct creds_input in;
	const char        *name, *ns, *rv, *uid;
	char               err[256];
	int                k, rc;

	if (type >= WATCH_EV__MAX || obj == NULL)
		abort();
	t->n++;
	mix(t, (unsigned)type);
	secret_meta(obj, &name, &ns, &rv, &uid);
	if (name == NULL || ns == NULL || rv == NULL || uid == NULL)
		abort();
	for (k = 0; k < SECRET__MAX; k++) {
		creds_input_init(&in);
		err[0] = '\0';
		rc = secret_decode(obj, (enum secret_kind)k, "fuzz/secret", &in, err, sizeof(err));
		if (rc == -1 && err[0] == '\0')
			abort(); /* a refusal must say why */
		mix(t, (unsigned)(rc + 2));
		creds_input_free(&in);
	}
	return 0;
}

static int
feed(const uint8_t *data, size_t size, unsigned seed, struct trace *t)
{
	struct watch_parser *p;
	size_t               off = 0, n;
	int                  rc = 0;

	memset(t, 0, sizeof(*t));
	t->h = 1469598103934665603ULL;
	if ((p = watch_parser_new(on_event, t)) == NULL)
		abort();
	while (off < size && rc == 0) {
		if (seed == 0)
			n = size - off;
		else {
			seed = seed * 1103515245u + 12345u;
			n = 1 + (seed >> 16) % 64;
			if (n > size - off)
				n = size - off;
		}
		rc = watch_feed(p, data + off, n);
		off += n;
	}
	if (watch_parser_events(p) != t->n)
		abort();
	watch_parser_free(p);
	return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct trace whole, cut;
	int          rw, rc;

	if (size < 1)
		return 0;
	rw = feed(data + 1, size - 1, 0, &whole);
	rc = feed(data + 1, size - 1, (unsigned)data[0] | 0x100u, &cut);
	if (rw != rc || whole.n != cut.n || whole.h != cut.h)
		abort();
	return 0;
}
