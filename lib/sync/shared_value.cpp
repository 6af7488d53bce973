// SPDX-License-Identifier: BSL-1.0
// The core of Value<T> and Array<T>: an object area holding a lock_state, then the elements at
// value_data_offset (object_layout.hpp). The element count is the header's maxsize, validated
// against the area's size at open, so a hostile header cannot make operator[] reach past it.
#include "sync/object_layout.hpp"
#include "sync/object_segment.hpp"

#include <shmq/shared_value.hpp>

#include <cstring>

namespace shmq::detail {
namespace {

object_spec spec(bool array, std::uint64_t fingerprint, std::size_t elem_size, std::size_t count,
                 const void* initial) {
    if (elem_size != 0 && count > (max_object_bytes - value_data_offset) / elem_size)
        throw value_error("shmq: Array of " + std::to_string(count) + " elements of " +
                          std::to_string(elem_size) + " bytes is too large");
    const std::uint64_t bytes = value_data_offset + count * elem_size;
    std::string init(static_cast<const char*>(initial), elem_size);
    return {array ? segment_kind::array : segment_kind::value, bytes, fingerprint,
            static_cast<std::int64_t>(count), [init = std::move(init), count](void* p) {
                auto* data = static_cast<std::byte*>(p) + value_data_offset;
                for (std::size_t i = 0; i < count; ++i)
                    std::memcpy(data + i * init.size(), init.data(), init.size());
            }};
}

shared_block block_of(std::shared_ptr<segment> s) {
    shared_block b;
    b.lock = area<lock_state>(s);
    b.data = static_cast<std::byte*>(s->object()) + value_data_offset;
    const std::int64_t count = s->header().maxsize;
    b.count = static_cast<std::size_t>(count);
    b.keep = std::move(s);
    return b;
}

} // namespace

shared_block shared_block::make(bool array, std::uint64_t fingerprint, std::size_t elem_size,
                                std::size_t count, const void* initial) {
    return block_of(make_object(spec(array, fingerprint, elem_size, count, initial)));
}

shared_block shared_block::create(std::string_view name, bool array, std::uint64_t fingerprint,
                                  std::size_t elem_size, std::size_t count, const void* initial,
                                  const options& opts) {
    return block_of(create_object(name, spec(array, fingerprint, elem_size, count, initial), opts));
}

shared_block shared_block::open(std::string_view name, bool array, std::uint64_t fingerprint,
                                std::size_t elem_size, const options& opts) {
    auto s = open_object(name, array ? segment_kind::array : segment_kind::value,
                         value_data_offset, opts, fingerprint);
    const std::int64_t count = s->header().maxsize;
    if (count < 0 || (!array && count != 1) ||
        (elem_size != 0 && static_cast<std::uint64_t>(count) >
                               (s->object_bytes() - value_data_offset) / elem_size))
        throw broken_error("shmq: '" + std::string(name) + "': corrupt header (element count " +
                           std::to_string(count) + ")");
    return block_of(std::move(s));
}

bool shared_block::remove(std::string_view name) noexcept { return segment::remove(name); }

} // namespace shmq::detail
