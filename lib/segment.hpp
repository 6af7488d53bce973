// A shmq segment: one mapping of shared memory holding the layout of layout.hpp.
//
// Anonymous segments are MAP_SHARED anonymous memory: they exist while some process maps them and
// reach children only through fork. Named segments are POSIX shared memory objects
// (/dev/shm/shmq.<name>) created exclusively with the caller's permission bits; they outlive every
// handle until remove(). Every process unmaps its view when its last handle goes.
#pragma once

#include "layout.hpp"

#include <boost/interprocess/mapped_region.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace shmq::detail {

struct segment_params {
    segment_kind kind = segment_kind::pipe;
    std::uint32_t channels = 1;
    std::uint64_t capacity = min_capacity;   // requested; rounded up to a power of two
    std::uint64_t type_fingerprint = 0;
    std::int64_t maxsize = 0;
};

class segment {
public:
    /// Throws value_error (bad capacity), error (mmap failed).
    static std::shared_ptr<segment> create_anonymous(const segment_params& p);
    /// Throws value_error (bad name or capacity), exists_error, error (system failure with errno).
    static std::shared_ptr<segment> create_named(std::string_view name, const segment_params& p,
                                                 unsigned mode);
    /// Opens and validates. Throws value_error (bad name), not_found_error, type_error (another
    /// kind of object or another T), broken_error (bad header, other layout version).
    static std::shared_ptr<segment> open_named(std::string_view name, segment_kind kind,
                                               std::uint64_t type_fingerprint);
    /// Opens and validates any kind of shmq segment, for tools. Throws as open_named.
    static std::shared_ptr<segment> inspect(std::string_view name);
    /// Unlinks the name. Never throws; false when there was nothing to remove or the name is bad.
    static bool remove(std::string_view name) noexcept;
    /// Throws value_error for an empty name, one containing '/' or NUL, or longer than 200.
    static void check_name(std::string_view name);
    /// The POSIX shared memory name of a user's name ("shmq.<name>").
    static std::string system_name(std::string_view name);

    segment_header& header() const noexcept { return *static_cast<segment_header*>(base_); }
    registry_state& registry() const noexcept { return *at<registry_state>(registry_off_); }
    queue_state& queue() const noexcept { return *at<queue_state>(queue_off_); }
    channel_state& channel(std::uint32_t c) const noexcept {
        return *at<channel_state>(channels_off_ + c * sizeof(channel_state));
    }
    std::byte* ring(std::uint32_t c) const noexcept {
        return at<std::byte>(rings_off_ + c * capacity_);
    }
    std::uint64_t capacity() const noexcept { return capacity_; }
    std::uint32_t channels() const noexcept { return channels_; }
    segment_kind kind() const noexcept { return static_cast<segment_kind>(header().kind); }
    const std::string& name() const noexcept { return name_; }   // empty when anonymous

    segment(const segment&) = delete;
    segment& operator=(const segment&) = delete;
    ~segment() = default;

private:
    segment() = default;
    template <class T> T* at(std::uint64_t off) const noexcept {
        return reinterpret_cast<T*>(static_cast<std::byte*>(base_) + off);
    }
    /// Computes the offsets for (channels, capacity); returns the total size.
    std::uint64_t plan(std::uint32_t channels, std::uint64_t capacity) noexcept;
    void initialize(const segment_params& p, std::uint64_t capacity);
    static std::shared_ptr<segment> open_checked(std::string_view name, const segment_kind* kind,
                                                 const std::uint64_t* type_fingerprint);

    boost::interprocess::mapped_region region_;
    void* base_ = nullptr;
    std::uint64_t size_ = 0, capacity_ = 0;
    std::uint32_t channels_ = 0;
    std::uint64_t registry_off_ = 0, queue_off_ = 0, channels_off_ = 0, rings_off_ = 0;
    std::string name_;
};

/// Rounds a requested ring size up to a valid capacity. Throws value_error when too large.
std::uint64_t ring_capacity_for(std::uint64_t requested);

} // namespace shmq::detail
