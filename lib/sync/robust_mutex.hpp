// A process-shared mutex that survives the death of its owner.
//
// Why not boost::interprocess::interprocess_mutex: on Linux its robust variant throws
// lock_exception(not_recoverable) once an owner died and stays poisoned for good, and the
// non-robust one hangs every later locker. shmq's critical sections are written so that a dead
// owner leaves nothing half-done that matters (state is published by single atomic stores), so
// the right response to a dead owner is to take the lock over and tell the new owner so.
//
// Layout: one 32-bit futex word in shared memory, zero-initialized = unlocked.
//   0                       unlocked
//   owner_pid | waiters_bit locked by the process owner_pid; waiters_bit = someone may sleep
// Waits sleep at most detail::liveness_slice at a time; when the same owner held the lock for a
// whole slice, the waiter checks that the owner still lives.
#pragma once

#include "deadline.hpp"

#include <atomic>
#include <cstdint>
#include <mutex>

namespace shmq::detail {

class robust_mutex {
public:
    enum class result {
        acquired,    ///< locked normally
        recovered,   ///< locked, but the previous owner died holding it
        timed_out,   ///< the deadline passed first
    };

    /// Locks, waiting until the deadline. Never throws.
    result lock(const deadline& until) noexcept;
    /// Locks without sleeping (after a short spin). A dead owner is noticed only by lock() calls
    /// that sleep, so waiting callers are what recover a lock abandoned by a dead process.
    result try_lock() noexcept { return lock(deadline(timeout_t(std::chrono::duration<double>(0)))); }
    /// Unlocks and wakes one sleeper if any. \pre locked by this process.
    void unlock() noexcept;
    /// The pid of the owner, 0 when unlocked (a snapshot).
    std::uint32_t owner() const noexcept {
        return word_.load(std::memory_order_acquire) & ~waiters_bit;
    }

private:
    static constexpr std::uint32_t waiters_bit = 0x8000'0000u;
    std::atomic<std::uint32_t> word_{0};
};

static_assert(sizeof(robust_mutex) == 4, "robust_mutex is one futex word in shared memory");

/// RAII guard; check result() for timed_out before touching shared state.
class robust_lock {
public:
    robust_lock(robust_mutex& m, const deadline& until) noexcept : m_(m), r_(m.lock(until)) {}
    /// Adopts a lock this process already holds (kept locked across calls by release()).
    robust_lock(robust_mutex& m, std::adopt_lock_t) noexcept : m_(m), r_(robust_mutex::result::acquired) {}
    ~robust_lock() { if (owns()) m_.unlock(); }
    robust_lock(const robust_lock&) = delete;
    robust_lock& operator=(const robust_lock&) = delete;
    bool owns() const noexcept { return r_ != robust_mutex::result::timed_out; }
    robust_mutex::result result() const noexcept { return r_; }
    void unlock() noexcept { if (owns()) { m_.unlock(); r_ = robust_mutex::result::timed_out; } }
    /// Gives up the guard without unlocking: the lock stays held by this process.
    void release() noexcept { r_ = robust_mutex::result::timed_out; }

private:
    robust_mutex& m_;
    robust_mutex::result r_;
};

} // namespace shmq::detail
