// SPDX-License-Identifier: BSL-1.0
// A shmq segment: one mapping of shared memory holding the layout of layout.hpp.
//
// Anonymous segments are a sealed memfd (or, when no fd is left, MAP_SHARED anonymous memory):
// they exist while some process maps them and reach children only through fork. Named segments
// are POSIX shared memory objects (/dev/shm/shmq.<name>) created exclusively with the caller's
// permission bits; they outlive every handle until remove(). Every process unmaps its view when
// its last handle goes.
//
// Exhausted and hostile environments (issue 7, A.11):
//  * Pages are reserved at creation (fallocate), so a full /dev/shm or memory limit is an error
//    from create/construction, never a SIGBUS on first touch.
//  * open refuses (permission_error) a symbolic link at the name (O_NOFOLLOW), anything but a
//    regular file, a segment owned by another user, and one writable by group or others, unless
//    the caller passes options::trust_foreign: such a segment may have been planted or rewritten
//    by someone else. It refuses (broken_error) a segment smaller (fstat) than its header says.
//  * Truncation while mapped. Anyone with write access can shrink a POSIX shm object; pages past
//    the new end then raise SIGBUS on access. A process-wide SIGBUS handler (installed when a named
//    segment is mapped, chained to any previous handler for faults elsewhere) catches faults
//    inside a named segment's mapping, replaces this process's whole view of that segment with
//    private memory whose channel positions are deliberately inconsistent, and marks the segment
//    lost(): the faulting access completes on that private memory, every later ring operation
//    meets broken_error, and queue calls check lost() after each operation, so nothing read from
//    the private copy is ever delivered. What is guaranteed after a truncation: no process dies of
//    SIGBUS in shmq's code (unless the program replaces the SIGBUS handler after mapping), every
//    operation that touched the lost pages and every later one on that segment throws
//    broken_error, and what the segment held is lost. Anonymous segments are sealed against
//    shrinking (F_SEAL_SHRINK), so they cannot be truncated at all.
#pragma once

#include "layout.hpp"

#include <shmq/errors.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
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
    std::uint32_t flags = 0;   // segment_flags
    std::uint64_t object_bytes = 0;   // object kinds (is_object_kind): bytes of the object area
    /// Object kinds: writes the object area's initial state (it is zero-filled) before the
    /// segment is published as ready, so an opener never sees it half-made. Must not throw.
    std::function<void(void* object)> init_object;
    /// Named kinds with a registry: registers the creating process as a holder of these ends
    /// before the segment is published as ready, so no instant exists at which a live creator's
    /// object looks unheld (and stale) to `shmq gc` or a replace_stale. The handle's endpoint then
    /// adopts that registration (endpoint.hpp) instead of attaching again.
    bool attach_creator = false;
    std::array<std::uint32_t, max_ends> creator_counts{};
};

/// How segment::inspect opens (tools and lifecycle decisions).
struct inspect_mode {
    bool read_only = true;   // O_RDONLY + PROT_READ: works on an object the user may only read
    bool wait = false;       // wait creator_grace (2 s) for a creator still initializing
};

/// Thrown when a segment's creator has not (yet) published it as ready.
class uninitialized_error : public broken_error {
public:
    using broken_error::broken_error;
};

class segment {
public:
    /// Throws value_error (bad capacity), error (no memory could be reserved or mapped, errno).
    static std::shared_ptr<segment> create_anonymous(const segment_params& p);
    /// Throws value_error (bad name or capacity), exists_error (the name exists, also as a
    /// symbolic link), permission_error, error (system failure, e.g. ENOSPC: /dev/shm full).
    /// A failed create leaves no name behind.
    static std::shared_ptr<segment> create_named(std::string_view name, const segment_params& p,
                                                 unsigned mode);
    /// As create_named, but at the POSIX name `system_path` ("/shmq.<name>.<suffix>") while the
    /// segment calls itself `name`: lifecycle.cpp builds a replacement there, then renames it
    /// over the name. Throws as create_named.
    static std::shared_ptr<segment> create_named_at(std::string_view name, const std::string& system_path,
                                                    const segment_params& p, unsigned mode);
    /// Opens and validates. Throws value_error (bad name), not_found_error, permission_error
    /// (symbolic link, not a regular file, another owner or writable by group/others without
    /// trust_foreign; EACCES), type_error (another kind of object or another T), broken_error
    /// (bad header, other layout version, smaller than its header says), error (mmap failed).
    static std::shared_ptr<segment> open_named(std::string_view name, segment_kind kind,
                                               std::uint64_t type_fingerprint,
                                               bool trust_foreign = false);
    /// Opens and validates any kind of shmq segment, for tools and lifecycle decisions: trusts
    /// any owner. By default read-only and without waiting: a segment whose creator has not
    /// published it yet gives uninitialized_error at once. A read-only segment must not be
    /// written through (no registry lock, no attach). Throws as open_named.
    static std::shared_ptr<segment> inspect(std::string_view name, inspect_mode how = {});
    /// Unlinks the name. Never throws; false when there was nothing to remove or the name is bad.
    static bool remove(std::string_view name) noexcept;
    /// Throws value_error for an empty name, one containing '/' or NUL, or longer than 200.
    static void check_name(std::string_view name);
    /// The POSIX shared memory name of a user's name ("shmq.<name>").
    static std::string system_name(std::string_view name);
    /// Where POSIX shared memory names live as files (glibc's shm_open: /dev/shm).
    static std::string file_path(std::string_view system_name) { return "/dev/shm/" + std::string(system_name); }

    /// True while the user name still names this very segment (same device and inode), not a
    /// replacement or nothing. Never throws.
    bool named_here() const noexcept;
    /// Whether another process could still open this segment by its name: a named segment whose
    /// name still leads here, or whose file could not be identified (then assumed so).
    bool openable_by_name() const noexcept { return !name_.empty() && (ino_ == 0 || named_here()); }
    bool read_only() const noexcept { return read_only_; }

    segment_header& header() const noexcept { return *static_cast<segment_header*>(base_); }
    registry_state& registry() const noexcept { return *at<registry_state>(registry_off_); }
    queue_state& queue() const noexcept { return *at<queue_state>(queue_off_); }
    channel_state& channel(std::uint32_t c) const noexcept {
        return *at<channel_state>(channels_off_ + c * sizeof(channel_state));
    }
    std::byte* ring(std::uint32_t c) const noexcept {
        return at<std::byte>(rings_off_ + c * capacity_);
    }
    /// The object area of an object kind (is_object_kind(kind())); object_bytes() long.
    void* object() const noexcept { return at<std::byte>(object_off_); }
    std::uint64_t object_bytes() const noexcept { return object_bytes_; }
    std::uint64_t capacity() const noexcept { return capacity_; }
    std::uint32_t channels() const noexcept { return channels_; }
    segment_kind kind() const noexcept { return static_cast<segment_kind>(header().kind); }
    const std::string& name() const noexcept { return name_; }   // empty when anonymous
    /// True once this process met a truncated page of the segment (SIGBUS) and replaced its view
    /// with private memory: nothing read since may be delivered; callers throw lost_error().
    bool lost() const noexcept;
    /// Throws broken_error when lost().
    void check_lost() const;

    segment(const segment&) = delete;
    segment& operator=(const segment&) = delete;
    ~segment();

private:
    segment() = default;
    template <class T> T* at(std::uint64_t off) const noexcept {
        return reinterpret_cast<T*>(static_cast<std::byte*>(base_) + off);
    }
    /// Computes the offsets for (channels, capacity); returns the total size.
    std::uint64_t plan(std::uint32_t channels, std::uint64_t capacity) noexcept;
    /// The same for an object kind with an object area of `bytes`.
    std::uint64_t plan_object(std::uint64_t bytes) noexcept;
    /// Sizes for p: plan() or plan_object(); returns the total size.
    std::uint64_t plan_for(const segment_params& p, std::uint64_t& capacity);
    void initialize(const segment_params& p, std::uint64_t capacity);
    static std::shared_ptr<segment> open_checked(std::string_view name, const segment_kind* kind,
                                                 const std::uint64_t* type_fingerprint,
                                                 bool trust_foreign, inspect_mode how);
    /// Maps `bytes` of fd (replacing any earlier view) and, for named segments, registers the
    /// view with the SIGBUS guard. Throws error with errno.
    void map(int fd, std::uint64_t bytes);
    void remember_file(int fd) noexcept;
    void unmap() noexcept;
    /// Tells the SIGBUS guard where the channel positions are (after plan()).
    void set_guard_layout() noexcept;

    void* base_ = nullptr;
    std::uint64_t mapped_ = 0;        // bytes of the current view
    struct guard_slot* guard_ = nullptr;   // the SIGBUS guard's record of the view (named only)
    std::uint64_t size_ = 0, capacity_ = 0;
    std::uint32_t channels_ = 0;
    std::uint64_t registry_off_ = 0, queue_off_ = 0, channels_off_ = 0, rings_off_ = 0;
    std::uint64_t object_off_ = 0, object_bytes_ = 0;
    std::string name_;
    bool read_only_ = false;
    std::uint64_t dev_ = 0, ino_ = 0;   // of the named file, for named_here()
};

/// Rounds a requested ring size up to a valid capacity. Throws value_error when too large.
std::uint64_t ring_capacity_for(std::uint64_t requested);

} // namespace shmq::detail
