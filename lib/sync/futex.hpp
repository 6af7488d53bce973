// SPDX-License-Identifier: BSL-1.0
// The one system call every shmq wait is built on. Futexes work on MAP_SHARED memory across
// processes (we never use FUTEX_PRIVATE_FLAG) and take a relative CLOCK_MONOTONIC timeout, so
// waits are immune to wall-clock jumps. Callers loop: a wake-up may be spurious or an EINTR.
#pragma once

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

namespace shmq::detail {

static_assert(sizeof(std::atomic<std::uint32_t>) == 4, "futex words are 32-bit");

/// Sleeps while *word == expected, at most `limit`. Returns on wake, timeout, signal or mismatch.
inline void futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected,
                       std::chrono::nanoseconds limit) noexcept {
    if (limit.count() <= 0) return;
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(limit.count() / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(limit.count() % 1'000'000'000);
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT, expected, &ts,
              nullptr, 0);
}

/// Wakes up to n sleepers on word (n = INT_MAX for all).
inline void futex_wake(std::atomic<std::uint32_t>* word, int n = INT_MAX) noexcept {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE, n, nullptr,
              nullptr, 0);
}

/// A polite busy-wait step for the spin phase before sleeping.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

} // namespace shmq::detail
