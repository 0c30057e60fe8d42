// wal-recorder from C++17: a thin RAII layer over the C API (wal_recorder.h).
//
//   auto rec = wal::Recorder::open("/var/log/engine", wal::Options().segment_size(64 << 20));
//   uint64_t seq = rec.append(bytes, len);   // no system call, no allocation
//   rec.sync();                               // everything appended is durable
//   auto rd = wal::Reader::open_at("/var/log/engine", 1);
//   while (auto r = rd.next()) { use(r->seq, r->payload, r->log_time_ns); }
//
// Failures throw wal::Error (what() is the library's message, code() the WAL_E* code);
// durable_seq() and last_seq() never throw. Handles are move-only.
#ifndef WAL_RECORDER_HPP
#define WAL_RECORDER_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "wal_recorder.h"

namespace wal {

/// A failed call: `code()` is the negative WAL_E* code, `what()` the library's message.
class Error : public std::runtime_error {
public:
    Error(int code, const std::string &message) : std::runtime_error(message), code_(code) {}
    int code() const noexcept { return code_; }

private:
    int code_;
};

namespace detail {
[[noreturn]] inline void raise(int code) { throw Error(code, wal_last_error()); }
inline void check(int code) {
    if (code < 0) raise(code);
}
}  // namespace detail

/// Options of Recorder::open, starting from the library's defaults.
class Options {
public:
    Options() { wal_options_init(&raw_); }
    Options &segment_size(uint64_t bytes) { raw_.segment_size = bytes; return *this; }
    Options &max_segments(uint32_t n) { raw_.max_segments = n; return *this; }
    Options &max_compressed_segments(uint32_t n) { raw_.max_compressed_segments = n; return *this; }
    Options &core(int32_t cpu) { raw_.core = cpu; return *this; }
    /// The string must outlive Recorder::open.
    Options &staging_dir(const char *dir) { raw_.staging_dir = dir; return *this; }
    Options &record_time(bool on) { raw_.record_time = on ? 1 : 0; return *this; }
    const wal_options_t *raw() const noexcept { return &raw_; }

private:
    wal_options_t raw_;
};

/// The writer's handle: one thread appends at a time.
class Recorder;

/// A record claimed in the log's own memory (Recorder::try_claim): write `size()` bytes at
/// `data()`, then commit(). Destroyed without commit, it is abandoned (nothing is written).
/// Any other call on the recorder abandons it too.
class Claim {
public:
    Claim(Claim &&o) noexcept : r_(std::exchange(o.r_, nullptr)), c_(o.c_) { o.c_ = {}; }
    Claim &operator=(Claim &&) = delete;
    Claim(const Claim &) = delete;
    Claim &operator=(const Claim &) = delete;
    ~Claim() {
        if (r_ != nullptr) wal_abort_claim(r_, &c_);
    }
    uint8_t *data() noexcept { return c_.data; }
    size_t size() const noexcept { return c_.len; }
    /// Publishes the record; returns its sequence number.
    uint64_t commit() {
        int64_t seq = wal_commit(std::exchange(r_, nullptr), &c_);
        if (seq < 0) detail::raise(static_cast<int>(seq));
        return static_cast<uint64_t>(seq);
    }
    /// Publishes the record with its time (nanoseconds since the Unix epoch).
    uint64_t commit_at(uint64_t time_ns) {
        int64_t seq = wal_commit_at(std::exchange(r_, nullptr), &c_, time_ns);
        if (seq < 0) detail::raise(static_cast<int>(seq));
        return static_cast<uint64_t>(seq);
    }

private:
    friend class Recorder;
    Claim(wal_recorder_t *r, wal_claim_t c) : r_(r), c_(c) {}
    wal_recorder_t *r_;
    wal_claim_t c_;
};

class Recorder {
public:
    static Recorder open(const std::string &dir, const Options &options = Options()) {
        wal_recorder_t *r = nullptr;
        detail::check(wal_open(dir.c_str(), options.raw(), &r));
        return Recorder(r);
    }
    Recorder(Recorder &&o) noexcept : r_(std::exchange(o.r_, nullptr)) {}
    Recorder &operator=(Recorder &&o) noexcept {
        if (this != &o) {
            reset();
            r_ = std::exchange(o.r_, nullptr);
        }
        return *this;
    }
    Recorder(const Recorder &) = delete;
    Recorder &operator=(const Recorder &) = delete;
    /// Closes the log if close() was not called (errors are then lost: call close()).
    ~Recorder() { reset(); }

    /// Appends one record; returns its sequence number.
    uint64_t append(const void *data, size_t len) {
        int64_t seq = wal_append(r_, static_cast<const uint8_t *>(data), len);
        if (seq < 0) detail::raise(static_cast<int>(seq));
        return static_cast<uint64_t>(seq);
    }
    uint64_t append(std::string_view bytes) { return append(bytes.data(), bytes.size()); }
    /// Appends with the record's time (nanoseconds since the Unix epoch).
    uint64_t append_at(uint64_t time_ns, const void *data, size_t len) {
        int64_t seq = wal_append_at(r_, static_cast<const uint8_t *>(data), len, time_ns);
        if (seq < 0) detail::raise(static_cast<int>(seq));
        return static_cast<uint64_t>(seq);
    }
    /// Reserves the next record, of `len` bytes, in the log's own memory (zero copy).
    Claim try_claim(size_t len) {
        wal_claim_t c{};
        detail::check(wal_try_claim(r_, len, &c));
        return Claim(r_, c);
    }
    /// Returns once every record appended so far is durable.
    void sync() { detail::check(wal_sync(r_)); }
    /// Every record up to this survives power loss (no system call).
    uint64_t durable_seq() const noexcept { return wal_durable_seq(r_); }
    uint64_t last_seq() const noexcept { return wal_last_seq(r_); }
    /// WAL_HEALTH_OK, WAL_HEALTH_DEGRADED or WAL_HEALTH_FAILED.
    int health() const {
        int h = wal_health(r_);
        detail::check(h);
        return h;
    }
    /// Persists everything and closes; the handle is empty afterwards.
    void close() {
        if (r_ == nullptr) throw Error(WAL_ECLOSED, "the recorder is closed");
        detail::check(wal_close(std::exchange(r_, nullptr)));
    }

private:
    explicit Recorder(wal_recorder_t *r) : r_(r) {}
    void reset() noexcept {
        if (r_ != nullptr) wal_close(std::exchange(r_, nullptr));
    }
    wal_recorder_t *r_;
};

/// One record; `payload` is valid until the reader's next call.
struct Record {
    uint64_t seq;
    std::string_view payload;
    /// The record's time in a log whose records carry time.
    std::optional<uint64_t> log_time_ns;
};

/// Reads a log in order, hot and cold segments alike.
class Reader {
public:
    /// From sequence number `seq` (0: the first record retained).
    static Reader open_at(const std::string &dir, uint64_t seq = 0) {
        wal_reader_t *r = nullptr;
        detail::check(wal_reader_open(dir.c_str(), seq, &r));
        return Reader(r);
    }
    Reader(Reader &&o) noexcept : r_(std::exchange(o.r_, nullptr)) {}
    Reader &operator=(Reader &&o) noexcept {
        if (this != &o) {
            wal_reader_close(r_);
            r_ = std::exchange(o.r_, nullptr);
        }
        return *this;
    }
    Reader(const Reader &) = delete;
    Reader &operator=(const Reader &) = delete;
    ~Reader() { wal_reader_close(r_); }

    /// The next record, or nullopt at the end of the log.
    std::optional<Record> next() {
        wal_record_t r;
        int got = wal_reader_next(r_, &r);
        detail::check(got);
        if (got == 0) return std::nullopt;
        Record out{r.seq,
                   std::string_view(reinterpret_cast<const char *>(r.payload),
                                    static_cast<size_t>(r.len)),
                   std::nullopt};
        if (r.has_time) out.log_time_ns = r.log_time_ns;
        return out;
    }

private:
    explicit Reader(wal_reader_t *r) : r_(r) {}
    wal_reader_t *r_;
};

/// Options of Tailer::open: where to start, a name to save the position under, how to wait.
class TailerOptions {
public:
    TailerOptions() { wal_tailer_options_init(&raw_); }
    TailerOptions &start_first() { raw_.start = WAL_START_FIRST; return *this; }
    TailerOptions &start_end() { raw_.start = WAL_START_END; return *this; }
    TailerOptions &start_seq(uint64_t seq) { raw_.start = WAL_START_SEQ; raw_.seq = seq; return *this; }
    TailerOptions &start_time(uint64_t time_ns) { raw_.start = WAL_START_TIME; raw_.time_ns = time_ns; return *this; }
    /// Where the reader `name` last committed (needs name()).
    TailerOptions &resume() { raw_.start = WAL_START_RESUME; return *this; }
    /// The string must outlive Tailer::open.
    TailerOptions &name(const char *reader) { raw_.name = reader; return *this; }
    /// The string must outlive Tailer::open.
    TailerOptions &staging_dir(const char *dir) { raw_.staging_dir = dir; return *this; }
    TailerOptions &idle(int strategy, std::chrono::nanoseconds max) {
        raw_.idle = strategy;
        raw_.idle_max_ns = static_cast<uint64_t>(max.count());
        return *this;
    }
    TailerOptions &durable_only(bool on) { raw_.durable_only = on ? 1 : 0; return *this; }
    const wal_tailer_options_t *raw() const noexcept { return &raw_; }

private:
    wal_tailer_options_t raw_;
};

/// Follows a live log (written by a recorder in this or another process).
class Tailer {
public:
    static Tailer open(const std::string &dir, const TailerOptions &options = TailerOptions()) {
        wal_tailer_t *t = nullptr;
        detail::check(wal_tailer_open(dir.c_str(), options.raw(), &t));
        return Tailer(t);
    }
    Tailer(Tailer &&o) noexcept : t_(std::exchange(o.t_, nullptr)) {}
    Tailer &operator=(Tailer &&o) noexcept {
        if (this != &o) {
            wal_tailer_close(t_);
            t_ = std::exchange(o.t_, nullptr);
        }
        return *this;
    }
    Tailer(const Tailer &) = delete;
    Tailer &operator=(const Tailer &) = delete;
    ~Tailer() { wal_tailer_close(t_); }

    /// The next record if one is there now.
    std::optional<Record> poll() {
        wal_record_t r;
        return take(wal_tailer_poll(t_, &r), r);
    }
    /// The next record, waiting at most `timeout`.
    std::optional<Record> next(std::chrono::nanoseconds timeout) {
        wal_record_t r;
        return take(wal_tailer_next(t_, &r, static_cast<uint64_t>(timeout.count())), r);
    }
    /// Calls `f(const Record&)` for each record there now (at most `max`); `f` returns true to
    /// go on. Returns how many were delivered; an exception from `f` is rethrown here.
    template <class F>
    uint64_t poll_each(F &&f, uint64_t max = UINT64_MAX) {
        struct Ctx {
            F *f;
            std::exception_ptr error;
        } ctx{&f, nullptr};
        auto call = [](void *c, const wal_record_t *r) -> int {
            auto *x = static_cast<Ctx *>(c);
            try {
                return (*x->f)(to_record(*r)) ? 0 : 1;
            } catch (...) {
                x->error = std::current_exception();  // never across the C boundary
                return 1;
            }
        };
        int64_t n = wal_tailer_poll_each(t_, call, &ctx, max);
        if (ctx.error) std::rethrow_exception(ctx.error);
        if (n < 0) detail::raise(static_cast<int>(n));
        return static_cast<uint64_t>(n);
    }
    /// Saves a named tailer's position: everything delivered so far is read.
    void commit() { detail::check(wal_tailer_commit(t_)); }

private:
    explicit Tailer(wal_tailer_t *t) : t_(t) {}
    static Record to_record(const wal_record_t &r) {
        Record out{r.seq,
                   std::string_view(reinterpret_cast<const char *>(r.payload),
                                    static_cast<size_t>(r.len)),
                   std::nullopt};
        if (r.has_time) out.log_time_ns = r.log_time_ns;
        return out;
    }
    static std::optional<Record> take(int got, const wal_record_t &r) {
        detail::check(got);
        if (got == 0) return std::nullopt;
        return to_record(r);
    }
    wal_tailer_t *t_;
};

}  // namespace wal

#endif  // WAL_RECORDER_HPP
