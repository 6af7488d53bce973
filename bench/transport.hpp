// SPDX-License-Identifier: BSL-1.0
// shmq-bench — the one interface every transport implements, and the loops that drive it.
//
// A transport carries messages over numbered one-way channels. The parent opens the channels
// (before fork), forked children produce, consume, ping or pong on them, and the parent closes
// them once every child is gone. Throughput: each producer sends messages until the harness
// raises the stop flag, then one end marker; each consumer receives until it gets an end
// marker. Latency: one pinger sends a message and waits for the echo, one ponger echoes.
//
// Transports written in C++ derive from basic_transport<Derived> and supply two small classes,
//     Derived::writer(Derived&, int channel)   void send(bool end);  void finish();
//     Derived::reader(Derived&, int channel)   bool recv();          // true = end marker
// so the per-message loop is compiled once per transport with no virtual call inside it.
// Constructors of writer/reader allocate and touch every buffer before the start barrier, so
// page faults are not timed. A transport that runs elsewhere (the Python baseline) overrides
// external()/run_external() instead.
#pragma once

#include "common.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace shmq_bench {

/// What a forked child sees of the harness: the start barrier, the stop flag, the latency budget.
class child_context {
public:
    /// Tells the parent this child is ready, then waits for the start signal (bounded: 60 s).
    /// Throws std::runtime_error if the parent never gives it.
    virtual void wait_for_start() = 0;
    /// True once the parent asks producers to stop. A relaxed load of a line nobody writes until
    /// then: it stays in this core's cache, so checking it per message costs about a nanosecond.
    bool stopped() const noexcept { return stop_->load(std::memory_order_relaxed) != 0; }

    std::int64_t latency_budget_ns = 0;   ///< how long a pinger measures
    std::uint64_t* histogram = nullptr;   ///< where a pinger counts round trips (latency_histogram)

protected:
    explicit child_context(const std::atomic<std::uint32_t>* stop) : stop_(stop) {}
    ~child_context() = default;

private:
    const std::atomic<std::uint32_t>* stop_;
};

struct channel_params {
    payload kind = payload::bytes;
    std::size_t size = 64;   ///< bytes per message (bytes payload)
    int channels = 1;
    bool latency = false;    ///< a ping-pong run (at most one message in flight)
};

/// Queue(maxsize) for throughput runs, in C++ and Python alike. A throughput run's producers
/// always outrun its consumers, so an unbounded queue would grow a backlog for as long as they
/// run; bounded, put waits instead. Deep enough (about 1 MiB of messages, at most 16384) that
/// producers never wait while consumers are busy.
std::size_t queue_maxsize(std::size_t message_size);

struct run_settings;

class transport {
public:
    enum class role { baseline, ceiling, shmq };

    virtual ~transport() = default;
    virtual std::string name() const = 0;
    virtual role what() const = 0;
    /// True when N producers and N consumers share one channel (a queue: MPMC); false when each
    /// producer has its own channel to its own consumer (point to point: pipe, socket, SPSC).
    virtual bool shared() const = 0;
    /// Empty when this transport runs the scenario; otherwise why it does not.
    virtual std::string unsupported(payload kind, std::size_t size, mode m) const {
        (void)size; (void)m;
        return kind == payload::bytes ? std::string() : "bytes only";
    }
    /// How this scenario is carried when that needs saying (socket type, queue slots), or empty.
    virtual std::string remark(payload, std::size_t, mode) const { return {}; }

    /// Parent, before fork: creates the channels. Throws on failure.
    virtual void open(const channel_params&) { throw std::logic_error("open: not a local transport"); }
    /// Child: produce on `ch` until stopped, then an end marker. Returns messages sent.
    virtual std::uint64_t produce(int, child_context&) { throw std::logic_error("produce"); }
    /// Child: consume from `ch` until an end marker. Returns messages received (marker excluded).
    virtual std::uint64_t consume(int, child_context&) { throw std::logic_error("consume"); }
    /// Child: round trips out on `tx`, back on `rx`, for the latency budget. Returns how many.
    virtual std::size_t ping(int, int, child_context&) { throw std::logic_error("ping"); }
    /// Child: echoes `rx` to `tx` until an end marker.
    virtual void pong(int, int, child_context&) { throw std::logic_error("pong"); }
    /// Parent, after every child has ended: releases the channels (and any names). Never throws.
    virtual void close() noexcept {}

    /// True for transports that run a whole scenario themselves (the Python script).
    virtual bool external() const { return false; }
    virtual run_result run_external(const scenario&, const run_settings&) { return {}; }
};

template <class Derived>
class basic_transport : public transport {
public:
    void open(const channel_params& p) override {
        params_ = p;
        static_cast<Derived&>(*this).open_channels();
    }

    std::uint64_t produce(int ch, child_context& cx) final {
        typename Derived::writer w(self(), ch);
        cx.wait_for_start();
        std::uint64_t n = 0;
        while (!cx.stopped()) {
            w.send(false);
            ++n;
        }
        w.send(true);
        w.finish();
        return n;
    }

    std::uint64_t consume(int ch, child_context& cx) final {
        typename Derived::reader r(self(), ch);
        cx.wait_for_start();
        std::uint64_t n = 0;
        while (!r.recv()) ++n;
        return n;
    }

    std::size_t ping(int tx, int rx, child_context& cx) final {
        typename Derived::writer w(self(), tx);
        typename Derived::reader r(self(), rx);
        cx.wait_for_start();
        // Warm-up: first touches of rings and socket buffers, and the scheduler's first guesses.
        const std::int64_t warm_end = now_ns() + 20'000'000;
        for (int i = 0; i < 1000 && now_ns() < warm_end; ++i) round_trip(w, r);
        const std::int64_t end = now_ns() + cx.latency_budget_ns;
        std::size_t k = 0;
        for (std::int64_t t1 = 0; t1 < end; ++k) {
            std::int64_t t0 = now_ns();
            round_trip(w, r);
            t1 = now_ns();
            ++cx.histogram[latency_histogram::bucket_of(static_cast<std::uint64_t>(t1 - t0))];
        }
        w.send(true);
        w.finish();
        return k;
    }

    void pong(int rx, int tx, child_context& cx) final {
        typename Derived::reader r(self(), rx);
        typename Derived::writer w(self(), tx);
        cx.wait_for_start();
        while (!r.recv()) w.send(false);
        w.finish();
    }

protected:
    const channel_params& params() const noexcept { return params_; }

private:
    Derived& self() noexcept { return static_cast<Derived&>(*this); }
    template <class W, class R> static void round_trip(W& w, R& r) {
        w.send(false);
        if (r.recv()) throw std::runtime_error("ping: got an end marker as the echo");
    }

    channel_params params_;
};

/// The producer's message for bytes payloads: `size` bytes, the first byte says "end marker".
class byte_message {
public:
    explicit byte_message(std::size_t size) : buf_(size < 1 ? 1 : size, std::byte{'x'}) {
        buf_[0] = std::byte{0};
    }
    std::span<const std::byte> get(bool end) noexcept {
        buf_[0] = end ? std::byte{1} : std::byte{0};
        return buf_;
    }
    std::size_t size() const noexcept { return buf_.size(); }

private:
    std::vector<std::byte> buf_;
};

/// A consumer's check of one received bytes message: its length and its last byte (a cheap
/// guard against a transport that delivers the right count of wrong bytes). Throws if wrong.
inline bool is_end(const std::byte* data, std::size_t got, std::size_t want) {
    if (got != want)
        throw std::runtime_error("received " + std::to_string(got) + " bytes, expected " +
                                 std::to_string(want));
    if (got > 1 && data[got - 1] != std::byte{'x'})
        throw std::runtime_error("received a message whose last byte is wrong");
    return data[0] == std::byte{1};
}

/// A zeroed buffer whose pages are all touched (so the timed loop takes no page fault).
inline std::vector<std::byte> touched_buffer(std::size_t n) { return std::vector<std::byte>(n); }

// The transports (one file each; see there for how each one frames and waits).
std::unique_ptr<transport> make_pipe_transport();
std::unique_ptr<transport> make_socketpair_transport();
std::unique_ptr<transport> make_message_queue_transport();
/// The lock-free SPSC ring (the ceiling), or the same ring making shmq's locked instructions
/// around each message (with_leases: 64 B only; transport_spsc.cpp).
std::unique_ptr<transport> make_spsc_transport(bool with_leases = false);
/// Null unless the runner was built with --cpp-ipc=DIR (transport_cpp_ipc.cpp).
std::unique_ptr<transport> make_cpp_ipc_transport();
std::vector<std::unique_ptr<transport>> make_shmq_transports();
std::vector<std::unique_ptr<transport>> make_python_transports();

} // namespace shmq_bench
