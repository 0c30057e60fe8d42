/* The C side of bench/ffi_append.rs: appends RECORDS records of 64 bytes back to back into a
 * new log in DIR through the C ABI and prints the ns per append (wal_append, or
 * wal_try_claim + memcpy + wal_commit with MODE "claim"). The writer runs on core 0, the
 * maintainer on core 1 where the machine has two.
 * Usage: ffi_append DIR STAGING_DIR RECORDS append|claim */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wal_recorder.h"

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 5) return 2;
    unsigned long long records = strtoull(argv[3], NULL, 10);
    int claim = strcmp(argv[4], "claim") == 0;
    int two = sysconf(_SC_NPROCESSORS_ONLN) >= 2;
    if (two) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(0, &set);
        sched_setaffinity(0, sizeof set, &set);
    }
    wal_options_t o;
    wal_options_init(&o);
    o.segment_size = 64 << 20;
    o.max_segments = 4;
    o.max_compressed_segments = 2;
    o.staging_dir = argv[2];
    o.core = two ? 1 : -1;
    wal_recorder_t *r;
    if (wal_open(argv[1], &o, &r) != WAL_OK) {
        fprintf(stderr, "wal_open: %s\n", wal_last_error());
        return 1;
    }
    unsigned char payload[64];
    memset(payload, 7, sizeof payload);
    double t = now_ns();
    for (unsigned long long i = 0; i < records; i++) {
        if (claim) {
            wal_claim_t c;
            if (wal_try_claim(r, sizeof payload, &c) != WAL_OK) return 1;
            memcpy(c.data, payload, sizeof payload);
            if (wal_commit(r, &c) < 0) return 1;
        } else if (wal_append(r, payload, sizeof payload) < 0) {
            return 1;
        }
    }
    double ns = (now_ns() - t) / (double)records;
    if (wal_close(r) != WAL_OK) return 1;
    printf("%.2f\n", ns);
    return 0;
}
