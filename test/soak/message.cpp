// SPDX-License-Identifier: BSL-1.0
// shmq-soak — building and checking messages (see message.hpp).
#include "message.hpp"

#include <bit>
#include <cstring>

namespace shmq_soak {

std::uint64_t checksum(std::span<const std::byte> bytes, std::uint64_t seed) noexcept
{
    constexpr std::uint64_t k = 0x9e3779b97f4a7c15;
    std::uint64_t h = seed ^ (bytes.size() * k);
    std::size_t i = 0;
    for (; i + 8 <= bytes.size(); i += 8) {
        std::uint64_t w;
        std::memcpy(&w, bytes.data() + i, 8);
        h = std::rotl((h ^ w) * k, 29);
    }
    std::uint64_t tail = 0;
    std::memcpy(&tail, bytes.data() + i, bytes.size() - i);
    h = std::rotl((h ^ tail) * k, 29);
    return h ^ (h >> 31);
}

namespace {

std::uint64_t header_checksum(const message_header& h) noexcept
{
    return checksum(std::span<const std::byte>(reinterpret_cast<const std::byte*>(&h),
                                               offsetof(message_header, header_check)),
                    0x5eed);
}

} // namespace

void build_message(std::vector<std::byte>& out, std::uint32_t producer, std::uint32_t slot,
                   std::uint64_t seq, std::size_t total)
{
    if (total < sizeof(message_header)) total = sizeof(message_header);
    out.resize(total);
    // xorshift64*, seeded per message: distinct payloads make a piece of one message inside
    // another detectable.
    std::uint64_t x = (std::uint64_t{producer} << 48) ^ (std::uint64_t{slot} << 32) ^ seq ^
                      0x2545f4914f6cdd1d;
    if (x == 0) x = 1;
    std::byte* p = out.data() + sizeof(message_header);
    std::size_t n = total - sizeof(message_header);
    for (std::size_t i = 0; i < n; i += 8) {
        x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
        std::uint64_t w = x * 0x2545f4914f6cdd1d;
        std::memcpy(p + i, &w, n - i < 8 ? n - i : 8);
    }
    message_header h{};
    h.magic = message_magic;
    h.producer = producer;
    h.slot = slot;
    h.seq = seq;
    h.length = total;
    h.payload_check = checksum(std::span<const std::byte>(p, n));
    h.header_check = header_checksum(h);
    std::memcpy(out.data(), &h, sizeof h);
}

verdict check_message(std::span<const std::byte> bytes) noexcept
{
    verdict v;
    if (bytes.size() < sizeof(message_header)) return v;
    message_header h;
    std::memcpy(&h, bytes.data(), sizeof h);
    if (h.magic != message_magic || h.header_check != header_checksum(h)) return v;
    if (h.length != bytes.size()) return v;
    if (h.payload_check != checksum(bytes.subspan(sizeof h))) return v;
    v.whole = true;
    v.header = h;
    return v;
}

} // namespace shmq_soak
