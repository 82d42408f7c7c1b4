// Thin wrappers for Linux calls that Glibc, as imported into Swift, does not expose.
// Each wrapper does one call and returns its result (or -1 with errno set), nothing more.
#ifndef CKTASK_SHIMS_H
#define CKTASK_SHIMS_H

#include <stddef.h>
#include <stdint.h>

/// The calling thread's kernel thread id (gettid(2)).
int CKTask_gettid(void);

/// The CPU the calling thread is running on now (sched_getcpu(3)), or -1.
int CKTask_sched_getcpu(void);

/// Sets the calling thread's nice value (setpriority(2) on its tid). Returns 0 or -1 with errno.
int CKTask_set_thread_nice(int nice);

/// Reads a thread's nice value (getpriority(2) on a tid; 0 means the calling thread).
/// Stores it in *nice and returns 0, or returns -1 with errno.
int CKTask_get_thread_nice(int tid, int *nice);

/// Names the calling thread (pthread_setname_np(3)); names longer than 15 bytes are truncated.
int CKTask_set_thread_name(const char *name);

/// Writes the CPUs of the calling process's affinity mask (sched_getaffinity(2)) into cpus,
/// ascending, at most capacity of them. Returns how many CPUs the mask holds (which may exceed
/// capacity: call again with more room), or -1 with errno.
int CKTask_affinity_cpus(int *cpus, int capacity);

/// Sets the calling thread's affinity mask to the given CPUs. Returns 0 or -1 with errno.
int CKTask_set_thread_affinity(const int *cpus, int count);

/// madvise(2) advice that populates page tables writable (Linux 5.14+); the constant, even where headers lack it.
int CKTask_MADV_POPULATE_WRITE(void);

/// Total CPU time (user + system, nanoseconds) the calling thread has used (CLOCK_THREAD_CPUTIME_ID).
int64_t CKTask_thread_cpu_time_ns(void);

/// Total CPU time (user + system, nanoseconds) the whole process has used (CLOCK_PROCESS_CPUTIME_ID).
int64_t CKTask_process_cpu_time_ns(void);

#endif
