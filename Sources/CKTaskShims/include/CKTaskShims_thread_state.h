// What ktask keeps per thread (and one counter per process) in C, so that a job reads it without a system
// call: the thread id, the caller's nice value and affinity count, the flags a helper must take back. Each
// is read again where it could be stale: in a forked child (an atfork handler), after ktask changed it.
#ifndef CKTASK_SHIMS_THREAD_STATE_H
#define CKTASK_SHIMS_THREAD_STATE_H

#include <stddef.h>

/// The calling thread's kernel thread id (gettid(2)), read once per thread (again in a forked child).
int CKTask_gettid(void);

/// The calling thread's nice value, as read at most `max_age_ns` ago on this thread (or since ktask last
/// set it here): a job reads it without a system call most of the time.
int CKTask_cached_thread_nice(long long max_age_ns);

/// Sets the calling thread's nice value (setpriority(2) on its tid) and forgets the cached one.
/// Returns 0 or -1 with errno.
int CKTask_set_thread_nice(int nice);

/// How many CPUs the calling thread's affinity mask holds, as read at most `max_age_ns` ago on this thread
/// (or since ktask last set it here); -1 where the mask is larger than a cpu_set_t (1024 CPUs).
int CKTask_cached_affinity_count(long long max_age_ns);

/// sched_setaffinity(2) of the calling thread from a mask of `bytes` bytes, and forgets the cached count.
/// Returns 0 or -1 with errno.
int CKTask_sched_setaffinity(size_t bytes, const unsigned long *mask);

/// What a helper thread must take back once its job has heard it is done (a priority boost lent to it,
/// bit 0; a move out of the idle cgroup, bit 1): noted by the job's code on the helper's own thread, taken
/// (and cleared) by the pool thread after the count-down. Thread-local.
void CKTask_note_helper_restore(int flags);
int CKTask_take_helper_restore(void);

/// How many times this process's ancestors forked it into being since ktask first asked: 0 in the process
/// that first called it, one more in each child of a fork() (an atfork handler counts, so no system call
/// is made). State kept per process (open file descriptions) is re-made where it changed.
unsigned long CKTask_fork_generation(void);

#endif
