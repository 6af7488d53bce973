// SPDX-License-Identifier: BSL-1.0
// Records in a circular byte buffer. No locking knowledge: the channel decides who may call what.
//
// A record is an 8-byte header followed by its payload, padded to 8 bytes, or to whole cache lines
// when that is more than half a line (footprint()); records never wrap.
// When a record does not fit before the end of the buffer, a pad record fills the rest and the
// record starts at offset 0. A message too large for one record is streamed as
// first / middle... / last; the first piece's payload starts with the message's 8-byte total
// length and the 8-byte lease word of its writer (robust_mutex.hpp), so readers can tell whether
// the stream can still complete.
//
// Positions are packed (layout.hpp): low 36 bits count bytes, high 28 bits count messages.
#pragma once

#include "layout.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace shmq::detail::ring {

enum class kind : std::uint32_t { whole = 1, first = 2, middle = 3, last = 4, pad = 5 };

struct record_header {
    std::uint32_t size;   // payload bytes (excluding header and padding)
    std::uint32_t kind;   // ring::kind
};
static_assert(sizeof(record_header) == 8);

inline constexpr std::uint64_t header_size = sizeof(record_header);
inline constexpr std::uint64_t first_prefix = 16;   // total length + writer at the start of a `first` payload

/// Bytes a record with this payload occupies: header and payload padded to 8, and a record of more
/// than half a cache line padded to whole lines. Why lines: with records packed back to back, the
/// writer's next record began in the line whose first part the reader was copying out, so every
/// message pulled that line back and forth between the two CPUs, and the writer's lease and
/// notify (locked instructions) waited for the transfer. On lines of their own, a record is
/// written and read in lines nobody else touches meanwhile: 64 B `Pipe` 4.2 -> 5.3 M msg/s,
/// 64 B `Queue` 4.0 -> 8.0 M (doc/design.md §4). Small records stay packed, several to a line:
/// a line each would cost them more line transfers and ring space than the sharing does (8 B
/// messages lost 12 % padded to a line). Positions start line-aligned, so in a stream of messages of one size
/// every larger record starts on a line boundary.
constexpr std::uint64_t footprint(std::uint64_t payload) {
    const std::uint64_t packed = header_size + ((payload + 7) & ~std::uint64_t{7});
    return packed <= cache_line / 2 ? packed : (packed + cache_line - 1) & ~std::uint64_t{cache_line - 1};
}

constexpr std::uint64_t bytes_of(std::uint64_t pos) { return pos & position_byte_mask; }
constexpr std::uint64_t msgs_of(std::uint64_t pos) { return pos >> position_byte_bits; }
constexpr std::uint64_t advance(std::uint64_t pos, std::uint64_t bytes, std::uint64_t msgs) {
    return (((msgs_of(pos) + msgs) & position_msg_mask) << position_byte_bits) |
           ((bytes_of(pos) + bytes) & position_byte_mask);
}
/// Bytes between two positions (tail - head), modulo the byte field.
constexpr std::uint64_t used(std::uint64_t head, std::uint64_t tail) { return (bytes_of(tail) - bytes_of(head)) & position_byte_mask; }
/// Messages between two positions.
constexpr std::uint64_t messages(std::uint64_t head, std::uint64_t tail) { return (msgs_of(tail) - msgs_of(head)) & position_msg_mask; }

inline void write_header(std::byte* ring, std::uint64_t offset, std::uint32_t size, kind k) noexcept {
    record_header h{size, static_cast<std::uint32_t>(k)};
    std::memcpy(ring + offset, &h, sizeof h);
}

inline record_header read_header(const std::byte* ring, std::uint64_t offset) noexcept {
    record_header h;
    std::memcpy(&h, ring + offset, sizeof h);
    return h;
}

} // namespace shmq::detail::ring
