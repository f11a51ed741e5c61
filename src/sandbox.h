/*
 * sandbox.h: the keeper's seccomp filter (libseccomp).
 *
 * An allow-list of the system calls the keeper needs once it runs: I/O on
 * descriptors it has or opens (mounted files, inotify, its channels, the
 * API server's TCP connection through libcurl, DNS), memory, threads and
 * futexes, time, randomness, signals among its own threads. Everything else
 * fails with EPERM: in particular bind, listen, accept (the keeper never
 * serves), and a new process's own tools (fork without CLONE_THREAD is
 * refused by clone's flag check). execve, execveat, ptrace,
 * process_vm_readv and process_vm_writev kill the whole process at once:
 * they only ever serve an attacker who runs code in the keeper.
 */
#ifndef TCS_SANDBOX_H
#define TCS_SANDBOX_H

#include <stddef.h>

/* The environment variable that turns the filter off (debugging only): "off". */
#define SANDBOX_ENV "TCS_KEEPER_SECCOMP"

/*
 * Installs the filter on every thread of the calling process (TSYNC) and
 * sets no_new_privs. Returns 0, or -1 with a reason in err. With
 * SANDBOX_ENV=off it installs nothing, logs a warning and returns 0.
 */
int sandbox_keeper(char *err, size_t errlen);

/*
 * 1 in sanitizer builds (tests only), whose filter also allows what
 * LeakSanitizer does at exit: ptrace and any prctl (it sets the process
 * dumpable while it scans).
 */
int sandbox_is_relaxed(void);

/* Installs the same filter regardless of the environment (tests). 0 or -1. */
int sandbox_keeper_install(char *err, size_t errlen);

#endif /* TCS_SANDBOX_H */
