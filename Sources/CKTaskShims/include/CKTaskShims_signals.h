// What ktask does when the process ends, however it ends: at exit() and on a signal whose default action
// ends the process, it gives back what it holds outside the process (make jobserver tokens, the helpers'
// child cgroup) before that default action, chaining to handlers installed before it exactly as they were.
#ifndef CKTASK_SHIMS_SIGNALS_H
#define CKTASK_SHIMS_SIGNALS_H

#include <signal.h>

/// Runs `action` when this process ends: from an atexit hook, and from a handler of each fatal signal
/// before the signal's default action. The actions run once per process, with the fatal signals blocked;
/// a thread that takes a fatal signal meanwhile waits until they are done. Each must be async-signal-safe.
/// The first call records this process's id (a forked child that inherits the hook and handlers runs
/// nothing) and installs the hook and the handlers. Up to 8 actions; returns 0, or -1 when full.
int CKTask_at_fatal_exit(void (*action)(void));

/// Puts ktask's handler in front of `signal`'s current action (also an ignored one; not twice) and has it
/// call `claimer` first: a claimer that recognises a fault its thread expects leaves with siglongjmp;
/// when it returns, the signal goes on as without it (the earlier handler, or the default action; a
/// fault where the signal was ignored takes the default action). `claimer` must be async-signal-safe.
void CKTask_claim_faults(int signal, void (*claimer)(int signal, siginfo_t *info));

/// The GNU make jobserver client's token accounting, in C so that the fatal-signal handler can give every
/// held token back. `setup` records the descriptors (reads must be non-blocking; both checked by the
/// caller to be the two ends of one pipe or fifo) and registers the return of all tokens at exit.
void CKTask_jobserver_setup(int readFd, int writeFd);
/// Reads one token without waiting: its byte (0-255), or -1 when none is free.
int CKTask_jobserver_take(void);
/// Writes a held token back (the same byte); does nothing for one already given back (after a signal).
void CKTask_jobserver_give(unsigned char token);
/// Tokens this process holds now.
int CKTask_jobserver_held(void);

/// The helpers' child cgroup, removed when the process ends: its threads there (those recorded with
/// `admitted`) are moved back to the parent cgroup's tasks file and the child folder removed (the kernel
/// refuses while another process's threads are in it; that process removes it when it ends). Returns 0, or
/// -1 when a path is too long (then nothing is registered).
int CKTask_helper_cgroup_setup(const char *childFolder, const char *parentTasksFile);
/// Records a thread moved into the child cgroup, for the move back when the process ends.
void CKTask_helper_cgroup_admitted(int tid);

#endif
