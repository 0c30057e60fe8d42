/* wal-recorder from C: append records, make them durable, close, read them back.
 * Build (after `cargo build --release -p wal-recorder-ffi`):
 *   cc -std=c11 -I ffi/include examples/c/record_and_read.c \
 *      target/release/libwal_recorder_ffi.a -lpthread -ldl -lm -o record_and_read
 * Run: ./record_and_read DIR [STAGING_DIR] [RECORDS]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wal_recorder.h"

static int fail(const char *what, int64_t code) {
    fprintf(stderr, "%s: error %" PRId64 ": %s\n", what, code, wal_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [STAGING_DIR] [RECORDS]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    uint64_t records = argc > 3 ? strtoull(argv[3], NULL, 10) : 10000;

    /* Bad arguments are errors with a message, never a crash. */
    wal_recorder_t *none = NULL;
    if (wal_open(NULL, NULL, &none) != WAL_EINVAL || none != NULL || wal_last_error()[0] == 0) {
        fprintf(stderr, "wal_open(NULL) was not refused\n");
        return 1;
    }
    if (wal_append(NULL, (const uint8_t *)"x", 1) != WAL_EINVAL) {
        fprintf(stderr, "wal_append(NULL) was not refused\n");
        return 1;
    }

    wal_options_t opts;
    wal_options_init(&opts);
    opts.segment_size = 1 << 20;
    opts.max_segments = 4;
    if (argc > 2) opts.staging_dir = argv[2];

    wal_recorder_t *rec = NULL;
    int rc = wal_open(dir, &opts, &rec);
    if (rc != WAL_OK) return fail("wal_open", rc);
    uint64_t first = wal_last_seq(rec) + 1;
    char payload[64];
    for (uint64_t i = 0; i < records; i++) {
        int n = snprintf(payload, sizeof payload, "event %" PRIu64 " from C", first + i);
        int64_t seq;
        if (i % 2 == 0) {
            seq = wal_append(rec, (const uint8_t *)payload, (size_t)n);
            if (seq < 0) return fail("wal_append", seq);
        } else {
            /* Zero copy: the payload is written in the log's memory, then committed. */
            wal_claim_t claim;
            rc = wal_try_claim(rec, (size_t)n, &claim);
            if (rc != WAL_OK) return fail("wal_try_claim", rc);
            memcpy(claim.data, payload, (size_t)n);
            seq = wal_commit(rec, &claim);
            if (seq < 0) return fail("wal_commit", seq);
            if (wal_commit(rec, &claim) != WAL_EINVAL) {
                fprintf(stderr, "a claim was committed twice\n");
                return 1;
            }
        }
        if ((uint64_t)seq != first + i) {
            fprintf(stderr, "seq %" PRId64 ", expected %" PRIu64 "\n", seq, first + i);
            return 1;
        }
    }
    /* An abandoned claim writes nothing. */
    wal_claim_t dropped;
    rc = wal_try_claim(rec, 32, &dropped);
    if (rc != WAL_OK) return fail("wal_try_claim", rc);
    memset(dropped.data, 0x5a, 32);
    wal_abort_claim(rec, &dropped);
    if (wal_append(rec, NULL, 5) != WAL_EINVAL) {
        fprintf(stderr, "a NULL payload was not refused\n");
        return 1;
    }
    rc = wal_sync(rec);
    if (rc != WAL_OK) return fail("wal_sync", rc);
    uint64_t last = wal_last_seq(rec);
    if (wal_durable_seq(rec) < last) {
        fprintf(stderr, "durable_seq %" PRIu64 " < %" PRIu64 " after wal_sync\n",
                wal_durable_seq(rec), last);
        return 1;
    }
    if (wal_health(rec) != WAL_HEALTH_OK && wal_health(rec) != WAL_HEALTH_DEGRADED) {
        return fail("wal_health", wal_health(rec));
    }
    rc = wal_close(rec);
    if (rc != WAL_OK) return fail("wal_close", rc);

    /* Read back what this run appended. */
    wal_reader_t *rd = NULL;
    rc = wal_reader_open(dir, first, &rd);
    if (rc != WAL_OK) return fail("wal_reader_open", rc);
    wal_record_t r;
    uint64_t expect = first;
    while ((rc = wal_reader_next(rd, &r)) == 1) {
        int n = snprintf(payload, sizeof payload, "event %" PRIu64 " from C", expect);
        if (r.seq != expect || r.len != (uint64_t)n || memcmp(r.payload, payload, (size_t)n) != 0) {
            fprintf(stderr, "record %" PRIu64 " differs\n", r.seq);
            return 1;
        }
        expect++;
    }
    if (rc < 0) return fail("wal_reader_next", rc);
    wal_reader_close(rd);
    if (expect != last + 1) {
        fprintf(stderr, "read up to %" PRIu64 ", appended up to %" PRIu64 "\n", expect - 1, last);
        return 1;
    }
    printf("ok: appended and read back %" PRIu64 " records (%" PRIu64 "..=%" PRIu64 "), time %s\n",
           records, first, last, r.has_time ? "recorded" : "not recorded");
    return 0;
}
