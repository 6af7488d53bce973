// SPDX-License-Identifier: BSL-1.0
// shmq — where a received message goes. The facade passes one to the compiled core so a message
// can be copied straight into its final home (a user's buffer, a std::string being returned)
// instead of through a scratch buffer.
#pragma once

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
class message_sink {
public:
    virtual std::byte* reserve(std::size_t total) = 0;

protected:
    ~message_sink() = default;
};

/// Receives into a contiguous byte container (std::string, std::vector of bytes): resizes it.
/// Its capacity is reused, so a warm container means no allocation.
template <class Container> class container_sink final : public message_sink {
public:
    explicit container_sink(Container& c) noexcept : c_(c) {}
    std::byte* reserve(std::size_t total) override {
        c_.resize(total);
        return reinterpret_cast<std::byte*>(c_.data());
    }

private:
    Container& c_;
};

template <class T> inline constexpr bool is_byte_container_v =
    std::is_same_v<T, std::string> || std::is_same_v<T, std::vector<std::byte>> ||
    std::is_same_v<T, std::vector<char>> || std::is_same_v<T, std::vector<unsigned char>>;

} // namespace shmq::detail
