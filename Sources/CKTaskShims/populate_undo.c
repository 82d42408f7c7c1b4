// What a populate in progress would leave behind if the process died of a signal (Ctrl-C, SIGTERM): the
// file it created, holding memory, or the part it extended. Recorded while the populate runs and undone by
// the fatal-signal module with async-signal-safe calls only; cleared once the populate is over (the module
// also runs its actions at a normal exit, which must keep a populated file).
#include "CKTaskShims_populate.h"
#include "CKTaskShims_signals.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct {
    int descriptor, folder, created;
    char name[NAME_MAX + 1];
    dev_t device;
    ino_t inode;
    long long extendedTo, originalSize;
} pending;
static _Atomic int armed;
static pthread_once_t registerOnce = PTHREAD_ONCE_INIT;

static void undoPending(void) {
    if (!atomic_exchange(&armed, 0)) return;
    struct stat now;
    if (pending.created) {
        // Its memory goes through the descriptor; the name only while it still leads to this file.
        (void)ftruncate(pending.descriptor, 0);
        if (fstatat(pending.folder, pending.name, &now, AT_SYMLINK_NOFOLLOW) == 0 && now.st_dev == pending.device
            && now.st_ino == pending.inode) {
            unlinkat(pending.folder, pending.name, 0);
        }
    } else if (pending.extendedTo > 0 && fstat(pending.descriptor, &now) == 0 && now.st_size == pending.extendedTo) {
        (void)ftruncate(pending.descriptor, pending.originalSize);
    }
}

static void registerUndo(void) { CKTask_at_fatal_exit(undoPending); }

int CKTask_populate_undo_arm(int descriptor, int folder, const char *name, int created, long long extendedTo,
                             long long originalSize) {
    struct stat status;
    if (strlen(name) > NAME_MAX || fstat(descriptor, &status) != 0) return -1;
    pthread_once(&registerOnce, registerUndo);
    atomic_store(&armed, 0);
    pending.descriptor = descriptor;
    pending.folder = folder;
    pending.created = created;
    strcpy(pending.name, name);
    pending.device = status.st_dev;
    pending.inode = status.st_ino;
    pending.extendedTo = extendedTo;
    pending.originalSize = originalSize;
    atomic_store(&armed, 1);
    return 0;
}

void CKTask_populate_undo_disarm(void) { atomic_store(&armed, 0); }
