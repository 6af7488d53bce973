// SPDX-License-Identifier: BSL-1.0
// Records kept until task_done: the ring of a JoinableQueue created with options::redeliver
// (segment flag retain_records), for at-least-once delivery.
//
// A get consumes a record as usual (head moves past it), but the record's bytes stay where they
// are: writers' room ends at channel_state::release, the first record not yet finished, instead of
// at head. Between release and head every record carries its state in the high bits of its
// header's kind word (ring.hpp: the low 8 bits are the kind), changed only by compare-exchange:
//   taken(s)    got by the process in registry slot s (written by the reader, under the reader
//               lease, before it stores head: a reader killed before the head store leaves the
//               record unconsumed, and the next reader overwrites the mark)
//   done        task_done() was called for it (by any process: task_done names no item, so it
//               finishes the oldest record its own process took, else the oldest taken one)
//   redeliver   its taker died (the registry's reaper, under the registry lock)
// A get first claims a `redeliver` record (redeliver -> taken(self), under the reader lease) when
// queue_state::redeliverable says there may be one; its bytes are still in place. Whoever marks a
// record done then advances release over the done records (and pads) in front, with a
// compare-exchange, and wakes writers.
//
// What a crash costs: a taker killed at any point leaves its record taken(dead) or unconsumed;
// either way it is delivered again (at least once). A record is never lost and never finished
// twice. Only whole records are retained: a queue in this mode refuses items larger than half
// the ring (they would be streamed, and a stream longer than the ring cannot stay in it).
#pragma once

#include "layout.hpp"
#include "ring.hpp"

#include <cstddef>
#include <cstdint>

namespace shmq::detail {
class segment;
class message_sink;
}

namespace shmq::detail::retained {

/// The kind itself; the state bits sit above it.
inline constexpr std::uint32_t kind_mask = 0xff;

/// The kind word of a record taken by registry slot `slot`.
constexpr std::uint32_t taken_by(std::uint32_t kind, std::uint32_t slot) {
    return (kind & kind_mask) | (1u << 8) | ((slot + 1) << 16);
}

/// Marks the whole record at ring offset `off` as taken by `slot`. \pre reader lease held, the
/// record at head.
void take(std::byte* ring, std::uint64_t off, std::uint32_t slot) noexcept;

/// Claims a record whose taker died, for `slot`, and copies it into sink. False when there is
/// none. \pre reader lease held. Throws broken_error on a corrupt ring; what sink.reserve throws.
bool claim(const segment& s, std::uint32_t slot, message_sink& sink);

/// task_done(): marks one taken record done (the oldest of `slot`, else the oldest of anyone's)
/// and advances release. False when no record is taken. Never throws (stops at corruption).
bool finish_one(const segment& s, std::uint32_t slot) noexcept;

/// The reaper: every record taken by dead `slot` becomes `redeliver`. Returns how many.
/// \pre registry lock held, slot's process certainly dead.
std::uint64_t release_dead(const segment& s, std::uint32_t slot) noexcept;

/// Records delivered and not yet finished (between release and head, for `shmq stat`).
std::uint64_t in_progress(const segment& s) noexcept;

} // namespace shmq::detail::retained
