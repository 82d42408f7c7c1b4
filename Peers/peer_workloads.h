/*
 * The three bench workloads of `ktask bench`, in C, for the peers `ktask compare` runs against ktask.
 * Each inner loop is the same as the Swift one in Sources/KTaskWorkloads (same items, same chunks, same
 * writes), so that a difference in time is the threading system's. A peer provides parallel_chunks();
 * everything else, the line protocol with `ktask compare` included, is in peer_workloads.c, which
 * scripts/build-peers.sh compiles with clang (LLVM, the backend Swift uses), so that every system runs
 * the same machine code for the inner loop and only the threading differs (gcc's code for the compute
 * loop is ~25% slower here, which would measure compilers, not threading).
 *
 * Protocol: the peer is started as `PEER WORKLOAD SIZE` (prefault/init: bytes, compute: items), sets the
 * workload up, prints "ready ITEMS", then for each line "THREADS CHUNK" on stdin runs the job once with
 * THREADS threads in chunks of CHUNK items and prints "SECONDS CHECK" (CHECK: the compute sum, else "ok"),
 * or "error MESSAGE".
 */
#ifndef KTASK_PEER_WORKLOADS_H
#define KTASK_PEER_WORKLOADS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Runs chunk(context, first, end) for chunks [c*chunk, min((c+1)*chunk, items)) on `threads` threads. */
typedef void (*peer_chunk_fn)(void *context, size_t first, size_t end);
void parallel_chunks(size_t items, size_t chunk, int threads, peer_chunk_fn fn, void *context);

/* The workloads and the line protocol (peer_workloads.c); a peer's main() is just this. */
int peer_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
