// SPDX-License-Identifier: BSL-1.0
#include "segment.hpp"

#include "liveness.hpp"
#include "registry.hpp"
#include "test_hook.hpp"

#include <shmq/errors.hpp>

#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>
#include <thread>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace shmq::detail {
namespace {

constexpr std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) & ~(a - 1); }

// How long open() waits for a creator that is still initializing the segment it just created.
constexpr auto creator_grace = std::chrono::seconds(2);

std::string describe(std::string_view name) { return "shmq: '" + std::string(name) + "'"; }

std::string errno_text(int err) { return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")"; }

/// Closes an fd on every path out of a function.
struct fd_closer {
    int fd;
    ~fd_closer() { if (fd >= 0) ::close(fd); }
};

} // namespace

// ---- the SIGBUS guard --------------------------------------------------------------------------
//
// One record per mapped named segment, in a list that only grows (records are reused, never
// freed), so the signal handler can walk it without locks. `state` is written by the thread that
// maps or unmaps the view (0 free, 1 being filled, 2 active); the other fields are written while
// state is 1, before state 2 is published with release; `lost` is written by the handler.
struct guard_slot {
    std::atomic<int> state{0};
    std::atomic<std::uintptr_t> base{0};
    std::atomic<std::uint64_t> size{0};
    std::atomic<std::uint64_t> channels_off{0};
    std::atomic<std::uint32_t> channels{0};
    std::atomic<std::uint64_t> capacity{0};
    std::atomic<bool> lost{false};
    guard_slot* next = nullptr;   // immutable once the record is in the list
};

namespace {

std::atomic<guard_slot*> guard_list{nullptr};
std::mutex guard_install_mutex;
struct sigaction previous_sigbus {};   // written under guard_install_mutex before installing ours

void chain_sigbus(int sig, siginfo_t* info, void* ctx) {
    const struct sigaction prev = previous_sigbus;
    if ((prev.sa_flags & SA_SIGINFO) && prev.sa_sigaction) {
        prev.sa_sigaction(sig, info, ctx);
        return;
    }
    if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN && prev.sa_handler) {
        prev.sa_handler(sig);
        return;
    }
    // Default action: restore it and return; the faulting access repeats and the process dies of
    // SIGBUS as it would have without shmq.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    ::sigaction(SIGBUS, &dfl, nullptr);
}

void on_sigbus(int sig, siginfo_t* info, void* ctx) {
    const auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
    for (guard_slot* g = guard_list.load(std::memory_order_acquire); g; g = g->next) {
        if (g->state.load(std::memory_order_acquire) != 2) continue;
        const std::uintptr_t base = g->base.load(std::memory_order_relaxed);
        const std::uint64_t size = g->size.load(std::memory_order_relaxed);
        if (addr < base || addr - base >= size) continue;
        // The segment was truncated under us. Replace this process's whole view (mmap is a plain
        // system call, safe here) with private zero pages, so the access that faulted, and every
        // one after it, completes instead of faulting again.
        void* p = ::mmap(reinterpret_cast<void*>(base), size, PROT_READ | PROT_WRITE,
                         MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) break;
        // Zero positions would look like an empty ring, and a blocked get() would wait forever.
        // Put tail beyond head by more than the ring, which every ring operation checks
        // ("head is ahead of tail"): the operation in progress and every later one end in
        // broken_error.
        const std::uint64_t off = g->channels_off.load(std::memory_order_relaxed);
        const std::uint32_t channels = g->channels.load(std::memory_order_relaxed);
        const std::uint64_t cap = g->capacity.load(std::memory_order_relaxed);
        for (std::uint32_t c = 0; c < channels; ++c) {
            auto* st = reinterpret_cast<channel_state*>(base + off + c * sizeof(channel_state));
            if (off + (c + 1) * sizeof(channel_state) > size) break;
            st->head.store(0, std::memory_order_relaxed);
            st->tail.store(((std::uint64_t{1}) << position_byte_bits) | (2 * cap + 64),
                           std::memory_order_release);
        }
        g->lost.store(true, std::memory_order_release);
        return;
    }
    chain_sigbus(sig, info, ctx);
}

/// Installs on_sigbus unless it is already the handler (a program or test framework may have
/// replaced it since: then ours goes back in front and chains to theirs).
void install_sigbus_guard() {
    std::lock_guard<std::mutex> lock(guard_install_mutex);
    struct sigaction cur {};
    if (::sigaction(SIGBUS, nullptr, &cur) != 0) return;
    if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == &on_sigbus) return;
    struct sigaction ours {};
    ours.sa_sigaction = &on_sigbus;
    ours.sa_flags = SA_SIGINFO;
    sigemptyset(&ours.sa_mask);
    previous_sigbus = cur;
    ::sigaction(SIGBUS, &ours, nullptr);
}

guard_slot* guard_acquire() {
    for (guard_slot* g = guard_list.load(std::memory_order_acquire); g; g = g->next) {
        int expected = 0;
        if (g->state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) return g;
    }
    auto* g = new guard_slot;   // bad_alloc: the caller turns it into an error
    g->state.store(1, std::memory_order_relaxed);
    guard_slot* head = guard_list.load(std::memory_order_relaxed);
    do g->next = head;
    while (!guard_list.compare_exchange_weak(head, g, std::memory_order_acq_rel));
    return g;
}

} // namespace

bool segment::lost() const noexcept {
    return guard_ && guard_->lost.load(std::memory_order_acquire);
}

void segment::check_lost() const {
    if (lost())
        throw broken_error(describe(name_) + ": the segment was truncated while mapped; its contents are lost");
}

void segment::map(int fd, std::uint64_t bytes) {
    unmap();
    void* p = ::mmap(nullptr, bytes, read_only_ ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        const int err = errno;
        throw error((name_.empty() ? std::string("shmq") : describe(name_)) + ": cannot map " +
                    std::to_string(bytes) + " bytes of shared memory: " + errno_text(err));
    }
    base_ = p;
    mapped_ = bytes;
    if (name_.empty()) return;   // a sealed memfd cannot shrink: nothing to guard
    try {
        install_sigbus_guard();
        guard_ = guard_acquire();
    } catch (const std::bad_alloc&) {
        unmap();
        throw error(describe(name_) + ": out of memory mapping the segment: " + errno_text(ENOMEM));
    }
    guard_->base.store(reinterpret_cast<std::uintptr_t>(p), std::memory_order_relaxed);
    guard_->size.store(bytes, std::memory_order_relaxed);
    guard_->channels_off.store(0, std::memory_order_relaxed);   // set by set_guard_layout()
    guard_->channels.store(0, std::memory_order_relaxed);
    guard_->capacity.store(0, std::memory_order_relaxed);
    guard_->lost.store(false, std::memory_order_relaxed);
    guard_->state.store(2, std::memory_order_release);
}

void segment::unmap() noexcept {
    if (guard_) {
        // Lost or not, the record goes back; a lost view is private memory, unmapped like any other.
        guard_->state.store(0, std::memory_order_release);
        guard_ = nullptr;
    }
    if (base_) ::munmap(base_, mapped_);
    base_ = nullptr;
    mapped_ = 0;
}

segment::~segment() { unmap(); }

void segment::remember_file(int fd) noexcept {
    struct stat st {};
    if (::fstat(fd, &st) == 0) {
        dev_ = static_cast<std::uint64_t>(st.st_dev);
        ino_ = static_cast<std::uint64_t>(st.st_ino);
    }
}

bool segment::named_here() const noexcept {
    if (name_.empty() || ino_ == 0) return false;
    try {
        struct stat st {};
        if (::lstat(file_path(system_name(name_)).c_str(), &st) != 0) return false;
        return static_cast<std::uint64_t>(st.st_dev) == dev_ && static_cast<std::uint64_t>(st.st_ino) == ino_;
    } catch (...) {
        return false;
    }
}

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

std::uint64_t segment::plan_object(std::uint64_t bytes) noexcept {
    channels_ = 0;
    capacity_ = 0;
    object_off_ = align_up(sizeof(segment_header), cache_line);
    object_bytes_ = bytes;
    return align_up(object_off_ + bytes, cache_line);
}

std::uint64_t segment::plan_for(const segment_params& p, std::uint64_t& capacity) {
    if (is_object_kind(p.kind)) {
        if (p.object_bytes == 0 || p.object_bytes > max_object_bytes)
            throw value_error("shmq: object of " + std::to_string(p.object_bytes) +
                              " bytes is out of range");
        capacity = p.object_bytes;   // the header keeps it where rings keep their capacity
        return plan_object(p.object_bytes);
    }
    capacity = ring_capacity_for(p.capacity);
    return plan(p.channels, capacity);
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
    h.flags = p.flags;
    h.channels = is_object_kind(p.kind) ? 0 : p.channels;
    h.pidns = self().pidns;
    // Tests start rings just below a wrap of the packed positions (test_hook.hpp).
    if (const std::uint64_t start = test_hook::start_position())
        for (std::uint32_t c = 0; c < channels_; ++c) {
            channel(c).head.store(start, std::memory_order_relaxed);
            channel(c).tail.store(start, std::memory_order_relaxed);
            channel(c).release.store(start, std::memory_order_relaxed);
        }
    if (p.init_object) p.init_object(object());
    // The creator is a holder from the first instant anyone can see the object (segment.hpp).
    if (p.attach_creator && !is_object_kind(p.kind)) registry::attach(*this, self(), p.creator_counts);
    h.ready.store(1, std::memory_order_release);
}

namespace {

/// Reserves every page of fd's first `bytes` (fallocate), so running out of memory or of
/// /dev/shm is an error now rather than a SIGBUS at first touch. Returns 0 or an errno value.
int reserve(int fd, std::uint64_t bytes) {
    if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) return errno;
    int r;
    do r = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes));
    while (r == EINTR);
    return r;
}

} // namespace

void segment::set_guard_layout() noexcept {
    if (!guard_) return;
    guard_->channels_off.store(channels_off_, std::memory_order_relaxed);
    guard_->capacity.store(capacity_, std::memory_order_relaxed);
    guard_->channels.store(channels_, std::memory_order_release);
}

std::shared_ptr<segment> segment::create_anonymous(const segment_params& p) {
    std::uint64_t cap = 0;
    std::shared_ptr<segment> s(new segment);
    s->size_ = s->plan_for(p, cap);
    const auto fail = [&](const char* what, int err) {
        return error("shmq: cannot " + std::string(what) + " " + std::to_string(s->size_) +
                     " bytes of shared memory: " + errno_text(err));
    };
    // A memfd, because its pages can be reserved (an error now, not a SIGBUS later) and its size
    // sealed (nobody can shrink it under us); it reaches children through fork like anonymous
    // memory, and its fd is closed once mapped.
    const int fd = ::memfd_create("shmq", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        const int err = errno;
        if (err != EMFILE && err != ENFILE && err != ENOSYS) throw fail("create", err);
        // No fd to spare: plain anonymous memory, prefaulted. The kernel charges shared anonymous
        // memory at mmap (with strict overcommit that fails here); MAP_POPULATE then faults it in.
        void* a = ::mmap(nullptr, s->size_, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (a == MAP_FAILED) throw fail("map", errno);
        s->base_ = a;
        s->mapped_ = s->size_;
    } else {
        fd_closer closer{fd};
        if (const int err = reserve(fd, s->size_)) throw fail("reserve", err);
        ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
        s->map(fd, s->size_);
    }
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
    return create_named_at(name, "/" + system_name(name), p, mode);
}

std::shared_ptr<segment> segment::create_named_at(std::string_view name, const std::string& sys,
                                                  const segment_params& p, unsigned mode) {
    check_name(name);
    std::uint64_t cap = 0;
    std::shared_ptr<segment> s(new segment);
    s->size_ = s->plan_for(p, cap);
    s->name_ = std::string(name);
    // O_EXCL fails on any existing entry, a symbolic link included (never followed).
    const int fd = ::shm_open(sys.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                              static_cast<mode_t>(mode & 0777));
    if (fd < 0) {
        const int err = errno;
        if (err == EEXIST) throw exists_error(describe(name) + " already exists");
        if (err == EACCES) throw permission_error(describe(name) + ": cannot create shared memory: " + errno_text(err));
        throw error(describe(name) + ": cannot create shared memory: " + errno_text(err));
    }
    fd_closer closer{fd};
    s->remember_file(fd);
    try {
        // Apply the mode exactly: shm_open's mode is narrowed by the umask.
        if (::fchmod(fd, static_cast<mode_t>(mode & 07777)) != 0)
            throw error(describe(name) + ": cannot set mode: " + errno_text(errno));
        if (const int err = reserve(fd, s->size_))
            throw error(describe(name) + ": cannot reserve " + std::to_string(s->size_) +
                        " bytes of shared memory (is /dev/shm full?): " + errno_text(err));
        s->map(fd, s->size_);
        s->set_guard_layout();
        s->initialize(p, cap);
        s->check_lost();   // truncated by someone else already
    } catch (...) {
        ::shm_unlink(sys.c_str());
        throw;
    }
    return s;
}

std::shared_ptr<segment> segment::open_named(std::string_view name, segment_kind kind,
                                             std::uint64_t type_fingerprint, bool trust_foreign) {
    return open_checked(name, &kind, &type_fingerprint, trust_foreign,
                        inspect_mode{.read_only = false, .wait = true});
}

std::shared_ptr<segment> segment::inspect(std::string_view name, inspect_mode how) {
    return open_checked(name, nullptr, nullptr, true, how);
}

std::shared_ptr<segment> segment::open_checked(std::string_view name, const segment_kind* kind,
                                               const std::uint64_t* type_fingerprint,
                                               bool trust_foreign, inspect_mode how) {
    check_name(name);
    const std::string sys = "/" + system_name(name);
    const int fd = ::shm_open(sys.c_str(), (how.read_only ? O_RDONLY : O_RDWR) | O_NOFOLLOW | O_CLOEXEC, 0);
    if (fd < 0) {
        const int err = errno;
        if (err == ENOENT) throw not_found_error(describe(name) + " does not exist");
        if (err == ELOOP)
            throw permission_error(describe(name) + ": refusing a symbolic link at the name: " + errno_text(err));
        if (err == EACCES) throw permission_error(describe(name) + ": cannot open shared memory: " + errno_text(err));
        throw error(describe(name) + ": cannot open shared memory: " + errno_text(err));
    }
    fd_closer closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw error(describe(name) + ": fstat: " + errno_text(errno));
    if (!S_ISREG(st.st_mode)) throw permission_error(describe(name) + ": not a regular file");
    // Someone who could have created or rewritten the segment can read what is put in it and
    // inject items: only the opening user may, unless the caller says it trusts the others.
    if (!trust_foreign && st.st_uid != ::geteuid())
        throw permission_error(describe(name) + ": owned by uid " + std::to_string(st.st_uid) +
                               ", not by this user (uid " + std::to_string(::geteuid()) +
                               "); pass options::trust_foreign to open it anyway");
    if (!trust_foreign && (st.st_mode & (S_IWGRP | S_IWOTH)))
    {
        char m[8];
        std::snprintf(m, sizeof m, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        throw permission_error(describe(name) + ": writable by group or others (mode " + m +
                               "); pass options::trust_foreign to open it anyway");
    }

    // The creator may still be sizing and initializing it: wait a little for `ready` (tools
    // do not wait: `shmq ls` must never block on a half-made object).
    auto give_up = std::chrono::steady_clock::now() + (how.wait ? creator_grace : decltype(creator_grace)(0));
    std::shared_ptr<segment> s(new segment);
    s->name_ = std::string(name);
    s->read_only_ = how.read_only;
    s->remember_file(fd);
    for (;;) {
        if (::fstat(fd, &st) != 0) throw error(describe(name) + ": fstat: " + errno_text(errno));
        const auto size = static_cast<std::uint64_t>(st.st_size);
        if (size >= sizeof(segment_header)) {
            if (s->mapped_ != size) s->map(fd, size);
            s->size_ = size;
            if (s->header().ready.load(std::memory_order_acquire) == 1 && !s->lost()) break;
        }
        if (std::chrono::steady_clock::now() >= give_up)
            throw uninitialized_error(describe(name) + (how.wait ? ": segment was never initialized by its creator"
                                                                 : ": its creator has not initialized it (yet)"));
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }

    // Validate everything before any of it is used as a size or an offset.
    const auto& h = s->header();
    if (h.magic != segment_magic) throw broken_error(describe(name) + ": not a shmq segment (bad magic)");
    if (h.version != layout_version)
        throw broken_error(describe(name) + ": layout version " + std::to_string(h.version) +
                           ", this library reads " + std::to_string(layout_version));
    if (h.kind < static_cast<std::uint32_t>(segment_kind::pipe) ||
        h.kind > static_cast<std::uint32_t>(segment_kind::array))
        throw broken_error(describe(name) + ": corrupt header (unknown kind)");
    if ((h.flags & ~std::uint32_t{retain_records}) != 0 ||
        ((h.flags & retain_records) &&
         h.kind != static_cast<std::uint32_t>(segment_kind::joinable_queue)))
        throw broken_error(describe(name) + ": corrupt header (flags)");
    if (kind && h.kind != static_cast<std::uint32_t>(*kind))
        throw type_error(describe(name) + ": is another kind of shmq object");
    if (type_fingerprint && h.type_fingerprint != *type_fingerprint)
        throw type_error(describe(name) + ": was created for another element type");
    const std::uint64_t cap = h.capacity;
    const std::uint32_t channels = h.channels;
    if (is_object_kind(h.kind)) {
        if (channels != 0 || cap == 0 || cap > max_object_bytes)
            throw broken_error(describe(name) + ": corrupt header (object size)");
        const std::uint64_t expect = s->plan_object(cap);
        if (h.total_size != expect || s->size_ < expect)
            throw broken_error(describe(name) + ": corrupt header (size " + std::to_string(s->size_) +
                               ", expected " + std::to_string(expect) + ")");
        s->check_lost();
        return s;
    }
    if (channels < 1 || channels > 2 || cap < min_capacity || cap > max_capacity ||
        !std::has_single_bit(cap))
        throw broken_error(describe(name) + ": corrupt header (channels or capacity)");
    // A process of another pid namespace: pids in lease words may now name processes we cannot
    // see, so nobody may take a lease over on the word of /proc alone (layout.hpp).
    if (h.pidns != 0 && self().pidns != 0 && h.pidns != self().pidns && !how.read_only)
        s->header().foreign_pidns.store(1, std::memory_order_release);
    const std::uint64_t expect = s->plan(channels, cap);
    if (h.total_size != expect || s->size_ < expect)
        throw broken_error(describe(name) + ": corrupt header (size " + std::to_string(s->size_) +
                           ", expected " + std::to_string(expect) + ")");
    s->set_guard_layout();
    s->check_lost();   // a page vanished while we validated: the header read may have been zeros
    return s;
}

bool segment::remove(std::string_view name) noexcept {
    try {
        check_name(name);
        return ::shm_unlink(("/" + system_name(name)).c_str()) == 0;
    } catch (...) {
        return false;
    }
}

} // namespace shmq::detail
