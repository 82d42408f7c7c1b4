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

/// Sets another thread's nice value (setpriority(2) on its tid). Returns 0 or -1 with errno.
int CKTask_set_nice_of(int tid, int nice);

/// The soft RLIMIT_NICE (the lowest nice allowed is 20 minus it); -1 for unlimited, -2 on error.
long long CKTask_rlimit_nice(void);

/// Reads a thread's nice value (getpriority(2) on a tid; 0 means the calling thread).
/// Stores it in *nice and returns 0, or returns -1 with errno.
int CKTask_get_thread_nice(int tid, int *nice);

/// Names the calling thread (pthread_setname_np(3)); names longer than 15 bytes are truncated.
int CKTask_set_thread_name(const char *name);

/// Writes the CPUs of a thread's affinity mask (sched_getaffinity(2); tid 0 is the calling thread,
/// the process id is the main thread) into cpus, ascending, at most capacity of them. Returns how many
/// CPUs the mask holds (which may exceed capacity: call again with more room), or -1 with errno.
int CKTask_affinity_cpus(int tid, int *cpus, int capacity);

/// The process id (the main thread's tid).
int CKTask_getpid(void);

/// Sets the calling thread's affinity mask to the given CPUs. Returns 0 or -1 with errno.
int CKTask_set_thread_affinity(const int *cpus, int count);

/// madvise(2) advice that populates page tables writable (Linux 5.14+); the constant, even where headers lack it.
int CKTask_MADV_POPULATE_WRITE(void);

/// Total CPU time (user + system, nanoseconds) the whole process has used (CLOCK_PROCESS_CPUTIME_ID).
int64_t CKTask_process_cpu_time_ns(void);

/// Binds the pages of [address, address + length) to the NUMA nodes in the mask (mbind(2), MPOL_BIND).
/// `nodes` lists node ids; returns 0 or -1 with errno.
int CKTask_mbind_nodes(void *address, unsigned long length, const int *nodes, int count);

/// For each page address, the node it is on now (move_pages(2) query, nodes == NULL); status[i] is the
/// node id or a negative errno (e.g. -ENOENT for a page not faulted in). Returns 0 or -1 with errno.
int CKTask_page_nodes(unsigned long count, void **pages, int *status);

#endif
