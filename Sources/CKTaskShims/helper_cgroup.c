// The helpers' child cgroup (`<cpu cgroup>/ktask-helpers`, cgroup v1) is removed when the process ends,
// also on a fatal signal: the paths are recorded here at setup and the admitted threads in a fixed list,
// so that the removal needs only open, write, close, access and rmdir (async-signal-safe).
#include "CKTaskShims_helper_cgroup.h"
#include "CKTaskShims_signals.h"

#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

static char child_folder[PATH_MAX];
static char parent_tasks_file[PATH_MAX];
enum { max_tids = 4096 };
static _Atomic int admitted_tids[max_tids];

// Decimal digits of a positive value after `prefix` into `buffer`; returns the length.
static size_t format_decimal(char *buffer, size_t size, const char *prefix, int value) {
    char digits[16];
    size_t count = 0, length = strlen(prefix);
    do { digits[count++] = (char)('0' + value % 10); value /= 10; } while (value > 0 && count < sizeof digits);
    if (length + count + 1 > size) return 0;
    memcpy(buffer, prefix, length);
    while (count > 0) buffer[length++] = digits[--count];
    buffer[length] = '\0';
    return length;
}

// Only this process's own threads are moved: a recorded thread that has ended may have its id reused by
// another process's thread, which must not be touched.
static void move_back(int tid) {
    char path[48], text[16];
    if (format_decimal(path, sizeof path, "/proc/self/task/", tid) == 0 || access(path, F_OK) != 0) return;
    size_t length = format_decimal(text, sizeof text, "", tid);
    int fd = open(parent_tasks_file, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t written = write(fd, text, length);
    (void)written;
    close(fd);
}

static void move_back_and_remove(void) {
    for (int index = 0; index < max_tids; index++) {
        int tid = atomic_load(&admitted_tids[index]);
        if (tid > 0) move_back(tid);
    }
    rmdir(child_folder);
}

int CKTask_helper_cgroup_setup(const char *childFolder, const char *parentTasksFile) {
    if (strlen(childFolder) >= sizeof child_folder || strlen(parentTasksFile) >= sizeof parent_tasks_file) return -1;
    strcpy(child_folder, childFolder);
    strcpy(parent_tasks_file, parentTasksFile);
    return CKTask_at_fatal_exit(move_back_and_remove);
}

// Lock-free: a thread's id goes into a free slot, else into one whose thread has ended; recorded once.
void CKTask_helper_cgroup_admitted(int tid) {
    for (int index = 0; index < max_tids; index++) {
        int seen = atomic_load(&admitted_tids[index]);
        if (seen == tid) return;
        if (seen == 0 && atomic_compare_exchange_strong(&admitted_tids[index], &seen, tid)) return;
        if (seen == tid) return;
    }
    char path[48];
    for (int index = 0; index < max_tids; index++) {
        int seen = atomic_load(&admitted_tids[index]);
        bool ended = format_decimal(path, sizeof path, "/proc/self/task/", seen) > 0 && access(path, F_OK) != 0;
        if (ended && atomic_compare_exchange_strong(&admitted_tids[index], &seen, tid)) return;
    }
}
