// SPDX-License-Identifier: BSL-1.0
// shmq-bench — shmq itself, used as an application would use it.
//
//  * "shmq Pipe": Pipe(false) per channel (point to point, like pipe(2)). Bytes go through
//    Connection::send_bytes / recv_bytes_into (no allocation per message); the struct payloads
//    through send<T> / recv<T> (the codec: raw copy for the trivially copyable struct,
//    Boost.Serialization for the struct with strings).
//  * "shmq Queue": one Queue<T>() shared by all producers and consumers (MPMC), unbounded as
//    Python's default: a put never blocks, and when the ring is full the item waits in the
//    producer's backlog for the feeder thread. Bytes travel as std::string (get() returns a new
//    string, as Python's does). A producer ends with close() + join_thread(), so its backlog is
//    delivered (and timed) before it exits.
//  * "shmq SimpleQueue": SimpleQueue<T>: put waits while the ring is full; no feeder.
// Every channel keeps the default options (a 1 MiB ring per direction).
#include "transport.hpp"

#include <shmq/connection.hpp>
#if __has_include(<shmq/queue.hpp>)
#include <shmq/queue.hpp>
#include <shmq/simple_queue.hpp>
#include <shmq/serialization.hpp>   // types sent with Boost.Serialization
#define SHMQ_BENCH_HAVE_QUEUE 1
#endif

#include <boost/serialization/string.hpp>

#include <array>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace shmq_bench {
namespace {

// ---- the struct payloads (python_baseline.py builds the same fields as a tuple) ---------------

/// 64 bytes, trivially copyable: the codec copies it bit for bit.
struct pod_message {
    std::uint64_t seq;
    std::uint32_t end;     // 1 = end marker
    std::uint32_t flags;
    char text[48];
};
static_assert(sizeof(pod_message) == 64 && std::is_trivially_copyable_v<pod_message>,
              "the pod payload is 64 bytes, like the 64 B bytes scenario it is compared with");

/// A struct with strings: Boost.Serialization. Python sends (17, 3.25, "worker-17", "x" * 32).
struct record_message {
    std::int64_t id = 0;   // -1 = end marker
    double value = 0;
    std::string name;
    std::string text;
    template <class Archive> void serialize(Archive& a, unsigned) {
        a & id;
        a & value;
        a & name;
        a & text;
    }
};

/// The producer's message of each payload type, and the consumer's check of one received.
template <class T> struct message;

template <> struct message<std::string> {
    explicit message(std::size_t size) : v(size < 1 ? 1 : size, 'x') {}
    const std::string& get(bool end) {
        v[0] = end ? 'E' : 'x';
        return v;
    }
    static bool is_end(const std::string& s, std::size_t want) {
        if (s.size() != want)
            throw std::runtime_error("received " + std::to_string(s.size()) + " bytes, expected " +
                                     std::to_string(want));
        if (s.size() > 1 && s.back() != 'x') throw std::runtime_error("received a damaged string");
        return s[0] == 'E';
    }
    std::string v;
};

template <> struct message<pod_message> {
    explicit message(std::size_t) : v{} { std::memset(v.text, 'x', sizeof v.text); }
    const pod_message& get(bool end) {
        v.end = end ? 1 : 0;
        ++v.seq;
        return v;
    }
    static bool is_end(const pod_message& m, std::size_t) { return m.end == 1; }
    pod_message v;
};

template <> struct message<record_message> {
    explicit message(std::size_t) {
        v.id = 17;
        v.value = 3.25;
        v.name = "worker-17";
        v.text.assign(32, 'x');
    }
    const record_message& get(bool end) {
        v.id = end ? -1 : 17;
        return v;
    }
    static bool is_end(const record_message& m, std::size_t) {
        if (m.text.size() != 32 || m.name != "worker-17")
            throw std::runtime_error("record arrived damaged");
        return m.id == -1;
    }
    record_message v;
};

// ---- shmq Pipe ---------------------------------------------------------------------------------

class pipe_channels {
public:
    void open(int n, shmq::options o = {}) {
        for (int i = 0; i < n; ++i) pipes_.push_back(shmq::Pipe(false, o));
    }
    void close() noexcept { pipes_.clear(); }
    shmq::Connection& reader(int ch) { return pipes_.at(static_cast<std::size_t>(ch)).first; }
    shmq::Connection& writer(int ch) { return pipes_.at(static_cast<std::size_t>(ch)).second; }

private:
    std::vector<std::pair<shmq::Connection, shmq::Connection>> pipes_;
};

class shmq_pipe_bytes final : public basic_transport<shmq_pipe_bytes> {
public:
    std::string name() const override { return "shmq Pipe"; }
    role what() const override { return role::shmq; }
    bool shared() const override { return false; }
    void open_channels() { chans_.open(params().channels); }
    void close() noexcept override { chans_.close(); }

    struct writer {
        writer(shmq_pipe_bytes& t, int ch) : c_(t.chans_.writer(ch)), msg_(t.params().size) {}
        void send(bool end) { c_.send_bytes(msg_.get(end)); }
        void finish() {}
        shmq::Connection& c_;
        byte_message msg_;
    };
    struct reader {
        reader(shmq_pipe_bytes& t, int ch)
            : c_(t.chans_.reader(ch)), want_(t.params().size), buf_(touched_buffer(want_)) {}
        bool recv() {
            std::size_t n = c_.recv_bytes_into(buf_);
            return is_end(buf_.data(), n, want_);
        }
        shmq::Connection& c_;
        std::size_t want_;
        std::vector<std::byte> buf_;
    };

private:
    pipe_channels chans_;
};

// The same Pipe, written through a loan (one copy into the ring) and read in place with
// recv_view: the like-for-like peer of cpp-ipc, whose receiver of a message over 64 bytes gets a
// buffer pointing into its shared chunk store instead of a copy (transport_cpp_ipc.cpp). From
// 1 KiB up to the largest loan (half the ring); the consumer's work is the same as every other
// reader's here (the length and the last byte). A 4 MiB ring (options::capacity), as in the
// loan section, so that a 1 MiB message is one loan.
class shmq_pipe_view final : public basic_transport<shmq_pipe_view> {
    static shmq::options ring() {
        shmq::options o;
        o.capacity = std::size_t{4} << 20;
        return o;
    }

public:
    std::string name() const override { return "shmq Pipe loan/view"; }
    role what() const override { return role::shmq; }
    bool shared() const override { return false; }
    std::string remark(payload, std::size_t, mode) const override { return "4 MiB ring"; }
    std::string unsupported(payload k, std::size_t size, mode) const override {
        if (k != payload::bytes) return "bytes only";
        if (size < 1024) return "from 1 KiB (below it, cpp-ipc copies too)";
        static const std::size_t largest = shmq::Pipe(false, ring()).second.max_loan();
        if (size > largest) return "larger than the largest loan";
        return {};
    }
    void open_channels() { chans_.open(params().channels, ring()); }
    void close() noexcept override { chans_.close(); }

    struct writer {
        writer(shmq_pipe_view& t, int ch) : c_(t.chans_.writer(ch)), msg_(t.params().size) {}
        void send(bool end) {
            const auto bytes = msg_.get(end);
            shmq::Connection::Loan loan = c_.loan(bytes.size());
            std::memcpy(loan.bytes().data(), bytes.data(), bytes.size());
            loan.commit();
        }
        void finish() {}
        shmq::Connection& c_;
        byte_message msg_;
    };
    struct reader {
        reader(shmq_pipe_view& t, int ch) : c_(t.chans_.reader(ch)), want_(t.params().size) {}
        bool recv() {
            const shmq::Connection::View v = c_.recv_view();
            return is_end(v.bytes().data(), v.bytes().size(), want_);
        }
        shmq::Connection& c_;
        std::size_t want_;
    };

private:
    pipe_channels chans_;
};

template <class T>
class shmq_pipe_typed final : public basic_transport<shmq_pipe_typed<T>> {
public:
    std::string name() const override { return "shmq Pipe"; }
    transport::role what() const override { return transport::role::shmq; }
    bool shared() const override { return false; }
    std::string unsupported(payload, std::size_t, mode) const override { return {}; }
    void open_channels() { chans_.open(this->params().channels); }
    void close() noexcept override { chans_.close(); }

    struct writer {
        writer(shmq_pipe_typed& t, int ch) : c_(t.chans_.writer(ch)), msg_(t.params().size) {}
        void send(bool end) { c_.send(msg_.get(end)); }
        void finish() {}
        shmq::Connection& c_;
        message<T> msg_;
    };
    struct reader {
        reader(shmq_pipe_typed& t, int ch) : c_(t.chans_.reader(ch)), want_(t.params().size) {}
        bool recv() { return message<T>::is_end(c_.template recv<T>(), want_); }
        shmq::Connection& c_;
        std::size_t want_;
    };

private:
    pipe_channels chans_;
};

// ---- shmq Queue / SimpleQueue ------------------------------------------------------------------

#ifdef SHMQ_BENCH_HAVE_QUEUE
template <class Family, class T>
class shmq_queue_typed final : public basic_transport<shmq_queue_typed<Family, T>> {
    using Q = typename Family::template type<T>;
public:
    explicit shmq_queue_typed(std::string name) : name_(std::move(name)) {}
    std::string name() const override { return name_; }
    transport::role what() const override { return transport::role::shmq; }
    bool shared() const override { return true; }
    std::string unsupported(payload, std::size_t, mode) const override { return {}; }
    std::string remark(payload, std::size_t size, mode m) const override {
        if (m == mode::latency || !Family::bounded) return {};
        return "Queue(maxsize=" + std::to_string(queue_maxsize(size)) + ")";
    }
    void open_channels() {
        // Created before fork: every child inherits the anonymous queue.
        for (int i = 0; i < this->params().channels; ++i)
            queues_.push_back(Family::template make<T>(this->params().latency ? 0 : queue_maxsize(this->params().size)));
    }
    void close() noexcept override { queues_.clear(); }

    struct writer {
        writer(shmq_queue_typed& t, int ch)
            : q_(t.queues_.at(static_cast<std::size_t>(ch))), msg_(t.params().size) {}
        void send(bool end) { q_.put(msg_.get(end)); }
        void finish() {
            // A Queue producer may still hold a backlog: deliver it before the child _exits.
            if constexpr (requires(Q& q) { q.join_thread(); }) {
                q_.close();
                q_.join_thread();
            }
        }
        Q& q_;
        message<T> msg_;
    };
    struct reader {
        reader(shmq_queue_typed& t, int ch)
            : q_(t.queues_.at(static_cast<std::size_t>(ch))), want_(t.params().size) {}
        bool recv() { return message<T>::is_end(q_.get(), want_); }
        Q& q_;
        std::size_t want_;
    };

private:
    std::string name_;
    std::vector<Q> queues_;
};
#endif

/// One transport name, one implementation per payload kind (Queue<std::string>, Queue<pod>...).
class by_kind final : public transport {
public:
    by_kind(std::unique_ptr<transport> bytes, std::unique_ptr<transport> pod,
            std::unique_ptr<transport> record)
        : impl_{std::move(bytes), std::move(pod), std::move(record)} {}

    std::string name() const override { return impl_[0]->name(); }
    role what() const override { return role::shmq; }
    bool shared() const override { return impl_[0]->shared(); }
    std::string unsupported(payload k, std::size_t size, mode m) const override {
        const auto& i = impl_[static_cast<int>(k)];
        return i ? i->unsupported(k, size, m) : std::string("payload not supported");
    }
    std::string remark(payload k, std::size_t size, mode m) const override {
        const auto& i = impl_[static_cast<int>(k)];
        return i ? i->remark(k, size, m) : std::string();
    }
    void open(const channel_params& p) override {
        cur_ = impl_[static_cast<int>(p.kind)].get();
        cur_->open(p);
    }
    std::uint64_t produce(int ch, child_context& cx) override { return cur_->produce(ch, cx); }
    std::uint64_t consume(int ch, child_context& cx) override { return cur_->consume(ch, cx); }
    std::size_t ping(int tx, int rx, child_context& cx) override { return cur_->ping(tx, rx, cx); }
    void pong(int rx, int tx, child_context& cx) override { cur_->pong(rx, tx, cx); }
    void close() noexcept override {
        if (cur_) cur_->close();
        cur_ = nullptr;
    }

private:
    std::array<std::unique_ptr<transport>, 3> impl_;
    transport* cur_ = nullptr;
};

#ifdef SHMQ_BENCH_HAVE_QUEUE
// Throughput runs use Queue(maxsize) (see queue_maxsize); latency runs Queue(), as users would.
struct queue_family {
    static constexpr bool bounded = true;
    template <class T> using type = shmq::Queue<T>;
    template <class T> static shmq::Queue<T> make(std::size_t maxsize) { return shmq::Queue<T>(maxsize); }
};
struct simple_queue_family {
    static constexpr bool bounded = false;
    template <class T> using type = shmq::SimpleQueue<T>;
    template <class T> static shmq::SimpleQueue<T> make(std::size_t) { return shmq::SimpleQueue<T>(); }
};

template <class Family>
std::unique_ptr<transport> make_queue(const char* name) {
    return std::make_unique<by_kind>(std::make_unique<shmq_queue_typed<Family, std::string>>(name),
                                     std::make_unique<shmq_queue_typed<Family, pod_message>>(name),
                                     std::make_unique<shmq_queue_typed<Family, record_message>>(name));
}
#endif

} // namespace

std::vector<std::unique_ptr<transport>> make_shmq_transports() {
    std::vector<std::unique_ptr<transport>> v;
    v.push_back(std::make_unique<by_kind>(std::make_unique<shmq_pipe_bytes>(),
                                          std::make_unique<shmq_pipe_typed<pod_message>>(),
                                          std::make_unique<shmq_pipe_typed<record_message>>()));
    v.push_back(std::make_unique<shmq_pipe_view>());
#ifdef SHMQ_BENCH_HAVE_QUEUE
    v.push_back(make_queue<queue_family>("shmq Queue"));
    v.push_back(make_queue<simple_queue_family>("shmq SimpleQueue"));
#endif
    return v;
}

} // namespace shmq_bench
