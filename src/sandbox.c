/*
 * sandbox.c: the keeper's seccomp filter, built with libseccomp.
 *
 * DESIGN
 * Default action EPERM, so a call the list forgot fails like any refused
 * call and is logged at its cause by the module that made it, instead of
 * killing the keeper (which would take the Pod down). Calls that only
 * serve code injected into the keeper (execve, execveat, ptrace,
 * process_vm_readv/writev) kill the process. clone is allowed only with
 * CLONE_THREAD (new threads: libcurl's resolver, our workers), so the keeper
 * cannot fork; clone3 gets ENOSYS so that glibc falls back to clone, whose
 * flags a filter can see. System call names are resolved at run time: a
 * name the architecture lacks is skipped.
 *
 * Sanitizer builds (tests only) also allow what LeakSanitizer needs at exit
 * (ptrace on its own threads, from a clone without CLONE_THREAD).
 *
 * Threads: sandbox_keeper() is called once by the keeper's main thread;
 * TSYNC applies the filter to every thread already running.
 * Owns: nothing (the filter context is released after loading).
 */
#include "sandbox.h"

#include <sys/prctl.h>

#include <errno.h>
#include <linux/sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <seccomp.h>

#include "log.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANDBOX_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANDBOX_SANITIZER 1
#endif
#endif

static const char *const allowed[] = {
	/* descriptors */
	"read",
	"write",
	"readv",
	"writev",
	"pread64",
	"pwrite64",
	"close",
	"close_range",
	"openat",
	"open",
	"stat",
	"fstat",
	"lstat",
	"newfstatat",
	"statx",
	"lseek",
	"access",
	"faccessat",
	"faccessat2",
	"readlink",
	"readlinkat",
	"getdents64",
	"getdents",
	"fcntl",
	"ioctl",
	"dup",
	"dup2",
	"dup3",
	"pipe",
	"pipe2",
	"eventfd2",
	"poll",
	"ppoll",
	"select",
	"pselect6",
	"epoll_create1",
	"epoll_ctl",
	"epoll_wait",
	"epoll_pwait",
	"inotify_init1",
	"inotify_add_watch",
	"inotify_rm_watch",
	"fadvise64",
	"getcwd",
	/* the API server, DNS and the channels (no bind, listen or accept) */
	"socket",
	"socketpair",
	"connect",
	"getsockopt",
	"setsockopt",
	"getsockname",
	"getpeername",
	"sendto",
	"recvfrom",
	"sendmsg",
	"recvmsg",
	"sendmmsg",
	"recvmmsg",
	"shutdown",
	/* memory (libsodium locks its key copies) */
	"mmap",
	"munmap",
	"mprotect",
	"mremap",
	"madvise",
	"brk",
	"mlock",
	"munlock",
	"mlock2",
	/* threads */
	"set_robust_list",
	"get_robust_list",
	"rseq",
	"futex",
	"set_tid_address",
	"exit",
	"exit_group",
	"sched_yield",
	"sched_getaffinity",
	"membarrier",
	"restart_syscall",
	/* signals within the process */
	"rt_sigprocmask",
	"rt_sigaction",
	"rt_sigreturn",
	"rt_sigtimedwait",
	"sigaltstack",
	"tgkill",
	"tkill",
	/* identity, time, randomness, limits */
	"getpid",
	"gettid",
	"getppid",
	"getuid",
	"geteuid",
	"getgid",
	"getegid",
	"clock_gettime",
	"clock_getres",
	"clock_nanosleep",
	"gettimeofday",
	"time",
	"nanosleep",
	"getrandom",
	"uname",
	"sysinfo",
	"getrlimit",
	"prlimit64",
};

static const char *const killed[] = {
	"execve",
	"execveat",
	"ptrace",
	"process_vm_readv",
	"process_vm_writev",
};

static int
rule(scmp_filter_ctx ctx, uint32_t action, const char *name, char *err, size_t errlen)
{
	int nr = seccomp_syscall_resolve_name(name);
	int rc;

	if (nr == __NR_SCMP_ERROR)
		return 0; /* not on this architecture */
	if ((rc = seccomp_rule_add(ctx, action, nr, 0)) < 0) {
		snprintf(err, errlen, "seccomp_rule_add(%s): %s", name, strerror(-rc));
		return -1;
	}
	return 0;
}

int
sandbox_keeper_install(char *err, size_t errlen)
{
	scmp_filter_ctx ctx;
	size_t          i;
	int             rc = -1, e;

	if ((ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM))) == NULL) {
		snprintf(err, errlen, "seccomp_init failed");
		return -1;
	}
	if ((e = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1)) < 0) {
		snprintf(err, errlen, "seccomp TSYNC: %s", strerror(-e));
		goto out;
	}
	for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		if (rule(ctx, SCMP_ACT_ALLOW, allowed[i], err, errlen) == -1)
			goto out;
	/* prctl: thread names only (no PR_SET_DUMPABLE, no PR_SET_PTRACER). */
	if ((e = seccomp_rule_add(
		 ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1, SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME))) < 0 ||
	    (e = seccomp_rule_add(
		 ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1, SCMP_A0(SCMP_CMP_EQ, PR_GET_NAME))) < 0) {
		snprintf(err, errlen, "seccomp_rule_add(prctl): %s", strerror(-e));
		goto out;
	}
	/* New threads only: no fork. */
	if ((e = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
		 SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD))) < 0 ||
	    (e = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0)) < 0) {
		snprintf(err, errlen, "seccomp_rule_add(clone): %s", strerror(-e));
		goto out;
	}
#ifdef SANDBOX_SANITIZER
	/*
	 * LeakSanitizer's exit-time scan: a tracer clone sharing memory (still no
	 * fork: that has no CLONE_VM), ptrace of our threads, PR_SET_DUMPABLE.
	 */
	if ((e = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
		 SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD | CLONE_VM, CLONE_VM))) < 0 ||
	    (e = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ptrace), 0)) < 0 ||
	    (e = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 0)) < 0 ||
	    (e = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(wait4), 0)) < 0) {
		snprintf(err, errlen, "seccomp_rule_add(sanitizer): %s", strerror(-e));
		goto out;
	}
#endif
	for (i = 0; i < sizeof(killed) / sizeof(killed[0]); i++) {
#ifdef SANDBOX_SANITIZER
		if (strcmp(killed[i], "ptrace") == 0)
			continue;
#endif
		if (rule(ctx, SCMP_ACT_KILL_PROCESS, killed[i], err, errlen) == -1)
			goto out;
	}
	if ((e = seccomp_load(ctx)) < 0) {
		snprintf(err, errlen, "seccomp_load: %s", strerror(-e));
		goto out;
	}
	rc = 0;
out:
	seccomp_release(ctx);
	return rc;
}

int
sandbox_is_relaxed(void)
{
#ifdef SANDBOX_SANITIZER
	return 1;
#else
	return 0;
#endif
}

int
sandbox_keeper(char *err, size_t errlen)
{
	const char *v = getenv(SANDBOX_ENV);

	if (v != NULL && strcmp(v, "off") == 0) {
		log_warnx("keeper: %s=off: the seccomp filter is NOT installed (debugging only)",
		    SANDBOX_ENV);
		return 0;
	}
	return sandbox_keeper_install(err, errlen);
}
