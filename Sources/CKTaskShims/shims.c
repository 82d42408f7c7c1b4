#include "CKTaskShims.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

int CKTask_gettid(void) { return (int)syscall(SYS_gettid); }

int CKTask_sched_getcpu(void) { return sched_getcpu(); }

int CKTask_set_thread_nice(int nice) {
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice);
}

int CKTask_set_nice_of(int tid, int nice) { return setpriority(PRIO_PROCESS, (id_t)tid, nice); }

long long CKTask_rlimit_nice(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NICE, &limit) != 0) return -2;
    return limit.rlim_cur == RLIM_INFINITY ? -1 : (long long)limit.rlim_cur;
}

int CKTask_get_thread_nice(int tid, int *nice) {
    errno = 0;
    int value = getpriority(PRIO_PROCESS, (id_t)tid);
    if (value == -1 && errno != 0) return -1;
    *nice = value;
    return 0;
}

int CKTask_set_thread_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof truncated - 1);
    truncated[sizeof truncated - 1] = '\0';
    return pthread_setname_np(pthread_self(), truncated);
}

int CKTask_getpid(void) { return (int)getpid(); }

// Lists the CPUs in the mask word by word (a job asks for it every time, so no bit-by-bit scan of
// 1024 bits and no allocation for masks that fit on the stack).
static int CKTask_list_cpus(const unsigned long *words, size_t count, int *cpus, int capacity) {
    int found = 0;
    for (size_t index = 0; index < count; index++) {
        unsigned long word = words[index];
        while (word != 0) {
            int cpu = (int)(index * 8 * sizeof(unsigned long)) + __builtin_ctzl(word);
            if (found < capacity) cpus[found] = cpu;
            found++;
            word &= word - 1;
        }
    }
    return found;
}

int CKTask_affinity_cpus(int tid, int *cpus, int capacity) {
    unsigned long small[1024 / (8 * sizeof(unsigned long))];
    memset(small, 0, sizeof small);
    if (sched_getaffinity((pid_t)tid, sizeof small, (cpu_set_t *)small) == 0) {
        return CKTask_list_cpus(small, sizeof small / sizeof small[0], cpus, capacity);
    }
    if (errno != EINVAL) return -1;
    // The kernel's mask is larger than 1024 CPUs: grow until it fits.
    for (int possible = 2048; possible <= (1 << 22); possible *= 2) {
        cpu_set_t *set = CPU_ALLOC(possible);
        if (set == NULL) return -1;
        size_t bytes = CPU_ALLOC_SIZE(possible);
        CPU_ZERO_S(bytes, set);
        if (sched_getaffinity((pid_t)tid, bytes, set) != 0) {
            int saved = errno;
            CPU_FREE(set);
            if (saved == EINVAL) continue;
            errno = saved;
            return -1;
        }
        int count = CKTask_list_cpus((const unsigned long *)set, bytes / sizeof(unsigned long), cpus, capacity);
        CPU_FREE(set);
        return count;
    }
    errno = EINVAL;
    return -1;
}

int CKTask_set_thread_affinity(const int *cpus, int count) {
    int highest = 0;
    for (int i = 0; i < count; i++) if (cpus[i] > highest) highest = cpus[i];
    int possible = highest + 1 > 1024 ? highest + 1 : 1024;
    cpu_set_t *set = CPU_ALLOC(possible);
    if (set == NULL) return -1;
    size_t bytes = CPU_ALLOC_SIZE(possible);
    CPU_ZERO_S(bytes, set);
    for (int i = 0; i < count; i++) CPU_SET_S(cpus[i], bytes, set);
    int result = sched_setaffinity(0, bytes, set);
    int saved = errno;
    CPU_FREE(set);
    errno = saved;
    return result;
}

int CKTask_MADV_POPULATE_WRITE(void) { return MADV_POPULATE_WRITE; }

static int64_t clock_ns(clockid_t clock) {
    struct timespec ts;
    if (clock_gettime(clock, &ts) != 0) return -1;
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t CKTask_process_cpu_time_ns(void) { return clock_ns(CLOCK_PROCESS_CPUTIME_ID); }

#ifndef MPOL_BIND
#define MPOL_BIND 2
#endif

int CKTask_mbind_nodes(void *address, unsigned long length, const int *nodes, int count) {
    int highest = 0;
    for (int i = 0; i < count; i++) if (nodes[i] > highest) highest = nodes[i];
    unsigned long bits = sizeof(unsigned long) * 8;
    unsigned long words = (unsigned long)highest / bits + 1;
    unsigned long *mask = calloc(words, sizeof(unsigned long));
    if (mask == NULL) return -1;
    for (int i = 0; i < count; i++) mask[nodes[i] / bits] |= 1UL << (nodes[i] % bits);
    // maxnode counts bits; the kernel ignores the last one, hence + 1.
    long result = syscall(SYS_mbind, address, length, MPOL_BIND, mask, words * bits + 1, 0);
    int saved = errno;
    free(mask);
    errno = saved;
    return (int)result;
}

int CKTask_page_nodes(unsigned long count, void **pages, int *status) {
    return (int)syscall(SYS_move_pages, 0, count, pages, NULL, status, 0);
}
