#include "CKTaskTestEnvironment.h"

#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

// Runs when the test bundle loads, before Swift Testing starts any test (and before any job reads
// KTASK_SLOTS): many tests run at once and count threads, so by default they do not share machine-wide
// slots; the tests of the slots themselves give their processes a slots folder of their own.
__attribute__((constructor)) static void ktask_tests_environment(void) { setenv("KTASK_SLOTS", "off", 0); }

const char *CKTask_test_slots_setting(void) { return getenv("KTASK_SLOTS"); }

int CKTask_memfd_create(const char *name, unsigned int flags) { return (int)syscall(SYS_memfd_create, name, flags); }
