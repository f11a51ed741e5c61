/*
 * keeper.h: the keeper process, the only process that holds the Talos
 * machine CA key.
 *
 * main() forks it first thing, before any thread exists. It owns the
 * credential sources (mounted files with inotify, the Kubernetes Secret
 * watcher), their validation and the credential store with the CA, the
 * signer, and the Kubernetes Events poster. It has no listening socket. It
 * talks to the network process only over the socketpairs it was given, in
 * the messages of keeperproto.h: it answers KP_SIGN with KP_SIGNED (one
 * thread per request channel), sends KP_CREDS (never the CA key) and
 * KP_WAITING whenever its store changes, posts the KP_AUDIT records it
 * receives as Events, and re-reads its sources on KP_RELOAD.
 *
 * Once its threads run it installs the seccomp filter (sandbox.h). It exits
 * when the control channel reaches end of file (the network side closed it,
 * or died: PR_SET_PDEATHSIG covers a death that leaves it blocked), or on a
 * protocol error.
 */
#ifndef TCS_KEEPER_H
#define TCS_KEEPER_H

struct config;

/*
 * Runs the keeper in the forked child: `ctrl` is the control channel, `req`
 * the `n` request channels (owned). `parent` is the network process's pid
 * (to notice it died before PR_SET_PDEATHSIG was set). Returns the process
 * exit status: 0 after the network side closed the channels, 1 on a
 * configuration error at start-up (already logged) or a failure.
 */
int keeper_main(const struct config *cfg, int ctrl, const int *req, int n, int parent);

#endif /* TCS_KEEPER_H */
