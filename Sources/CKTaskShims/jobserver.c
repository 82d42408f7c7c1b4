// GNU make jobserver tokens ("Sharing Job Slots" in the GNU make manual): every token read is written back,
// the same byte, exactly once: when its helper finishes, or all at once when the process ends (exit or a
// fatal signal, through the fatal-exit actions; not in a forked child, which holds none of them).
#include "CKTaskShims_jobserver.h"
#include "CKTaskShims_signals.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

static int jobserver_read_fd = -1, jobserver_write_fd = -1;
static _Atomic int jobserver_held_by_byte[256];
// A token between its read and its count (take) or its uncount and its write (give) is in no count: the
// return of all tokens waits for these to finish, and once it has begun, take takes nothing more.
static atomic_int jobserver_in_flight;
static atomic_bool jobserver_closed;

// Every signal blocked on this thread for a few microseconds (glibc keeps its internal ones open), so that
// no fatal-signal handler runs on it between a token's syscall and its count.
static void block_fatal(sigset_t *before) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, before);
}

// Another thread inside take or give finishes in microseconds; the bound (1 s) is for one that is stopped.
static void wait_for_in_flight(void) {
    struct timespec pause = { 0, 1000000 };
    for (int tries = 0; tries < 1000 && atomic_load(&jobserver_in_flight) > 0; tries++) nanosleep(&pause, NULL);
}

// Async-signal-safe, and safe to run twice or from two threads: each count is taken once.
static void jobserver_return_all(void) {
    atomic_store(&jobserver_closed, true);
    wait_for_in_flight();
    for (int value = 0; value < 256; value++) {
        int count = atomic_exchange(&jobserver_held_by_byte[value], 0);
        unsigned char byte = (unsigned char)value;
        while (count-- > 0) {
            while (write(jobserver_write_fd, &byte, 1) < 0 && errno == EINTR) {}
        }
    }
}

void CKTask_jobserver_setup(int readFd, int writeFd) {
    jobserver_read_fd = readFd;
    jobserver_write_fd = writeFd;
    CKTask_at_fatal_exit(jobserver_return_all);
}

int CKTask_jobserver_take(void) {
    sigset_t before;
    block_fatal(&before);
    atomic_fetch_add(&jobserver_in_flight, 1);
    int result = -1;
    unsigned char byte;
    ssize_t got = -1;
    if (!atomic_load(&jobserver_closed)) {
        do { got = read(jobserver_read_fd, &byte, 1); } while (got < 0 && errno == EINTR);
    }
    if (got == 1) { atomic_fetch_add(&jobserver_held_by_byte[byte], 1); result = byte; }
    atomic_fetch_sub(&jobserver_in_flight, 1);
    pthread_sigmask(SIG_SETMASK, &before, NULL);
    return result;
}

void CKTask_jobserver_give(unsigned char token) {
    sigset_t before;
    block_fatal(&before);
    atomic_fetch_add(&jobserver_in_flight, 1);
    int held = atomic_load(&jobserver_held_by_byte[token]);
    while (held > 0 && !atomic_compare_exchange_weak(&jobserver_held_by_byte[token], &held, held - 1)) {}
    if (held > 0) {
        while (write(jobserver_write_fd, &token, 1) < 0 && errno == EINTR) {}
    }
    atomic_fetch_sub(&jobserver_in_flight, 1);
    pthread_sigmask(SIG_SETMASK, &before, NULL);
}

int CKTask_jobserver_held(void) {
    int total = 0;
    for (int value = 0; value < 256; value++) total += atomic_load(&jobserver_held_by_byte[value]);
    return total;
}
