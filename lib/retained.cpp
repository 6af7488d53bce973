// SPDX-License-Identifier: BSL-1.0
#include "retained.hpp"

#include "segment.hpp"

#include <shmq/detail/message_sink.hpp>
#include <shmq/errors.hpp>

#include <atomic>
#include <cstring>

namespace shmq::detail::retained {
namespace {

enum class state : std::uint32_t { fresh = 0, taken = 1, done = 2, redeliver = 3 };

std::atomic_ref<std::uint32_t> kind_word(std::byte* ring, std::uint64_t off) noexcept {
    return std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(ring + off + 4));
}
state state_of(std::uint32_t word) noexcept { return static_cast<state>((word >> 8) & 0xff); }
std::uint32_t slot_of(std::uint32_t word) noexcept { return (word >> 16) - 1; }
std::uint32_t with_state(std::uint32_t word, state st) noexcept {
    return (word & kind_mask) | (static_cast<std::uint32_t>(st) << 8) | (word & 0xffff0000u);
}

// Walks the records in [release, head) of channel 0, calling f(offset, record bytes, kind word
// reference) until f returns true. The bytes there are stable: writers stop at release and
// nobody rewrites a consumed record but its state bits. Returns false at the end or at a record
// that does not validate (a corrupt ring: callers that can, report it).
template <class F> bool walk(const segment& s, F&& f, bool* corrupt = nullptr) noexcept {
    channel_state& st = s.channel(0);
    std::byte* ring = s.ring(0);
    const std::uint64_t cap = s.capacity();
    std::uint64_t pos = st.release.load(std::memory_order_acquire);
    const std::uint64_t head = st.head.load(std::memory_order_acquire);
    if (ring::used(pos, head) > cap) {
        if (corrupt) *corrupt = true;
        return false;
    }
    while (ring::used(pos, head) != 0) {
        const std::uint64_t off = ring::bytes_of(pos) & (cap - 1);
        const std::uint64_t cont = cap - off;
        if (off % ring::header_size != 0) {   // records start 8-aligned: corrupt
            if (corrupt) *corrupt = true;
            return false;
        }
        if (cont < ring::header_size || ring::used(pos, head) < ring::header_size) break;
        auto word = kind_word(ring, off);
        const std::uint32_t w = word.load(std::memory_order_acquire);
        std::uint32_t size;
        std::memcpy(&size, ring + off, sizeof size);
        const auto k = static_cast<ring::kind>(w & kind_mask);
        const std::uint64_t rec = k == ring::kind::pad ? cont : ring::footprint(size);
        if (rec > cont || rec > ring::used(pos, head) ||
            (k != ring::kind::pad && k != ring::kind::whole)) {
            if (corrupt) *corrupt = true;
            return false;
        }
        if (k == ring::kind::whole && f(off, size, word)) return true;
        pos = ring::advance(pos, rec, k == ring::kind::whole ? 1 : 0);
    }
    return false;
}

// Moves release past the done records and pads in front of it; wakes writers if it moved.
void advance_release(const segment& s) noexcept {
    channel_state& st = s.channel(0);
    std::byte* ring = s.ring(0);
    const std::uint64_t cap = s.capacity();
    for (;;) {
        std::uint64_t from = st.release.load(std::memory_order_acquire);
        const std::uint64_t head = st.head.load(std::memory_order_acquire);
        if (ring::used(from, head) > cap) return;   // corrupt: readers report it
        std::uint64_t pos = from;
        while (ring::used(pos, head) != 0) {
            const std::uint64_t off = ring::bytes_of(pos) & (cap - 1);
            const std::uint64_t cont = cap - off;
            if (off % ring::header_size != 0 || cont < ring::header_size) return;   // corrupt
            const std::uint32_t w = kind_word(ring, off).load(std::memory_order_acquire);
            const auto k = static_cast<ring::kind>(w & kind_mask);
            std::uint32_t size;
            std::memcpy(&size, ring + off, sizeof size);
            const std::uint64_t rec = k == ring::kind::pad ? cont : ring::footprint(size);
            if (rec > cont || rec > ring::used(pos, head)) return;
            if (k == ring::kind::whole && state_of(w) != state::done) break;
            if (k != ring::kind::whole && k != ring::kind::pad) return;
            pos = ring::advance(pos, rec, k == ring::kind::whole ? 1 : 0);
        }
        if (pos == from) return;
        if (st.release.compare_exchange_strong(from, pos, std::memory_order_acq_rel)) {
            st.space.notify();
            return;
        }
        // Another finisher moved it: start again from where it left release.
    }
}

} // namespace

void take(std::byte* ring, std::uint64_t off, std::uint32_t slot) noexcept {
    auto word = kind_word(ring, off);
    word.store(taken_by(word.load(std::memory_order_relaxed), slot), std::memory_order_release);
}

bool claim(const segment& s, std::uint32_t slot, message_sink& sink) {
    queue_state& q = s.queue();
    // The hint as it was before the walk: only that value may be reset when the walk finds
    // nothing, so records a reaper marks meanwhile keep their hint.
    std::uint64_t before = q.redeliverable.load(std::memory_order_acquire);
    if (before == 0) return false;
    std::byte* ring = s.ring(0);
    std::uint64_t claimed_off = 0;
    std::uint32_t claimed_size = 0;
    bool corrupt = false;
    const bool found = walk(s, [&](std::uint64_t off, std::uint32_t size, std::atomic_ref<std::uint32_t> word) {
        std::uint32_t w = word.load(std::memory_order_acquire);
        if (state_of(w) != state::redeliver) return false;
        if (!word.compare_exchange_strong(w, taken_by(w, slot), std::memory_order_acq_rel)) return false;
        claimed_off = off;
        claimed_size = size;
        return true;
    }, &corrupt);
    if (corrupt) throw broken_error("shmq: shared ring is corrupt: bad retained record");
    if (!found) {
        // The hint was stale (or another claimer was first): nothing waits.
        q.redeliverable.compare_exchange_strong(before, 0, std::memory_order_acq_rel);
        return false;
    }
    std::uint64_t v = q.redeliverable.load(std::memory_order_relaxed);
    while (v && !q.redeliverable.compare_exchange_weak(v, v - 1, std::memory_order_acq_rel)) {
    }
    q.redelivered.fetch_add(1, std::memory_order_acq_rel);
    std::byte* dst = sink.reserve(claimed_size);
    if (claimed_size) std::memcpy(dst, ring + claimed_off + ring::header_size, claimed_size);
    return true;
}

bool finish_one(const segment& s, std::uint32_t slot) noexcept {
    // This process's oldest record first, then anyone's.
    for (int pass = 0; pass < 2; ++pass) {
        for (;;) {
            bool raced = false;
            const bool hit = walk(s, [&](std::uint64_t, std::uint32_t, std::atomic_ref<std::uint32_t> word) {
                std::uint32_t w = word.load(std::memory_order_acquire);
                if (state_of(w) != state::taken || (pass == 0 && slot_of(w) != slot)) return false;
                if (!word.compare_exchange_strong(w, with_state(w, state::done), std::memory_order_acq_rel))
                    raced = true;   // its state changed under us: walk again
                return true;
            });
            if (!hit) break;
            if (raced) continue;
            advance_release(s);
            return true;
        }
    }
    return false;
}

std::uint64_t release_dead(const segment& s, std::uint32_t slot) noexcept {
    std::uint64_t n = 0;
    walk(s, [&](std::uint64_t, std::uint32_t, std::atomic_ref<std::uint32_t> word) {
        std::uint32_t w = word.load(std::memory_order_acquire);
        while (state_of(w) == state::taken && slot_of(w) == slot) {
            if (word.compare_exchange_weak(w, with_state(w, state::redeliver), std::memory_order_acq_rel)) {
                ++n;
                break;
            }
        }
        return false;
    });
    if (n) s.queue().redeliverable.fetch_add(n, std::memory_order_acq_rel);
    return n;
}

std::uint64_t in_progress(const segment& s) noexcept {
    std::uint64_t n = 0;
    walk(s, [&](std::uint64_t, std::uint32_t, std::atomic_ref<std::uint32_t> word) {
        if (state_of(word.load(std::memory_order_acquire)) != state::done) ++n;
        return false;
    });
    return n;
}

} // namespace shmq::detail::retained
