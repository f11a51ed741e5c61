/*
 * test_sandbox.c: the keeper's seccomp filter (mirrors src/sandbox.c).
 * Each test forks a child that installs the very filter the keeper
 * installs, then tries calls: allowed ones work, refused ones fail with
 * EPERM, and execve kills the child with SIGSYS. The parent only reads
 * the child's exit status.
 */
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "sandbox.h"

/* Runs fn in a filtered child; returns its wait status. */
static int
in_child(int (*fn)(void))
{
	char  err[256];
	pid_t pid;
	int   st;

	cr_assert_neq(pid = fork(), -1);
	if (pid == 0) {
		if (sandbox_keeper_install(err, sizeof(err)) == -1)
			_exit(100);
		_exit(fn());
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return st;
}

static void *
thread_fn(void *arg)
{
	return arg;
}

/* What the keeper does after start-up: files, sockets, threads. */
static int
allowed_calls(void)
{
	char      buf[16];
	int       fd, sv[2];
	pthread_t th;
	void     *ret = NULL;

	if ((fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC)) == -1 || read(fd, buf, 1) != 1)
		return 1;
	close(fd);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1 || write(sv[0], "x", 1) != 1 ||
	    read(sv[1], buf, 1) != 1)
		return 2;
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1) /* libcurl's connection */
		return 3;
	close(fd);
	if (pthread_create(&th, NULL, thread_fn, buf) != 0 || pthread_join(th, &ret) != 0 ||
	    ret != buf)
		return 4;
	return 0;
}

Test(sandbox, allowed_calls_work)
{
	int st = in_child(allowed_calls);

	cr_assert(WIFEXITED(st), "child died of signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	cr_assert_eq(WEXITSTATUS(st), 0, "allowed call %d failed", WEXITSTATUS(st));
}

static int
try_listen(void)
{
	struct sockaddr_in a;
	int                fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd == -1)
		return 1;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != -1 || errno != EPERM)
		return 2;
	if (listen(fd, 1) != -1 || errno != EPERM)
		return 3;
	return 0;
}

Test(sandbox, bind_and_listen_are_refused)
{
	int st = in_child(try_listen);

	cr_assert(WIFEXITED(st));
	cr_assert_eq(WEXITSTATUS(st), 0, "step %d was not refused with EPERM", WEXITSTATUS(st));
}

static int
try_fork(void)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(0);
	return pid == -1 && errno == EPERM ? 0 : 1;
}

Test(sandbox, fork_is_refused)
{
	int st = in_child(try_fork);

	cr_assert(WIFEXITED(st));
	cr_assert_eq(WEXITSTATUS(st), 0, "fork was not refused");
}

/* A compromised keeper must not make itself dumpable (ptrace, /proc/PID/mem). */
static int
try_dumpable(void)
{
	return prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) == -1 && errno == EPERM ? 0 : 1;
}

Test(sandbox, set_dumpable_is_refused)
{
	int st;

	if (sandbox_is_relaxed())
		cr_skip_test("sanitizer build: LeakSanitizer needs PR_SET_DUMPABLE");
	st = in_child(try_dumpable);

	cr_assert(WIFEXITED(st));
	cr_assert_eq(WEXITSTATUS(st), 0, "PR_SET_DUMPABLE was not refused");
}

static int
try_exec(void)
{
	char *const argv[] = { "/bin/true", NULL };

	execve("/bin/true", argv, NULL);
	return 5; /* not reached: the filter kills the process */
}

Test(sandbox, execve_kills)
{
	int st = in_child(try_exec);

	cr_assert(
	    WIFSIGNALED(st), "execve did not kill (exit %d)", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	cr_assert_eq(WTERMSIG(st), SIGSYS);
}
