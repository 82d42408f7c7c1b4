// The scratch folder's removal, run by the fatal-signal module (async-signal-safe calls only) and by the
// caller when it is done; whichever comes first does it (the armed flag is taken once).
#include "CKTaskShims_scratch.h"
#include "CKTaskShims_signals.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char folder_path[PATH_MAX];
static char file_name[NAME_MAX + 1];
static int folder_descriptor = -1;
static _Atomic int child_pid;
static _Atomic int armed;
static pthread_once_t register_once = PTHREAD_ONCE_INIT;

// A child killed just now may still finish creating the file (an openat already under way), so the
// folder is retried for up to 100 ms until it is empty.
static int remove_armed(void) {
    if (!atomic_exchange(&armed, 0)) return 0;
    int pid = atomic_exchange(&child_pid, 0);
    if (pid > 0) kill(pid, SIGKILL);
    int result = -1, saved = 0;
    for (int attempt = 0; attempt < 100; attempt++) {
        if (unlinkat(folder_descriptor, file_name, 0) != 0 && errno != ENOENT) { saved = errno; break; }
        if (rmdir(folder_path) == 0 || errno == ENOENT) { result = 0; break; }
        saved = errno;
        if (saved != ENOTEMPTY && saved != EEXIST) break;
        struct timespec pause = { 0, 1000000 };
        nanosleep(&pause, NULL);
    }
    close(folder_descriptor);
    folder_descriptor = -1;
    if (result != 0) errno = saved;
    return result;
}

static void remove_at_exit(void) { (void)remove_armed(); }
static void register_removal(void) { CKTask_at_fatal_exit(remove_at_exit); }

int CKTask_scratch_arm(const char *folder, const char *name) {
    if (strlen(folder) >= sizeof folder_path || strlen(name) >= sizeof file_name) { errno = ENAMETOOLONG; return -1; }
    int descriptor = open(folder, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (descriptor < 0) return -1;
    pthread_once(&register_once, register_removal);
    atomic_store(&armed, 0);
    strcpy(folder_path, folder);
    strcpy(file_name, name);
    folder_descriptor = descriptor;
    atomic_store(&child_pid, 0);
    atomic_store(&armed, 1);
    return 0;
}

void CKTask_scratch_set_child(int pid) { atomic_store(&child_pid, pid); }

int CKTask_scratch_remove(void) {
    atomic_store(&child_pid, 0);
    return remove_armed();
}
