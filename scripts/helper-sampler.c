// Samples the helper threads (named "ktask/N") of the given processes until every one has ended, for the
// qemu checks (scripts/big-vm-check.sh): how many ran at once, in all and on one node, against what the
// machine's slots and make's tokens allow. In C, built static on the host, because a snapshot must take
// far less than a window even under emulation (an awk loop over /proc took longer than a job).
//
//   helper-sampler [--cpus-per-node N] [--tokens J] [--window-ms W] PID...
//
// A helper counts as running in a window where it ran (/proc/PID/task/TID/schedstat's run time) more than
// half of that window and of the one before: of one that stops and one that starts in a window (a slot or
// token handed on) at most one ran more than half of it, so a hand-over is not counted as two at once.
// A helper that did not get half its CPU is not counted: the bounds checked are upper bounds. Its node is its last CPU (stat field 39) / N. --tokens J: make -jJ's slots, of which each
// running process (a recipe) holds one, so at most J - (processes alive) helpers may run.
// Prints: "running R node N slots S over O windows W": the most helpers running at once, the most on one
// node, the most flocks held at once (/proc/locks: the guest holds no other), the most helpers beyond make's
// tokens, and the windows sampled (0: the processes had ended; a check must see helpers run to count).
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { maxThreads = 4096, maxPids = 64 };
struct thread { long pid, tid; unsigned long long runtime; int cpu; };
struct snapshot { unsigned long long at; int count; struct thread threads[maxThreads]; };

static long pids[maxPids];
static int pidCount;

static int readLine(const char *path, char *buffer, size_t size) {
    FILE *file = fopen(path, "r");
    if (!file) return 0;
    int ok = fgets(buffer, (int)size, file) != NULL;
    fclose(file);
    return ok;
}

// Processes not yet exited: a zombie waits for its parent and has ended.
static int alive(void) {
    int count = 0;
    char path[64], line[512];
    for (int i = 0; i < pidCount; i++) {
        snprintf(path, sizeof path, "/proc/%ld/stat", pids[i]);
        if (!readLine(path, line, sizeof line)) continue;
        char *state = strrchr(line, ')');
        if (state && state[1] == ' ' && state[2] != 'Z') count++;
    }
    return count;
}

static void snap(struct snapshot *snapshot) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    snapshot->at = (unsigned long long)now.tv_sec * 1000000000ull + (unsigned long long)now.tv_nsec;
    snapshot->count = 0;
    char path[128], line[1024];
    for (int i = 0; i < pidCount; i++) {
        snprintf(path, sizeof path, "/proc/%ld/task", pids[i]);
        DIR *tasks = opendir(path);
        if (!tasks) continue;
        struct dirent *entry;
        while ((entry = readdir(tasks)) && snapshot->count < maxThreads) {
            if (entry->d_name[0] == '.') continue;
            long tid = atol(entry->d_name);
            snprintf(path, sizeof path, "/proc/%ld/task/%ld/comm", pids[i], tid);
            if (!readLine(path, line, sizeof line) || strncmp(line, "ktask/", 6) != 0) continue;
            struct thread *thread = &snapshot->threads[snapshot->count];
            snprintf(path, sizeof path, "/proc/%ld/task/%ld/schedstat", pids[i], tid);
            if (!readLine(path, line, sizeof line)) continue;
            thread->runtime = strtoull(line, NULL, 10);
            snprintf(path, sizeof path, "/proc/%ld/task/%ld/stat", pids[i], tid);
            if (!readLine(path, line, sizeof line)) continue;
            // Fields after "(comm) ": state is field 3, processor field 39.
            char *field = strrchr(line, ')');
            if (!field) continue;
            int index = 2;
            thread->cpu = -1;
            for (char *token = strtok(field + 1, " "); token; token = strtok(NULL, " ")) {
                if (++index == 39) { thread->cpu = atoi(token); break; }
            }
            thread->pid = pids[i];
            thread->tid = tid;
            snapshot->count++;
        }
        closedir(tasks);
    }
}

static const struct thread *find(const struct snapshot *snapshot, const struct thread *thread) {
    for (int i = 0; i < snapshot->count; i++) {
        if (snapshot->threads[i].tid == thread->tid && snapshot->threads[i].pid == thread->pid) return &snapshot->threads[i];
    }
    return NULL;
}

static int flocksHeld(void) {
    FILE *locks = fopen("/proc/locks", "r");
    if (!locks) return 0;
    char line[256];
    int count = 0;
    while (fgets(line, sizeof line, locks)) count += strstr(line, "FLOCK") != NULL;
    fclose(locks);
    return count;
}

int main(int argc, char **argv) {
    int cpusPerNode = 4, tokens = 0, windowMs = 20;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cpus-per-node") && i + 1 < argc) cpusPerNode = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) tokens = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--window-ms") && i + 1 < argc) windowMs = atoi(argv[++i]);
        else if (pidCount < maxPids && atol(argv[i]) > 0) pids[pidCount++] = atol(argv[i]);
        else { fprintf(stderr, "helper-sampler: unknown argument %s\n", argv[i]); return 2; }
    }
    if (cpusPerNode < 1 || windowMs < 1) { fprintf(stderr, "helper-sampler: --cpus-per-node and --window-ms must be positive\n"); return 2; }
    static struct snapshot snapshots[3];
    struct snapshot *before = &snapshots[0], *middle = &snapshots[1], *after = &snapshots[2];
    struct timespec window = { windowMs / 1000, (long)(windowMs % 1000) * 1000000 };
    int mostRunning = 0, mostOnNode = 0, mostSlots = 0, mostOver = 0, windows = 0;
    snap(before);
    nanosleep(&window, NULL);
    snap(middle);
    for (int processes; (processes = alive()) > 0;) {
        int slots = flocksHeld();
        if (slots > mostSlots) mostSlots = slots;
        nanosleep(&window, NULL);
        snap(after);
        int running = 0, perNode[1024] = {0};
        for (int i = 0; i < after->count; i++) {
            const struct thread *now = &after->threads[i], *then = find(middle, now), *first = find(before, now);
            // A thread id reused by a new thread has less run time: not the same helper.
            if (!then || !first || now->runtime < then->runtime || then->runtime < first->runtime
                || 2 * (now->runtime - then->runtime) <= after->at - middle->at
                || 2 * (then->runtime - first->runtime) <= middle->at - before->at) continue;
            running++;
            if (now->cpu >= 0 && now->cpu / cpusPerNode < 1024 && ++perNode[now->cpu / cpusPerNode] > mostOnNode) mostOnNode = perNode[now->cpu / cpusPerNode];
        }
        windows++;
        if (running > mostRunning) mostRunning = running;
        if (tokens > 0 && running - (tokens - processes) > mostOver) mostOver = running - (tokens - processes);
        struct snapshot *oldest = before;
        before = middle;
        middle = after;
        after = oldest;
    }
    printf("running %d node %d slots %d over %d windows %d\n", mostRunning, mostOnNode, mostSlots, mostOver, windows);
    return 0;
}
