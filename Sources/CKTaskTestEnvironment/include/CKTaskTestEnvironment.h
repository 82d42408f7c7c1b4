// The test processes' environment, set before any test runs.
#ifndef CKTASK_TEST_ENVIRONMENT_H
#define CKTASK_TEST_ENVIRONMENT_H

/// The KTASK_SLOTS value the tests run with ("off" unless the caller of `swift test` set one): tests that
/// count helpers must not share the machine-wide slots with each other's processes. The slot tests give
/// their child processes a folder of their own.
const char *CKTask_test_slots_setting(void);

#endif
