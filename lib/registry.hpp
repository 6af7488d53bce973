// SPDX-License-Identifier: BSL-1.0
// Endpoint accounting (doc/design.md §6): which processes hold which ends of a segment, so a reader
// can tell "every writer is gone" (EOF) and a writer "every reader is gone" (broken pipe) even when
// the holders died without closing anything.
//
// The registry lives in the segment (registry_state). A process's holdings are one slot keyed by
// pid + start time; a holder that died is found by reap(), which checks /proc, so nothing depends
// on the dead process's help.
#pragma once

#include "liveness.hpp"
#include "segment.hpp"

#include <array>
#include <cstdint>

namespace shmq::detail {

using end_counts = std::array<std::uint32_t, max_ends>;

/// The end ids of channel c.
constexpr std::uint32_t writer_end(std::uint32_t c) { return 2 * c; }
constexpr std::uint32_t reader_end(std::uint32_t c) { return 2 * c + 1; }
/// Queue segments have one channel, whose ends are not counted (no EOF rules); this otherwise
/// unused end counts the queue handles of each process instead, so every process using a queue
/// has a slot (its JoinableQueue accounting, `shmq stat`'s holder list) until its last handle goes.
inline constexpr std::uint32_t queue_handle_end = 2;

namespace registry {

/// Adds counts to who's slot. Throws error when every slot is taken by live processes, or when the
/// registry lock stays held for more than holder_wait (2 s: a stopped or unjudgeable holder).
void attach(const segment& s, const process_identity& who, const end_counts& counts);
/// Removes counts from who's slot (clamped at zero; frees the slot when empty). Never throws; gives
/// up after holder_wait (the counts then stay until this process is reaped as dead).
void detach(const segment& s, const process_identity& who, const end_counts& counts) noexcept;
/// Drops the slots of dead processes that hold `end`, and pending forks whose parent died. Returns how many were dropped.
std::uint32_t reap(const segment& s, std::uint32_t end) noexcept;
/// Drops the slots of every dead process, whatever it holds (join(): a JoinableQueue's holders
/// hold no end, only unfinished items). Returns how many were dropped.
std::uint32_t reap_any(const segment& s) noexcept;
/// who's slot, or null when it has none (or the registry lock stayed held for holder_wait). The slot
/// stays who's while who holds a count in it.
holder_slot* slot_of(const segment& s, const process_identity& who) noexcept;
/// Holds counts for a child being forked under `token`. False when the table is full.
bool park_for_fork(const segment& s, std::uint64_t token, const process_identity& parent,
                   const end_counts& counts) noexcept;
/// Ends the pending fork `token` of `parent`: its counts move to `child`'s slot, or are dropped
/// when child is null (the child is dead). Whoever comes second (parent or child) finds nothing
/// to do, except a child whose entry was dropped because its parent died mid-fork: it attaches
/// itself. For the child (is_self): false when it is not registered (every slot is taken by a
/// live process), so it must not use these ends.
bool settle_fork(const segment& s, std::uint64_t token, const process_identity& parent,
                 const process_identity* child, bool is_self, const end_counts& counts) noexcept;
/// How many handles, over all processes, hold `end` (a snapshot; acquire).
inline std::uint32_t holders(const segment& s, std::uint32_t end) noexcept {
    return s.registry().holders[end].load(std::memory_order_acquire);
}

} // namespace registry
} // namespace shmq::detail
