// SPDX-License-Identifier: BSL-1.0
// shmq — where a received message goes. The facade passes one to the compiled core so a message
// can be copied straight into its final home (a user's buffer, a std::string being returned)
// instead of through a scratch buffer.
#pragma once

#include <shmq/export.hpp>

#include <cstddef>
#include <string>
#include <type_traits>
#include <vector>

namespace shmq::detail {

/// reserve(n) returns room for n bytes. For a message that fits the ring it is called once, with
/// the message's size. A streamed message's room grows with the bytes that arrive: reserve is
/// called again with larger n (the last call has the message's size), and each call must keep the
/// bytes already written at the front. A call with a smaller n starts a new message (the previous
/// one was abandoned by its writer). It may throw (allocation): the message is then dropped.
///
/// expect(total) comes first for a streamed message, with the length its first piece claims. It
/// returns true when the sink already holds `total` bytes of memory it owns (a reused container
/// at least that large): the reader then reserves all of it at once, so nothing is filled twice.
/// Otherwise the sink may set aside address space for `total` without touching it (a lying length
/// costs no physical memory) so that the growing reserve() calls never move what arrived.
class message_sink {
public:
    virtual std::byte* reserve(std::size_t total) = 0;
    /// reserve() for a whole (unstreamed) message: straight into the room the sink offered up
    /// front when the message fits it, without a virtual call (the reader's short path, where a
    /// small message's round trip is counted in instructions), else reserve().
    std::byte* reserve_whole(std::size_t total) {
        if (total <= room_size_) {
            reserved_ = total;
            return room_;
        }
        return reserve(total);
    }
    /// The size of the last reservation made through reserve_whole()'s room; a sink that offers
    /// room sets it in reserve() too.
    std::size_t reserved() const noexcept { return reserved_; }
    virtual bool expect(std::size_t total) noexcept {
        (void)total;
        return false;
    }

protected:
    ~message_sink() = default;
    /// Room a sink has before any message (a caller's buffer): reserve_whole() fills it directly.
    void offer(std::byte* room, std::size_t size) noexcept {
        room_ = room;
        room_size_ = size;
    }
    std::size_t reserved_ = 0;

private:
    std::byte* room_ = nullptr;
    std::size_t room_size_ = 0;
};

/// Asks the kernel to back [p, p + n) with huge pages where it can (transparent huge pages in
/// "madvise" mode): for a buffer of at least 4 MiB about to be filled, one fault per 2 MiB
/// instead of one per 4 KiB, which is what a fresh multi-megabyte message costs most, notably in
/// virtual machines. Only whole 2 MiB pages inside the range are advised. Never fails.
SHMQ_API void advise_large_buffer(void* p, std::size_t n) noexcept;

/// Receives into a contiguous byte container (std::string, std::vector of bytes): resizes it.
/// Its capacity is reused, so a warm container means no allocation.
template <class Container> class container_sink final : public message_sink {
public:
    /// The most address space expect() sets aside ahead of the bytes (larger messages grow by
    /// doubling past it): bounds what a lying length can claim, below sanitizer and fuzzer
    /// allocation limits.
    static constexpr std::size_t expect_limit = std::size_t{256} << 20;

    explicit container_sink(Container& c) noexcept : c_(c) {}
    std::byte* reserve(std::size_t total) override {
        c_.resize(total);
        return reinterpret_cast<std::byte*>(c_.data());
    }
    bool expect(std::size_t total) noexcept override {
        // Already that large (get_into() of same-sized items): shrinking neither moves nor fills.
        if (c_.size() >= total) {
            c_.resize(total);
            return true;
        }
        // One allocation for the whole message instead of one per doubling: no copies of what
        // arrived, and the allocator can hand the same memory back for the next message (fresh
        // pages are what large messages cost most on virtual machines).
        if (total <= expect_limit) {
            try {
                c_.reserve(total);
                advise_large_buffer(c_.data(), total);
            } catch (...) {
                // Address space refused: the room grows with the bytes instead.
            }
        }
        return false;
    }

private:
    Container& c_;
};

template <class T> inline constexpr bool is_byte_container_v =
    std::is_same_v<T, std::string> || std::is_same_v<T, std::vector<std::byte>> ||
    std::is_same_v<T, std::vector<char>> || std::is_same_v<T, std::vector<unsigned char>>;

} // namespace shmq::detail
