// An event count: "wake me when this condition may have changed", for process-shared memory.
//
// Why not boost::interprocess::interprocess_condition: it is a process-shared pthread condvar,
// and glibc's can hang other waiters after a waiter is killed (glibc bug 21422); it also needs a
// mutex held around the wait, which a dead holder would poison. This needs neither: the condition
// lives in the caller's atomics, `seq` only says "look again".
//
// Protocol (Dekker-style; both sides use seq_cst so at least one sees the other):
//   waiter:   t = prepare(); if (!condition()) wait(t, slice); finish();
//   notifier: make condition true (atomic store); notify();
// A notifier that finds no waiter makes no system call. A waiter killed between prepare() and
// finish() leaves `waiters` one too high: later notifies then make a needless futex_wake, which
// costs time, never correctness.
#pragma once

#include "sync/futex.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>

namespace shmq::detail {

class event {
public:
    std::uint32_t prepare() noexcept {
        waiters_.fetch_add(1, std::memory_order_seq_cst);
        return seq_.load(std::memory_order_seq_cst);
    }
    /// Sleeps until notified after prepare(), or for at most `limit`.
    void wait(std::uint32_t ticket, std::chrono::nanoseconds limit) noexcept {
        futex_wait(&seq_, ticket, limit);
    }
    void finish() noexcept { waiters_.fetch_sub(1, std::memory_order_relaxed); }

    /// Wakes every waiter; free when nobody waits.
    void notify() noexcept {
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (waiters_.load(std::memory_order_relaxed) != 0) {
            seq_.fetch_add(1, std::memory_order_seq_cst);
            futex_wake(&seq_);
        }
    }

private:
    std::atomic<std::uint32_t> seq_{0};
    std::atomic<std::uint32_t> waiters_{0};
};

static_assert(sizeof(event) == 8, "event is two words in shared memory");

} // namespace shmq::detail
