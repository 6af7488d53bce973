// SPDX-License-Identifier: BSL-1.0
// Semaphore and BoundedSemaphore: a counter changed by compare-exchange and an event count for
// the acquirers that sleep. No owner, so nothing to take over: a process that dies after
// acquiring keeps its units, as in Python.
#include "deadline.hpp"
#include "sync/object_layout.hpp"
#include "sync/object_segment.hpp"
#include "sync/wait_loop.hpp"

#include <shmq/sync.hpp>

#include <climits>

namespace shmq {
namespace detail {
namespace {

constexpr std::uint32_t max_value = INT32_MAX;   // SEM_VALUE_MAX, as Python's

std::uint32_t checked(unsigned value) {
    if (value > max_value)
        throw value_error("shmq: semaphore value " + std::to_string(value) + " exceeds " +
                          std::to_string(max_value));
    return value;
}

object_spec spec(segment_kind kind, unsigned value) {
    const std::uint32_t v = checked(value);
    const std::uint32_t maxv = kind == segment_kind::bounded_semaphore ? v : 0;
    return {kind, sizeof(semaphore_state), 0, 0, [v, maxv](void* p) {
                auto* s = static_cast<semaphore_state*>(p);
                s->value.store(v, std::memory_order_relaxed);
                s->maxvalue = maxv;
            }};
}

bool try_take(semaphore_state& s) noexcept {
    std::uint32_t v = s.value.load(std::memory_order_relaxed);
    while (v > 0)
        if (s.value.compare_exchange_weak(v, v - 1, std::memory_order_acquire, std::memory_order_relaxed))
            return true;
    return false;
}

} // namespace
} // namespace detail

using detail::area;
using detail::segment_kind;
using detail::semaphore_state;

Semaphore::Semaphore(unsigned value) {
    auto s = detail::make_object(detail::spec(segment_kind::semaphore, value));
    s_ = area<semaphore_state>(s);
    keep_ = std::move(s);
}

Semaphore Semaphore::create(std::string_view name, unsigned value, options opts) {
    auto s = detail::create_object(name, detail::spec(segment_kind::semaphore, value), opts);
    auto* st = area<semaphore_state>(s);
    return Semaphore(std::move(s), st);
}

Semaphore Semaphore::open(std::string_view name, const options& opts) {
    auto s = detail::open_object(name, segment_kind::semaphore, sizeof(semaphore_state), opts);
    auto* st = area<semaphore_state>(s);
    return Semaphore(std::move(s), st);
}

bool Semaphore::remove(std::string_view name) noexcept { return detail::segment::remove(name); }

bool Semaphore::acquire(bool block, timeout_t timeout) {
    if (detail::try_take(*s_)) {
        detail::check_lost(keep_);
        return true;
    }
    const auto until = detail::deadline::from(block, timeout);
    const bool got = detail::await<bool>(
        s_->posted, until, false,
        [&]() -> std::optional<bool> {
            if (detail::try_take(*s_)) return true;
            return std::nullopt;
        },
        []() -> std::optional<bool> { return std::nullopt; });
    detail::check_lost(keep_);
    return got;
}

void Semaphore::release(unsigned n) {
    detail::check_lost(keep_);
    if (n == 0) return;
    const std::uint32_t limit = s_->maxvalue ? s_->maxvalue : detail::max_value;
    std::uint32_t v = s_->value.load(std::memory_order_relaxed);
    do {
        if (n > limit || v > limit - n)
            throw value_error(s_->maxvalue ? "shmq: BoundedSemaphore released too many times"
                                           : "shmq: Semaphore value would exceed INT32_MAX");
    } while (!s_->value.compare_exchange_weak(v, v + n, std::memory_order_seq_cst,
                                              std::memory_order_relaxed));
    s_->posted.notify_after_seq_cst_store();
}

unsigned Semaphore::get_value() const { return s_->value.load(std::memory_order_acquire); }

BoundedSemaphore::BoundedSemaphore(unsigned value) : Semaphore(nullptr, nullptr) {
    auto s = detail::make_object(detail::spec(segment_kind::bounded_semaphore, value));
    s_ = area<semaphore_state>(s);
    keep_ = std::move(s);
}

BoundedSemaphore BoundedSemaphore::create(std::string_view name, unsigned value, options opts) {
    auto s = detail::create_object(name, detail::spec(segment_kind::bounded_semaphore, value), opts);
    auto* st = area<semaphore_state>(s);
    return BoundedSemaphore(std::move(s), st);
}

BoundedSemaphore BoundedSemaphore::open(std::string_view name, const options& opts) {
    auto s = detail::open_object(name, segment_kind::bounded_semaphore, sizeof(semaphore_state), opts);
    auto* st = area<semaphore_state>(s);
    if (st->maxvalue == 0 || st->maxvalue > detail::max_value)
        throw broken_error("shmq: '" + std::string(name) + "': corrupt BoundedSemaphore (bound)");
    return BoundedSemaphore(std::move(s), st);
}

bool BoundedSemaphore::remove(std::string_view name) noexcept { return detail::segment::remove(name); }

} // namespace shmq
