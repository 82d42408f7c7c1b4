// The helpers' child cgroup (cgroup v1 `<cpu cgroup>/ktask-helpers`), in C so that the fatal-signal module
// can move its threads back and remove it when the process ends, however it ends.
#ifndef CKTASK_SHIMS_HELPER_CGROUP_H
#define CKTASK_SHIMS_HELPER_CGROUP_H

/// Records the child cgroup for its removal when the process ends: its threads there (those recorded with
/// `admitted`) are moved back to the parent cgroup's tasks file and the child folder removed (the kernel
/// refuses while another process's threads are in it; that process removes it when it ends). Returns 0, or
/// -1 when a path is too long (then nothing is registered).
int CKTask_helper_cgroup_setup(const char *childFolder, const char *parentTasksFile);
/// Records a thread moved into the child cgroup, for the move back when the process ends.
void CKTask_helper_cgroup_admitted(int tid);

#endif
