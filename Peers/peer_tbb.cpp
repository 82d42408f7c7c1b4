// `ktask compare`'s oneTBB peer: parallel_for over the chunks in an arena of THREADS threads.
#include "peer_workloads.h"
#include <map>
#include <memory>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>
#include <tbb/task_arena.h>

extern "C" void parallel_chunks(size_t items, size_t chunk, int threads, peer_chunk_fn fn, void *context) {
    // One arena per thread count, kept across runs, as an application would keep it (its workers stay warm).
    static std::map<int, std::unique_ptr<tbb::task_arena>> arenas;
    auto &arena = arenas[threads];
    if (!arena) arena = std::make_unique<tbb::task_arena>(threads);
    size_t chunks = (items + chunk - 1) / chunk;
    arena->execute([&] {
        // simple_partitioner with grain 1: exactly one of ktask's chunks per task.
        tbb::parallel_for(tbb::blocked_range<size_t>(0, chunks, 1), [&](const tbb::blocked_range<size_t> &range) {
            for (size_t index = range.begin(); index != range.end(); ++index) {
                size_t first = index * chunk;
                fn(context, first, first + chunk < items ? first + chunk : items);
            }
        }, tbb::simple_partitioner());
    });
}

int main(int argc, char **argv) { return peer_main(argc, argv); }
