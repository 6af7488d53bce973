// SPDX-License-Identifier: BSL-1.0
// Barrier: threading.Barrier's state machine (filling -> draining -> filling, resetting,
// broken) under a robust_mutex, with every party inside wait() recorded in a slot
// (object_layout.hpp). Waiters sleep a slice at a time; after each slice a waiter refreshes its
// heartbeat and looks at the others' heartbeats (loads only). A stale one is probed under the
// mutex: a party that died while filling breaks the barrier (the others get
// broken_barrier_error within about 100 ms); one that died while draining only leaves.
//
// Two differences from threading.Barrier, both forced by processes:
//  * The action runs outside the mutex, in a phase of its own (`acting`): others waiting for the
//    trip keep waiting while it runs (a timeout that passes meanwhile is honoured only if the
//    action fails), as in Python where the action holds the condition's lock.
//  * count is the number of occupied slots: a holder of the mutex that died mid-update is
//    repaired by recounting them.
#include "deadline.hpp"
#include "sync/object_layout.hpp"
#include "sync/object_segment.hpp"
#include "sync/wait_loop.hpp"
#include "sync/waiter_slots.hpp"

#include <shmq/sync.hpp>

namespace shmq {

using detail::area;
using detail::barrier_state;
using detail::segment_kind;

namespace detail {
namespace {

const std::atomic<std::uint32_t>* foreign_of(const std::shared_ptr<void>& keep) noexcept {
    return &static_cast<segment*>(keep.get())->header().foreign_pidns;
}

object_spec spec(std::size_t parties, timeout_t timeout) {
    if (parties == 0 || parties > max_barrier_parties)
        throw value_error("shmq: a Barrier needs 1 to " + std::to_string(max_barrier_parties) +
                          " parties, not " + std::to_string(parties));
    std::int64_t ns = -1;
    if (timeout) {
        const double s = timeout->count();
        ns = !(s > 0) ? 0 : s > 1e9 ? -1 : static_cast<std::int64_t>(s * 1e9);
    }
    return {segment_kind::barrier, sizeof(barrier_state), 0, 0, [parties, ns](void* p) {
                auto* b = static_cast<barrier_state*>(p);
                b->parties = static_cast<std::uint32_t>(parties);
                b->timeout_ns.store(ns, std::memory_order_relaxed);
            }};
}

void set_phase(barrier_state& s, std::uint32_t phase) noexcept {
    s.phase.store(phase, std::memory_order_seq_cst);
    s.changed.notify_after_seq_cst_store();
}

std::uint32_t phase_of(const barrier_state& s) noexcept { return s.phase.load(std::memory_order_acquire); }

/// The barrier's mutex, held for the scope. After a takeover (a holder died inside), slots being
/// filled are dropped (only the holder fills one) and count is recounted from the slots.
class held {
public:
    held(barrier_state& s, const std::atomic<std::uint32_t>* foreign) : s_(s), foreign_(foreign) { lock(); }
    ~held() { if (locked_) s_.mutex.unlock(); }
    held(const held&) = delete;
    held& operator=(const held&) = delete;
    void lock() noexcept {
        if (s_.mutex.lock(deadline(), foreign_) == robust_mutex::result::recovered) repair();
        locked_ = true;
    }
    void unlock() noexcept {
        s_.mutex.unlock();
        locked_ = false;
    }

private:
    void repair() noexcept {
        std::uint32_t n = 0;
        for (auto& slot : s_.slots) {
            const std::uint32_t st = slot.state.load(std::memory_order_relaxed);
            if (st == slot_filling) slot.state.store(slot_free, std::memory_order_relaxed);
            else if (st != slot_free) ++n;
        }
        s_.count.store(n, std::memory_order_relaxed);
    }
    barrier_state& s_;
    const std::atomic<std::uint32_t>* foreign_;
    bool locked_ = false;
};

/// Leaving wait() (normally or not): Python's _exit. Under the mutex.
void leave(barrier_state& s, waiter_slot* slot) noexcept {
    if (!slot || slot->state.load(std::memory_order_relaxed) == slot_free) return;   // reaped
    slot->state.store(slot_free, std::memory_order_release);
    const std::uint32_t n = s.count.load(std::memory_order_relaxed) - 1;
    s.count.store(n, std::memory_order_relaxed);
    const std::uint32_t ph = phase_of(s);
    if (n == 0 && (ph == barrier_draining || ph == barrier_resetting)) set_phase(s, barrier_filling);
}

/// Drops the slots of parties that died (stale heartbeat, then /proc). Under the mutex.
void reap(barrier_state& s, const waiter_slot* mine) noexcept {
    const std::int64_t now = now_ticks();
    bool reaped = false;
    for (auto& slot : s.slots) {
        if (&slot == mine || slot.state.load(std::memory_order_relaxed) == slot_free) continue;
        if (!slot_stale(slot, now) || !slot_owner_dead(slot)) continue;
        slot.state.store(slot_free, std::memory_order_release);
        s.count.store(s.count.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
        reaped = true;
    }
    if (!reaped) return;
    const std::uint32_t ph = phase_of(s);
    if (ph == barrier_filling || ph == barrier_acting)
        set_phase(s, barrier_broken);   // a party that will never arrive (or finish the action)
    else if ((ph == barrier_draining || ph == barrier_resetting) && s.count.load(std::memory_order_relaxed) == 0)
        set_phase(s, barrier_filling);
    else
        s.changed.notify();
}

enum class wake { changed, timed_out, check };

/// Sleeps (mutex released) until `done()` or the deadline, or until another party's heartbeat
/// is stale (then the caller reaps). Refreshes our heartbeat after each slice.
template <class Done>
wake sleep_until(barrier_state& s, held& h, waiter_slot* mine, const deadline& until, Done done) {
    h.unlock();
    const wake w = await<wake>(
        s.changed, until, wake::timed_out,
        [&]() -> std::optional<wake> {
            if (done()) return wake::changed;
            return std::nullopt;
        },
        [&]() -> std::optional<wake> {
            if (mine) heartbeat(*mine);
            if (any_stale(s.slots, mine, now_ticks())) return wake::check;
            return std::nullopt;
        });
    h.lock();
    return w;
}

[[noreturn]] void throw_broken() { throw broken_barrier_error("shmq: the Barrier is broken"); }

} // namespace
} // namespace detail

Barrier::Barrier(std::size_t parties, std::function<void()> action, timeout_t timeout)
    : action_(std::move(action)) {
    auto s = detail::make_object(detail::spec(parties, timeout));
    s_ = area<barrier_state>(s);
    keep_ = std::move(s);
}

Barrier Barrier::create(std::string_view name, std::size_t parties, std::function<void()> action,
                        timeout_t timeout, options opts) {
    auto s = detail::create_object(name, detail::spec(parties, timeout), opts);
    auto* st = area<barrier_state>(s);
    return Barrier(std::move(s), st, std::move(action));
}

Barrier Barrier::open(std::string_view name, std::function<void()> action, const options& opts) {
    auto s = detail::open_object(name, segment_kind::barrier, sizeof(barrier_state), opts);
    auto* st = area<barrier_state>(s);
    if (st->parties == 0 || st->parties > detail::max_barrier_parties)
        throw broken_error("shmq: '" + std::string(name) + "': corrupt Barrier (parties)");
    return Barrier(std::move(s), st, std::move(action));
}

bool Barrier::remove(std::string_view name) noexcept { return detail::segment::remove(name); }

std::size_t Barrier::wait(timeout_t timeout) {
    using namespace detail;
    barrier_state& s = *s_;
    if (!timeout) {
        const std::int64_t ns = s.timeout_ns.load(std::memory_order_relaxed);
        if (ns >= 0) timeout = std::chrono::duration<double>(static_cast<double>(ns) * 1e-9);
    }
    const deadline until(timeout);
    const deadline forever;
    check_lost(keep_);
    held h(s, foreign_of(keep_));

    // Python's _enter: wait while the previous round drains or a reset completes (no timeout,
    // as in Python; bounded by the liveness of the parties still inside).
    for (;;) {
        const std::uint32_t ph = phase_of(s);
        if (ph != barrier_draining && ph != barrier_resetting) break;
        if (sleep_until(s, h, nullptr, deadline(), [&] {
                const std::uint32_t p = phase_of(s);
                return p != barrier_draining && p != barrier_resetting;
            }) == wake::check)
            reap(s, nullptr);
    }
    if (phase_of(s) == barrier_broken) throw_broken();

    const std::uint32_t index = s.count.load(std::memory_order_relaxed);
    waiter_slot* mine = claim_slot(s.slots, index);
    if (!mine) {   // cannot happen while count <= parties <= slots; do not corrupt the count
        set_phase(s, barrier_broken);
        throw broken_barrier_error("shmq: Barrier slot table full");
    }
    s.count.store(index + 1, std::memory_order_relaxed);

    if (index + 1 == s.parties) {
        // The last party: run the action (outside the mutex), then release everyone.
        set_phase(s, barrier_acting);
        if (action_) {
            h.unlock();
            try {
                action_();
            } catch (...) {
                h.lock();
                set_phase(s, barrier_broken);
                leave(s, mine);
                throw;
            }
            h.lock();
        }
        if (phase_of(s) != barrier_acting) {   // aborted, reset, or a party died meanwhile
            leave(s, mine);
            throw_broken();
        }
        s.generation.store(s.generation.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        set_phase(s, barrier_draining);
        leave(s, mine);
        return index;
    }

    const std::uint64_t gen = s.generation.load(std::memory_order_relaxed);
    const auto tripped = [&] { return s.generation.load(std::memory_order_acquire) != gen; };
    bool timed_out = false;
    for (;;) {
        if (tripped()) {
            leave(s, mine);
            check_lost(keep_);   // woken by private memory: nothing tripped
            return index;
        }
        const std::uint32_t ph = phase_of(s);
        if (ph == barrier_broken || ph == barrier_resetting || ph == barrier_draining) {
            leave(s, mine);
            throw_broken();
        }
        if (timed_out && ph == barrier_filling) {
            set_phase(s, barrier_broken);   // threading.Barrier: a timeout breaks the barrier
            leave(s, mine);
            throw_broken();
        }
        // While the action runs, a passed timeout waits for its outcome (see the top).
        const deadline& d = timed_out ? forever : until;
        const wake w = sleep_until(s, h, mine, d, [&] {
            const std::uint32_t p = phase_of(s);
            return tripped() || p == barrier_broken || p == barrier_resetting || p == barrier_draining;
        });
        if (w == wake::check) reap(s, mine);
        if (w == wake::timed_out) timed_out = true;
    }
}

void Barrier::reset() {
    using namespace detail;
    barrier_state& s = *s_;
    held h(s, foreign_of(keep_));
    if (s.count.load(std::memory_order_relaxed) > 0) {
        const std::uint32_t ph = phase_of(s);
        if (ph == barrier_filling || ph == barrier_acting || ph == barrier_broken)
            set_phase(s, barrier_resetting);   // the last party to leave sets filling
        else
            s.changed.notify();
    } else {
        set_phase(s, barrier_filling);
    }
}

void Barrier::abort() {
    detail::held h(*s_, detail::foreign_of(keep_));
    detail::set_phase(*s_, detail::barrier_broken);
}

std::size_t Barrier::parties() const noexcept { return s_->parties; }

std::size_t Barrier::n_waiting() const noexcept {
    return s_->phase.load(std::memory_order_acquire) == detail::barrier_filling
               ? s_->count.load(std::memory_order_acquire)
               : 0;
}

bool Barrier::broken() const noexcept {
    return s_->phase.load(std::memory_order_acquire) == detail::barrier_broken;
}

} // namespace shmq
