// GNU make jobserver tokens ("Sharing Job Slots" in the GNU make manual): every token read is written back,
// the same byte, exactly once: when its helper finishes, or all at once when the process ends (exit or a
// fatal signal, through the fatal-exit actions; not in a forked child, which holds none of them).
#include "CKTaskShims_signals.h"

#include <errno.h>
#include <stdatomic.h>
#include <unistd.h>

static int jobserver_read_fd = -1, jobserver_write_fd = -1;
static _Atomic int jobserver_held_by_byte[256];

// Async-signal-safe, and safe to run twice or from two threads: each count is taken once.
static void jobserver_return_all(void) {
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
    unsigned char byte;
    ssize_t got;
    do { got = read(jobserver_read_fd, &byte, 1); } while (got < 0 && errno == EINTR);
    if (got != 1) return -1;
    atomic_fetch_add(&jobserver_held_by_byte[byte], 1);
    return byte;
}

void CKTask_jobserver_give(unsigned char token) {
    int held = atomic_load(&jobserver_held_by_byte[token]);
    while (held > 0 && !atomic_compare_exchange_weak(&jobserver_held_by_byte[token], &held, held - 1)) {}
    if (held <= 0) return;
    while (write(jobserver_write_fd, &token, 1) < 0 && errno == EINTR) {}
}

int CKTask_jobserver_held(void) {
    int total = 0;
    for (int value = 0; value < 256; value++) total += atomic_load(&jobserver_held_by_byte[value]);
    return total;
}
