// The GNU make jobserver client's token accounting ("Sharing Job Slots" in the GNU make manual), in C so
// that the fatal-signal module can give every held token back when the process ends, however it ends.
#ifndef CKTASK_SHIMS_JOBSERVER_H
#define CKTASK_SHIMS_JOBSERVER_H

/// Records the descriptors (reads must be non-blocking; both checked by the caller to be the two ends of
/// one pipe or fifo) and registers the return of all tokens at exit.
void CKTask_jobserver_setup(int readFd, int writeFd);
/// Reads one token without waiting: its byte (0-255), or -1 when none is free.
int CKTask_jobserver_take(void);
/// Writes a held token back (the same byte); does nothing for one already given back (after a signal).
void CKTask_jobserver_give(unsigned char token);
/// Tokens this process holds now.
int CKTask_jobserver_held(void);

#endif
