// Per-thread caches and the fork counter (CKTaskShims_thread_state.h): two or three system calls fewer per job.
#include "CKTaskShims_thread_state.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* A thread's id never changes, so it is read once per thread. A child forked without exec copies the forking
   thread's TLS, id included: the child handler, registered when the library loads, clears it there. */
static __thread int cached_tid;
static void forget_tid_in_child(void) { cached_tid = 0; }
__attribute__((constructor)) static void register_tid_reset(void) { pthread_atfork(NULL, NULL, forget_tid_in_child); }
int CKTask_gettid(void) {
    if (cached_tid == 0) cached_tid = (int)syscall(SYS_gettid);
    return cached_tid;
}

/* The calling thread's nice value and affinity count, kept per thread and read again once older than the
   caller's bound (or after ktask changed them on this thread). */
static __thread long long cached_nice_at, cached_affinity_at;
static __thread int cached_nice, cached_affinity_count, cached_nice_valid, cached_affinity_valid;

static long long monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

int CKTask_cached_thread_nice(long long max_age_ns) {
    long long now = monotonic_ns();
    if (!cached_nice_valid || now - cached_nice_at > max_age_ns) {
        errno = 0;
        int nice = getpriority(PRIO_PROCESS, 0);
        cached_nice = nice == -1 && errno != 0 ? 0 : nice; /* unreadable: taken as 0, as before */
        cached_nice_at = now;
        cached_nice_valid = 1;
    }
    return cached_nice;
}

int CKTask_set_thread_nice(int nice) {
    cached_nice_valid = 0;
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice);
}

int CKTask_cached_affinity_count(long long max_age_ns) {
    long long now = monotonic_ns();
    if (!cached_affinity_valid || now - cached_affinity_at > max_age_ns) {
        cpu_set_t mask;
        CPU_ZERO(&mask);
        if (sched_getaffinity(0, sizeof mask, &mask) != 0) return -1; /* more CPUs than a cpu_set_t: not cached */
        cached_affinity_count = CPU_COUNT(&mask);
        cached_affinity_at = now;
        cached_affinity_valid = 1;
    }
    return cached_affinity_count;
}

int CKTask_sched_setaffinity(size_t bytes, const unsigned long *mask) {
    cached_affinity_valid = 0;
    return sched_setaffinity(0, bytes, (const cpu_set_t *)mask);
}

static __thread int helper_restore;
void CKTask_note_helper_restore(int flags) { helper_restore = flags; }
int CKTask_take_helper_restore(void) { int flags = helper_restore; helper_restore = 0; return flags; }

static _Atomic unsigned long fork_generation;
static void count_fork(void) { atomic_fetch_add(&fork_generation, 1); }
static void register_fork_counter(void) { pthread_atfork(NULL, NULL, count_fork); }

unsigned long CKTask_fork_generation(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_fork_counter);
    return atomic_load_explicit(&fork_generation, memory_order_relaxed);
}
