/* Contract 6 through the C ABI: a C writer thread appends (wal_append and wal_try_claim +
 * wal_commit) across two rollovers under a seccomp filter that kills the process on any
 * system call but write, exit and rt_sigreturn. The filter is the writer thread's own
 * (no TSYNC): the maintainer thread goes on preparing, draining and syncing. The main
 * thread then closes the log and reads it back.
 * Run: ./no_syscall_writer DIR STAGING_DIR RECORDS; prints "ok rollovers=R stalls=S". */
#define _GNU_SOURCE
#include <inttypes.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "wal_recorder.h"

static wal_recorder_t *rec;
static uint64_t records;
static int report[2]; /* pipe: the writer's result */

static int jail(void) {
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_write, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_exit, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_rt_sigreturn, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    };
    struct sock_fprog fprog = {.len = sizeof prog / sizeof prog[0], .filter = prog};
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
           prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog) == 0;
}

/* Runs under the filter: appends, reports through the pipe with write(2), leaves with the
 * thread's own exit(2) (glibc's thread exit would make other system calls). */
static void *writer(void *arg) {
    (void)arg;
    int64_t result[3] = {0, 0, 0};
    if (!jail()) {
        result[0] = -1000;
    } else {
        uint8_t payload[64];
        for (uint64_t seq = 1; seq <= records && result[0] == 0; seq++) {
            memset(payload, (int)(seq & 0xff), sizeof payload);
            memcpy(payload, &seq, sizeof seq);
            int64_t got;
            if (seq % 2) {
                got = wal_append(rec, payload, sizeof payload);
            } else {
                wal_claim_t c;
                got = wal_try_claim(rec, sizeof payload, &c);
                if (got == 0) {
                    memcpy(c.data, payload, sizeof payload);
                    got = wal_commit(rec, &c);
                }
            }
            if (got != (int64_t)seq) result[0] = got < 0 ? got : -2000;
        }
        wal_stats_t s;
        if (result[0] == 0 && wal_stats(rec, &s) == WAL_OK) {
            result[1] = (int64_t)s.rollovers;
            result[2] = (int64_t)s.stalls;
        }
    }
    if (write(report[1], result, sizeof result) != sizeof result) result[0] = -3000;
    syscall(SYS_exit, 0);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s DIR STAGING_DIR RECORDS\n", argv[0]);
        return 2;
    }
    records = strtoull(argv[3], NULL, 10);
    wal_options_t opts;
    wal_options_init(&opts);
    opts.segment_size = 1 << 20;
    opts.staging_dir = argv[2];
    if (wal_open(argv[1], &opts, &rec) != WAL_OK) {
        fprintf(stderr, "wal_open: %s\n", wal_last_error());
        return 1;
    }
    /* Wait (bounded) until the maintainer has both next segments ready: a rollover that
     * found none would wait, and waiting is a system call. */
    wal_stats_t s = {0};
    for (int i = 0; i < 20000 && (wal_stats(rec, &s), s.prepared_ready < 2); i++) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    if (s.prepared_ready < 2) {
        fprintf(stderr, "the maintainer did not prepare two segments in 20 s\n");
        return 1;
    }
    if (pipe(report) != 0) return 1;
    pthread_t t;
    if (pthread_create(&t, NULL, writer, NULL) != 0) return 1;
    int64_t result[3];
    if (read(report[0], result, sizeof result) != sizeof result) {
        fprintf(stderr, "no report from the writer\n");
        return 1;
    }
    if (result[0] != 0) {
        fprintf(stderr, "writer failed: %" PRId64 " (%s)\n", result[0], wal_last_error());
        return 1;
    }
    if (wal_close(rec) != WAL_OK) {
        fprintf(stderr, "wal_close: %s\n", wal_last_error());
        return 1;
    }
    wal_reader_t *rd;
    if (wal_reader_open(argv[1], 1, &rd) != WAL_OK) return 1;
    wal_record_t r;
    uint64_t expect = 1;
    int rc;
    while ((rc = wal_reader_next(rd, &r)) == 1) {
        uint64_t seq;
        memcpy(&seq, r.payload, sizeof seq);
        if (r.seq != expect || seq != expect || r.len != 64) {
            fprintf(stderr, "record %" PRIu64 " differs\n", r.seq);
            return 1;
        }
        expect++;
    }
    wal_reader_close(rd);
    if (rc < 0 || expect != records + 1) {
        fprintf(stderr, "read %" PRIu64 " records of %" PRIu64 "\n", expect - 1, records);
        return 1;
    }
    printf("ok rollovers=%" PRId64 " stalls=%" PRId64 "\n", result[1], result[2]);
    return 0;
}
