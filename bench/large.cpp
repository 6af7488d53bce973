// SPDX-License-Identifier: BSL-1.0
// shmq-bench — LARGE ITEMS: what a Queue<std::string> costs for big items, next to a Pipe.
//
// One producer and one consumer process, forked for every run and pinned to two different CPUs
// like the suite's pairs. Each run moves a fixed volume (1 GiB; 256 MiB with --quick) as items
// of one size, and is timed from the start signal to the consumer's last item. A fixed count,
// not the suite's fixed duration: an unbounded Queue's put never blocks, so a producer running
// for a duration would pile up a backlog as large as its lead, and stopping it would time that
// backlog's delivery and nothing else.
//
//   Pipe          send_bytes / recv_bytes_into one reused buffer: the reference (same bytes,
//                 same ring size, no Queue bookkeeping, no allocation)
//   get()         Queue(maxsize): a new string per item, as Python's get
//   get_into      Queue(maxsize): the consumer's one string, reused
//   unbounded     Queue(): put never blocks; the producer ends with close() + join_thread(), so
//                 whatever waited in its backlog is delivered before the consumer's last item
// maxsize is the suite's (queue_maxsize: about 1 MiB of items, at least 2).
//
// Every blocking call is bounded: put and get take a timeout, the Pipe consumer polls with one
// before each recv, and the parent kills both children when a run outlasts its deadline (for a
// producer stuck in send_bytes or join_thread, which take none), so a hung run costs its timeout
// and says so.
#include "large.hpp"

#include "transport.hpp"   // queue_maxsize

#include <shmq/connection.hpp>
#include <shmq/queue.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace shmq_bench {
namespace {

constexpr std::size_t MiB = std::size_t{1} << 20;
// A child waits this long for the start signal, and each queue call this long for its peer.
const shmq::timeout_t patience = std::chrono::duration<double>(30);

const char* label(large_api a) {
    switch (a) {
    case large_api::pipe: return "Pipe send_bytes/recv_bytes_into";
    case large_api::queue_get: return "Queue get()";
    case large_api::queue_get_into: return "Queue get_into";
    case large_api::unbounded_get_into: return "Queue get_into, unbounded";
    }
    return "?";
}

bool is_queue(large_api a) { return a != large_api::pipe; }
bool bounded(large_api a) { return a != large_api::pipe && a != large_api::unbounded_get_into; }

// Shared by the parent and the two children of one run (an anonymous shared mapping).
struct control {
    std::atomic<int> ready;     // each child adds 1 once its buffers are allocated and touched
    std::atomic<int> go;        // the parent stores 1 (release) to start both
    std::int64_t end_ns;        // consumer: when its last item arrived (read after waitpid)
    std::uint64_t received;     // consumer: items received
    char error[2][224];         // why child 0 (consumer) or 1 (producer) failed; empty if not
};

class shared_control {
public:
    shared_control() {
        void* p = ::mmap(nullptr, sizeof(control), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) throw std::runtime_error(std::string("mmap: ") + std::strerror(errno));
        c_ = new (p) control{};
    }
    ~shared_control() { ::munmap(c_, sizeof(control)); }
    shared_control(const shared_control&) = delete;
    shared_control& operator=(const shared_control&) = delete;
    control& get() const noexcept { return *c_; }

private:
    control* c_;
};

void check_item(std::size_t got, char last, std::size_t want) {
    if (got != want)
        throw std::runtime_error("received " + std::to_string(got) + " bytes, expected " + std::to_string(want));
    if (last != 'x') throw std::runtime_error("received an item whose last byte is wrong");
}

/// Child side: ready, then wait (bounded) for the parent's start.
void start_together(control& c) {
    c.ready.fetch_add(1, std::memory_order_release);
    const auto deadline = clock::now() + std::chrono::seconds(60);
    while (c.go.load(std::memory_order_acquire) == 0) {
        if (clock::now() > deadline) throw std::runtime_error("no start signal within 60 s");
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
}

/// The channel of one run, created before fork so both children inherit it.
struct channel {
    channel(large_api a, std::size_t size) {
        if (a == large_api::pipe) pipe.emplace(shmq::Pipe(false));
        else queue.emplace(bounded(a) ? queue_maxsize(size) : 0);
    }
    std::optional<std::pair<shmq::Connection, shmq::Connection>> pipe;
    std::optional<shmq::Queue<std::string>> queue;
};

void produce(channel& ch, large_api a, std::size_t size, std::size_t items, control& c) {
    const std::string item(size, 'x');   // touched here, before the start
    start_together(c);
    if (a == large_api::pipe) {
        auto& w = ch.pipe->second;
        const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(item.data()), item.size());
        for (std::size_t i = 0; i < items; ++i) w.send_bytes(bytes);
        return;
    }
    auto& q = *ch.queue;
    for (std::size_t i = 0; i < items; ++i) q.put(item, true, patience);
    // An unbounded put may leave items in this process's backlog: deliver them before _exit
    // (which runs no destructor), so the consumer's last get times them too.
    q.close();
    q.join_thread();
}

void consume(channel& ch, large_api a, std::size_t size, std::size_t items, control& c) {
    // The reused buffer is allocated and touched before the start: the steady state of a
    // consumer that keeps one. get() allocates per item by design and starts with nothing.
    std::string reused(a == large_api::queue_get ? 0 : size, 'y');
    start_together(c);
    for (std::size_t i = 0; i < items; ++i) {
        switch (a) {
        case large_api::pipe: {
            auto& r = ch.pipe->first;
            if (!r.poll(patience)) throw std::runtime_error("no item within 30 s");
            const std::size_t n = r.recv_bytes_into(std::as_writable_bytes(std::span<char>(reused)));
            check_item(n, reused[n - 1], size);
            break;
        }
        case large_api::queue_get: {
            const std::string s = ch.queue->get(true, patience);
            check_item(s.size(), s.empty() ? 0 : s.back(), size);
            break;
        }
        case large_api::queue_get_into:
        case large_api::unbounded_get_into:
            ch.queue->get_into(reused, true, patience);
            check_item(reused.size(), reused.empty() ? 0 : reused.back(), size);
            break;
        }
    }
    c.end_ns = now_ns();
    c.received = items;
}

template <class Body> pid_t spawn(control& c, int slot, int cpu, Body body) {
    std::fflush(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (pid > 0) return pid;
    // The runner's interrupt handler is the parent's business (harness.cpp).
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::signal(SIGHUP, SIG_DFL);
    // If the runner dies, so does the child, instead of blocking in a queue forever.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(9);
    int rc = 0;
    try {
        pin_to(cpu);
        body();
    } catch (const std::exception& e) {
        std::snprintf(c.error[slot], sizeof c.error[slot], "%s", e.what());
        rc = 2;
    }
    ::_exit(rc);   // no destructors: the channel and the mapping belong to the parent
}

run_result failed(status st, std::string why) {
    run_result r;
    r.state = st;
    r.note = std::move(why);
    return r;
}

/// One run of one row. Never throws.
run_result run_one(large_api a, std::size_t size, std::size_t items, const std::vector<int>& cpus,
                   double timeout_s) try {
    shared_control area;
    control& c = area.get();
    channel ch(a, size);
    const int cpu_consumer = cpus.empty() ? -1 : cpus[0];
    const int cpu_producer = cpus.empty() ? -1 : cpus[cpus.size() > 1 ? 1 : 0];
    pid_t pids[2] = {-1, -1};
    bool done[2] = {false, false};
    int st[2] = {0, 0};
    // Whatever way this function leaves, no child outlives it.
    struct reaper {
        pid_t* pids;
        bool* done;
        ~reaper() {
            for (int i = 0; i < 2; ++i)
                if (pids[i] > 0 && !done[i]) {
                    ::kill(pids[i], SIGKILL);
                    while (::waitpid(pids[i], nullptr, 0) < 0 && errno == EINTR) {}
                }
        }
    } reap_at_end{pids, done};
    pids[0] = spawn(c, 0, cpu_consumer, [&] { consume(ch, a, size, items, c); });
    pids[1] = spawn(c, 1, cpu_producer, [&] { produce(ch, a, size, items, c); });

    auto poll_children = [&] {
        for (int i = 0; i < 2; ++i)
            if (!done[i] && ::waitpid(pids[i], &st[i], WNOHANG) == pids[i]) done[i] = true;
        for (int i = 0; i < 2; ++i) {
            if (!done[i] || (WIFEXITED(st[i]) && WEXITSTATUS(st[i]) == 0)) continue;
            std::string who = i == 0 ? "consumer: " : "producer: ";
            if (c.error[i][0]) return who + c.error[i];
            if (WIFSIGNALED(st[i])) return who + "killed by signal " + std::to_string(WTERMSIG(st[i]));
            return who + "exit status " + std::to_string(WEXITSTATUS(st[i]));
        }
        return std::string();
    };
    const auto ready_deadline = clock::now() + std::chrono::seconds(30);
    while (c.ready.load(std::memory_order_acquire) < 2) {
        if (auto why = poll_children(); !why.empty()) return failed(status::error, why);
        if (clock::now() > ready_deadline) return failed(status::timeout, "children not ready within 30 s; killed");
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const std::int64_t t0 = now_ns();
    c.go.store(1, std::memory_order_release);
    const auto deadline = clock::now() + std::chrono::duration<double>(timeout_s);
    while (!(done[0] && done[1])) {
        if (auto why = poll_children(); !why.empty()) return failed(status::error, why);
        if (clock::now() > deadline) {
            char buf[64];
            std::snprintf(buf, sizeof buf, "no end within %.0f s; children killed", timeout_s);
            return failed(status::timeout, buf);   // reap_at_end kills them
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (auto why = poll_children(); !why.empty()) return failed(status::error, why);
    if (c.received != items) return failed(status::error, "the consumer got " + std::to_string(c.received) +
                                                               " items of " + std::to_string(items));
    run_result r;
    r.messages = items;
    r.seconds = static_cast<double>(c.end_ns - t0) / 1e9;
    if (r.seconds <= 0) return failed(status::error, "no time measured");
    r.msgs_per_s = static_cast<double>(items) / r.seconds;
    r.bytes_per_s = r.msgs_per_s * static_cast<double>(size);
    return r;
} catch (const std::exception& e) {
    return failed(status::error, e.what());
}

} // namespace

large_report large_bench(int repeat, bool quick, const std::vector<int>& cpus, double timeout_s) {
    large_report rep;
    rep.repeat = repeat;
    rep.cpus = cpus;
    rep.bytes_per_run = quick ? 256 * MiB : 1024 * MiB;
    for (std::size_t size : {1 * MiB, 64 * MiB})
        for (large_api a : {large_api::pipe, large_api::queue_get, large_api::queue_get_into,
                            large_api::unbounded_get_into}) {
            large_row row{a, rep.bytes_per_run / size, {}};
            row.r.sc = {label(a), payload::bytes, size, 1, mode::throughput};
            if (bounded(a)) row.r.note = "Queue(maxsize=" + std::to_string(queue_maxsize(size)) + ")";
            else if (is_queue(a)) row.r.note = "Queue(); close() + join_thread() timed";
            rep.rows.push_back(std::move(row));
        }
    for (int k = 0; k < repeat; ++k)
        for (std::size_t i = 0; i < rep.rows.size(); ++i) {
            auto& row = rep.rows[i];
            std::cerr << "[large " << k + 1 << "/" << repeat << " " << i + 1 << "/" << rep.rows.size() << "] "
                      << row.r.sc.transport << " " << size_label(row.r.sc.size) << " ... " << std::flush;
            run_result x;
            // A row that hung once is not given the chance to cost its timeout again.
            bool hung = false;
            for (const auto& e : row.r.runs) hung = hung || e.state == status::timeout;
            if (hung) x = failed(status::skipped, "an earlier repetition timed out");
            else x = run_one(row.api, row.r.sc.size, row.items, cpus, timeout_s);
            if (x.state == status::ok) {
                char buf[96];
                std::snprintf(buf, sizeof buf, "%.1f items/s  %.2f GB/s", x.msgs_per_s, x.bytes_per_s / 1e9);
                std::cerr << buf << "\n";
            } else {
                std::cerr << to_string(x.state) << ": " << x.note << "\n";
            }
            row.r.runs.push_back(std::move(x));
        }
    for (auto& row : rep.rows) row.r.settle();
    return rep;
}

double large_ratio(const large_report& r, std::size_t size, large_api num, large_api den) {
    auto median = [&](large_api a) {
        for (const auto& row : r.rows)
            if (row.api == a && row.r.sc.size == size && row.r.state == status::ok)
                return row.r.of(&run_result::msgs_per_s).median;
        return std::nan("");
    };
    return median(num) / median(den);
}

} // namespace shmq_bench
