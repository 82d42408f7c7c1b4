#include "CKTaskShims_populate.h"
#include "CKTaskShims_signals.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>

// Why a guard and not a size check: the walk gets only a region (the caller's own mapping, maybe of a
// file another process truncates at any moment), so a check of the file's size before the walk would
// race with the truncation; a SIGBUS caught on the faulting thread cannot.
struct touch_guard {
    sigjmp_buf jump;
    uintptr_t start, end;
};
// initial-exec: read in a signal handler, where a lazily allocated thread-local is not safe.
static __thread struct touch_guard *touchGuard __attribute__((tls_model("initial-exec")));
static pthread_once_t busClaimOnce = PTHREAD_ONCE_INIT;

// Only a fault the kernel raised at an address the walk reads is the walk's: a SIGBUS sent with kill (si_code
// <= 0) or a memory error (BUS_MCEERR_AR/AO, which a VM host such as QEMU handles itself) returns, and the
// signal module chains it to the earlier handler or the default action as without ktask.
static void claimBus(int signal, siginfo_t *info) {
    (void)signal;
    struct touch_guard *guard = touchGuard;
    if (guard == NULL || info == NULL || info->si_code <= 0) return;
    if (info->si_code == BUS_MCEERR_AR || info->si_code == BUS_MCEERR_AO) return;
    uintptr_t address = (uintptr_t)info->si_addr;
    if (address >= guard->start && address < guard->end) siglongjmp(guard->jump, 1);
}

static void installBusClaim(void) { CKTask_claim_faults(SIGBUS, claimBus); }

// A write fault that stores the value already there, atomically, so that a concurrent writer's value is
// never lost. Not `__atomic_fetch_or(p, 0)`: LLVM lowers an idempotent RMW on x86 to a fence and a load,
// which is only a read fault (the zero page, nothing allocated).
static void touchForWrite(uint8_t *address) {
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("lock orb $0, %0" : "+m"(*address) : : "memory");
#else
    uint8_t seen = __atomic_load_n(address, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(address, &seen, seen, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
#endif
}

long CKTask_touch_pages(void *start, size_t count, size_t pageSize, int write) {
    pthread_once(&busClaimOnce, installBusClaim);
    volatile size_t page = 0;
    struct touch_guard guard = { .start = (uintptr_t)start, .end = (uintptr_t)start + count * pageSize };
    if (sigsetjmp(guard.jump, 1) != 0) {
        touchGuard = NULL;
        return (long)page;
    }
    touchGuard = &guard;
    for (; page < count; page++) {
        uint8_t *address = (uint8_t *)start + page * pageSize;
        if (write) {
            touchForWrite(address);
        } else {
            (void)*(volatile uint8_t *)address;
        }
    }
    touchGuard = NULL;
    return -1;
}

int CKTask_madvise_retrying(void *start, size_t length, int advice) {
    int result;
    do {
        result = madvise(start, length, advice);
    } while (result != 0 && errno == EINTR);
    return result;
}

long long CKTask_allocate_file_range(int descriptor, long long offset, long long length, long long step) {
    long long done = 0;
    while (done < length) {
        long long part = length - done < step ? length - done : step;
        if (fallocate(descriptor, FALLOC_FL_KEEP_SIZE, (off_t)(offset + done), (off_t)part) != 0) {
            if (errno == EINTR) continue;
            return done;
        }
        done += part;
    }
    return done;
}

long long CKTask_write_zeros(int descriptor, long long offset, long long length) {
    // One small buffer read again and again stays in cache; 64 of them make a 4 MiB call.
    static const char zeros[64 << 10];
    enum { vectors = 64 };
    struct iovec iov[vectors];
    long long done = 0;
    while (done < length) {
        long long left = length - done;
        int count = 0;
        for (; count < vectors && left > 0; count++) {
            size_t part = left < (long long)sizeof zeros ? (size_t)left : sizeof zeros;
            iov[count] = (struct iovec){ .iov_base = (void *)zeros, .iov_len = part };
            left -= (long long)part;
        }
        ssize_t written = pwritev(descriptor, iov, count, (off_t)(offset + done));
        if (written < 0) {
            if (errno == EINTR) continue;
            return done;
        }
        if (written == 0) {
            errno = ENOSPC;
            return done;
        }
        done += written;
    }
    return done;
}

int CKTask_openat(int folder, const char *name, int flags, unsigned int mode) { return openat(folder, name, flags, (mode_t)mode); }

int CKTask_O_PATH(void) { return O_PATH; }
int CKTask_O_NOATIME(void) { return O_NOATIME; }
int CKTask_SEEK_DATA(void) { return SEEK_DATA; }
int CKTask_SEEK_HOLE(void) { return SEEK_HOLE; }
