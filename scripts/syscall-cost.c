// The cost of the system calls a ktask job makes, one million times each: what bounds an empty job's
// cost on a given machine. Build and run: cc -O2 scripts/syscall-cost.c -o /tmp/syscall-cost && /tmp/syscall-cost
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(void) {
    const int calls = 1000000;
    cpu_set_t mask;
    double start = now();
    for (int i = 0; i < calls; i++) sched_getaffinity(0, sizeof mask, &mask);
    printf("sched_getaffinity (the CPU budget, every job): %.0f ns\n", (now() - start) / calls * 1e9);
    start = now();
    for (int i = 0; i < calls; i++) getpriority(PRIO_PROCESS, 0);
    printf("getpriority (the caller's nice, every job with helpers): %.0f ns\n", (now() - start) / calls * 1e9);
    start = now();
    for (int i = 0; i < calls; i++) sched_getcpu();
    printf("sched_getcpu (the caller's node): %.0f ns\n", (now() - start) / calls * 1e9);
    return 0;
}
