/*
 * pause: the sandbox ("pause") container of the test cluster's Pods.
 *
 * DESIGN: the CRI runtime starts one of these per Pod to hold the Pod's
 * namespaces. It does nothing but wait: SIGTERM and SIGINT end it with
 * status 0, and as PID 1 of a Pod that shares its PID namespace it reaps
 * the children that get re-parented to it. Built statically by
 * hack/k8s/cluster-images.sh into a scratch image, because no registry
 * is reachable for the usual one.
 * Threads: one. Owns: nothing.
 */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void pause_on_stop(int sig)
{
	(void)sig;
	_exit(0);
}

static void pause_on_child(int sig)
{
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

int main(void)
{
	struct sigaction stop = {0};
	struct sigaction child = {0};

	stop.sa_handler = pause_on_stop;
	child.sa_handler = pause_on_child;
	child.sa_flags = SA_NOCLDSTOP | SA_RESTART;
	if (sigaction(SIGTERM, &stop, NULL) != 0 || sigaction(SIGINT, &stop, NULL) != 0 ||
	    sigaction(SIGCHLD, &child, NULL) != 0)
		return 1;
	for (;;)
		pause();
}
