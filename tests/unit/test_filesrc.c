/*
 * test_filesrc.c: the file source picks up an atomic rename and a
 * kubelet-style `..data` symlink swap, and keeps the last good credentials
 * when the new files are broken (mirrors src/filesrc.c).
 */
#include <sys/stat.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "audit.h"
#include "config.h"
#include "creds.h"
#include "credsrc.h"
#include "credstore.h"
#include "filesrc.h"
#include "testutil.h"

#define ALL CF_GROUP_ALL

static void
put(const char *dir, const char *name, const char *content)
{
	char  tmp[512], path[512];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(tmp, "w");
	cr_assert_not_null(f);
	fputs(content, f);
	fclose(f);
	cr_assert_eq(rename(tmp, path), 0);
}

/* Lays a PKI out the way the kubelet does: DIR/..TS/{files}, DIR/..data -> ..TS, DIR/f -> ..data/f. */
static void
kubelet_write(const char *dir, const struct tu_pki *p, const char *token, int generation)
{
	char        ts[600], link[600], tmp[600];
	const char *names[] = { "ca.crt", "ca.key", "token", "tls.crt", "tls.key" };
	const char *vals[] = { p->ca_pem, p->ca_key_pem, token, p->tls_pem, p->tls_key_pem };
	int         i;

	snprintf(ts, sizeof(ts), "%s/..gen%d", dir, generation);
	mkdir(ts, 0700);
	for (i = 0; i < 5; i++)
		put(ts, names[i], vals[i]);
	snprintf(tmp, sizeof(tmp), "%s/..data_tmp", dir);
	snprintf(link, sizeof(link), "..gen%d", generation);
	unlink(tmp);
	cr_assert_eq(symlink(link, tmp), 0);
	snprintf(link, sizeof(link), "%s/..data", dir);
	cr_assert_eq(rename(tmp, link), 0);
	for (i = 0; i < 5; i++) {
		char target[128], path[600];

		snprintf(target, sizeof(target), "..data/%s", names[i]);
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (access(path, F_OK) != 0)
			cr_assert_eq(symlink(target, path), 0);
	}
}

static int
wait_gen(struct credstore *st, uint64_t want)
{
	int i;

	for (i = 0; i < 100; i++) {
		if (credstore_generation(st) >= want)
			return 1;
		usleep(50000);
	}
	return 0;
}

static struct config *
cfg_for(const char *dir)
{
	static struct config c;
	static char          p[5][512];
	const char          *n[] = { "ca.crt", "ca.key", "token", "tls.crt", "tls.key" };
	int                  i;

	memset(&c, 0, sizeof(c));
	for (i = 0; i < 5; i++)
		snprintf(p[i], sizeof(p[i]), "%s/%s", dir, n[i]);
	c.ca_cert_path = p[0];
	c.ca_key_path = p[1];
	c.token_path = p[2];
	c.tls_cert_path = p[3];
	c.tls_key_path = p[4];
	return &c;
}

Test(filesrc, kubelet_symlink_swap_and_broken_update, .timeout = 60)
{
	char              dir[] = "/tmp/tcs-filesrc-XXXXXX", err[512];
	struct tu_pki     a, b;
	struct credstore *st = credstore_new();
	struct credsrc   *cs = credsrc_new(st);
	struct filesrc   *fs;
	struct creds     *c;

	cr_assert_not_null(mkdtemp(dir));
	tu_pki_make(&a, TU_ED25519);
	tu_pki_make(&b, TU_P256);
	kubelet_write(dir, &a, TU_TOKEN, 1);
	fs = filesrc_new(cfg_for(dir), cs, ALL, err, sizeof(err));
	cr_assert_not_null(fs, "%s", err);
	cr_assert_eq(filesrc_load(fs, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(credstore_generation(st), 1);
	cr_assert_eq(filesrc_start(fs), 0);

	kubelet_write(dir, &b, "newtok.0123456789abcdef", 2);
	cr_assert(wait_gen(st, 2), "symlink swap not picked up");
	c = credstore_acquire(st);
	cr_assert_eq(c->ca_type, KEY_ECDSA_P256);
	cr_assert(creds_token_ok(c, "newtok.0123456789abcdef", 23));
	creds_release(c);

	/* A broken CA key: the ECDSA credentials keep serving. */
	{
		struct tu_pki broken = b;

		broken.ca_key_pem = "not a key";
		kubelet_write(dir, &broken, "newtok.0123456789abcdef", 3);
	}
	usleep(800000);
	cr_assert_eq(credstore_generation(st), 2);
	/* Fixed again by a plain atomic rename of the files themselves. */
	kubelet_write(dir, &a, TU_TOKEN, 4);
	cr_assert(wait_gen(st, 3), "repair not picked up");
	c = credstore_acquire(st);
	cr_assert_eq(c->ca_type, KEY_ED25519);
	creds_release(c);
	filesrc_free(fs);
	credsrc_free(cs);
	credstore_free(st);
	tu_pki_free(&a);
	tu_pki_free(&b);
}

Test(filesrc, plain_rename_and_sighup, .timeout = 60)
{
	char              dir[] = "/tmp/tcs-filesrc-XXXXXX", err[512];
	struct tu_pki     a;
	struct credstore *st = credstore_new();
	struct credsrc   *cs = credsrc_new(st);
	struct filesrc   *fs;

	cr_assert_not_null(mkdtemp(dir));
	tu_pki_make(&a, TU_ED25519);
	put(dir, "ca.crt", a.ca_pem);
	put(dir, "ca.key", a.ca_key_pem);
	put(dir, "token", TU_TOKEN);
	put(dir, "tls.crt", a.tls_pem);
	put(dir, "tls.key", a.tls_key_pem);
	fs = filesrc_new(cfg_for(dir), cs, ALL, err, sizeof(err));
	cr_assert_not_null(fs, "%s", err);
	cr_assert_eq(filesrc_load(fs, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(filesrc_start(fs), 0);
	put(dir, "token", "second.0123456789abcdef");
	cr_assert(wait_gen(st, 2), "rename not picked up");
	/* SIGHUP path: a forced reload republishes even unchanged files. */
	filesrc_reload(fs);
	cr_assert(wait_gen(st, 3), "forced reload did not publish");
	filesrc_free(fs);
	credsrc_free(cs);
	credstore_free(st);
	tu_pki_free(&a);
}

Test(filesrc, missing_file_names_the_setting)
{
	struct credstore *st = credstore_new();
	struct credsrc   *cs = credsrc_new(st);
	char              err[512];
	struct filesrc   *fs = filesrc_new(cfg_for("/nonexistent-dir"), cs, ALL, err, sizeof(err));

	cr_assert_not_null(fs, "%s", err);
	cr_assert_eq(filesrc_load(fs, err, sizeof(err)), -1);
	cr_assert(
	    strstr(err, "CA_CERT_PATH (/nonexistent-dir/ca.crt): cannot read") != NULL, "%s", err);
	filesrc_free(fs);
	credsrc_free(cs);
	credstore_free(st);
}

/* What the audit sink saw, from the file watcher's thread. */
struct fs_seen {
	pthread_mutex_t mtx;
	int             invalid;
	char            related[160], message[600];
};

static void
fs_sink(const struct audit_rec *r, void *arg)
{
	struct fs_seen *s = arg;

	pthread_mutex_lock(&s->mtx);
	if (r->kind == AK_CREDS_INVALID) {
		s->invalid++;
		snprintf(s->related, sizeof(s->related), "%s", r->related ? r->related : "");
		snprintf(s->message, sizeof(s->message), "%s", r->message ? r->message : "");
	}
	pthread_mutex_unlock(&s->mtx);
}

/* A file that vanishes: the assembler reports it once per rescan, the last good set serves. */
Test(filesrc, an_unreadable_file_is_reported_by_the_assembler, .timeout = 60)
{
	char              dir[] = "/tmp/tcs-filesrc-XXXXXX", err[512], path[600];
	struct tu_pki     a;
	struct credstore *st = credstore_new();
	struct credsrc   *cs = credsrc_new(st);
	struct filesrc   *fs;
	struct fs_seen    seen;
	int               i, n = 0;

	memset(&seen, 0, sizeof(seen));
	pthread_mutex_init(&seen.mtx, NULL);
	cr_assert_not_null(mkdtemp(dir));
	tu_pki_make(&a, TU_ED25519);
	put(dir, "ca.crt", a.ca_pem);
	put(dir, "ca.key", a.ca_key_pem);
	put(dir, "token", TU_TOKEN);
	put(dir, "tls.crt", a.tls_pem);
	put(dir, "tls.key", a.tls_key_pem);
	fs = filesrc_new(cfg_for(dir), cs, ALL, err, sizeof(err));
	cr_assert_not_null(fs, "%s", err);
	cr_assert_eq(filesrc_load(fs, err, sizeof(err)), 0, "%s", err);
	audit_set_sink(fs_sink, &seen);
	cr_assert_eq(filesrc_start(fs), 0);
	snprintf(path, sizeof(path), "%s/tls.key", dir);
	cr_assert_eq(unlink(path), 0);
	for (i = 0; i < 100 && n == 0; i++) {
		usleep(50000);
		pthread_mutex_lock(&seen.mtx);
		n = seen.invalid;
		pthread_mutex_unlock(&seen.mtx);
	}
	filesrc_free(fs);
	audit_set_sink(NULL, NULL);
	cr_assert_eq(n, 1, "one CredentialsInvalid record for one failed rescan");
	cr_assert_str_eq(seen.related, "files");
	cr_assert(strstr(seen.message, "still serving the last good ones: TLS_KEY_PATH (") != NULL,
	    "%s", seen.message);
	cr_assert(strstr(seen.message, "cannot read") != NULL, "%s", seen.message);
	cr_assert_eq(credstore_generation(st), 1);
	credsrc_free(cs);
	credstore_free(st);
	tu_pki_free(&a);
	pthread_mutex_destroy(&seen.mtx);
}
