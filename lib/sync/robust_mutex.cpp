#include "sync/robust_mutex.hpp"

#include "liveness.hpp"
#include "sync/futex.hpp"

namespace shmq::detail {

robust_mutex::result robust_mutex::lock(const deadline& until) noexcept {
    const std::uint32_t me = self_pid();
    std::uint32_t expected = 0;
    if (word_.compare_exchange_strong(expected, me, std::memory_order_acquire,
                                      std::memory_order_relaxed))
        return result::acquired;

    // Short spin: critical sections here are a few stores, so the owner is usually about to
    // leave; sleeping would cost a ~20 µs hand-off.
    for (int i = 0; i < 200; ++i) {
        cpu_relax();
        expected = 0;
        if (word_.load(std::memory_order_relaxed) == 0 &&
            word_.compare_exchange_weak(expected, me, std::memory_order_acquire,
                                        std::memory_order_relaxed))
            return result::acquired;
    }

    for (;;) {
        std::uint32_t v = word_.load(std::memory_order_relaxed);
        if (v == 0) {
            // We may not be the only sleeper: keep the waiters bit so unlock wakes the next one.
            if (word_.compare_exchange_weak(v, me | waiters_bit, std::memory_order_acquire,
                                            std::memory_order_relaxed))
                return result::acquired;
            continue;
        }
        auto slice = until.slice();
        if (slice.count() <= 0) return result::timed_out;   // try_lock, or the deadline passed
        if (!(v & waiters_bit)) {
            if (!word_.compare_exchange_weak(v, v | waiters_bit, std::memory_order_relaxed,
                                             std::memory_order_relaxed))
                continue;
            v |= waiters_bit;
        }
        const auto slept_from = clock::now();
        futex_wait(&word_, v, slice);
        std::uint32_t now = word_.load(std::memory_order_relaxed);
        // Same owner for a whole slice: make sure it still lives (a /proc read, so only then).
        if (now == v && clock::now() - slept_from >= slice && !is_alive(v & ~waiters_bit)) {
            if (word_.compare_exchange_strong(now, me | waiters_bit, std::memory_order_acquire,
                                              std::memory_order_relaxed))
                return result::recovered;
        }
    }
}

void robust_mutex::unlock() noexcept {
    // seq_cst: callers rely on this exchange as a full fence (event::notify_after_fence).
    if (word_.exchange(0, std::memory_order_seq_cst) & waiters_bit) futex_wake(&word_, 1);
}

} // namespace shmq::detail
