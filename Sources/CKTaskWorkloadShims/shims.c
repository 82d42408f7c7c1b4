#include "CKTaskWorkloadShims.h"

#include <sys/mman.h>
#include <time.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

int CKTask_MADV_POPULATE_WRITE(void) { return MADV_POPULATE_WRITE; }

int64_t CKTask_process_cpu_time_ns(void) {
    struct timespec ts;
    return clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0 ? (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec : -1;
}
