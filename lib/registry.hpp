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

#include <shmq/errors.hpp>

#include <array>
#include <cstdint>
#include <functional>

namespace shmq::detail {

using end_counts = std::array<std::uint32_t, max_ends>;

/// The end ids of channel c.
constexpr std::uint32_t writer_end(std::uint32_t c) { return 2 * c; }
constexpr std::uint32_t reader_end(std::uint32_t c) { return 2 * c + 1; }
/// Queue segments have one channel, whose ends are not counted (no EOF rules); this otherwise
/// unused end counts the queue handles of each process instead, so every process using a queue
/// has a slot (its JoinableQueue accounting, `shmq stat`'s holder list) until its last handle goes.
inline constexpr std::uint32_t queue_handle_end = 2;
/// A queue handle that was dropped while its feeder thread goes on alone (cancel_join_thread,
/// feeder.hpp) moves its count here (writer end 0, otherwise unused by queues): the process
/// still holds the segment, but that handle can no longer read, so it does not make anyone wait
/// for a reader (queue_shm.cpp, nobody_else_reads).
inline constexpr std::uint32_t queue_orphan_end = writer_end(0);

/// attach() to a segment that was retired (layout.hpp segment_header::retired): its name was
/// unlinked or replaced while we opened it. A not_found_error, so an opener that gives up after
/// its retries (lifecycle.hpp, reopen) reports the object as gone.
class retired_error : public not_found_error {
public:
    using not_found_error::not_found_error;
};

namespace registry {

/// Adds counts to who's slot. Throws error when every slot is taken by live processes, or when the
/// registry lock stays held for more than holder_wait (2 s: a stopped or unjudgeable holder);
/// retired_error when the segment was retired.
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
/// What retire() found.
enum class verdict {
    retired,   // no live holder (and, if asked, some dead one): retired, `then` ran under the lock
    held,      // a live holder, or one whose liveness cannot be judged, or a fork in progress
    unheld,    // need_dead and nobody holds it at all (closed normally: a persistent object)
    busy,      // the registry lock stayed held for holder_wait
    kept,      // `then` failed (returned false): retired was cleared again, nothing changed
};
/// The one place where a named object is judged stale and retired, atomically with respect to
/// attach(): under the registry lock, drops the slots of dead holders (liveness::dead only), then,
/// when no slot and no pending fork remains, sets header().retired and runs `then` (which
/// unlinks or replaces the name) before releasing the lock. An opener that attached before
/// the lock was taken is a live holder (held); one that attaches after gets retired_error and
/// goes back to the name. `live`, when given, receives a live holder's identity (for messages).
/// need_dead: stale only if at least one dead holder was found (`shmq gc`: an object whose
/// holders all closed normally is a persistent one, not an orphan). A segment already retired
/// is retired again (its retirer died before unlinking). `then` returns whether it unlinked or
/// replaced the name; if not (the name now names another file, rename failed), `retired` is
/// cleared again before the lock is released, so no opener ever saw it. Never throws (then must
/// not throw).
verdict retire(const segment& s, bool need_dead, const std::function<bool()>& then,
               process_identity* live = nullptr) noexcept;

/// How many attach() calls ever succeeded on s (layout.hpp registry_state::opens; acquire).
inline std::uint64_t opens(const segment& s) noexcept {
    return s.registry().opens.load(std::memory_order_acquire);
}
/// How many handles of processes not known to be dead hold `end`, summed from the slots and
/// pending forks after dropping dead holders (as reap), rather than read from the holders word,
/// which a corrupt segment may have wrong. Slow (a liveness probe per holder); when another
/// process holds the registry lock, returns holders(s, end) instead of waiting. Never throws.
std::uint64_t held_in_slots(const segment& s, std::uint32_t end) noexcept;
/// How many handles, over all processes, hold `end` (a snapshot; acquire).
inline std::uint32_t holders(const segment& s, std::uint32_t end) noexcept {
    return s.registry().holders[end].load(std::memory_order_acquire);
}

} // namespace registry
} // namespace shmq::detail
