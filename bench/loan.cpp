// SPDX-License-Identifier: BSL-1.0
// shmq-bench --loan: the zero-copy API (Connection::loan / commit, recv_view / release; the same
// on Queue<std::string>: loan / commit, get_view / release) against the copying one
// (send_bytes / recv_bytes_into; put / get_into), with real work on both sides, as a server
// would have: the producer writes every byte of the message (a pattern), the consumer reads
// every byte (a checksum). Copying, the producer writes into its own buffer and send_bytes (put)
// copies it into the ring, the consumer's recv_bytes_into (get_into, into a reused string)
// copies it out and the checksum reads it again; loaned, the producer writes into the ring and
// the consumer reads it there.
//
// Producer and consumer are forked and pinned to two different CPUs; messages of 64 KiB and
// 1 MiB through a 4 MiB ring (a loan is at most half the ring). The Queue is bounded (maxsize
// 64), so a copying producer waits for room as a loaning one does, instead of running ahead
// into its feeder's backlog. Figures: messages per second, median of --repeat runs
// (min .. max), and the ratio loaned / copying. A third row runs the same work through a bare
// ring of slots (bare_ends): the limit of what any zero-copy API could reach here.
#include "loan.hpp"
#include "common.hpp"

#include <shmq/connection.hpp>
#include <shmq/queue.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

namespace shmq_bench {
namespace {

using clk = std::chrono::steady_clock;

// The work: write every byte (producer), read every byte (consumer).
void produce_into(std::byte* p, std::size_t n, std::uint64_t seq) {
    for (std::size_t i = 0; i + 8 <= n; i += 8) {
        const std::uint64_t v = seq * 0x9E3779B97F4A7C15ull + i;
        std::memcpy(p + i, &v, 8);
    }
}
std::uint64_t consume(const std::byte* p, std::size_t n) {
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i + 8 <= n; i += 8) {
        std::uint64_t v;
        std::memcpy(&v, p + i, 8);
        sum += v;
    }
    return sum;
}

// The two ends of one run: a Pipe, or a Queue<std::string> (both ends are the same queue).
struct pipe_ends {
    shmq::Connection r, w;
    explicit pipe_ends(const shmq::options& o) {
        auto p = shmq::Pipe(false, o);
        r = std::move(p.first);
        w = std::move(p.second);
    }
    void close_reader() { r.close(); }
    void close_writer() { w.close(); }
    void send_loaned(std::size_t size, std::uint64_t seq) {
        shmq::Connection::Loan l = w.loan(size);
        produce_into(l.bytes().data(), size, seq);
        l.commit();
    }
    void send_copied(std::vector<std::byte>& buf, std::uint64_t seq) {
        produce_into(buf.data(), buf.size(), seq);
        w.send_bytes(buf);
    }
    void send_end() { w.send_bytes(std::span<const std::byte>()); }
    // The checksum of the next message, or nullopt at the (empty) end message.
    std::optional<std::uint64_t> recv_loaned() {
        shmq::Connection::View v = r.recv_view();
        if (v.bytes().empty()) return std::nullopt;
        return consume(v.bytes().data(), v.bytes().size());
    }
    std::optional<std::uint64_t> recv_copied(std::vector<std::byte>& buf) {
        const std::size_t got = r.recv_bytes_into(buf);
        if (got == 0) return std::nullopt;
        return consume(buf.data(), got);
    }
};

struct queue_ends {
    shmq::Queue<std::string> q;
    std::string text;   // the copying side's reused buffer
    explicit queue_ends(const shmq::options& o) : q(64, o) {}
    void close_reader() {}
    void close_writer() {}
    void send_loaned(std::size_t size, std::uint64_t seq) {
        shmq::Queue<std::string>::Loan l = q.loan(size);
        produce_into(l.bytes().data(), size, seq);
        l.commit();
    }
    void send_copied(std::vector<std::byte>& buf, std::uint64_t seq) {
        text.resize(buf.size());
        produce_into(reinterpret_cast<std::byte*>(text.data()), text.size(), seq);
        q.put(text);
    }
    void send_end() { q.put(std::string()); }
    std::optional<std::uint64_t> recv_loaned() {
        shmq::Queue<std::string>::View v = q.get_view();
        if (v.bytes().empty()) return std::nullopt;
        return consume(v.bytes().data(), v.bytes().size());
    }
    std::optional<std::uint64_t> recv_copied(std::vector<std::byte>&) {
        q.get_into(text);
        if (text.empty()) return std::nullopt;
        return consume(reinterpret_cast<const std::byte*>(text.data()), text.size());
    }
};

// The limit: the same work through a bare ring of fixed slots in shared memory (no lease, no
// record header, no event; the waiting side spins with `pause` and yields now and then, as the
// suite's SPSC ring does). Its loaned rate is what a perfect zero-copy API would reach here, so
// it over the copying API's rate is the most the loaned/copying ratio can be on this machine.
struct bare_ends {
    struct control {
        alignas(64) std::atomic<std::uint64_t> head;   // messages consumed: the consumer's
        alignas(64) std::atomic<std::uint64_t> tail;   // messages published: the producer's
    };
    std::size_t ring_bytes;
    std::size_t slot = 0, slots = 0;
    void* map = nullptr;
    control* c = nullptr;
    std::uint64_t* sizes = nullptr;   // per slot: the message's bytes (0: the end)
    std::byte* ring = nullptr;

    explicit bare_ends(const shmq::options& o) : ring_bytes(o.capacity) {}
    bare_ends(const bare_ends&) = delete;
    ~bare_ends() {
        if (map) ::munmap(map, 4096 + ring_bytes);
    }
    void open(std::size_t size) {   // before fork: both children map the same ring
        slot = size;
        slots = ring_bytes / size;
        if (slots < 2 || slots > (4096 - sizeof(control)) / sizeof(std::uint64_t))
            throw std::runtime_error("bare ring: the sizes table holds 2 to 496 slots");
        map = ::mmap(nullptr, 4096 + ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (map == MAP_FAILED) {
            map = nullptr;
            throw std::runtime_error("mmap");
        }
        c = new (map) control{};
        sizes = reinterpret_cast<std::uint64_t*>(static_cast<std::byte*>(map) + sizeof(control));
        ring = static_cast<std::byte*>(map) + 4096;
    }
    std::byte* room() {   // the producer's next slot, once the consumer has left it
        const std::uint64_t t = c->tail.load(std::memory_order_relaxed);
        for (unsigned spins = 0; t - c->head.load(std::memory_order_acquire) >= slots;) spin_relax(spins);
        return ring + (t % slots) * slot;
    }
    void publish(std::size_t n) {
        const std::uint64_t t = c->tail.load(std::memory_order_relaxed);
        sizes[t % slots] = n;
        c->tail.store(t + 1, std::memory_order_release);
    }
    std::pair<const std::byte*, std::size_t> next() {
        const std::uint64_t h = c->head.load(std::memory_order_relaxed);
        for (unsigned spins = 0; c->tail.load(std::memory_order_acquire) == h;) spin_relax(spins);
        return {ring + (h % slots) * slot, sizes[h % slots]};
    }
    void done() { c->head.store(c->head.load(std::memory_order_relaxed) + 1, std::memory_order_release); }

    void close_reader() {}
    void close_writer() {}
    void send_loaned(std::size_t size, std::uint64_t seq) {
        produce_into(room(), size, seq);
        publish(size);
    }
    void send_copied(std::vector<std::byte>& buf, std::uint64_t seq) {
        produce_into(buf.data(), buf.size(), seq);
        std::memcpy(room(), buf.data(), buf.size());
        publish(buf.size());
    }
    void send_end() {
        room();
        publish(0);
    }
    std::optional<std::uint64_t> recv_loaned() {
        const auto [p, n] = next();
        const std::optional<std::uint64_t> sum = n ? std::optional(consume(p, n)) : std::nullopt;
        done();
        return sum;
    }
    std::optional<std::uint64_t> recv_copied(std::vector<std::byte>& buf) {
        const auto [p, n] = next();
        if (n) std::memcpy(buf.data(), p, n);
        done();
        if (n == 0) return std::nullopt;
        return consume(buf.data(), n);
    }
};

// One run: messages per second over `seconds`, or -1 on failure.
template <class Ends>
double run_once(bool loaned, std::size_t size, double seconds, int cpu_a, int cpu_b) {
    shmq::options o;
    o.capacity = std::size_t{4} << 20;
    Ends ends(o);
    if constexpr (requires { ends.open(size); }) ends.open(size);
    auto* count = static_cast<std::uint64_t*>(
        ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    if (count == MAP_FAILED) throw std::runtime_error("mmap");
    const pid_t producer = ::fork();
    if (producer == 0) {
        ::alarm(30);
        try {
            pin_to(cpu_a);
        } catch (...) {
            ::_exit(1);
        }
        ends.close_reader();
        std::vector<std::byte> buf(size);
        const auto until = clk::now() + std::chrono::duration<double>(seconds);
        std::uint64_t seq = 0;
        try {
            while (clk::now() < until) {
                for (int k = 0; k < 16; ++k, ++seq) {
                    if (loaned) ends.send_loaned(size, seq);
                    else ends.send_copied(buf, seq);
                }
            }
            ends.send_end();
        } catch (...) {
            ::_exit(1);
        }
        ::_exit(0);
    }
    const pid_t consumer = ::fork();
    if (consumer == 0) {
        ::alarm(30);
        try {
            pin_to(cpu_b);
        } catch (...) {
            ::_exit(1);
        }
        ends.close_writer();
        std::vector<std::byte> buf(size);
        std::uint64_t n = 0, sum = 0;
        try {
            for (;;) {
                const std::optional<std::uint64_t> got = loaned ? ends.recv_loaned() : ends.recv_copied(buf);
                if (!got) break;
                sum += *got;
                ++n;
            }
        } catch (...) {
            ::_exit(1);
        }
        count[0] = n;
        count[1] = sum;
        ::_exit(0);
    }
    ends.close_reader();
    ends.close_writer();
    const auto t0 = clk::now();
    int st_p = 0, st_c = 0;
    ::waitpid(producer, &st_p, 0);
    ::waitpid(consumer, &st_c, 0);
    const double dt = std::chrono::duration<double>(clk::now() - t0).count();
    const std::uint64_t n = count[0];
    ::munmap(count, 4096);
    if (!WIFEXITED(st_p) || WEXITSTATUS(st_p) || !WIFEXITED(st_c) || WEXITSTATUS(st_c)) return -1;
    return double(n) / dt;
}

std::string rate(double v) {
    char b[32];
    if (v >= 1e6) std::snprintf(b, sizeof b, "%.2f M", v / 1e6);
    else if (v >= 1e3) std::snprintf(b, sizeof b, "%.2f k", v / 1e3);
    else std::snprintf(b, sizeof b, "%.0f", v);
    return b;
}

} // namespace

int loan_bench(int repeat, bool quick, loan_figures* out) {
    cpu_set_t set;
    CPU_ZERO(&set);
    std::vector<int> cpus;
    if (::sched_getaffinity(0, sizeof set, &set) == 0)
        for (int c = 0; c < CPU_SETSIZE; ++c)
            if (CPU_ISSET(c, &set)) cpus.push_back(c);
    const int a = cpus.empty() ? 0 : cpus[0], b = cpus.size() > 1 ? cpus[1] : a;
    const double seconds = quick ? 0.2 : 1.0;
    std::printf("shmq-bench --loan: producer on CPU %d, consumer on CPU %d, 4 MiB ring, %.1f s runs, "
                "median of %d (min .. max)\n", a, b, seconds, repeat);
    std::printf("  work: the producer writes every byte, the consumer reads every byte\n");
    std::printf("%-24s %-34s %-34s %s\n", "size", "copying", "loaned", "loaned/copying");
    int failed = 0;
    struct scenario {
        const char* name;   // as the ISSUE 12 TARGETS block looks it up (loan.hpp)
        const char* what;
        double (*run)(bool, std::size_t, double, int, int);
    };
    const scenario scenarios[] = {
        {"Pipe", "Pipe  (send/recv_into | loan/view)", &run_once<pipe_ends>},
        {"Queue", "Queue (put/get_into | loan/get_view)", &run_once<queue_ends>},
        {"ring", "bare ring, the limit (memcpy | in place)", &run_once<bare_ends>},
    };
    for (const scenario& sc : scenarios) {
        std::printf("%s\n", sc.what);
        for (std::size_t size : {std::size_t{64} << 10, std::size_t{1} << 20}) {
            const char* label = size >= (1u << 20) ? "  1 MiB" : "  64 KiB";
            std::vector<double> copy, loan;
            for (int i = 0; i < repeat; ++i) {   // interleaved, so drift in the machine hits both
                copy.push_back(sc.run(false, size, seconds, a, b));
                loan.push_back(sc.run(true, size, seconds, a, b));
            }
            if (*std::min_element(copy.begin(), copy.end()) < 0 || *std::min_element(loan.begin(), loan.end()) < 0) {
                std::printf("%-24s a run failed\n", label);
                ++failed;
                continue;
            }
            const spread c = spread_of(copy), l = spread_of(loan);
            char cs[64], ls[64];
            std::snprintf(cs, sizeof cs, "%s/s (%s .. %s)", rate(c.median).c_str(), rate(c.min).c_str(), rate(c.max).c_str());
            std::snprintf(ls, sizeof ls, "%s/s (%s .. %s)", rate(l.median).c_str(), rate(l.min).c_str(), rate(l.max).c_str());
            std::printf("%-24s %-34s %-34s %.2fx\n", label, cs, ls, l.median / c.median);
            if (out) out->rows.push_back({sc.name, size, c.median, l.median});
        }
    }
    return failed ? 1 : 0;
}

} // namespace shmq_bench
