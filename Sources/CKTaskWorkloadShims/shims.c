#include "CKTaskWorkloadShims.h"

#include <sys/mman.h>
#include <time.h>



int64_t CKTask_process_cpu_time_ns(void) {
    struct timespec ts;
    return clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0 ? (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec : -1;
}
