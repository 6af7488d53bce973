// SPDX-License-Identifier: BSL-1.0
#include "sync/robust_mutex.hpp"

#include "liveness.hpp"
#include "sync/futex.hpp"
#include "test_hook.hpp"

#include <bit>

namespace shmq::detail {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the futex word is the low half of the 64-bit lock word");

// What try_lock() callers (get_nowait loops) remember between calls, per thread: which owner of
// which lock they have been seeing since when, so that repeated failures add up to a slice.
struct watch {
    const void* lock = nullptr;
    std::uint64_t owner = 0;
    clock::time_point since{};
};
// A few locks at once: a thread may alternate between a lease and the registry lock.
thread_local watch t_watches[4];
thread_local unsigned t_next = 0;

watch& watch_for(const void* lock) noexcept {
    for (auto& w : t_watches)
        if (w.lock == lock) return w;
    watch& w = t_watches[t_next++ % 4];
    w = watch{};
    return w;
}

} // namespace

std::uint32_t* robust_mutex::futex_word() noexcept {
    return reinterpret_cast<std::uint32_t*>(&word_);
}

bool robust_mutex::owner_dead(std::uint64_t owner, const std::atomic<std::uint32_t>* foreign) noexcept {
    if (owner == 0) return false;
    if (foreign && foreign->load(std::memory_order_acquire) != 0) return false;
    process_identity who;
    who.pid = pid_of(owner);
    who.start = owner >> 32;
    // A lock word keeps 32 bits of the start time; 0 there means "not known" (no /proc).
    return probe(who, 32) == liveness::dead;
}

robust_mutex::result robust_mutex::lock(const deadline& until,
                                        const std::atomic<std::uint32_t>* foreign,
                                        bias_revoker* revoker) noexcept {
    const std::uint64_t me = self_word();
    std::uint64_t expected = 0;
    if (word_.compare_exchange_strong(expected, me, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
        SHMQ_TEST_HOOK("mutex.acquired");
        return result::acquired;
    }

    // Short spin: critical sections here are a few stores, so the owner is usually about to
    // leave; sleeping would cost a ~20 µs hand-off.
    for (int i = 0; i < 200; ++i) {
        cpu_relax();
        expected = 0;
        if (word_.load(std::memory_order_relaxed) == 0 &&
            word_.compare_exchange_weak(expected, me, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
            SHMQ_TEST_HOOK("mutex.acquired");
            return result::acquired;
        }
    }

    // The owner being watched and since when. A caller continues the watch of its previous
    // calls on this lock (t_watch), so that get_nowait() in a loop, or a wait taken in steps,
    // also notices a dead owner.
    watch& memo = watch_for(this);
    std::uint64_t watched = memo.owner;
    clock::time_point since = memo.since;

    for (;;) {
        std::uint64_t v = word_.load(std::memory_order_relaxed);
        if (v == 0) {
            // We may not be the only sleeper: keep the waiters bit so unlock wakes the next one.
            if (word_.compare_exchange_weak(v, me | waiters_bit, std::memory_order_acquire,
                                            std::memory_order_relaxed)) {
                SHMQ_TEST_HOOK("mutex.acquired");
                return result::acquired;
            }
            continue;
        }
        if ((v & biased_bit) && revoker) {
            // A biased owner never unlocks by itself: take the bias away (it becomes free), and
            // never set the waiters bit on such a word.
            if (!revoker->revoke(v, until)) {
                memo = watch{this, watched, since};
                return result::timed_out;
            }
            continue;
        }
        const std::uint64_t owner = v & ~waiters_bit;
        const auto now = clock::now();
        if (owner != watched) {
            watched = owner;
            since = now;
        } else if (now - since >= liveness_slice) {
            // The same owner for a whole slice, however we spent it: make sure it still lives
            // (a /proc read, so only this often).
            since = now;
            if (owner_dead(owner, foreign)) {
                SHMQ_TEST_HOOK("mutex.takeover");
                if (word_.compare_exchange_strong(v, me | waiters_bit, std::memory_order_acquire,
                                                  std::memory_order_relaxed)) {
                    memo = watch{};
                    SHMQ_TEST_HOOK("mutex.acquired");
                    return result::recovered;
                }
                continue;
            }
        }
        auto slice = until.slice();
        if (slice.count() <= 0) {
            memo = watch{this, watched, since};
            return result::timed_out;   // try_lock, or the deadline passed
        }
        if (!(v & waiters_bit)) {
            if (!word_.compare_exchange_weak(v, v | waiters_bit, std::memory_order_relaxed,
                                             std::memory_order_relaxed))
                continue;
            v |= waiters_bit;
        }
        // Sleep no longer than until the owner is due for a check.
        const auto due = since + liveness_slice - now;
        if (due < slice) slice = std::chrono::duration_cast<std::chrono::nanoseconds>(due);
        if (slice.count() <= 0) slice = std::chrono::nanoseconds(1000);
        futex_wait(reinterpret_cast<std::atomic<std::uint32_t>*>(futex_word()),
                   static_cast<std::uint32_t>(v), slice);
    }
}

void robust_mutex::wake_one() noexcept {
    futex_wake(reinterpret_cast<std::atomic<std::uint32_t>*>(futex_word()), 1);
}

bool robust_mutex::unlock_if_locked() noexcept {
    // One exchange: on an unlocked word (0, or only the waiters bit) it changes nothing that
    // matters, and on a locked one it is unlock().
    const std::uint64_t v = word_.exchange(0, std::memory_order_release);
    if ((v & ~waiters_bit) == 0) {
        if (v & waiters_bit)   // a sleeper's bit with no owner: put it back, it is still needed
            word_.fetch_or(v & waiters_bit, std::memory_order_relaxed);
        return false;
    }
    if (v & waiters_bit)
        futex_wake(reinterpret_cast<std::atomic<std::uint32_t>*>(futex_word()), 1);
    return true;
}

} // namespace shmq::detail
