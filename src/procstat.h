/*
 * procstat.h: the standard Prometheus process metrics of this process, read
 * from /proc (Linux).
 */
#ifndef TCS_PROCSTAT_H
#define TCS_PROCSTAT_H

struct procstat {
	double cpu_seconds;    /* user + system CPU time */
	double resident_bytes; /* resident set size */
	double start_time;     /* Unix time the process started */
	double open_fds;       /* open file descriptors */
	double max_fds;        /* RLIMIT_NOFILE soft limit */
};

/*
 * Parses the text of /proc/<pid>/stat with the clock-tick rate, the page size
 * and the boot time (the btime line of /proc/stat) into cpu_seconds,
 * resident_bytes and start_time; other fields are left alone. Pure. 0 or -1
 * (malformed text). A command name holding spaces or parentheses is fine.
 */
int procstat_parse_stat(
    const char *stat, long ticks, long pagesize, long long btime, struct procstat *ps);
/* Returns the boot time from the text of /proc/stat, or -1. Pure. */
long long procstat_parse_btime(const char *procstat_text);
/* Fills every field for the calling process. Any thread. 0 or -1. */
int procstat_read(struct procstat *ps);

#endif /* TCS_PROCSTAT_H */
