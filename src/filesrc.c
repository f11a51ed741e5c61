/*
 * filesrc.c: the file credential source and its inotify watcher thread.
 *
 * Threads: filesrc_new() and filesrc_load() on main before the watcher
 * starts; then only the watcher thread reads files and submits. It registers
 * with the assembler as the source "files"; the assembler logs, counts and
 * audits every outcome, including a file that cannot be read. filesrc_reload()/filesrc_free()
 * from main talk to it through an eventfd. Owns: the inotify descriptor, the
 * eventfd and the watcher thread; file contents live in scrubbed buffers only
 * for the duration of a rescan.
 */
#include "filesrc.h"

#include <sys/eventfd.h>
#include <sys/inotify.h>

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "credsrc.h"
#include "log.h"
#include "util.h"

#define FILESRC_MAX_DIRS    8
#define FILESRC_DEBOUNCE_MS 150
#define FILESRC_RECHECK_MS  30000 /* safety net: rescan even without events */

struct filesrc {
	const struct config   *cfg;
	struct credsrc_source *src;
	unsigned               groups;
	int                    ifd, efd;
	char                  *dirs[FILESRC_MAX_DIRS];
	int                    wds[FILESRC_MAX_DIRS];
	int                    ndirs;
	pthread_t              thr;
	int                    running;
	atomic_int             stop, force;
};

struct filespec {
	enum creds_field f;
	const char      *setting;
	const char      *path;
	int              optional;
};

static int
specs(const struct filesrc *fs, struct filespec *out)
{
	const struct config *c = fs->cfg;
	int                  n = 0;

	if (fs->groups & CF_GROUP_CA) {
		out[n++] = (struct filespec){ CF_CA_CERT, "CA_CERT_PATH", c->ca_cert_path, 0 };
		out[n++] = (struct filespec){ CF_CA_KEY, "CA_KEY_PATH", c->ca_key_path, 0 };
		if (c->token_path && *c->token_path)
			out[n++] = (struct filespec){ CF_TOKEN, "TOKEN_PATH", c->token_path, 0 };
		if (c->accepted_cas_path && *c->accepted_cas_path)
			out[n++] = (struct filespec){ CF_ACCEPTED_CAS, "ACCEPTED_CAS_PATH",
				c->accepted_cas_path, 0 };
		if (c->accepted_tokens_path && *c->accepted_tokens_path)
			out[n++] = (struct filespec){ CF_ACCEPTED_TOKENS, "ACCEPTED_TOKENS_PATH",
				c->accepted_tokens_path, 0 };
	}
	if (fs->groups & CF_GROUP_TLS) {
		out[n++] = (struct filespec){ CF_TLS_CERT, "TLS_CERT_PATH", c->tls_cert_path, 0 };
		out[n++] = (struct filespec){ CF_TLS_KEY, "TLS_KEY_PATH", c->tls_key_path, 0 };
	}
	return n;
}

/* Reads every owned file; 0, or -1 with err naming the setting. */
static int
read_all(struct filesrc *fs, struct creds_input *in, char *err, size_t errlen)
{
	struct filespec sp[8];
	struct sbuf     b;
	char            origin[160];
	int             i, n;

	n = specs(fs, sp);
	for (i = 0; i < n; i++) {
		snprintf(origin, sizeof(origin), "%s (%s)", sp[i].setting, sp[i].path);
		if (util_read_file(sp[i].path, CREDS_MAX_PART, &b) == -1) {
			snprintf(err, errlen, "%s: cannot read: %s", origin,
			    errno == EFBIG ? "file too large" : strerror(errno));
			return -1;
		}
		if (creds_input_set(in, sp[i].f, b.data, b.len, origin) == -1) {
			sbuf_free(&b);
			snprintf(err, errlen, "%s: out of memory", origin);
			return -1;
		}
		sbuf_free(&b);
	}
	if ((fs->groups & CF_GROUP_CA) && !(fs->cfg->token_path && *fs->cfg->token_path) &&
	    fs->cfg->token != NULL &&
	    creds_input_set(in, CF_TOKEN, fs->cfg->token, strlen(fs->cfg->token), "TALOS_TOKEN") ==
		-1) {
		snprintf(err, errlen, "TALOS_TOKEN: out of memory");
		return -1;
	}
	return 0;
}

/*
 * Reads every owned file and submits them; the assembler reports the
 * outcome. A file that cannot be read is reported to the assembler as a
 * fault when `report` is set (the watcher thread); at start-up it is the
 * caller's configuration error. 0, or -1 with err set.
 */
static int
rescan(struct filesrc *fs, int report, char *err, size_t errlen)
{
	struct creds_input in;
	int                rc = -1;

	creds_input_init(&in);
	if (read_all(fs, &in, err, errlen) == -1) {
		if (report)
			credsrc_fault(fs->src, CREDSRC_UNREADABLE, NULL, err);
		goto out;
	}
	if (credsrc_submit(fs->src, &in, NULL, err, errlen) != CREDSRC_INVALID)
		rc = 0;
out:
	creds_input_free(&in);
	return rc;
}

int
filesrc_load(struct filesrc *fs, char *err, size_t errlen)
{
	return rescan(fs, 0, err, errlen);
}

struct filesrc *
filesrc_new(const struct config *cfg, struct credsrc *cs, unsigned groups, char *err, size_t errlen)
{
	struct filesrc *fs;

	if ((fs = calloc(1, sizeof(*fs))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if ((fs->src = credsrc_register(cs, groups, "files", MS_FILES, err, errlen)) == NULL) {
		free(fs);
		return NULL;
	}
	fs->cfg = cfg;
	fs->groups = groups;
	fs->ifd = fs->efd = -1;
	atomic_init(&fs->stop, 0);
	atomic_init(&fs->force, 0);
	return fs;
}

/* (Re)adds a watch on the directory of every owned file. */
static void
watch_dirs(struct filesrc *fs)
{
	struct filespec sp[8];
	char            copy[PATH_MAX], *d;
	int             i, j, n, wd;
	const uint32_t mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE |
	    IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_DONT_FOLLOW;

	n = specs(fs, sp);
	for (i = 0; i < n; i++) {
		snprintf(copy, sizeof(copy), "%s", sp[i].path);
		d = dirname(copy);
		for (j = 0; j < fs->ndirs; j++)
			if (strcmp(fs->dirs[j], d) == 0)
				break;
		if (j < fs->ndirs && fs->wds[j] >= 0)
			continue;
		if ((wd = inotify_add_watch(fs->ifd, d, mask)) == -1) {
			log_warn("filesrc: cannot watch %s (will rescan every %ds)", d,
			    FILESRC_RECHECK_MS / 1000);
		}
		if (j == fs->ndirs) {
			if (fs->ndirs == FILESRC_MAX_DIRS)
				continue;
			fs->dirs[fs->ndirs] = strdup(d);
			fs->ndirs++;
		}
		fs->wds[j] = wd;
	}
}

/* Drains inotify; returns 1 if anything relevant happened. */
static int
drain_inotify(struct filesrc *fs)
{
	char                        buf[4096] __attribute__((aligned(8)));
	const struct inotify_event *ev;
	ssize_t                     r;
	char                       *p;
	int                         j, any = 0;

	while ((r = read(fs->ifd, buf, sizeof(buf))) > 0) {
		for (p = buf; p < buf + r; p += sizeof(*ev) + ev->len) {
			ev = (const struct inotify_event *)p;
			any = 1;
			if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
				for (j = 0; j < fs->ndirs; j++)
					if (fs->wds[j] == ev->wd)
						fs->wds[j] = -1;
			}
		}
	}
	return any;
}

static void *
watcher(void *arg)
{
	struct filesrc *fs = arg;
	struct pollfd   pfd[2];
	uint64_t        v;
	int64_t         due = -1, next_check;
	char            err[512];
	int             timeout, rc;

	next_check = util_mono_ms() + FILESRC_RECHECK_MS;
	while (!atomic_load(&fs->stop)) {
		pfd[0] = (struct pollfd){ .fd = fs->ifd, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = fs->efd, .events = POLLIN };
		timeout = (int)((due >= 0 ? due : next_check) - util_mono_ms());
		if (timeout < 0)
			timeout = 0;
		rc = poll(pfd, 2, timeout);
		if (rc == -1 && errno != EINTR) {
			log_warn("filesrc: poll");
			usleep(100000);
			continue;
		}
		if (rc > 0 && (pfd[1].revents & POLLIN))
			while (read(fs->efd, &v, sizeof(v)) > 0)
				;
		if (atomic_load(&fs->stop))
			break;
		if (rc > 0 && (pfd[0].revents & POLLIN) && drain_inotify(fs))
			due = util_mono_ms() + FILESRC_DEBOUNCE_MS; /* settle first */
		if (atomic_exchange(&fs->force, 0)) {
			credsrc_invalidate(fs->src);
			due = util_mono_ms();
		}
		if (util_mono_ms() >= next_check) {
			due = util_mono_ms();
			next_check = util_mono_ms() + FILESRC_RECHECK_MS;
		}
		if (due >= 0 && util_mono_ms() >= due) {
			due = -1;
			watch_dirs(fs); /* a replaced directory needs a new watch */
			rescan(fs, 1, err, sizeof(err)); /* the assembler reports */
		}
	}
	return NULL;
}

int
filesrc_start(struct filesrc *fs)
{
	if ((fs->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) == -1) {
		log_warn("inotify_init1");
		return -1;
	}
	if ((fs->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1) {
		log_warn("eventfd");
		return -1;
	}
	watch_dirs(fs);
	if (util_thread_start(&fs->thr, UTIL_STACK_SMALL, watcher, fs) != 0) {
		log_warnx("filesrc: cannot start the watcher thread");
		return -1;
	}
	fs->running = 1;
	return 0;
}

static void
wake(struct filesrc *fs)
{
	uint64_t one = 1;
	ssize_t  w;

	if (fs->efd >= 0)
		w = write(fs->efd, &one, sizeof(one));
	(void)w;
}

void
filesrc_reload(struct filesrc *fs)
{
	if (fs == NULL)
		return;
	atomic_store(&fs->force, 1);
	wake(fs);
}

void
filesrc_free(struct filesrc *fs)
{
	int i;

	if (fs == NULL)
		return;
	atomic_store(&fs->stop, 1);
	wake(fs);
	if (fs->running)
		pthread_join(fs->thr, NULL);
	for (i = 0; i < fs->ndirs; i++)
		free(fs->dirs[i]);
	if (fs->ifd >= 0)
		close(fs->ifd);
	if (fs->efd >= 0)
		close(fs->efd);
	free(fs);
}
