// SPDX-License-Identifier: BSL-1.0
// shmq-soak — the message every producer sends: who sent it, which of its messages it is, and
// a checksum, so a consumer can tell a whole message from a torn, foreign or repeated one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace shmq_soak {

/// Starts every message. `length` is the whole message (header included) so a consumer can
/// tell a short or overlong delivery; `header_check` covers the fields above it, so a header
/// made of another message's bytes is caught before its fields are trusted.
struct message_header {
    std::uint64_t magic;
    std::uint32_t producer;       // producer position, 0..N-1
    std::uint32_t slot;           // incarnation slot in the ledger (one per fork of a producer)
    std::uint64_t seq;            // 0, 1, 2... within the incarnation
    std::uint64_t length;         // header + payload bytes
    std::uint64_t payload_check;  // checksum of the payload
    std::uint64_t header_check;   // checksum of the fields above
};
static_assert(sizeof(message_header) == 48, "message_header is sent as raw bytes");

inline constexpr std::uint64_t message_magic = 0x6b616f732d716d68;   // "hmq-soak"

/// 64-bit checksum of bytes (word-at-a-time multiply-xor: fast enough for the large messages,
/// and any change of a byte or of the length changes it with overwhelming probability).
std::uint64_t checksum(std::span<const std::byte> bytes, std::uint64_t seed = 0) noexcept;

/// Writes a message of `total` bytes (at least sizeof(message_header)) into out: header, then a
/// payload derived from (producer, slot, seq), so no two messages share a payload.
void build_message(std::vector<std::byte>& out, std::uint32_t producer, std::uint32_t slot,
                   std::uint64_t seq, std::size_t total);

/// What a consumer learned from one delivery.
struct verdict {
    bool whole = false;        // header, length and checksum all agree
    message_header header{};   // valid only when whole
};
verdict check_message(std::span<const std::byte> bytes) noexcept;

} // namespace shmq_soak
