// Wrappers the benchmark workloads need (not the engine): one call each.
#ifndef CKTASK_WORKLOAD_SHIMS_H
#define CKTASK_WORKLOAD_SHIMS_H

#if !defined(__linux__)
#error "ktask runs on Linux only (MADV_POPULATE_WRITE, CLOCK_PROCESS_CPUTIME_ID as Linux defines them)"
#endif

#include <stdint.h>

/// madvise(2) advice that populates page tables writable (Linux 5.14+); the constant, even where headers lack it.
int CKTask_MADV_POPULATE_WRITE(void);

/// Total CPU time (user + system, nanoseconds) the whole process has used (CLOCK_PROCESS_CPUTIME_ID), or -1.
int64_t CKTask_process_cpu_time_ns(void);

#endif
