/* The bench workloads' inner loops and the peers' line protocol; see peer_workloads.h. */
#define _GNU_SOURCE
#include "peer_workloads.h"
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

enum peer_workload { PEER_PREFAULT, PEER_INIT, PEER_COMPUTE };

struct page_descriptor { /* like the kernel's struct page: 64 bytes */
    uint64_t flags;
    int32_t refcount, mapcount;
    uint64_t mapping, index, lru_next, lru_prev, private_data, memcg_data;
};

struct peer_job {
    enum peer_workload workload;
    size_t items;
    size_t page_size;
    int populate_write; /* prefault: MADV_POPULATE_WRITE works here, else touch one byte per page */
    char *base;         /* prefault: this run's mapping; init: the descriptor table */
    size_t bytes;
    int map_flags;      /* prefault: extra mmap flags (MAP_HUGETLB and its size) */
    int transparent_huge; /* prefault: align to 2 MiB and madvise MADV_HUGEPAGE, as the Swift workload's thp mode */
    char *mapping;      /* prefault: what mmap returned (base may be aligned up inside it) */
    size_t mapping_bytes;
    uint64_t flags;     /* init: this run's generation tag */
    uint64_t sum;       /* compute: the sum of this run */
    int failed_errno;
};

static inline uint64_t peer_mix(uint64_t x) { /* eight rounds of the SplitMix64 finaliser */
    for (int round = 0; round < 8; round++) {
        x += 0x9E3779B97F4A7C15ull;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
        x ^= x >> 31;
    }
    return x;
}

static void peer_chunk(void *context, size_t first, size_t end) {
    struct peer_job *job = (struct peer_job *)context;
    switch (job->workload) {
    case PEER_PREFAULT: {
        char *start = job->base + first * job->page_size;
        if (job->populate_write) {
            if (madvise(start, (end - first) * job->page_size, MADV_POPULATE_WRITE) != 0)
                __atomic_store_n(&job->failed_errno, errno, __ATOMIC_RELAXED);
        } else {
            for (size_t page = 0; page < end - first; page++) ((volatile char *)start)[page * job->page_size] = 1;
        }
        break;
    }
    case PEER_INIT: {
        struct page_descriptor *table = (struct page_descriptor *)job->base;
        for (size_t index = first; index < end; index++) {
            uint64_t address = (uint64_t)(uintptr_t)job->base + index * sizeof(struct page_descriptor);
            struct page_descriptor descriptor = {job->flags, 1, -1, 0, index, address + 32, address + 32, 0, 0};
            table[index] = descriptor;
        }
        break;
    }
    case PEER_COMPUTE: {
        uint64_t total = 0;
        for (size_t item = first; item < end; item++) total += peer_mix(item);
        __atomic_fetch_add(&job->sum, total, __ATOMIC_RELAXED);
        break;
    }
    }
}

static double peer_now(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static char *peer_map(size_t bytes) {
    void *address = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return address == MAP_FAILED ? NULL : (char *)address;
}

/* The prefault mapping in the job's page mode, as KTask.Memory makes it. */
static char *peer_map_pages(struct peer_job *job) {
    job->mapping_bytes = job->bytes + (job->transparent_huge ? job->page_size : 0);
    void *address = mmap(NULL, job->mapping_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | job->map_flags, -1, 0);
    if (address == MAP_FAILED) return NULL;
    job->mapping = (char *)address;
    char *base = job->mapping;
    if (job->transparent_huge) {
        uintptr_t misalignment = (uintptr_t)base % job->page_size;
        if (misalignment) base += job->page_size - misalignment;
        madvise(base, job->bytes, MADV_HUGEPAGE);
    }
    return base;
}

/* One run: set-up (untimed), the timed parallel loop, the check (untimed). Prints the result line. */
static void peer_run_once(struct peer_job *job, int threads, size_t chunk) {
    static uint64_t generation = 0;
    if (job->workload == PEER_PREFAULT) {
        job->base = peer_map_pages(job);
        if (!job->base) { printf("error could not map %zu bytes (errno %d)\n", job->bytes, errno); return; }
    }
    job->flags = ++generation << 32 | 0x2;
    job->sum = 0;
    job->failed_errno = 0;
    double start = peer_now();
    parallel_chunks(job->items, chunk, threads, peer_chunk, job);
    double seconds = peer_now() - start;
    if (job->failed_errno) {
        printf("error faulting in memory failed (errno %d)\n", job->failed_errno);
    } else if (job->workload == PEER_PREFAULT) {
        size_t base_pages = job->bytes / (size_t)sysconf(_SC_PAGESIZE);
        unsigned char *vector = (unsigned char *)malloc(base_pages);
        int resident = vector && mincore(job->base, job->bytes, vector) == 0;
        for (size_t page = 0; resident && page < base_pages; page++) resident = vector[page] & 1;
        free(vector);
        if (resident) printf("%.9f ok\n", seconds); else printf("error a page is not resident after the run\n");
    } else if (job->workload == PEER_INIT) {
        struct page_descriptor *table = (struct page_descriptor *)job->base;
        size_t step = job->items / 4096 ? job->items / 4096 : 1;
        int good = 1;
        for (size_t index = 0; good && index < job->items; index += step)
            good = table[index].flags == job->flags && table[index].index == index;
        good = good && table[job->items - 1].flags == job->flags;
        if (good) printf("%.9f ok\n", seconds); else printf("error a descriptor was not initialised by this run\n");
    } else {
        printf("%.9f %llu\n", seconds, (unsigned long long)job->sum);
    }
    if (job->workload == PEER_PREFAULT) munmap(job->mapping, job->mapping_bytes);
    fflush(stdout);
}

int peer_main(int argc, char **argv) {
    if (argc != 3 && !(argc == 4 && strcmp(argv[1], "prefault") == 0)) {
        fprintf(stderr, "usage: %s prefault|init|compute SIZE [4k|thp|hugetlb-2M|hugetlb-1G]\n", argv[0]);
        return 2;
    }
    struct peer_job job;
    memset(&job, 0, sizeof job);
    job.page_size = (size_t)sysconf(_SC_PAGESIZE);
    unsigned long long size = strtoull(argv[2], NULL, 10);
    if (strcmp(argv[1], "prefault") == 0) {
        job.workload = PEER_PREFAULT;
        const char *pages = argc == 4 ? argv[3] : "4k";
        if (strcmp(pages, "thp") == 0) { job.page_size = 2u << 20; job.transparent_huge = 1; }
        else if (strcmp(pages, "hugetlb-2M") == 0) { job.page_size = 2u << 20; job.map_flags = MAP_HUGETLB | (21 << 26); }
        else if (strcmp(pages, "hugetlb-1G") == 0) { job.page_size = 1u << 30; job.map_flags = MAP_HUGETLB | (30 << 26); }
        else if (strcmp(pages, "4k") != 0) { fprintf(stderr, "unknown pages %s\n", pages); return 2; }
        job.items = size / job.page_size;
        job.bytes = job.items * job.page_size;
        size_t base_page = (size_t)sysconf(_SC_PAGESIZE);
        char *probe = peer_map(base_page);
        job.populate_write = probe && madvise(probe, base_page, MADV_POPULATE_WRITE) == 0;
        if (probe) munmap(probe, base_page);
    } else if (strcmp(argv[1], "init") == 0) {
        job.workload = PEER_INIT;
        job.items = size / sizeof(struct page_descriptor);
        job.bytes = job.items * sizeof(struct page_descriptor);
        job.bytes = (job.bytes + job.page_size - 1) / job.page_size * job.page_size;
        job.base = peer_map(job.bytes);
        /* Faulted in before any run, as the Swift workload does: init measures initialisation, not faults. */
        if (!job.base || madvise(job.base, job.bytes, MADV_POPULATE_WRITE) != 0) {
            if (!job.base) { printf("error could not map %zu bytes\n", job.bytes); return 1; }
            memset(job.base, 0, job.bytes);
        }
    } else if (strcmp(argv[1], "compute") == 0) {
        job.workload = PEER_COMPUTE;
        job.items = size;
    } else {
        fprintf(stderr, "unknown workload %s\n", argv[1]);
        return 2;
    }
    if (job.items == 0) { printf("error size %llu is too small\n", size); return 1; }
    printf("ready %zu\n", job.items);
    fflush(stdout);
    int threads;
    size_t chunk;
    while (scanf("%d %zu", &threads, &chunk) == 2) {
        if (threads < 1 || chunk < 1) { printf("error threads and chunk must be at least 1\n"); fflush(stdout); continue; }
        peer_run_once(&job, threads, chunk);
    }
    return 0;
}

