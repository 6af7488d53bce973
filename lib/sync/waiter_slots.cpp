// SPDX-License-Identifier: BSL-1.0
#include "sync/waiter_slots.hpp"

#include "sync/object_segment.hpp"

namespace shmq::detail {
namespace {

bool take(waiter_slot& slot, std::uint32_t from) noexcept {
    std::uint32_t expected = from;
    return slot.state.compare_exchange_strong(expected, slot_filling, std::memory_order_acquire,
                                              std::memory_order_relaxed);
}

waiter_slot* fill(waiter_slot& slot, std::uint64_t seq) noexcept {
    const process_identity& me = self();
    slot.pid.store(me.pid, std::memory_order_relaxed);
    slot.start.store(me.start, std::memory_order_relaxed);
    slot.pidns.store(me.pidns, std::memory_order_relaxed);
    slot.seq.store(seq, std::memory_order_relaxed);
    slot.heartbeat.store(now_ticks(), std::memory_order_relaxed);
    slot.state.store(slot_waiting, std::memory_order_seq_cst);
    return &slot;
}

} // namespace

waiter_slot* claim_slot(std::span<waiter_slot> slots, std::uint64_t seq) noexcept {
    for (auto& slot : slots)
        if (slot.state.load(std::memory_order_relaxed) == slot_free && take(slot, slot_free))
            return fill(slot, seq);
    // Full: reclaim the slot of a waiter that died (it never frees its own).
    const std::int64_t now = now_ticks();
    for (auto& slot : slots) {
        const std::uint32_t st = slot.state.load(std::memory_order_acquire);
        if ((st == slot_waiting || st == slot_notified) && slot_stale(slot, now) &&
            slot_owner_dead(slot) && take(slot, st))
            return fill(slot, seq);
    }
    return nullptr;
}

void heartbeat(waiter_slot& slot) noexcept {
    slot.heartbeat.store(now_ticks(), std::memory_order_relaxed);
}

bool slot_stale(const waiter_slot& slot, std::int64_t now) noexcept {
    return now - slot.heartbeat.load(std::memory_order_relaxed) > stale_after_ns;
}

bool slot_owner_dead(const waiter_slot& slot) noexcept {
    process_identity who;
    who.pid = slot.pid.load(std::memory_order_relaxed);
    who.start = slot.start.load(std::memory_order_relaxed);
    who.pidns = slot.pidns.load(std::memory_order_relaxed);
    if (who.pid == 0) return false;   // being filled
    return probe(who) == liveness::dead;
}

bool any_stale(std::span<const waiter_slot> slots, const waiter_slot* mine, std::int64_t now) noexcept {
    for (const auto& slot : slots) {
        if (&slot == mine) continue;
        const std::uint32_t st = slot.state.load(std::memory_order_relaxed);
        if (st != slot_free && slot_stale(slot, now)) return true;
    }
    return false;
}

} // namespace shmq::detail
