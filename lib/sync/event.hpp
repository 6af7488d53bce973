// SPDX-License-Identifier: BSL-1.0
// An event count: "wake me when this condition may have changed", for process-shared memory.
//
// Why not boost::interprocess::interprocess_condition: it is a process-shared pthread condvar,
// and glibc's can hang other waiters after a waiter is killed (glibc bug 21422); it also needs a
// mutex held around the wait, which a dead holder would poison. This needs neither: the condition
// lives in the caller's atomics, the event only says "look again".
//
// One 32-bit futex word: bit 0 = "someone may sleep on the current value", bits 1..31 = a round
// counter.
//   waiter:   t = prepare(); if (!condition()) wait(t, slice); finish();
//             prepare() sets the sleeper bit (if not set) and issues a seq_cst fence; t is the
//             word with the bit set, the value the waiter sleeps on.
//   notifier: make the condition true (any atomic store); notify():
//             a seq_cst fence, then if the sleeper bit is set, start a new round (counter + 1,
//             bit cleared) and wake every sleeper.
// Why no wake-up is lost (C++ memory model, not x86): the waiter's sleeper-bit RMW is followed by
// a seq_cst fence and then its read of the condition; the notifier's condition store is followed
// by a seq_cst fence and then its read of the word. By the fence rules, either the waiter's read
// sees the condition true (it does not sleep), or the notifier's read sees the bit set (it changes
// the word, so the waiter's futex_wait returns at once or is woken). A second waiter that finds
// the bit already set sleeps on the same value and is woken by the same round.
// Cost: a notifier that finds no sleeper makes no system call; one that does makes one per round,
// however many notifies follow before the sleepers run (the bit is cleared by the first).
// A waiter killed while asleep leaves the bit set: the next notify makes one needless
// futex_wake and clears it. Nothing else is left behind, so waiters may die anywhere.
#pragma once

#include "sync/futex.hpp"
#include "test_hook.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>

namespace shmq::detail {

class event {
public:
    /// Announces a sleeper and returns the value to sleep on. Follow with a check of the
    /// condition, then wait() only if it is still false.
    std::uint32_t prepare() noexcept {
        std::uint32_t v = word_.load(std::memory_order_relaxed);
        while (!(v & sleeper_bit) &&
               !word_.compare_exchange_weak(v, v | sleeper_bit, std::memory_order_relaxed,
                                            std::memory_order_relaxed)) {
        }
        std::atomic_thread_fence(std::memory_order_seq_cst);
        SHMQ_TEST_HOOK("event.prepared");
        return v | sleeper_bit;
    }
    /// Sleeps until notified after prepare(), or for at most `limit`.
    void wait(std::uint32_t ticket, std::chrono::nanoseconds limit) noexcept {
        futex_wait(&word_, ticket, limit);
    }
    /// Nothing to undo (kept so that callers read as prepare / check / wait / finish).
    void finish() noexcept {}
    /// The futex word, for waiting on several events at once (futex_waitv).
    std::atomic<std::uint32_t>* word() noexcept { return &word_; }

    /// Wakes every sleeper; free (a fence and a load) when nobody sleeps. True when this call
    /// started a new round (it found the sleeper bit and cleared it): the channel then also
    /// pokes its file-descriptor pollers (poller.hpp), who keep that bit set while they wait.
    bool notify() noexcept {
        std::atomic_thread_fence(std::memory_order_seq_cst);
        return notify_after_seq_cst_store();
    }
    /// notify() for a notifier whose store that made the condition true was itself seq_cst:
    /// that store, this seq_cst load and the waiter's RMW + fence are then ordered by the single
    /// total order S (the waiter's condition load after its fence sees the store, or this load
    /// sees the sleeper bit), so no fence is needed here. On x86 the seq_cst store is the one
    /// locked instruction the publication costs.
    /// notify() with no fence at all, for a biased writer (lib/bias.hpp): the sleepers run
    /// membarrier after prepare() instead (seal), which orders this load after the store that
    /// made the condition true, or makes that store visible to their check.
    bool notify_unfenced() noexcept { return notify_after_seq_cst_store(); }
    bool notify_after_seq_cst_store() noexcept {
        SHMQ_TEST_HOOK("event.notify");
        std::uint32_t v = word_.load(std::memory_order_seq_cst);
        if (!(v & sleeper_bit)) [[likely]] return false;
        // New round: whoever changes the word first wakes everybody; a concurrent notifier that
        // loses the exchange finds the bit cleared and leaves.
        if (!word_.compare_exchange_strong(v, (v + 2) & ~sleeper_bit, std::memory_order_relaxed,
                                           std::memory_order_relaxed))
            return false;
        futex_wake(&word_);
        return true;
    }

private:
    static constexpr std::uint32_t sleeper_bit = 1;
    std::atomic<std::uint32_t> word_{0};
};

static_assert(sizeof(event) == 4, "event is one futex word in shared memory");

} // namespace shmq::detail
