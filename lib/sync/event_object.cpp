// SPDX-License-Identifier: BSL-1.0
// Event: a flag plus a count of set() calls in one word (object_layout.hpp), and an event count
// for the waiters. A waiter that dies leaves at most the event's sleeper bit set, which the next
// set() clears with one needless wake (event.hpp): it costs nothing else.
#include "deadline.hpp"
#include "sync/object_layout.hpp"
#include "sync/object_segment.hpp"
#include "sync/wait_loop.hpp"

#include <shmq/sync.hpp>

namespace shmq {

using detail::area;
using detail::event_state;
using detail::segment_kind;

Event::Event() {
    auto s = detail::make_object({segment_kind::event, sizeof(event_state)});
    s_ = area<event_state>(s);
    keep_ = std::move(s);
}

Event Event::create(std::string_view name, options opts) {
    auto s = detail::create_object(name, {segment_kind::event, sizeof(event_state)}, opts);
    auto* st = area<event_state>(s);
    return Event(std::move(s), st);
}

Event Event::open(std::string_view name, const options& opts) {
    auto s = detail::open_object(name, segment_kind::event, sizeof(event_state), opts);
    auto* st = area<event_state>(s);
    return Event(std::move(s), st);
}

bool Event::remove(std::string_view name) noexcept { return detail::segment::remove(name); }

void Event::set() noexcept {
    std::uint32_t w = s_->word.load(std::memory_order_relaxed);
    do {
        if (w & 1) return;   // already set: nobody can be waiting for this set
    } while (!s_->word.compare_exchange_weak(w, (w + 2) | 1, std::memory_order_seq_cst,
                                             std::memory_order_relaxed));
    s_->changed.notify_after_seq_cst_store();
}

void Event::clear() noexcept { s_->word.fetch_and(~std::uint32_t{1}, std::memory_order_release); }

bool Event::is_set() const noexcept { return s_->word.load(std::memory_order_acquire) & 1; }

bool Event::wait(timeout_t timeout) {
    detail::check_lost(keep_);
    const std::uint32_t start = s_->word.load(std::memory_order_acquire);
    if (start & 1) return true;
    const detail::deadline until(timeout);
    const bool set = detail::await<bool>(
        s_->changed, until, false,
        [&]() -> std::optional<bool> {
            const std::uint32_t w = s_->word.load(std::memory_order_acquire);
            // Set now, or set (and maybe cleared again) since we began.
            if ((w & 1) || (w >> 1) != (start >> 1)) return true;
            return std::nullopt;
        },
        []() -> std::optional<bool> { return std::nullopt; });
    detail::check_lost(keep_);
    return set;
}

} // namespace shmq
