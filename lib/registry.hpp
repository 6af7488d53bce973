// Endpoint accounting (DESIGN §3): which processes hold which ends of a segment, so a reader can
// tell "every writer is gone" (EOF) and a writer "every reader is gone" (broken pipe) even when
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

namespace registry {

/// Adds counts to who's slot. Throws error when every slot is taken by live processes.
void attach(const segment& s, const process_identity& who, const end_counts& counts);
/// Removes counts from who's slot (clamped at zero; frees the slot when empty). Never throws.
void detach(const segment& s, const process_identity& who, const end_counts& counts) noexcept;
/// Drops the slots of dead processes that hold `end`. Returns how many were dropped.
std::uint32_t reap(const segment& s, std::uint32_t end) noexcept;
/// How many handles, over all processes, hold `end` (a snapshot; acquire).
inline std::uint32_t holders(const segment& s, std::uint32_t end) noexcept {
    return s.registry().holders[end].load(std::memory_order_acquire);
}

} // namespace registry
} // namespace shmq::detail
