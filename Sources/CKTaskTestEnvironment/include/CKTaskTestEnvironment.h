// What the tests need from C: the test processes' environment, set before any test runs, and the calls
// Glibc as imported into Swift lacks that only tests make.
#ifndef CKTASK_TEST_ENVIRONMENT_H
#define CKTASK_TEST_ENVIRONMENT_H

/// The KTASK_SLOTS value the tests run with ("off" unless the caller of `swift test` set one): tests that
/// count helpers must not share the machine-wide slots with each other's processes. The slot tests give
/// their child processes a folder of their own.
const char *CKTask_test_slots_setting(void);

/// memfd_create(2): an anonymous shmem file, as a VM's memory-backend-memfd makes. Returns a descriptor or
/// -1 with errno.
int CKTask_memfd_create(const char *name, unsigned int flags);

#endif
