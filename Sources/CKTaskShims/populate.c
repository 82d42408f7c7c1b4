#include "CKTaskShims_populate.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

// Why a guard and not a size check: the walk gets only a region (the caller's own mapping, maybe of a
// file another process truncates at any moment), so a check of the file's size before the walk would
// race with the truncation; a SIGBUS caught on the faulting thread cannot.
static __thread sigjmp_buf *touchGuard;
static struct sigaction previousBusAction;
static pthread_once_t busHandlerOnce = PTHREAD_ONCE_INIT;

static void onBus(int signal, siginfo_t *info, void *context) {
    sigjmp_buf *guard = touchGuard;
    if (guard) siglongjmp(*guard, 1);
    // Not ours: the handler that was there before, or the default action (the fault repeats on return).
    if (previousBusAction.sa_flags & SA_SIGINFO) {
        if (previousBusAction.sa_sigaction) { previousBusAction.sa_sigaction(signal, info, context); return; }
    } else if (previousBusAction.sa_handler == SIG_IGN) {
        return;
    } else if (previousBusAction.sa_handler != SIG_DFL) {
        previousBusAction.sa_handler(signal);
        return;
    }
    struct sigaction fallback;
    memset(&fallback, 0, sizeof fallback);
    fallback.sa_handler = SIG_DFL;
    sigaction(SIGBUS, &fallback, NULL);
}

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

static void installBusHandler(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = onBus;
    action.sa_flags = SA_SIGINFO | SA_RESTART | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    sigaction(SIGBUS, &action, &previousBusAction);
}

long CKTask_touch_pages(void *start, size_t count, size_t pageSize, int write) {
    pthread_once(&busHandlerOnce, installBusHandler);
    volatile size_t page = 0;
    sigjmp_buf guard;
    if (sigsetjmp(guard, 1) != 0) {
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

int CKTask_openat(int folder, const char *name, int flags, unsigned int mode) { return openat(folder, name, flags, (mode_t)mode); }

int CKTask_O_PATH(void) { return O_PATH; }
int CKTask_O_NOATIME(void) { return O_NOATIME; }
int CKTask_SEEK_DATA(void) { return SEEK_DATA; }
int CKTask_SEEK_HOLE(void) { return SEEK_HOLE; }
