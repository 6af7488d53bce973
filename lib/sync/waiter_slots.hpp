// SPDX-License-Identifier: BSL-1.0
// The table of waiting parties of a Condition or a Barrier (object_layout.hpp, waiter_slot):
// claiming a slot, the heartbeat a waiter refreshes after each sleep slice, and finding the
// slots of waiters that died, without their help.
#pragma once

#include "sync/object_layout.hpp"

#include <cstdint>
#include <span>

namespace shmq::detail {

/// A slot whose heartbeat is older than this is worth a /proc probe. Three sleep slices: a live
/// waiter refreshes it every slice, so only a dead, stopped or starved one goes stale.
inline constexpr std::int64_t stale_after_ns = 3 * 20'000'000;

/// Claims a free slot for the calling process (state waiting, heartbeat now, seq given). A slot
/// whose owner is dead is reclaimed when no free one is left. Null when every slot is taken by
/// live waiters. Never throws.
waiter_slot* claim_slot(std::span<waiter_slot> slots, std::uint64_t seq) noexcept;
/// Refreshes the calling waiter's heartbeat.
void heartbeat(waiter_slot& slot) noexcept;
/// Whether the slot's heartbeat is older than stale_after_ns at `now` (now_ticks()).
bool slot_stale(const waiter_slot& slot, std::int64_t now) noexcept;
/// Whether the slot's owner is certainly dead (liveness.hpp; `unknown` is not dead).
bool slot_owner_dead(const waiter_slot& slot) noexcept;
/// Whether any occupied slot other than `mine` is stale (cheap: loads only).
bool any_stale(std::span<const waiter_slot> slots, const waiter_slot* mine, std::int64_t now) noexcept;

} // namespace shmq::detail
