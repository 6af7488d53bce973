// SPDX-License-Identifier: BSL-1.0
// One thread of this process at a time per handle, for what a handle lends out (the channel's
// loan and view, channel.hpp). The turn lives in the handle (process memory), but it is owned
// by a process, not a thread: a loan taken by one thread may be committed by another. That also
// makes it safe across fork: a child forked while one of its parent's threads held the turn
// finds the parent's pid in it, and since no thread of the child can ever give that turn back,
// the child takes it over (the caller then forgets what the parent had lent, channel.cpp).
#pragma once

#include "deadline.hpp"
#include "liveness.hpp"
#include "sync/futex.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace shmq::detail {

class handle_turn {
public:
    /// Waits for the turn by the deadline (false: timed out). *inherited is set when the turn was
    /// held by the process this one was forked from, and so was taken over.
    bool take(const deadline& until, bool* inherited) noexcept {
        const std::uint32_t me = self_pid();
        // A thread that slept here takes the turn marked contended: it cannot know whether others
        // still sleep, and a give_back that found no mark would leave them asleep.
        std::uint32_t mark = 0;
        for (;;) {
            std::uint32_t h = holder_.load(std::memory_order_acquire);
            if ((h & ~waiters) != me) {   // free, or a parent's that nobody here can give back
                if (holder_.compare_exchange_weak(h, me | mark, std::memory_order_acquire)) {
                    *inherited = (h & ~waiters) != 0;
                    return true;
                }
                continue;
            }
            if (until.expired()) return false;
            // Another thread of this process has it: mark it contended, so that its give_back
            // wakes one sleeper (an uncontended turn costs no system call).
            if (!(h & waiters) &&
                !holder_.compare_exchange_weak(h, h | waiters, std::memory_order_relaxed))
                continue;
            auto limit = std::chrono::nanoseconds(std::chrono::seconds(1));
            if (!until.forever())
                limit = std::min(limit, std::chrono::duration_cast<std::chrono::nanoseconds>(
                                            until.at() - clock::now()));
            futex_wait(&holder_, me | waiters, limit);
            mark = waiters;
        }
    }
    /// Takes over the turn if `parent` (a process this one was forked from) still holds it: true
    /// when the caller now holds it. False when it was taken over already, or is free. A mark of
    /// the parent's sleepers is dropped: they are not in this process.
    bool take_from(std::uint32_t parent) noexcept {
        if (parent == self_pid()) return false;
        std::uint32_t h = holder_.load(std::memory_order_relaxed);
        while ((h & ~waiters) == parent)
            if (holder_.compare_exchange_weak(h, self_pid(), std::memory_order_acquire)) return true;
        return false;
    }
    void give_back() noexcept {
        if (holder_.exchange(0, std::memory_order_release) & waiters) futex_wake(&holder_, 1);
    }

private:
    // Set with the holder's pid while a thread of its process sleeps in take(). Pids stay below
    // pid_max_limit (liveness.hpp), far below this bit.
    static constexpr std::uint32_t waiters = std::uint32_t{1} << 31;
    static_assert(pid_max_limit <= waiters, "a pid must leave the waiters bit free");
    // 0 when free, else the pid of the process one of whose threads holds the turn, with the
    // waiters bit. Written by take/take_from (acquire: what the previous holder lent is visible)
    // and give_back (release; it wakes one sleeper when the bit was set).
    std::atomic<std::uint32_t> holder_{0};
};

} // namespace shmq::detail
