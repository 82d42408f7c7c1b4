#include "CKTaskShims.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/vfs.h>

#ifndef MPOL_BIND
#define MPOL_BIND 2
#endif

/* A thread's id never changes, so it is read once per thread. A child forked without exec copies the forking
   thread's TLS, id included: the child handler, registered when the library loads, clears it there. */
static __thread int cached_tid;
static void forget_tid_in_child(void) { cached_tid = 0; }
__attribute__((constructor)) static void register_tid_reset(void) { pthread_atfork(NULL, NULL, forget_tid_in_child); }
int CKTask_gettid(void) {
    if (cached_tid == 0) cached_tid = (int)syscall(SYS_gettid);
    return cached_tid;
}

static __thread int helper_restore;
void CKTask_note_helper_restore(int flags) { helper_restore = flags; }
int CKTask_take_helper_restore(void) { int flags = helper_restore; helper_restore = 0; return flags; }

int CKTask_getpid(void) { return (int)getpid(); }

int CKTask_sched_getcpu(void) { return sched_getcpu(); }

/* The calling thread's nice value and affinity count, kept per thread and read again once older than the
   caller's bound (or after ktask changed them on this thread): two system calls fewer per job. */
static __thread long long cached_nice_at, cached_affinity_at;
static __thread int cached_nice, cached_affinity_count, cached_nice_valid, cached_affinity_valid;

static long long monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

int CKTask_set_thread_nice(int nice) {
    cached_nice_valid = 0;
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice);
}

int CKTask_cached_thread_nice(long long max_age_ns) {
    long long now = monotonic_ns();
    if (!cached_nice_valid || now - cached_nice_at > max_age_ns) {
        int nice;
        cached_nice = CKTask_get_thread_nice(0, &nice) == 0 ? nice : 0;
        cached_nice_at = now;
        cached_nice_valid = 1;
    }
    return cached_nice;
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

int CKTask_set_nice_of(int tid, int nice) { return setpriority(PRIO_PROCESS, (id_t)tid, nice); }

int CKTask_get_thread_nice(int tid, int *nice) {
    errno = 0;
    int value = getpriority(PRIO_PROCESS, (id_t)tid);
    if (value == -1 && errno != 0) return -1;
    *nice = value;
    return 0;
}

long long CKTask_rlimit_nice(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NICE, &limit) != 0) return -2;
    return limit.rlim_cur == RLIM_INFINITY ? -1 : (long long)limit.rlim_cur;
}

int CKTask_set_thread_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof truncated - 1);
    truncated[sizeof truncated - 1] = '\0';
    return pthread_setname_np(pthread_self(), truncated);
}

int CKTask_sched_getaffinity(int tid, size_t bytes, unsigned long *mask) {
    return sched_getaffinity((pid_t)tid, bytes, (cpu_set_t *)mask);
}

int CKTask_sched_setaffinity(size_t bytes, const unsigned long *mask) {
    cached_affinity_valid = 0;
    return sched_setaffinity(0, bytes, (const cpu_set_t *)mask);
}

int CKTask_mbind_bind(void *address, unsigned long length, const unsigned long *mask, unsigned long maxnode) {
    return (int)syscall(SYS_mbind, address, length, MPOL_BIND, mask, maxnode, 0);
}

int CKTask_move_pages_query(unsigned long count, void **pages, int *status) {
    return (int)syscall(SYS_move_pages, 0, count, pages, NULL, status, 0);
}

int CKTask_futex_wait(uint32_t *address, uint32_t expected, int64_t timeout_ns) {
    struct timespec timeout = {.tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000};
    return (int)syscall(SYS_futex, address, FUTEX_WAIT_PRIVATE, expected, timeout_ns < 0 ? NULL : &timeout, NULL, 0);
}

int CKTask_futex_wake(uint32_t *address, int count) {
    return (int)syscall(SYS_futex, address, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif
int CKTask_MADV_POPULATE_READ(void) { return MADV_POPULATE_READ; }
int CKTask_MADV_POPULATE_WRITE(void) { return MADV_POPULATE_WRITE; }
int CKTask_MADV_HUGEPAGE(void) { return MADV_HUGEPAGE; }
int CKTask_MAP_HUGETLB(void) { return MAP_HUGETLB; }
int CKTask_MAP_HUGE_SIZE(int log2PageSize) { return log2PageSize << MAP_HUGE_SHIFT; }

int CKTask_fstatfs(int fd, long *type, long *blockSize) {
    struct statfs info;
    if (fstatfs(fd, &info) != 0) return -1;
    *type = (long)info.f_type;
    *blockSize = (long)info.f_bsize;
    return 0;
}

int CKTask_memfd_create(const char *name, unsigned int flags) { return (int)syscall(SYS_memfd_create, name, flags); }

static _Atomic unsigned long fork_generation;
static void count_fork(void) { atomic_fetch_add(&fork_generation, 1); }
static void register_fork_counter(void) { pthread_atfork(NULL, NULL, count_fork); }

unsigned long CKTask_fork_generation(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_fork_counter);
    return atomic_load_explicit(&fork_generation, memory_order_relaxed);
}
