// SPDX-License-Identifier: BSL-1.0
// shmq-soak — producer and consumer processes (see worker.hpp).
#include "worker.hpp"

#include "message.hpp"

#include <chrono>
#include <exception>
#include <random>
#include <thread>

#include <unistd.h>

namespace shmq_soak {

std::int64_t now_ns() noexcept
{
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

namespace {

void beat(worker_record& w, worker_state s) noexcept
{
    w.heartbeat_ns.store(now_ns(), std::memory_order_relaxed);
    w.state.store(s, std::memory_order_relaxed);
}

/// Mostly small messages (the per-message costs), some medium, and 5% larger than half the ring
/// so they are streamed in pieces and wrap the ring often.
std::size_t message_size(std::mt19937_64& rng, std::size_t capacity)
{
    auto pick = [&](std::size_t lo, std::size_t hi) {
        return std::uniform_int_distribution<std::size_t>(lo, hi)(rng);
    };
    std::size_t payload;
    unsigned r = rng() % 100;
    if (r < 70) payload = pick(8, 256);
    else if (r < 95) payload = pick(257, 8192);
    else payload = pick(capacity / 2 + 1, capacity * 2);
    return sizeof(message_header) + payload;
}

} // namespace

void record(ledger& l, const bytes& msg) noexcept
{
    auto& t = l.totals();
    verdict v = check_message(msg);
    if (!v.whole || v.header.slot >= ledger::max_slots || v.header.seq >= ledger::max_seq) {
        t.torn.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    auto& slot = l.slot(v.header.slot);
    if (!slot.used.load() || slot.producer.load() != v.header.producer) {
        t.torn.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    // seq == acked is the message being put right now (it may be visible before put returns);
    // anything beyond it was never handed to shmq.
    if (v.header.seq > slot.acked.load(std::memory_order_acquire))
        t.unsent.fetch_add(1, std::memory_order_relaxed);
    if (!l.mark(v.header.slot, v.header.seq)) {
        t.duplicated.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    t.received.fetch_add(1, std::memory_order_relaxed);
    t.bytes.fetch_add(msg.size(), std::memory_order_relaxed);
}

void producer_main(subject& s, ledger& l, const producer_args& a)
{
    auto& me = l.worker(a.worker);
    auto& slot = l.slot(a.slot);
    auto& flags = l.flags();
    beat(me, ws_start);
    int code = exit_ok;
    try {
        s.attach(true);
        std::mt19937_64 rng(a.seed * 0x9e3779b97f4a7c15 + a.slot);
        bytes msg;
        std::uint64_t seq = 0;
        while (!flags.stop_producing.load(std::memory_order_relaxed)) {
            if (seq == ledger::max_seq) { code = exit_retired; break; }   // runner forks a successor
            // An unbounded put never blocks, so a producer faster than the consumers would grow
            // its backlog without end: hold back as a real application would.
            if (s.backlog_hint() > 256) {
                beat(me, ws_idle);
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
                continue;
            }
            build_message(msg, a.producer, a.slot, seq, message_size(rng, a.capacity));
            beat(me, ws_put);
            slot.in_put.store(1, std::memory_order_relaxed);
            bool done = s.put(msg);
            if (done) slot.acked.store(++seq, std::memory_order_release);
            slot.in_put.store(0, std::memory_order_relaxed);
        }
        beat(me, ws_flush);
        s.producer_exit();
    } catch (const std::exception& e) {
        l.note_error("producer", e.what());
        code = exit_error;
    }
    beat(me, ws_exit);
    ::_exit(code);
}

void consumer_main(subject& s, ledger& l, std::uint32_t worker)
{
    auto& me = l.worker(worker);
    auto& flags = l.flags();
    beat(me, ws_start);
    int code = exit_ok;
    try {
        s.attach(false);
        bytes msg;
        for (;;) {
            bool draining = flags.drain.load(std::memory_order_relaxed);
            beat(me, ws_get);
            me.in_get.store(1, std::memory_order_relaxed);
            bool got;
            try {
                // Timed, so the heartbeat moves while the queue is empty; shorter once draining.
                got = s.get(msg, draining ? 0.5 : 2.0);
            } catch (const shmq::eof_error&) {
                me.in_get.store(0, std::memory_order_relaxed);
                break;   // Pipe: every writer end is gone and nothing is left
            }
            if (!got) {
                me.in_get.store(0, std::memory_order_relaxed);
                if (draining) break;
                continue;
            }
            record(l, msg);
            me.in_get.store(0, std::memory_order_relaxed);
            beat(me, ws_task_done);
            s.task_done();
        }
    } catch (const std::exception& e) {
        l.note_error("consumer", e.what());
        code = exit_error;
    }
    beat(me, ws_exit);
    ::_exit(code);
}

} // namespace shmq_soak
