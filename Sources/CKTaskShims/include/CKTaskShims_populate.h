// The populate fallbacks for kernels without MADV_POPULATE_READ/WRITE (before 5.14, gVisor), in C so that
// the compiler neither drops the reads nor turns the write touch into a store.
#ifndef CKTASK_SHIMS_POPULATE_H
#define CKTASK_SHIMS_POPULATE_H

#include <stddef.h>

/// Faults in `count` pages of `pageSize` bytes from `start`, one access per page: with `write`, an atomic
/// OR of 0 into the page's first byte (a write fault that leaves every value as it was, even while another
/// thread or process writes the page); else a volatile read. A SIGBUS fault on the way at an address in the
/// walked range (a file truncated under the mapping, tmpfs full, the hugetlb pool empty) is caught on this
/// thread and ends the walk; any other SIGBUS (sent, a memory error) goes on as without ktask.
/// Returns -1 when every page was touched, else the index of the page that raised SIGBUS.
long CKTask_touch_pages(void *start, size_t count, size_t pageSize, int write);

/// Records a file a populate is working on, so that a fatal signal meanwhile removes it (`created`: the
/// name, only while it still leads to this file) or truncates it back to `originalSize` (when it still has
/// the size `extendedTo` this call gave it). One populate at a time; 0, or -1 for a name too long.
int CKTask_populate_undo_arm(int descriptor, int folder, const char *name, int created, long long extendedTo,
                             long long originalSize);
/// The populate is over (done, or undone by the caller): a signal or exit from now on changes nothing.
void CKTask_populate_undo_disarm(void);

/// Allocates `length` bytes of a hugetlbfs file from `offset` without mapping them: fallocate(2) with
/// FALLOC_FL_KEEP_SIZE (the pages are zeroed and in the file, no byte of data changes, the size stays),
/// one `step` (a huge page) per call so that a failure names its page, each retried on EINTR. Returns the
/// bytes allocated before an error (== `length` when none), errno set.
long long CKTask_allocate_file_range(int descriptor, long long offset, long long length, long long step);

/// Writes zeros over `length` bytes of a file from `offset` (pwritev from one 64 KiB zero buffer), for a
/// tmpfs file whose bytes are all zeros already (one this call created): the pages are allocated and
/// zeroed, nothing mapped. Returns the bytes written before an error (== `length` when none), errno set.
long long CKTask_write_zeros(int descriptor, long long offset, long long length);

/// madvise(2), retried on EINTR. Returns 0 or -1 with errno.
int CKTask_madvise_retrying(void *start, size_t length, int advice);

/// openat(2) with a mode (Swift does not import the variadic call). Returns a descriptor or -1 with errno.
int CKTask_openat(int folder, const char *name, int flags, unsigned int mode);

/// Open flags and lseek whences Glibc exposes to Swift only without _GNU_SOURCE's extras.
int CKTask_O_PATH(void);
int CKTask_O_NOATIME(void);
int CKTask_SEEK_DATA(void);
int CKTask_SEEK_HOLE(void);

#endif
