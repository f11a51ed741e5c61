/*
 * filesrc.h: credentials from mounted files (drop-in for the Go signer).
 *
 * Reads CA_CERT_PATH, CA_KEY_PATH, the token (TOKEN_PATH, else TALOS_TOKEN),
 * ACCEPTED_CAS_PATH, TLS_CERT_PATH and TLS_KEY_PATH, for the field groups it
 * is given (in Kubernetes mode a Secret may supply the others), and submits
 * them to the credential assembler. A thread watches the files' directories
 * with inotify, so an atomic rename and the kubelet's `..data` symlink swap
 * are both seen; every change (debounced), SIGHUP, or a periodic check
 * triggers one rescan that rereads every file. A rescan whose bytes equal
 * what is serving does nothing; a broken set keeps the last good one.
 */
#ifndef TCS_FILESRC_H
#define TCS_FILESRC_H

#include <stddef.h>

struct config;
struct credsrc;
struct filesrc;

/*
 * Registers with the assembler `cs` as the source "files" of `groups` (the
 * CF_GROUP_* mask it owns; in Kubernetes mode a Secret may own the others).
 * Returns NULL with a one-line reason in err (ENOMEM, or a registration the
 * assembler refuses). Main thread, before any source submits.
 */
struct filesrc *filesrc_new(
    const struct config *, struct credsrc *cs, unsigned groups, char *err, size_t errlen);
/*
 * Reads and submits once, synchronously (start-up). Returns 0 when the files
 * were read and accepted (or are pending other sources), -1 with a one-line
 * reason naming the setting.
 */
int filesrc_load(struct filesrc *, char *err, size_t errlen);
/* Starts the watcher thread. 0 or -1. */
int filesrc_start(struct filesrc *);
/* Asks the watcher for an immediate forced rescan (async-signal-unsafe; main thread). */
void filesrc_reload(struct filesrc *);
/* Stops and joins the watcher thread, then frees. NULL is fine. */
void filesrc_free(struct filesrc *);

#endif /* TCS_FILESRC_H */
