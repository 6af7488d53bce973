// SPDX-License-Identifier: BSL-1.0
// Condition: an RLock and a table of waiters (object_layout.hpp). A waiter claims a slot while
// it holds the lock, releases the lock, and sleeps on `changed` until notify() marks its slot
// notified or its timeout passes; then it re-acquires the lock (taking it over from a dead
// holder if need be). notify(n) marks the n oldest waiting slots. Why slots rather than counts
// (multiprocessing's sleeping/woken semaphores): a waiter that timed out or died must not absorb
// a notify meant for a live one, and only a slot says who it was.
#include "deadline.hpp"
#include "sync/lock_ops.hpp"
#include "sync/object_layout.hpp"
#include "sync/object_segment.hpp"
#include "sync/wait_loop.hpp"
#include "sync/waiter_slots.hpp"

#include <shmq/sync.hpp>

#include <algorithm>
#include <array>

namespace shmq {

using detail::area;
using detail::condition_state;
using detail::segment_kind;

namespace {

const std::atomic<std::uint32_t>* foreign_of(const std::shared_ptr<void>& keep) noexcept {
    return &static_cast<detail::segment*>(keep.get())->header().foreign_pidns;
}

} // namespace

Condition::Condition() {
    auto s = detail::make_object({segment_kind::condition, sizeof(condition_state)});
    s_ = area<condition_state>(s);
    keep_ = std::move(s);
}

Condition Condition::create(std::string_view name, options opts) {
    auto s = detail::create_object(name, {segment_kind::condition, sizeof(condition_state)}, opts);
    auto* st = area<condition_state>(s);
    return Condition(std::move(s), st);
}

Condition Condition::open(std::string_view name, const options& opts) {
    auto s = detail::open_object(name, segment_kind::condition, sizeof(condition_state), opts);
    auto* st = area<condition_state>(s);
    return Condition(std::move(s), st);
}

bool Condition::remove(std::string_view name) noexcept { return detail::segment::remove(name); }

bool Condition::acquire(bool block, timeout_t timeout) {
    const bool got = detail::rlock_acquire(s_->lock, detail::deadline::from(block, timeout), foreign_of(keep_));
    detail::check_lost(keep_);
    return got;
}

void Condition::release() {
    detail::check_lost(keep_);
    detail::rlock_release(s_->lock);
}

bool Condition::previous_owner_died() const noexcept { return detail::rlock_owner_died(s_->lock); }

bool Condition::wait(timeout_t timeout) {
    condition_state& s = *s_;
    detail::check_lost(keep_);
    if (!detail::rlock_owned(s.lock)) throw value_error("shmq: cannot wait on an un-acquired Condition");
    const detail::deadline until(timeout);
    // Under the lock, so seq orders waiters as they arrived and a notify (which needs the lock)
    // sees this slot as soon as it could matter.
    const std::uint64_t seq = s.next_seq.load(std::memory_order_relaxed);
    s.next_seq.store(seq + 1, std::memory_order_relaxed);
    detail::waiter_slot* slot = detail::claim_slot(s.slots, seq);
    if (!slot)
        throw error("shmq: more than " + std::to_string(detail::max_condition_waiters) +
                    " waiters on one Condition");
    const std::uint32_t levels = detail::rlock_release_all(s.lock);
    bool notified = detail::await<bool>(
        s.changed, until, false,
        [&]() -> std::optional<bool> {
            if (slot->state.load(std::memory_order_acquire) == detail::slot_notified) return true;
            return std::nullopt;
        },
        [&]() -> std::optional<bool> {
            detail::heartbeat(*slot);
            return std::nullopt;
        });
    if (!notified) {
        // Timed out, unless a notify marked us meanwhile: then it counts as notified (the notify
        // was not wasted on a waiter that left).
        std::uint32_t expected = detail::slot_waiting;
        if (!slot->state.compare_exchange_strong(expected, detail::slot_free, std::memory_order_acq_rel))
            notified = true;
    }
    if (notified) slot->state.store(detail::slot_free, std::memory_order_release);
    detail::rlock_restore(s.lock, levels, foreign_of(keep_));
    detail::check_lost(keep_);
    return notified;
}

void Condition::notify(std::size_t n) {
    condition_state& s = *s_;
    detail::check_lost(keep_);
    if (!detail::rlock_owned(s.lock)) throw value_error("shmq: cannot notify on an un-acquired Condition");
    if (n == 0) return;
    // The waiting slots, oldest first.
    std::array<std::pair<std::uint64_t, detail::waiter_slot*>, detail::max_condition_waiters> waiting;
    std::size_t k = 0;
    for (auto& slot : s.slots)
        if (slot.state.load(std::memory_order_acquire) == detail::slot_waiting)
            waiting[k++] = {slot.seq.load(std::memory_order_relaxed), &slot};
    std::sort(waiting.begin(), waiting.begin() + k,
              [](const auto& a, const auto& b) { return a.first < b.first; });
    const std::int64_t now = detail::now_ticks();
    std::size_t woken = 0;
    for (std::size_t i = 0; i < k && woken < n; ++i) {
        detail::waiter_slot& slot = *waiting[i].second;
        std::uint32_t expected = detail::slot_waiting;
        // A waiter that died would absorb the notify: skip (and free) its slot. Only a stale
        // heartbeat costs a /proc probe.
        if (detail::slot_stale(slot, now) && detail::slot_owner_dead(slot)) {
            slot.state.compare_exchange_strong(expected, detail::slot_free, std::memory_order_acq_rel);
            continue;
        }
        // Fails when the waiter timed out meanwhile: it does not count.
        if (slot.state.compare_exchange_strong(expected, detail::slot_notified, std::memory_order_seq_cst))
            ++woken;
    }
    if (woken) s.changed.notify_after_seq_cst_store();
}

void Condition::notify_all() { notify(detail::max_condition_waiters); }

} // namespace shmq
