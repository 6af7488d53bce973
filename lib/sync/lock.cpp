// SPDX-License-Identifier: BSL-1.0
// Lock and RLock: robust_mutex plus, for RLock, the holding thread and its recursion count.
#include "sync/lock_ops.hpp"
#include "sync/object_segment.hpp"

#include <shmq/sync.hpp>

#include <sys/syscall.h>
#include <unistd.h>

namespace shmq {
namespace detail {
namespace {

const std::atomic<std::uint32_t>* foreign_of(const std::shared_ptr<void>& keep) noexcept {
    return &static_cast<segment*>(keep.get())->header().foreign_pidns;
}

template <class S>
std::shared_ptr<segment> anonymous(segment_kind kind) {
    return make_object({kind, sizeof(S)});
}

struct thread_cache {
    std::uint32_t pid = 0;
    std::uint64_t tid = 0;
};
thread_local thread_cache t_thread;

} // namespace

bool lock_acquire(lock_state& s, const deadline& until, const std::atomic<std::uint32_t>* foreign) noexcept {
    robust_mutex::result r = robust_mutex::result::acquired;
    if (!s.mutex.try_lock_fast()) {
        r = s.mutex.lock(until, foreign);
        if (r == robust_mutex::result::timed_out) return false;
    }
    // Only the holder writes it; the line is already ours (the mutex word is beside it).
    s.owner_died.store(r == robust_mutex::result::recovered ? 1 : 0, std::memory_order_relaxed);
    return true;
}

bool lock_release(lock_state& s) noexcept { return s.mutex.unlock_if_locked(); }

bool lock_owner_died(const lock_state& s) noexcept {
    return s.owner_died.load(std::memory_order_relaxed) != 0 &&
           s.mutex.owner() == robust_mutex::self_word();
}

std::uint64_t thread_id() noexcept {
    // The pid check makes a forked child (whose one thread has a new tid) ask again.
    const std::uint32_t pid = self_pid();
    if (t_thread.pid != pid) t_thread = {pid, static_cast<std::uint64_t>(::syscall(SYS_gettid))};
    return t_thread.tid;
}

bool rlock_owned(const rlock_state& s) noexcept {
    // owner_tid is ours only while this thread holds the lock: it is cleared before every
    // release, and another holder writes its own tid first. The owner word check rules out a
    // thread of another process with the same tid (another pid namespace).
    return s.owner_tid.load(std::memory_order_relaxed) == thread_id() &&
           s.mutex.owner() == robust_mutex::self_word();
}

bool rlock_acquire(rlock_state& s, const deadline& until, const std::atomic<std::uint32_t>* foreign) noexcept {
    if (rlock_owned(s)) {
        s.count.store(s.count.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        return true;
    }
    robust_mutex::result r = robust_mutex::result::acquired;
    if (!s.mutex.try_lock_fast()) {
        r = s.mutex.lock(until, foreign);
        if (r == robust_mutex::result::timed_out) return false;
    }
    // A dead holder's tid and count are simply overwritten.
    s.owner_tid.store(thread_id(), std::memory_order_relaxed);
    s.count.store(1, std::memory_order_relaxed);
    s.owner_died.store(r == robust_mutex::result::recovered ? 1 : 0, std::memory_order_relaxed);
    return true;
}

void rlock_release(rlock_state& s) {
    if (!rlock_owned(s)) throw value_error("shmq: cannot release an un-acquired RLock (not held by this thread)");
    const std::uint32_t n = s.count.load(std::memory_order_relaxed);
    if (n > 1) {
        s.count.store(n - 1, std::memory_order_relaxed);
        return;
    }
    s.count.store(0, std::memory_order_relaxed);
    s.owner_tid.store(0, std::memory_order_relaxed);
    s.mutex.unlock();
}

std::uint32_t rlock_release_all(rlock_state& s) noexcept {
    const std::uint32_t n = s.count.load(std::memory_order_relaxed);
    s.count.store(0, std::memory_order_relaxed);
    s.owner_tid.store(0, std::memory_order_relaxed);
    s.mutex.unlock();
    return n;
}

bool rlock_restore(rlock_state& s, std::uint32_t count, const std::atomic<std::uint32_t>* foreign) noexcept {
    rlock_acquire(s, deadline(), foreign);   // forever: a dead holder is taken over, a live one leaves
    s.count.store(count ? count : 1, std::memory_order_relaxed);
    return s.owner_died.load(std::memory_order_relaxed) != 0;
}

bool rlock_owner_died(const rlock_state& s) noexcept {
    return s.owner_died.load(std::memory_order_relaxed) != 0 && rlock_owned(s);
}

} // namespace detail

// ---- Lock -----------------------------------------------------------------------------------

using detail::area;
using detail::segment_kind;

Lock::Lock() {
    auto s = detail::anonymous<detail::lock_state>(segment_kind::lock);
    s_ = area<detail::lock_state>(s);
    keep_ = std::move(s);
}

Lock Lock::create(std::string_view name, options opts) {
    auto s = detail::create_object(name, {segment_kind::lock, sizeof(detail::lock_state)}, opts);
    auto* st = area<detail::lock_state>(s);
    return Lock(std::move(s), st);
}

Lock Lock::open(std::string_view name, const options& opts) {
    auto s = detail::open_object(name, segment_kind::lock, sizeof(detail::lock_state), opts);
    auto* st = area<detail::lock_state>(s);
    return Lock(std::move(s), st);
}

bool Lock::remove(std::string_view name) noexcept { return detail::segment::remove(name); }

bool Lock::acquire(bool block, timeout_t timeout) {
    // The uncontended path: one compare-exchange, no clock read.
    bool got = true;
    if (s_->mutex.try_lock_fast())
        s_->owner_died.store(0, std::memory_order_relaxed);
    else
        got = detail::lock_acquire(*s_, detail::deadline::from(block, timeout), detail::foreign_of(keep_));
    detail::check_lost(keep_);
    return got;
}

void Lock::release() {
    detail::check_lost(keep_);
    if (!detail::lock_release(*s_)) throw value_error("shmq: release of an unlocked Lock");
}

bool Lock::previous_owner_died() const noexcept { return detail::lock_owner_died(*s_); }

// ---- RLock ----------------------------------------------------------------------------------

RLock::RLock() {
    auto s = detail::anonymous<detail::rlock_state>(segment_kind::rlock);
    s_ = area<detail::rlock_state>(s);
    keep_ = std::move(s);
}

RLock RLock::create(std::string_view name, options opts) {
    auto s = detail::create_object(name, {segment_kind::rlock, sizeof(detail::rlock_state)}, opts);
    auto* st = area<detail::rlock_state>(s);
    return RLock(std::move(s), st);
}

RLock RLock::open(std::string_view name, const options& opts) {
    auto s = detail::open_object(name, segment_kind::rlock, sizeof(detail::rlock_state), opts);
    auto* st = area<detail::rlock_state>(s);
    return RLock(std::move(s), st);
}

bool RLock::remove(std::string_view name) noexcept { return detail::segment::remove(name); }

bool RLock::acquire(bool block, timeout_t timeout) {
    const bool got = detail::rlock_acquire(*s_, detail::deadline::from(block, timeout), detail::foreign_of(keep_));
    detail::check_lost(keep_);
    return got;
}

void RLock::release() {
    detail::check_lost(keep_);
    detail::rlock_release(*s_);
}

bool RLock::previous_owner_died() const noexcept { return detail::rlock_owner_died(*s_); }

bool RLock::is_owned() const noexcept { return detail::rlock_owned(*s_); }

} // namespace shmq
