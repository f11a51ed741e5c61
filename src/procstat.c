/*
 * procstat.c: process CPU, memory, start time and descriptors from /proc,
 * for the process_* metric families every Prometheus client library exports.
 *
 * Threads: any; no state. The parsers are pure and unit-tested; the reader
 * only opens /proc/self/stat, /proc/stat and /proc/self/fd.
 * Owns: nothing.
 */
#include "procstat.h"

#include <sys/resource.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Field numbers of proc(5) /proc/pid/stat, counted from 1 (field 2 is the command). */
#define STAT_UTIME     14
#define STAT_STIME     15
#define STAT_STARTTIME 22
#define STAT_RSS       24

int
procstat_parse_stat(
    const char *stat, long ticks, long pagesize, long long btime, struct procstat *ps)
{
	const char        *p;
	char              *end;
	unsigned long long v[STAT_RSS + 1];
	int                field;

	if (ticks <= 0 || pagesize <= 0 || (p = strrchr(stat, ')')) == NULL)
		return -1;
	p++;
	/* Field 3 is the one-letter state; from field 4 on, numbers. */
	while (*p == ' ')
		p++;
	if (*p == '\0')
		return -1;
	p++;
	for (field = 4; field <= STAT_RSS; field++) {
		while (*p == ' ')
			p++;
		if (*p == '\0' || *p == '\n')
			return -1;
		/* A few fields may be negative (priority, nice): keep their bits. */
		v[field] = (unsigned long long)strtoll(p, &end, 10);
		if (end == p)
			return -1;
		p = end;
	}
	ps->cpu_seconds = (double)(v[STAT_UTIME] + v[STAT_STIME]) / (double)ticks;
	ps->resident_bytes = (double)v[STAT_RSS] * (double)pagesize;
	ps->start_time = (double)btime + (double)v[STAT_STARTTIME] / (double)ticks;
	return 0;
}

long long
procstat_parse_btime(const char *text)
{
	const char *p = text;
	char       *end;
	long long   b;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, "btime ", 6) == 0) {
			b = strtoll(p + 6, &end, 10);
			return end != p + 6 && b > 0 ? b : -1;
		}
		if ((p = strchr(p, '\n')) != NULL)
			p++;
	}
	return -1;
}

/* Reads a small /proc file into buf (NUL-terminated). 0 or -1. */
static int
slurp(const char *path, char *buf, size_t len)
{
	FILE  *f;
	size_t n;

	if ((f = fopen(path, "re")) == NULL)
		return -1;
	n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = '\0';
	return n > 0 ? 0 : -1;
}

int
procstat_read(struct procstat *ps)
{
	char           stat[1024], *all = NULL;
	struct rlimit  rl;
	struct dirent *de;
	DIR           *d;
	long long      btime;
	int            n = 0, rc = -1;

	memset(ps, 0, sizeof(*ps));
	/* /proc/stat is a few kB per CPU; btime comes after the per-CPU lines. */
	if ((all = malloc(64 * 1024)) == NULL)
		goto out;
	if (slurp("/proc/self/stat", stat, sizeof(stat)) == -1 ||
	    slurp("/proc/stat", all, 64 * 1024) == -1 || (btime = procstat_parse_btime(all)) == -1)
		goto out;
	if (procstat_parse_stat(stat, sysconf(_SC_CLK_TCK), sysconf(_SC_PAGESIZE), btime, ps) == -1)
		goto out;
	if ((d = opendir("/proc/self/fd")) == NULL)
		goto out;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	ps->open_fds = n - 1; /* not counting the descriptor of the listing itself */
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		goto out;
	ps->max_fds = (double)rl.rlim_cur;
	rc = 0;
out:
	free(all);
	return rc;
}
