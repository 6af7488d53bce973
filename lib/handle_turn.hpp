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
        for (;;) {
            std::uint32_t h = holder_.load(std::memory_order_acquire);
            if (h != me) {   // free, or a parent's that nobody here can give back
                if (holder_.compare_exchange_weak(h, me, std::memory_order_acquire)) {
                    *inherited = h != 0;
                    return true;
                }
                continue;
            }
            if (until.expired()) return false;
            // Another thread of this process has it; give_back wakes one waiter.
            auto limit = std::chrono::nanoseconds(std::chrono::seconds(1));
            if (!until.forever())
                limit = std::min(limit, std::chrono::duration_cast<std::chrono::nanoseconds>(
                                            until.at() - clock::now()));
            futex_wait(&holder_, me, limit);
        }
    }
    /// Takes over the turn if `parent` (a process this one was forked from) still holds it: true
    /// when the caller now holds it. False when it was taken over already, or is free.
    bool take_from(std::uint32_t parent) noexcept {
        std::uint32_t h = parent;
        return parent != self_pid() &&
               holder_.compare_exchange_strong(h, self_pid(), std::memory_order_acquire);
    }
    void give_back() noexcept {
        holder_.store(0, std::memory_order_release);
        futex_wake(&holder_, 1);
    }

private:
    // 0 when free, else the pid of the process one of whose threads holds the turn. Written by
    // take/take_from (acquire: what the previous holder lent is visible) and give_back (release).
    std::atomic<std::uint32_t> holder_{0};
};

} // namespace shmq::detail
