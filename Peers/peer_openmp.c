/* `ktask compare`'s OpenMP peer: chunks handed out dynamically, one chunk per claim (schedule(dynamic)). */
#include "peer_workloads.h"

void parallel_chunks(size_t items, size_t chunk, int threads, peer_chunk_fn fn, void *context) {
    long chunks = (long)((items + chunk - 1) / chunk);
    /* The same chunks as ktask's: schedule(dynamic, chunk) over items, written over chunk indices so
       that the body sees whole chunks (one madvise per chunk, one atomic add per chunk). */
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (long index = 0; index < chunks; index++) {
        size_t first = (size_t)index * chunk;
        size_t end = first + chunk < items ? first + chunk : items;
        fn(context, first, end);
    }
}

int main(int argc, char **argv) { return peer_main(argc, argv); }
