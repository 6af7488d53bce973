// SPDX-License-Identifier: BSL-1.0
// shmq-soak — the 2^36-byte Pipe phase (see wrap.hpp).
#include "wrap.hpp"

#include "cleanup.hpp"
#include "worker.hpp"

#include <shmq/shmq.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <new>
#include <random>
#include <thread>
#include <vector>

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

namespace shmq_soak {
namespace {

constexpr std::size_t min_message = 8 << 20, max_message = 16 << 20, stamp_every = 4096;
constexpr std::uint64_t max_messages = 1 << 16;   // bitmap size: 2^39 bytes at 8 MiB each
constexpr std::uint64_t stamp_key = 0x77726170736f616b;

enum role : int { writer = 0, busy_reader = 1, idle_reader = 2 };

/// Shared by the runner and the three children (mapped before the forks).
struct wrap_shared {
    std::atomic<std::uint64_t> sent{0}, sent_bytes{0};   // writer: sends that returned
    std::atomic<std::uint32_t> writer_paused{0};         // writer: target reached, waits
    std::atomic<std::uint32_t> idle_done{0};             // idle reader: its check is over
    std::atomic<std::uint64_t> received{0}, bytes{0};    // readers
    std::atomic<std::uint64_t> duplicated{0}, torn{0}, ready_on_empty{0};   // readers
    std::atomic<std::uint64_t> errors{0};                // any child
    std::atomic<std::uint32_t> error_taken{0};
    char error_text[240]{};                              // the first erring child
    std::atomic<std::int64_t> heartbeat[3]{};            // each child its own
    std::atomic<std::uint64_t> bits[max_messages / 64]{};   // readers: received seqs
};

std::uint64_t stamp(std::uint64_t seq, std::uint64_t k) { return (seq << 32 | k) ^ stamp_key; }

/// Header = (seq, length); then a stamp at every 4 KiB. Patching the stamps costs 4 KiB of
/// writes per 16 MiB, so the writer is not the bottleneck, and a piece of another message
/// anywhere shows up as a wrong stamp.
void stamp_message(std::vector<std::byte>& buf, std::uint64_t seq, std::size_t len)
{
    std::uint64_t head[2] = {seq, len};
    std::memcpy(buf.data(), head, sizeof head);
    for (std::size_t off = stamp_every, k = 1; off + 8 <= len; off += stamp_every, ++k) {
        std::uint64_t s = stamp(seq, k);
        std::memcpy(buf.data() + off, &s, 8);
    }
}

bool message_ok(const std::byte* p, std::size_t len, std::uint64_t& seq)
{
    std::uint64_t head[2];
    if (len < sizeof head) return false;
    std::memcpy(head, p, sizeof head);
    if (head[1] != len || head[0] >= max_messages) return false;
    seq = head[0];
    for (std::size_t off = stamp_every, k = 1; off + 8 <= len; off += stamp_every, ++k) {
        std::uint64_t s;
        std::memcpy(&s, p + off, 8);
        if (s != stamp(seq, k)) return false;
    }
    return true;
}

void note_error(wrap_shared& w, const char* who, const char* what)
{
    w.errors.fetch_add(1);
    if (w.error_taken.exchange(1) == 0)
        std::snprintf(w.error_text, sizeof w.error_text, "%s: %s", who, what);
}

void take(wrap_shared& w, const std::byte* p, std::size_t len)
{
    std::uint64_t seq;
    if (!message_ok(p, len, seq)) { w.torn.fetch_add(1); return; }
    std::uint64_t bit = std::uint64_t{1} << (seq % 64);
    if (w.bits[seq / 64].fetch_or(bit) & bit) { w.duplicated.fetch_add(1); return; }
    w.received.fetch_add(1);
    w.bytes.fetch_add(len);
}

[[noreturn]] void writer_main(wrap_shared& w, shmq::Connection& out, const config& cfg)
{
    int code = 0;
    try {
        std::vector<std::byte> buf(max_message);
        std::mt19937_64 rng(cfg.seed ^ 0x77726170);
        auto send_one = [&] {
            std::size_t len = std::uniform_int_distribution<std::size_t>(min_message, max_message)(rng) & ~std::size_t{7};
            std::uint64_t seq = w.sent.load();
            stamp_message(buf, seq, len);
            out.send_bytes(std::span<const std::byte>(buf.data(), len));
            w.sent_bytes.fetch_add(len);
            w.sent.store(seq + 1);
            w.heartbeat[writer].store(now_ns());
        };
        while (w.sent_bytes.load() < cfg.wrap_bytes && w.sent.load() + 8 < max_messages) send_one();
        // Past the wrap: let the idle reader look at the (now empty) pipe first, then send a few
        // more, which must each arrive exactly once.
        w.writer_paused.store(1);
        while (!w.idle_done.load()) {
            w.heartbeat[writer].store(now_ns());
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        for (int i = 0; i < 4; ++i) send_one();
    } catch (const std::exception& e) {
        note_error(w, "wrap writer", e.what());
        code = 1;
    }
    ::_exit(code);
}

/// busy: reads everything as it comes. idle: reads one message, idles until the writer has
/// passed the target and the pipe is drained, checks that poll says "not ready", then reads on.
[[noreturn]] void reader_main(wrap_shared& w, shmq::Connection& in, bool idle)
{
    int me = idle ? idle_reader : busy_reader;
    int code = 0;
    try {
        std::vector<std::byte> buf(max_message);
        bool idled = !idle;
        for (;;) {
            w.heartbeat[me].store(now_ns());
            if (!idled) {
                // One message through this handle, then idle through the 2^36 bytes.
                if (!in.poll(std::chrono::milliseconds(200))) continue;
                std::size_t n = in.recv_bytes_into(buf);
                take(w, buf.data(), n);
                while (!(w.writer_paused.load() && w.received.load() + w.duplicated.load() +
                                                           w.torn.load() >= w.sent.load())) {
                    w.heartbeat[me].store(now_ns());
                    std::this_thread::sleep_for(std::chrono::milliseconds(50));
                }
                if (in.poll(std::chrono::milliseconds(300))) {
                    w.ready_on_empty.fetch_add(1);
                    note_error(w, "wrap idle reader", "poll() is true on an empty pipe after 2^36 bytes");
                }
                idled = true;
                w.idle_done.store(1);
                continue;
            }
            if (!in.poll(std::chrono::milliseconds(200))) continue;
            std::size_t n = in.recv_bytes_into(buf);
            take(w, buf.data(), n);
        }
    } catch (const shmq::eof_error&) {
    } catch (const std::exception& e) {
        note_error(w, idle ? "wrap idle reader" : "wrap reader", e.what());
        code = 1;
    }
    if (idle) w.idle_done.store(1);
    ::_exit(code);
}

} // namespace

wrap_result run_wrap_phase(const config& cfg)
{
    wrap_result r;
    void* mem = ::mmap(nullptr, sizeof(wrap_shared), PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) { r.errors = 1; r.first_problem = "mmap failed"; return r; }
    auto& w = *new (mem) wrap_shared;
    std::int64_t start = now_ns();
    // Default ring (1 MiB): every 8-16 MiB message is still streamed in pieces, and the phase
    // reaches 2^36 bytes in seconds rather than minutes.
    pid_t pids[3] = {0, 0, 0};
    {
        auto [in, out] = shmq::Pipe(false);
        for (int role_ : {busy_reader, idle_reader, writer}) {
            w.heartbeat[role_].store(now_ns());
            std::fflush(stdout);
            pid_t pid = ::fork();
            if (pid == 0) {
                cleanup::in_child();
                if (role_ == writer) { in.close(); writer_main(w, out, cfg); }
                out.close();
                reader_main(w, in, role_ == idle_reader);
            }
            pids[role_] = pid;
            cleanup::add_child(pid);
        }
    }   // the runner's ends close: EOF reaches the readers when the writer ends
    std::int64_t deadline = start + 240'000'000'000;
    int alive = 3;
    bool killed[3] = {false, false, false};
    std::uint64_t last_report = 0;
    while (alive > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        std::int64_t now = now_ns();
        for (int i = 0; i < 3; ++i) {
            if (pids[i] <= 0) continue;
            if (::waitpid(pids[i], nullptr, WNOHANG) == pids[i]) {
                cleanup::remove_child(pids[i]);
                pids[i] = 0;
                --alive;
                continue;
            }
            if (!killed[i] && (now - w.heartbeat[i].load() > 10'000'000'000 || now > deadline)) {
                killed[i] = true;   // one hang per process, however long its reaping takes
                ++r.hangs;
                if (r.first_problem.empty())
                    r.first_problem = std::string(i == writer ? "writer" : i == idle_reader ? "idle reader" : "reader") +
                                      (now > deadline ? " still running at the phase's 240 s deadline" : " silent for 10 s");
                ::kill(pids[i], SIGKILL);
            }
        }
        std::uint64_t gib = w.sent_bytes.load() >> 30;
        if (gib >= last_report + 8) {
            last_report = gib;
            std::fprintf(stderr, "soak: wrap: %llu GiB sent\n", static_cast<unsigned long long>(gib));
        }
    }
    r.seconds = (now_ns() - start) / 1e9;
    r.sent = w.sent.load();
    r.received = w.received.load();
    r.bytes = w.bytes.load();
    r.duplicated = w.duplicated.load();
    r.torn = w.torn.load();
    r.ready_on_empty = w.ready_on_empty.load();
    r.errors = w.errors.load();
    r.completed = w.sent_bytes.load() >= cfg.wrap_bytes;
    for (std::uint64_t s = 0; s < r.sent; ++s)
        if (!((w.bits[s / 64].load() >> (s % 64)) & 1)) ++r.lost;
    if (r.first_problem.empty() && r.errors) r.first_problem = w.error_text;
    ::munmap(mem, sizeof(wrap_shared));
    return r;
}

} // namespace shmq_soak
