// SPDX-License-Identifier: BSL-1.0
// One deadline per call, computed once on steady_clock, so a call's timeout covers every wait
// inside it (the lease and the data), as Python's Queue.get does.
#pragma once

#include <shmq/options.hpp>

#include <algorithm>
#include <chrono>
#include <optional>

namespace shmq::detail {

using clock = std::chrono::steady_clock;

/// How long one sleep may last before the waiter re-checks whether its peers are still alive.
/// Death is noticed within about this long (the README promises 100 ms).
inline constexpr std::chrono::milliseconds liveness_slice{20};

class deadline {
public:
    /// Waits forever.
    deadline() = default;
    /// From a user timeout: nullopt = forever, <= 0 = already expired (but one try is made).
    explicit deadline(const timeout_t& t) {
        if (!t) return;
        double s = t->count();
        // Beyond ~30 years is forever (and converting it would overflow); NaN does not wait.
        if (s > 1e9) return;
        if (!(s > 0)) s = 0;
        at_ = clock::now() + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(s));
    }
    static deadline from(bool block, const timeout_t& t) {
        return block ? deadline(t) : deadline(timeout_t(std::chrono::duration<double>(0)));
    }
    bool forever() const noexcept { return !at_; }
    /// The time point (\pre !forever()).
    clock::time_point at() const noexcept { return *at_; }
    /// This deadline, but no later than `d` from now (a step of a longer wait).
    deadline within(clock::duration d) const noexcept {
        deadline r;
        const auto cap = clock::now() + d;
        r.at_ = at_ && *at_ < cap ? *at_ : cap;
        return r;
    }
    /// This deadline, but no earlier than `d` from now (reading on while progress is made).
    deadline at_least(clock::duration d) const noexcept {
        if (!at_) return *this;
        deadline r;
        const auto floor = clock::now() + d;
        r.at_ = *at_ > floor ? *at_ : floor;
        return r;
    }
    bool expired() const noexcept { return at_ && clock::now() >= *at_; }
    /// The next sleep: the time left, capped at the liveness slice.
    std::chrono::nanoseconds slice() const noexcept {
        if (!at_) return liveness_slice;
        auto left = *at_ - clock::now();
        return std::clamp<std::chrono::nanoseconds>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(left),
            std::chrono::nanoseconds(0), liveness_slice);
    }

private:
    std::optional<clock::time_point> at_;
};

} // namespace shmq::detail
