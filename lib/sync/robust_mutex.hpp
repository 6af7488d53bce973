// SPDX-License-Identifier: BSL-1.0
// A process-shared mutex that survives the death of its owner.
//
// Why not boost::interprocess::interprocess_mutex: on Linux its robust variant throws
// lock_exception(not_recoverable) once an owner died and stays poisoned for good, and the
// non-robust one hangs every later locker. shmq's critical sections are written so that a dead
// owner leaves nothing half-done that matters (state is published by single atomic stores), so
// the right response to a dead owner is to take the lock over and tell the new owner so.
//
// Layout: one 64-bit word in shared memory, zero-initialized = unlocked.
//   bits  0..28  owner pid                      (pid_max is at most 2^22)
//   bit  29      revoke: someone asks a biased owner to give the lock up (lib/bias.hpp)
//   bit  30      biased: the owner keeps the lock between critical sections (lib/bias.hpp)
//   bit  31      waiters: someone may sleep on the word
//   bits 32..63  low 32 bits of the owner's start time (liveness.hpp), so that a dead owner
//                whose pid was recycled is still seen as dead
// The owner is set with one compare-exchange, so a locker killed at any instant leaves either no
// owner or a complete one. Sleepers wait on the low 32 bits (a futex is 32-bit).
//
// Takeover: a waiter that has watched the same owner hold the lock for a liveness slice probes it
// (liveness.hpp). Only a certain `dead` takes over; `unknown` (no fd left, /proc hidden, an owner
// in another pid namespace) waits on. The watch runs across sleeps, signals and calls: a caller
// woken by a signal every few ms, or one that only ever try_locks (get_nowait), still takes over
// once the owner has been seen for a slice.
#pragma once

#include "deadline.hpp"
#include "liveness.hpp"
#include "test_hook.hpp"

#include <atomic>
#include <cstdint>
#include <mutex>

namespace shmq::detail {

/// What lock() does with a biased word (lib/bias.hpp): only the writer lease is ever biased, and
/// its lockers pass one of these, which takes the bias away (or returns false at the deadline).
struct bias_revoker {
    virtual bool revoke(std::uint64_t word, const deadline& until) noexcept = 0;
protected:
    ~bias_revoker() = default;
};

class robust_mutex {
public:
    enum class result {
        acquired,    ///< locked normally
        recovered,   ///< locked, but the previous owner died holding it
        timed_out,   ///< the deadline passed first
    };

    /// Locks, waiting until the deadline. `foreign`, when given and non-zero, says processes of
    /// another pid namespace use this lock: a dead-looking owner may then be one of them, so it is
    /// never taken over. Never throws.
    /// `revoker`: how to take a bias away (a biased word is otherwise waited on as a held one).
    result lock(const deadline& until, const std::atomic<std::uint32_t>* foreign = nullptr,
                bias_revoker* revoker = nullptr) noexcept;
    /// Locks without sleeping. Takes over an owner that this thread has seen holding the lock for
    /// a liveness slice (over repeated calls) and that is dead.
    result try_lock(const std::atomic<std::uint32_t>* foreign = nullptr) noexcept {
        return lock(deadline(timeout_t(std::chrono::duration<double>(0))), foreign);
    }
    /// One compare-exchange, nothing else (no clock, no spin): the uncontended fast path for
    /// callers that then fall back to lock(). Inline, as unlock(): every message takes a lease.
    bool try_lock_fast() noexcept {
        std::uint64_t expected = 0;
        if (!word_.compare_exchange_strong(expected, self_word(), std::memory_order_acquire,
                                           std::memory_order_relaxed))
            return false;
        SHMQ_TEST_HOOK("mutex.acquired");
        return true;
    }
    /// Unlocks and wakes one sleeper if any. \pre locked by this process.
    void unlock() noexcept {
        if (word_.exchange(0, std::memory_order_release) & waiters_bit) wake_one();
    }
    /// Unlocks whoever holds it and wakes one sleeper; false (and nothing done) when it was not
    /// locked. For multiprocessing.Lock, which any process may release.
    bool unlock_if_locked() noexcept;
    /// Whether someone may sleep waiting for the lock (a snapshot, for tools).
    bool has_waiters() const noexcept { return (word_.load(std::memory_order_relaxed) & waiters_bit) != 0; }
    /// The owner's word (pid and start bits, and the bias bits, without the waiters bit); 0 when
    /// unlocked. A snapshot. A biased word never equals a plain one: a biased owner is between
    /// critical sections, never inside one that took the lock the plain way.
    std::uint64_t owner() const noexcept { return word_.load(std::memory_order_acquire) & ~waiters_bit; }
    /// The word itself (for the bias protocol, lib/bias.cpp).
    std::atomic<std::uint64_t>& word() noexcept { return word_; }
    static constexpr std::uint64_t waiters_bit = 0x8000'0000u;
    static constexpr std::uint64_t biased_bit = 0x4000'0000u;
    static constexpr std::uint64_t revoke_bit = 0x2000'0000u;
    static std::uint32_t pid_of(std::uint64_t owner) noexcept { return static_cast<std::uint32_t>(owner & pid_mask); }
    /// This process's owner word.
    static std::uint64_t self_word() noexcept {
        const process_identity& me = self();
        return (me.start << 32) | (me.pid & pid_mask);
    }
    /// Whether the process behind an owner word is known to be dead (see liveness.hpp).
    static bool owner_dead(std::uint64_t owner, const std::atomic<std::uint32_t>* foreign) noexcept;

private:
    static constexpr std::uint64_t pid_mask = 0x1fff'ffffu;
    std::uint32_t* futex_word() noexcept;
    void wake_one() noexcept;
    std::atomic<std::uint64_t> word_{0};
};

static_assert(sizeof(robust_mutex) == 8, "robust_mutex is one 64-bit word in shared memory");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "lease words need lock-free 64-bit atomics");

/// RAII guard; check owns() before touching shared state.
class robust_lock {
public:
    robust_lock(robust_mutex& m, const deadline& until,
                const std::atomic<std::uint32_t>* foreign = nullptr,
                bias_revoker* revoker = nullptr) noexcept
        : m_(m), r_(m.lock(until, foreign, revoker)) {}
    /// Adopts a lock this process already holds (a parked message's reader lease).
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
