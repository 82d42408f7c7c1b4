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

#endif
