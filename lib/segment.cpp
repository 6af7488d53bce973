#include "segment.hpp"

#include "test_hook.hpp"

#include <shmq/errors.hpp>

#include <boost/interprocess/anonymous_shared_memory.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

#include <bit>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <new>
#include <sys/stat.h>
#include <thread>

namespace bip = boost::interprocess;

namespace shmq::detail {
namespace {

constexpr std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) & ~(a - 1); }

// How long open() waits for a creator that is still initializing the segment it just created.
constexpr auto creator_grace = std::chrono::seconds(2);

std::string describe(std::string_view name) { return "shmq: '" + std::string(name) + "'"; }

} // namespace

std::uint64_t ring_capacity_for(std::uint64_t requested) {
    if (requested > max_capacity)
        throw value_error("shmq: capacity " + std::to_string(requested) + " exceeds the maximum of " +
                          std::to_string(max_capacity) + " bytes");
    return std::max(min_capacity, std::bit_ceil(requested));
}

std::uint64_t segment::plan(std::uint32_t channels, std::uint64_t capacity) noexcept {
    channels_ = channels;
    capacity_ = capacity;
    registry_off_ = align_up(sizeof(segment_header), cache_line);
    queue_off_ = align_up(registry_off_ + sizeof(registry_state), cache_line);
    channels_off_ = align_up(queue_off_ + sizeof(queue_state), cache_line);
    rings_off_ = align_up(channels_off_ + channels * sizeof(channel_state), cache_line);
    return rings_off_ + channels * capacity;
}

void segment::initialize(const segment_params& p, std::uint64_t capacity) {
    // The memory is fresh (zero-filled by the kernel), and every shared struct is valid when
    // all-zero: only the header needs writing. `ready` goes last, with release, so an opener
    // that sees it sees the rest.
    auto& h = header();
    h.magic = segment_magic;
    h.version = layout_version;
    h.kind = static_cast<std::uint32_t>(p.kind);
    h.total_size = size_;
    h.type_fingerprint = p.type_fingerprint;
    h.capacity = capacity;
    h.maxsize = p.maxsize;
    h.channels = p.channels;
    // Tests start rings just below a wrap of the packed positions (test_hook.hpp).
    if (const std::uint64_t start = test_hook::start_position())
        for (std::uint32_t c = 0; c < p.channels; ++c) {
            channel(c).head.store(start, std::memory_order_relaxed);
            channel(c).tail.store(start, std::memory_order_relaxed);
        }
    h.ready.store(1, std::memory_order_release);
}

std::shared_ptr<segment> segment::create_anonymous(const segment_params& p) {
    std::uint64_t cap = ring_capacity_for(p.capacity);
    std::shared_ptr<segment> s(new segment);
    s->size_ = s->plan(p.channels, cap);
    try {
        s->region_ = bip::anonymous_shared_memory(s->size_);
    } catch (const bip::interprocess_exception& e) {
        throw error(std::string("shmq: cannot map ") + std::to_string(s->size_) +
                    " bytes of shared memory: " + e.what());
    }
    s->base_ = s->region_.get_address();
    s->initialize(p, cap);
    return s;
}

void segment::check_name(std::string_view name) {
    if (name.empty()) throw value_error("shmq: a name must not be empty");
    if (name.size() > 200) throw value_error(describe(name.substr(0, 40)) + "...: name longer than 200 characters");
    if (name.find('/') != std::string_view::npos) throw value_error(describe(name) + ": a name must not contain '/'");
    if (name.find('\0') != std::string_view::npos) throw value_error("shmq: a name must not contain NUL");
}

std::string segment::system_name(std::string_view name) { return "shmq." + std::string(name); }

std::shared_ptr<segment> segment::create_named(std::string_view name, const segment_params& p,
                                               unsigned mode) {
    check_name(name);
    std::uint64_t cap = ring_capacity_for(p.capacity);
    std::shared_ptr<segment> s(new segment);
    s->size_ = s->plan(p.channels, cap);
    s->name_ = std::string(name);
    const std::string sys = system_name(name);
    bip::permissions perm(mode & 07777);
    bip::shared_memory_object shm;
    try {
        shm = bip::shared_memory_object(bip::create_only, sys.c_str(), bip::read_write, perm);
    } catch (const bip::interprocess_exception& e) {
        if (e.get_error_code() == bip::already_exists_error)
            throw exists_error(describe(name) + " already exists");
        throw error(describe(name) + ": cannot create shared memory: " + e.what());
    }
    try {
        // Apply the mode exactly: shm_open's mode is narrowed by the umask.
        ::fchmod(shm.get_mapping_handle().handle, static_cast<mode_t>(mode & 07777));
        shm.truncate(static_cast<bip::offset_t>(s->size_));
        s->region_ = bip::mapped_region(shm, bip::read_write, 0, s->size_);
    } catch (const bip::interprocess_exception& e) {
        bip::shared_memory_object::remove(sys.c_str());
        throw error(describe(name) + ": cannot size or map shared memory: " + e.what());
    }
    s->base_ = s->region_.get_address();
    s->initialize(p, cap);
    return s;
}

std::shared_ptr<segment> segment::open_named(std::string_view name, segment_kind kind,
                                             std::uint64_t type_fingerprint) {
    return open_checked(name, &kind, &type_fingerprint);
}

std::shared_ptr<segment> segment::inspect(std::string_view name) {
    return open_checked(name, nullptr, nullptr);
}

std::shared_ptr<segment> segment::open_checked(std::string_view name, const segment_kind* kind,
                                               const std::uint64_t* type_fingerprint) {
    check_name(name);
    const std::string sys = system_name(name);
    bip::shared_memory_object shm;
    try {
        shm = bip::shared_memory_object(bip::open_only, sys.c_str(), bip::read_write);
    } catch (const bip::interprocess_exception& e) {
        if (e.get_error_code() == bip::not_found_error)
            throw not_found_error(describe(name) + " does not exist");
        throw error(describe(name) + ": cannot open shared memory: " + e.what());
    }
    // The creator may still be sizing and initializing it: wait a little for `ready`.
    auto give_up = std::chrono::steady_clock::now() + creator_grace;
    std::shared_ptr<segment> s(new segment);
    s->name_ = std::string(name);
    for (;;) {
        bip::offset_t size = 0;
        if (!shm.get_size(size)) size = 0;
        if (static_cast<std::uint64_t>(size) >= sizeof(segment_header)) {
            if (s->region_.get_size() != static_cast<std::size_t>(size))
                s->region_ = bip::mapped_region(shm, bip::read_write, 0, static_cast<std::size_t>(size));
            s->base_ = s->region_.get_address();
            s->size_ = static_cast<std::uint64_t>(size);
            if (s->header().ready.load(std::memory_order_acquire) == 1) break;
        }
        if (std::chrono::steady_clock::now() > give_up)
            throw broken_error(describe(name) + ": segment was never initialized by its creator");
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }

    // Validate everything before any of it is used as a size or an offset.
    const auto& h = s->header();
    if (h.magic != segment_magic) throw broken_error(describe(name) + ": not a shmq segment (bad magic)");
    if (h.version != layout_version)
        throw broken_error(describe(name) + ": layout version " + std::to_string(h.version) +
                           ", this library reads " + std::to_string(layout_version));
    if (h.kind < static_cast<std::uint32_t>(segment_kind::pipe) ||
        h.kind > static_cast<std::uint32_t>(segment_kind::joinable_queue))
        throw broken_error(describe(name) + ": corrupt header (unknown kind)");
    if (kind && h.kind != static_cast<std::uint32_t>(*kind))
        throw type_error(describe(name) + ": is another kind of shmq object");
    if (type_fingerprint && h.type_fingerprint != *type_fingerprint)
        throw type_error(describe(name) + ": was created for another element type");
    const std::uint64_t cap = h.capacity;
    const std::uint32_t channels = h.channels;
    if (channels < 1 || channels > 2 || cap < min_capacity || cap > max_capacity ||
        !std::has_single_bit(cap))
        throw broken_error(describe(name) + ": corrupt header (channels or capacity)");
    const std::uint64_t expect = s->plan(channels, cap);
    if (h.total_size != expect || s->size_ < expect)
        throw broken_error(describe(name) + ": corrupt header (size " + std::to_string(s->size_) +
                           ", expected " + std::to_string(expect) + ")");
    return s;
}

bool segment::remove(std::string_view name) noexcept {
    try {
        check_name(name);
        return bip::shared_memory_object::remove(system_name(name).c_str());
    } catch (...) {
        return false;
    }
}

} // namespace shmq::detail
