// Thin wrappers for Linux calls that Glibc, as imported into Swift, does not expose (without _GNU_SOURCE,
// or variadic): each makes one call and returns its result (or -1 with errno set), nothing more. Building
// CPU and node masks, retrying with a larger mask and reading the result are done in Swift. What must keep
// state in C has a file and a header of its own, included here: per-thread caches (thread_state), the
// fatal-signal module (signals), the jobserver's tokens (jobserver), the helpers' cgroup (helper_cgroup),
// populate's fault walk and undo (populate), a comparison's scratch folder (scratch).
#ifndef CKTASK_SHIMS_H
#define CKTASK_SHIMS_H

// ktask is built on Linux's own interfaces (sched_getaffinity, per-thread setpriority, cgroups, sysfs
// NUMA nodes, mbind, futexes): it runs on Linux only, and says so rather than failing on a missing call.
#if !defined(__linux__)
#error "ktask runs on Linux only: it uses Linux's affinity, cgroup, NUMA (mbind, move_pages) and futex calls"
#endif

#include <stddef.h>
#include <stdint.h>

#include "CKTaskShims_helper_cgroup.h"
#include "CKTaskShims_jobserver.h"
#include "CKTaskShims_populate.h"
#include "CKTaskShims_scratch.h"
#include "CKTaskShims_signals.h"
#include "CKTaskShims_thread_state.h"

/// The CPU the calling thread is running on now (sched_getcpu(3)), or -1.
int CKTask_sched_getcpu(void);

/// Names the calling thread (pthread_setname_np(3)); a name longer than 15 bytes is cut to 15.
int CKTask_set_thread_name(const char *name);

/// sched_getaffinity(2) of a thread (0: the calling thread) into a mask of `bytes` bytes.
/// Returns 0, or -1 with errno (EINVAL: the kernel's mask is larger than `bytes`).
int CKTask_sched_getaffinity(int tid, size_t bytes, unsigned long *mask);

/// madvise(2) advice values the engine's populate uses, defined even where the headers lack them
/// (MADV_POPULATE_READ/WRITE: Linux 5.14+, glibc 2.35+).
int CKTask_MADV_POPULATE_READ(void);
int CKTask_MADV_POPULATE_WRITE(void);
/// The mmap flag for a hugetlb page size, MAP_HUGE_2MB / MAP_HUGE_1GB (linux/mman.h, which Glibc does not
/// bring into Swift): log2(page size) << MAP_HUGE_SHIFT, the shift defined where older headers lack it.
int CKTask_MAP_HUGE_SIZE(int log2PageSize);

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
