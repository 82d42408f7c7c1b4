// Thin wrappers for Linux calls that Glibc, as imported into Swift, does not expose.
// Each wrapper makes one call and returns its result (or -1 with errno set), nothing more: building
// CPU and node masks, retrying with a larger mask and reading the result are done in Swift.
#ifndef CKTASK_SHIMS_H
#define CKTASK_SHIMS_H

// ktask is built on Linux's own interfaces (sched_getaffinity, per-thread setpriority, cgroups, sysfs
// NUMA nodes, mbind, futexes): it runs on Linux only, and says so rather than failing on a missing call.
#if !defined(__linux__)
#error "ktask runs on Linux only: it uses Linux's affinity, cgroup, NUMA (mbind, move_pages) and futex calls"
#endif

#include <stddef.h>
#include <stdint.h>
#include "CKTaskShims_populate.h"

#include "CKTaskShims_signals.h"

/// The calling thread's kernel thread id (gettid(2)).
int CKTask_gettid(void);

/// What a helper thread must take back once its job has heard it is done (a priority boost lent to it,
/// bit 0; a move out of the idle cgroup, bit 1): noted by the job's code on the helper's own thread, taken
/// (and cleared) by the pool thread after the count-down. Thread-local.
void CKTask_note_helper_restore(int flags);
int CKTask_take_helper_restore(void);

/// The process id (the main thread's tid).
int CKTask_getpid(void);

/// The CPU the calling thread is running on now (sched_getcpu(3)), or -1.
int CKTask_sched_getcpu(void);

/// Sets the calling thread's nice value (setpriority(2) on its tid). Returns 0 or -1 with errno.
int CKTask_set_thread_nice(int nice);

/// Sets another thread's nice value (setpriority(2) on its tid). Returns 0 or -1 with errno.
int CKTask_set_nice_of(int tid, int nice);

/// Reads a thread's nice value (getpriority(2) on a tid; 0 means the calling thread).
/// Stores it in *nice and returns 0, or returns -1 with errno.
int CKTask_get_thread_nice(int tid, int *nice);

/// The calling thread's nice value, as read at most `max_age_ns` ago on this thread (or since ktask last
/// set it here): a job reads it without a system call most of the time.
int CKTask_cached_thread_nice(long long max_age_ns);

/// How many CPUs the calling thread's affinity mask holds, as read at most `max_age_ns` ago on this thread
/// (or since ktask last set it here); -1 where the mask is larger than a cpu_set_t (1024 CPUs).
int CKTask_cached_affinity_count(long long max_age_ns);

/// The soft RLIMIT_NICE (the lowest nice allowed is 20 minus it); -1 for unlimited, -2 on error.
long long CKTask_rlimit_nice(void);

/// Names the calling thread (pthread_setname_np(3)); a name longer than 15 bytes is cut to 15.
int CKTask_set_thread_name(const char *name);

/// sched_getaffinity(2) of a thread (0: the calling thread) into a mask of `bytes` bytes.
/// Returns 0, or -1 with errno (EINVAL: the kernel's mask is larger than `bytes`).
int CKTask_sched_getaffinity(int tid, size_t bytes, unsigned long *mask);

/// sched_setaffinity(2) of the calling thread from a mask of `bytes` bytes. Returns 0 or -1 with errno.
int CKTask_sched_setaffinity(size_t bytes, const unsigned long *mask);

/// madvise(2) advice values the engine's populate uses, defined even where the headers lack them
/// (MADV_POPULATE_READ/WRITE: Linux 5.14+; MADV_HUGEPAGE), and the mmap flags for hugetlb page sizes.
int CKTask_MADV_POPULATE_READ(void);
int CKTask_MADV_POPULATE_WRITE(void);
int CKTask_MADV_HUGEPAGE(void);
int CKTask_MAP_HUGETLB(void);
/// MAP_HUGE_2MB / MAP_HUGE_1GB: log2(page size) << MAP_HUGE_SHIFT.
int CKTask_MAP_HUGE_SIZE(int log2PageSize);

/// memfd_create(2): an anonymous shmem file (a VM's memory-backend-memfd); for tests and callers without glibc's wrapper.
int CKTask_memfd_create(const char *name, unsigned int flags);


/// How many times this process's ancestors forked it into being since ktask first asked: 0 in the process
/// that first called it, one more in each child of a fork() (an atfork handler counts, so no system call
/// is made). State kept per process (open file descriptions) is re-made where it changed.
unsigned long CKTask_fork_generation(void);

/// fstatfs(2)'s filesystem type (e.g. TMPFS_MAGIC) and block size (a hugetlbfs mount's page size); -1 on error.
int CKTask_fstatfs(int fd, long *type, long *blockSize);

/// mbind(2) with MPOL_BIND: pages of [address, address + length) faulted in later come from the nodes
/// in the mask (`maxnode` bits). Returns 0 or -1 with errno.
int CKTask_mbind_bind(void *address, unsigned long length, const unsigned long *mask, unsigned long maxnode);

/// move_pages(2) as a query (nodes == NULL): status[i] gets the node of pages[i], or a negative errno
/// (e.g. -ENOENT for a page not faulted in). Returns 0 or -1 with errno.
int CKTask_move_pages_query(unsigned long count, void **pages, int *status);

/// futex(2) FUTEX_WAIT_PRIVATE: sleeps while *address == expected, for at most `timeout_ns`
/// nanoseconds (negative: no limit). Returns 0 or -1 with errno (EAGAIN: the value had changed).
int CKTask_futex_wait(uint32_t *address, uint32_t expected, int64_t timeout_ns);

/// futex(2) FUTEX_WAKE_PRIVATE: wakes up to `count` threads asleep on *address. Returns how many, or -1.
int CKTask_futex_wake(uint32_t *address, int count);

/// A pause for spin-wait loops (x86 `pause`, Arm `yield`): lets the sibling hyperthread run.
static inline void CKTask_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif
