// A scratch folder a comparison makes for one file at a time (`ktask compare --workload vm-file`): removed,
// with its file, however the process ends, so that a tmpfs or hugetlbfs file holding gigabytes is never
// left behind; the child process working on it is killed first.
#ifndef CKTASK_SHIMS_SCRATCH_H
#define CKTASK_SHIMS_SCRATCH_H

/// Records `folder` (made by this process, e.g. with mkdtemp) and the one `name` used in it: from now on a
/// fatal signal or exit kills the recorded child (SIGKILL), removes `name` and the folder. 0, or -1 with
/// errno (a path or name too long, a folder that cannot be opened). One scratch folder at a time.
int CKTask_scratch_arm(const char *folder, const char *name);
/// The child process now working on the file (0: none); it is killed before the file is removed.
void CKTask_scratch_set_child(int pid);
/// Removes the file and the folder now (a child must have exited) and forgets them. 0, or -1 with errno.
int CKTask_scratch_remove(void);

#endif
