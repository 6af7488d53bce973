// SPDX-License-Identifier: BSL-1.0
// The one way shmq waits: check, spin briefly, then sleep on an event a bounded slice at a time.
//
// A sleep/wake hand-off costs ~20 µs on these machines against ~0.1 µs for a spinning one, so a
// waiter first spins while the other side is likely running, then yields (a peer sharing this core
// gets to run), then sleeps on the event. Every sleep lasts at most one liveness slice, after
// which the caller may look for dead peers; so no wait is unbounded.
#pragma once

#include "deadline.hpp"
#include "sync/event.hpp"
#include "sync/futex.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <sched.h>

namespace shmq::detail {

// How long a waiter spins before it sleeps. A sleep/wake hand-off costs ~20 µs on these
// machines against ~0.1 µs for a spinning one, so spinning this long pays off whenever the other
// side is running; when it is not, the waiter gives up the core after this long.
inline constexpr auto spin_time = std::chrono::microseconds(50);
// The busy part of the spin. Short, because when the other side shares this core it cannot run
// until we yield: a round trip then costs two of these.
inline constexpr auto busy_time = std::chrono::microseconds(2);
// Until when this process believes its cores are oversubscribed (steady_clock ticks). When a
// sched_yield takes as long as a time slice, a task that does not give the core back (not a
// peer, which would be back within tens of µs) was waiting for it: yielding then hands the core
// away for a whole slice, and spinning keeps it from a peer that needs it, so for a while
// waiters go straight from the short busy spin to sleeping, as pipes do.
inline std::atomic<clock::rep> contended_until{0};
inline constexpr auto slow_yield = std::chrono::microseconds(500);
inline constexpr auto contended_period = std::chrono::milliseconds(50);

class spinner {
public:
    /// True while the caller should keep spinning. First a short busy spin (the other side is
    /// usually a few hundred ns from publishing); then sched_yield, so a peer that shares this
    /// core gets to run instead of watching us spin; after spin_time, sleep. On an oversubscribed
    /// machine, no yielding: sleep right after the busy spin.
    bool spin() noexcept {
        if (done_) return false;   // once it says sleep, the caller sleeps (a slice at a time)
        if (busy_) {
            if (busy_spin()) return true;
            busy_ = false;
            if (start_.time_since_epoch().count() < contended_until.load(std::memory_order_relaxed))
                return stop();
            return true;
        }
        const auto before = clock::now();
        if (before - start_ > spin_time) return stop();
        ::sched_yield();
        const auto after = clock::now();
        if (after - before > slow_yield) {
            contended_until.store((after + contended_period).time_since_epoch().count(),
                                  std::memory_order_relaxed);
            return stop();
        }
        return true;
    }

    /// spin()'s busy part alone, also for a look before a full wait (channel::read's short
    /// path): true while it lasts, false once busy_time has passed. One pause between looks.
    /// Backing off exponentially (up to 16 pauses, ~400 ns) was meant to let the other side
    /// publish several records per look, but it added half of a small message's round trip:
    /// the record is there long before the next look.
    bool busy_spin() noexcept {
        if (n_ == 0) start_ = clock::now();
        ++n_;
        cpu_relax();
        return (n_ & 7) != 0 || clock::now() - start_ <= busy_time;
    }

private:
    bool stop() noexcept {
        done_ = true;
        return false;
    }

    unsigned n_ = 0;
    bool busy_ = true;
    bool done_ = false;
    clock::time_point start_{};
};

/// Waits on `ev` until `settled()` returns a result (std::nullopt: not yet) or the deadline
/// passes (then `expired`). After each sleep, `after_sleep()` may end the wait too (dead peers).
/// The notifier side makes settled() true, then calls ev.notify().
/// `seal()`, called between prepare() and the last check, makes notifiers that skip the fence
/// visible (a biased writer, lib/bias.hpp); false caps the sleep at `blind` instead.
template <class Result, class Settled, class AfterSleep, class Seal>
Result await(event& ev, const deadline& until, Result expired, Settled settled,
             AfterSleep after_sleep, Seal seal, std::chrono::nanoseconds blind) {
    spinner spin;
    for (;;) {
        if (std::optional<Result> r = settled()) return *r;
        if (until.expired()) return expired;
        if (spin.spin()) continue;
        const std::uint32_t ticket = ev.prepare();
        const bool sealed = seal();
        std::optional<Result> r = settled();
        if (!r) ev.wait(ticket, sealed ? until.slice() : std::min(until.slice(), blind));
        ev.finish();
        if (r) return *r;
        if (std::optional<Result> r2 = after_sleep()) return *r2;
    }
}

template <class Result, class Settled, class AfterSleep>
Result await(event& ev, const deadline& until, Result expired, Settled settled,
             AfterSleep after_sleep) {
    return await(ev, until, expired, settled, after_sleep, [] { return true; },
                 std::chrono::nanoseconds(0));
}

} // namespace shmq::detail
