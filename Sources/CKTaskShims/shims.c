// The one-line wrappers of CKTaskShims.h: one call each, for what Glibc as imported into Swift lacks.
#include "CKTaskShims.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#ifndef MPOL_BIND
#define MPOL_BIND 2
#endif

int CKTask_sched_getcpu(void) { return sched_getcpu(); }

int CKTask_set_thread_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof truncated - 1);
    truncated[sizeof truncated - 1] = '\0';
    return pthread_setname_np(pthread_self(), truncated);
}

int CKTask_sched_getaffinity(int tid, size_t bytes, unsigned long *mask) {
    return sched_getaffinity((pid_t)tid, bytes, (cpu_set_t *)mask);
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
int CKTask_MAP_HUGE_SIZE(int log2PageSize) { return log2PageSize << MAP_HUGE_SHIFT; }

int CKTask_fstatfs(int fd, long *type, long *blockSize) {
    struct statfs info;
    if (fstatfs(fd, &info) != 0) return -1;
    *type = (long)info.f_type;
    *blockSize = (long)info.f_bsize;
    return 0;
}
