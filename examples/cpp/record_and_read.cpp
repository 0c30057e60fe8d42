// wal-recorder from C++17: append, sync, close, read back; errors as exceptions.
// Build (after `cargo build --release -p wal-recorder-ffi`), in one line:
//   c++ -std=c++17 -I ffi/include examples/cpp/record_and_read.cpp
//       target/release/libwal_recorder_ffi.a -lpthread -ldl -lm -o record_and_read_cpp
// Run: ./record_and_read_cpp DIR [STAGING_DIR] [RECORDS]
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "wal_recorder.hpp"

int main(int argc, char **argv) {
    if (argc < 2) {
        std::cerr << "usage: " << argv[0] << " DIR [STAGING_DIR] [RECORDS]\n";
        return 2;
    }
    const std::string dir = argv[1];
    const uint64_t records = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 10000;
    try {
        // A bad argument is an exception with the library's message.
        try {
            wal::Recorder::open("", wal::Options().segment_size(1));
            std::cerr << "a segment size of 1 byte was accepted\n";
            return 1;
        } catch (const wal::Error &e) {
            if (e.code() != WAL_ECONFIG || std::string(e.what()).empty()) throw;
        }
        wal::Options opts;
        opts.segment_size(1 << 20).max_segments(4);
        if (argc > 2) opts.staging_dir(argv[2]);
        auto rec = wal::Recorder::open(dir, opts);
        const uint64_t first = rec.last_seq() + 1;
        for (uint64_t i = 0; i < records; i++) {
            std::string payload = "event " + std::to_string(first + i) + " from C++";
            uint64_t seq;
            if (i % 2 == 0) {
                seq = rec.append(payload);
            } else {  // zero copy: written in the log's memory, then committed
                wal::Claim claim = rec.try_claim(payload.size());
                std::memcpy(claim.data(), payload.data(), claim.size());
                seq = claim.commit();
            }
            if (i == 0) {  // a claim destroyed without commit writes nothing
                wal::Claim dropped = rec.try_claim(16);
                std::memset(dropped.data(), 0x5a, dropped.size());
            }
            if (seq != first + i) {
                std::cerr << "unexpected sequence number\n";
                return 1;
            }
        }
        rec.sync();
        const uint64_t last = rec.last_seq();
        if (rec.durable_seq() < last) {
            std::cerr << "not durable after sync\n";
            return 1;
        }
        rec.close();

        auto rd = wal::Reader::open_at(dir, first);
        uint64_t expect = first;
        while (auto r = rd.next()) {
            std::string want = "event " + std::to_string(expect) + " from C++";
            if (r->seq != expect || r->payload != want) {
                std::cerr << "record " << r->seq << " differs\n";
                return 1;
            }
            expect++;
        }
        if (expect != last + 1) {
            std::cerr << "read up to " << expect - 1 << ", appended up to " << last << "\n";
            return 1;
        }
        // The same records through a tailer, delivered to a callback in order.
        const char *staging = argc > 2 ? argv[2] : "/dev/shm";
        auto tail = wal::Tailer::open(dir, wal::TailerOptions().start_seq(first).staging_dir(staging));
        uint64_t next = first;
        bool in_order = true;
        while (next <= last) {
            tail.poll_each([&](const wal::Record &r) {
                in_order = in_order && r.seq == next;
                next++;
                return true;
            });
        }
        if (!in_order || tail.next(std::chrono::milliseconds(1))) {
            std::cerr << "the tailer delivered other records\n";
            return 1;
        }
        std::cout << "ok: appended and read back " << records << " records (" << first
                  << "..=" << last << ")\n";
    } catch (const wal::Error &e) {
        std::cerr << "error " << e.code() << ": " << e.what() << "\n";
        return 1;
    }
    return 0;
}
