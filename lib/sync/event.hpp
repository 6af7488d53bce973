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
// `woken` makes it one futex_wake per round of sleepers: without it, a notifier publishing while
// the sleeper it already woke has not run yet (the usual case when both share a core) would make
// a system call on every publication.
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
        // Re-arm: notifiers skip the system call while a wake is already on its way to every
        // sleeper (woken_ == 1); anyone about to sleep clears it, so the next notify wakes it.
        if (woken_.load(std::memory_order_relaxed) != 0) woken_.store(0, std::memory_order_relaxed);
        waiters_.fetch_add(1, std::memory_order_seq_cst);
        return seq_.load(std::memory_order_seq_cst);
    }
    /// Sleeps until notified after prepare(), or for at most `limit`.
    void wait(std::uint32_t ticket, std::chrono::nanoseconds limit) noexcept {
        futex_wait(&seq_, ticket, limit);
    }
    void finish() noexcept { waiters_.fetch_sub(1, std::memory_order_relaxed); }
    /// The futex word, for waiting on several events at once (futex_waitv).
    std::atomic<std::uint32_t>* word() noexcept { return &seq_; }

    /// Wakes every waiter; free when nobody waits, and one system call per round of sleepers
    /// (not one per notify while a woken sleeper has yet to run).
    void notify() noexcept {
        std::atomic_thread_fence(std::memory_order_seq_cst);
        notify_after_fence();
    }
    /// notify() for a caller whose last shared-memory operation was a seq_cst read-modify-write
    /// (such as robust_mutex::unlock): that orders its earlier stores before the waiters check
    /// just as the fence would, so the fence is saved.
    void notify_after_fence() noexcept {
        if (waiters_.load(std::memory_order_relaxed) != 0 &&
            woken_.load(std::memory_order_relaxed) == 0 &&
            woken_.exchange(1, std::memory_order_acq_rel) == 0) {
            seq_.fetch_add(1, std::memory_order_seq_cst);
            futex_wake(&seq_);
        }
    }

private:
    std::atomic<std::uint32_t> seq_{0};
    std::atomic<std::uint32_t> waiters_{0};
    std::atomic<std::uint32_t> woken_{0};
};

static_assert(sizeof(event) == 12, "event is three words in shared memory");

} // namespace shmq::detail
