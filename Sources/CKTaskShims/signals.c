// One fatal-signal module for everything ktask must hand back when the process ends (make jobserver
// tokens, the helpers' child cgroup): a list of async-signal-safe actions, run from one atexit hook and
// from one handler per fatal signal, installed once, chaining to the handlers installed before exactly.
#include "CKTaskShims_signals.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

// The signals whose default action ends the process (term or core) and that can reach it in practice.
// Left out: SIGKILL and SIGSTOP (cannot be caught: what SIGKILL leaves stays), SIGPROF (a profiler samples
// hundreds of times a second through it; each sample would pass through ktask's frame), and the real-time
// signals (glibc reserves the first for threads; applications that send the others handle them).
static const int fatal_signals[] = {
    SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGUSR1, SIGSEGV, SIGUSR2,
    SIGPIPE, SIGALRM, SIGTERM, SIGSTKFLT, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGIO, SIGPWR, SIGSYS,
};

enum { max_actions = 8 };
static void (*_Atomic actions[max_actions])(void);
static atomic_int action_count;
// The process that installed the hook and handlers: a forked child inherits both, but not what they hand back.
static pid_t owner_pid;
// What each signal did before ktask's handler (SIG_IGN only for a signal with a fault claimer: an ignored
// signal is otherwise left ignored).
static struct sigaction previous[NSIG];
// Asked first on its signal, before anything else: a fault this thread expects and recovers from
// (populate's SIGBUS guard) jumps away from there; anything else returns.
static void (*_Atomic claimers[NSIG])(int signal, siginfo_t *info);
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
// The actions run once per process: idle, then running (on runner_tid), then done.
enum { actions_idle, actions_running, actions_done };
static atomic_int actions_state;
static atomic_long runner_tid;
// The earlier handler is gone (installed with SA_RESETHAND and run once, or it put SIG_DFL back): the
// signal's action is now the default one.
static atomic_bool previous_spent[NSIG];

static void fatal_set(sigset_t *set) {
    sigemptyset(set);
    for (size_t index = 0; index < sizeof fatal_signals / sizeof fatal_signals[0]; index++) sigaddset(set, fatal_signals[index]);
}

// Until the first runner is done: a thread that stopped for a second fatal signal must not take the
// default action (ending the process) while the first still writes tokens back.
static void wait_until_done(void) {
    struct timespec pause = { 0, 1000000 };
    while (atomic_load(&actions_state) != actions_done) nanosleep(&pause, NULL);
}

// Once per process, whoever comes first (exit or a signal on any thread), with the fatal signals blocked
// so that none ends the process half-way. Another thread waits until it is done; the runner's own thread
// (an action that faults) does not wait for itself.
static void run_actions(void) {
    if (getpid() != owner_pid) return;
    long self = syscall(SYS_gettid);
    int expected = actions_idle;
    if (!atomic_compare_exchange_strong(&actions_state, &expected, actions_running)) {
        if (expected == actions_running && atomic_load(&runner_tid) != self) wait_until_done();
        return;
    }
    atomic_store(&runner_tid, self);
    sigset_t fatal, before;
    fatal_set(&fatal);
    pthread_sigmask(SIG_BLOCK, &fatal, &before);
    int count = atomic_load(&action_count);
    for (int index = 0; index < count && index < max_actions; index++) {
        void (*action)(void) = atomic_load(&actions[index]);
        if (action) action();
    }
    atomic_store(&actions_state, actions_done);
    pthread_sigmask(SIG_SETMASK, &before, NULL);
}

// A fault raised by an instruction (not sent): returning runs the instruction again, which faults again.
// Not BUS_MCEERR_AO: the kernel sends it about memory no instruction is using, so nothing repeats it.
static bool is_instruction_fault(int signal, const siginfo_t *info) {
    bool fault_signal = signal == SIGSEGV || signal == SIGBUS || signal == SIGFPE || signal == SIGILL;
    bool optional = signal == SIGBUS && info != NULL && info->si_code == BUS_MCEERR_AO;
    return fault_signal && info != NULL && info->si_code > 0 && !optional;
}

// The signal's default action, as if ktask had not been there: a fault is left to happen again (its core
// shows the faulting instruction); a sent signal is raised again and unblocked, and is delivered at once.
static void die_by_default(int signal, const siginfo_t *info) {
    struct sigaction default_action;
    memset(&default_action, 0, sizeof default_action);
    default_action.sa_handler = SIG_DFL;
    sigemptyset(&default_action.sa_mask);
    sigaction(signal, &default_action, NULL);
    if (is_instruction_fault(signal, info)) return;
    raise(signal);
    sigset_t just_this;
    sigemptyset(&just_this);
    sigaddset(&just_this, signal);
    sigprocmask(SIG_UNBLOCK, &just_this, NULL);
}

// After an earlier handler returned: abort() does not return (its own SIGABRT: the process ends now).
static bool is_abort(int signal, const siginfo_t *info) {
    return signal == SIGABRT && info != NULL && info->si_code == SI_TKILL && info->si_pid == getpid();
}

static void install_handler(int signal, const struct sigaction *previous_action);

// An earlier handler that put the default action back (the Swift runtime's crash handler does, for all its
// signals, then returns) is gone: ktask's handler goes back in front of the default action, so that whatever
// ends the process next (the signal raised again, a fault that recurs, a second kill) still hands back.
static void keep_handlers_before_default(void) {
    for (size_t index = 0; index < sizeof fatal_signals / sizeof fatal_signals[0]; index++) {
        int signal = fatal_signals[index];
        struct sigaction now;
        if (previous[signal].sa_handler == SIG_DFL || previous[signal].sa_handler == SIG_IGN) continue;
        if (sigaction(signal, NULL, &now) != 0 || now.sa_handler != SIG_DFL) continue;
        atomic_store(&previous_spent[signal], true);
        install_handler(signal, &now);
    }
}

// The host's handler runs with the mask the kernel would have given it (the interrupted code's mask, its
// sa_mask, the signal unless SA_NODEFER), not with ktask's, which also blocks every fatal signal.
static void call_previous(const struct sigaction *action, int signal, siginfo_t *info, void *context) {
    sigset_t host_mask = action->sa_mask, ours;
    if (context != NULL) {
        const sigset_t *interrupted = &((const ucontext_t *)context)->uc_sigmask;
        for (int other = 1; other < NSIG; other++) if (sigismember(interrupted, other) == 1) sigaddset(&host_mask, other);
    }
    if (!(action->sa_flags & SA_NODEFER)) sigaddset(&host_mask, signal);
    pthread_sigmask(SIG_SETMASK, &host_mask, &ours);
    if (action->sa_flags & SA_SIGINFO) action->sa_sigaction(signal, info, context);
    else action->sa_handler(signal);
    pthread_sigmask(SIG_SETMASK, &ours, NULL);
}

static void on_fatal_signal(int signal, siginfo_t *info, void *context) {
    void (*claimer)(int, siginfo_t *) = atomic_load(&claimers[signal]);
    if (claimer) claimer(signal, info);
    int saved_errno = errno;
    bool spent = atomic_load(&previous_spent[signal]);
    if (previous[signal].sa_handler == SIG_IGN) {
        // Ignored before (kept only for a claimer): a sent one stays ignored; a fault cannot be.
        if (is_instruction_fault(signal, info)) { run_actions(); die_by_default(signal, info); }
    } else if (previous[signal].sa_handler == SIG_DFL || spent) {
        run_actions();
        die_by_default(signal, info);
    } else {
        // The host's handler first: if it returns and the process goes on, everything stays held.
        if (previous[signal].sa_flags & SA_RESETHAND) atomic_store(&previous_spent[signal], true);
        call_previous(&previous[signal], signal, info, context);
        if (is_abort(signal, info)) run_actions();
        keep_handlers_before_default();
    }
    errno = saved_errno;
}

// ktask's handler in front of the one there: that handler's flags (SA_RESTART, SA_NODEFER, SA_ONSTACK stay
// as the host chose), with SA_SIGINFO to pass on the real siginfo and context, and without SA_RESETHAND,
// which the handler applies itself (so the default action after it still hands back). Its mask adds every
// fatal signal: a second one must not end the process while the first handler writes tokens back
// (call_previous gives the host's handler its own mask back).
static void install_handler(int signal, const struct sigaction *current_action) {
    struct sigaction current = *current_action, ours;
    memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = on_fatal_signal;
    fatal_set(&ours.sa_mask);
    for (int other = 1; other < NSIG; other++) if (sigismember(&current.sa_mask, other) == 1) sigaddset(&ours.sa_mask, other);
    bool none = current.sa_handler == SIG_DFL || current.sa_handler == SIG_IGN;
    ours.sa_flags = none ? SA_RESTART | SA_ONSTACK : current.sa_flags & ~SA_RESETHAND;
    ours.sa_flags |= SA_SIGINFO;
    sigaction(signal, &ours, NULL);
}

// In front of what is there now, unless ktask's handler already is (it must never chain to itself). An
// ignored signal is left alone unless a claimer needs the handler.
static void install(int signal) {
    struct sigaction current;
    pthread_mutex_lock(&install_lock);
    bool ours = sigaction(signal, NULL, &current) == 0 && (current.sa_flags & SA_SIGINFO) && current.sa_sigaction == on_fatal_signal;
    bool skip = current.sa_handler == SIG_IGN && atomic_load(&claimers[signal]) == NULL;
    if (!ours && !skip) {
        previous[signal] = current;
        atomic_store(&previous_spent[signal], false);
        install_handler(signal, &current);
    }
    pthread_mutex_unlock(&install_lock);
}

static void install_once(void) {
    owner_pid = getpid();
    atexit(run_actions);
    for (size_t index = 0; index < sizeof fatal_signals / sizeof fatal_signals[0]; index++) install(fatal_signals[index]);
}

void CKTask_claim_faults(int signal, void (*claimer)(int signal, siginfo_t *info)) {
    atomic_store(&claimers[signal], claimer);
    install(signal);
}

int CKTask_at_fatal_exit(void (*action)(void)) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    int slot = atomic_fetch_add(&action_count, 1);
    if (slot >= max_actions) { atomic_fetch_sub(&action_count, 1); return -1; }
    atomic_store(&actions[slot], action);
    pthread_once(&once, install_once);
    return 0;
}
