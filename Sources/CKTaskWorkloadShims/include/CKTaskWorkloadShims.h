// Wrappers the benchmark workloads need (not the engine): one call each.
#ifndef CKTASK_WORKLOAD_SHIMS_H
#define CKTASK_WORKLOAD_SHIMS_H

#if !defined(__linux__)
#error "ktask runs on Linux only (CLOCK_PROCESS_CPUTIME_ID as Linux defines it)"
#endif

#include <stdint.h>

/// Total CPU time (user + system, nanoseconds) the whole process has used (CLOCK_PROCESS_CPUTIME_ID), or -1.
int64_t CKTask_process_cpu_time_ns(void);

#endif
