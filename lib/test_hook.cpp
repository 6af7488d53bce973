// SPDX-License-Identifier: BSL-1.0
#include "test_hook.hpp"

#ifndef NDEBUG
#include <atomic>

namespace shmq::detail::test_hook {
namespace {
std::atomic<function> g_hook{nullptr};
std::atomic<std::uint64_t> g_start{0};
std::atomic<bool> g_refuse_membarrier{false};
} // namespace

void install(function f) noexcept { g_hook.store(f, std::memory_order_release); }

void reach(const char* point) noexcept {
    if (function f = g_hook.load(std::memory_order_acquire)) f(point);
}

void start_position(std::uint64_t packed) noexcept { g_start.store(packed, std::memory_order_relaxed); }
std::uint64_t start_position() noexcept { return g_start.load(std::memory_order_relaxed); }

void refuse_membarrier(bool on) noexcept { g_refuse_membarrier.store(on, std::memory_order_relaxed); }
bool membarrier_refused() noexcept { return g_refuse_membarrier.load(std::memory_order_relaxed); }

} // namespace shmq::detail::test_hook
#endif
