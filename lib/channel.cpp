#include "channel.hpp"

#include "liveness.hpp"
#include "registry.hpp"
#include "ring.hpp"
#include "sync/wait_loop.hpp"

#include <shmq/errors.hpp>

#include <cstring>
#include <ctime>
#include <new>
#include <optional>
#include <thread>

namespace shmq::detail {
namespace {

// How often the fast path of write() checks that some reader is still alive (DESIGN §3: a peer's
// death shows as broken pipe within 100 ms).
constexpr auto reap_interval = std::chrono::milliseconds(20);

[[noreturn]] void corrupt(const char* what) {
    throw broken_error(std::string("shmq: shared ring is corrupt: ") + what);
}

} // namespace

channel::channel(std::shared_ptr<segment> seg, std::uint32_t index, bool eof_rules) noexcept
    : seg_(std::move(seg)),
      st_(seg_->channel(index)),
      ring_(seg_->ring(index)),
      cap_(seg_->capacity()),
      index_(index),
      eof_rules_(eof_rules) {}

bool channel::reap_due() noexcept {
    // The coarse clock (a few ns, jiffy resolution) is plenty for a 20 ms period, and write()
    // asks on every message.
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    const clock::rep now = static_cast<clock::rep>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
    clock::rep last = last_reap_.load(std::memory_order_relaxed);
    const clock::rep interval = std::chrono::nanoseconds(reap_interval).count();
    return now - last > interval &&
           last_reap_.compare_exchange_strong(last, now, std::memory_order_relaxed);
}

channel::~channel() { drop_parked(); }

void channel::drop_parked() noexcept {
    bool expected = false;
    if (parked_.held.load(std::memory_order_acquire) && parked_.pid == self_pid() &&
        parked_.busy.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
        // The rest of that message is skipped by the next reader as orphan pieces.
        parked_.held.store(false, std::memory_order_release);
        std::vector<std::byte>().swap(parked_.bytes);
        st_.rlock.unlock();
        parked_.busy.store(false, std::memory_order_release);
    }
}

std::uint64_t channel::load_tail() const { return st_.tail.load(std::memory_order_acquire); }
std::uint64_t channel::load_head() const { return st_.head.load(std::memory_order_acquire); }

bool channel::readers_gone() {
    return eof_rules_ && registry::holders(*seg_, reader_end(index_)) == 0;
}
bool channel::writers_gone() {
    return eof_rules_ && registry::holders(*seg_, writer_end(index_)) == 0;
}

std::uint64_t channel::room_for(std::uint64_t tail, std::uint64_t need) const noexcept {
    std::uint64_t cont = cap_ - (ring::bytes_of(tail) & (cap_ - 1));
    return need <= cont ? need : cont + need;
}

std::uint64_t channel::place(std::uint64_t& tail, std::uint64_t need) noexcept {
    std::uint64_t offset = ring::bytes_of(tail) & (cap_ - 1);
    std::uint64_t cont = cap_ - offset;
    if (need > cont) {
        ring::write_header(ring_, offset, static_cast<std::uint32_t>(cont - ring::header_size), ring::kind::pad);
        tail = ring::advance(tail, cont, 0);
        offset = 0;
    }
    return offset;
}

channel::wait_result channel::wait_for_space(std::uint64_t tail, std::uint64_t need,
                                             const deadline& until, std::uint64_t max_messages) {
    auto fits = [&] {
        // Try the cached head first: in steady state this touches no line of the reader's.
        std::uint64_t head = seen_head_.load(std::memory_order_relaxed);
        std::uint64_t used = ring::used(head, tail);
        if (used > cap_ || cap_ - used < need ||
            (max_messages && ring::messages(head, tail) >= max_messages)) {
            head = load_head();
            seen_head_.store(head, std::memory_order_relaxed);
            used = ring::used(head, tail);
            if (used > cap_) corrupt("head is ahead of tail");
        }
        return cap_ - used >= need &&
               (max_messages == 0 || ring::messages(head, tail) < max_messages);
    };
    using R = std::optional<wait_result>;
    return await(
        st_.space, until, wait_result::timed_out,
        [&]() -> R {
            if (fits()) return wait_result::ready;
            if (readers_gone()) return wait_result::broken_pipe;
            return std::nullopt;
        },
        [&]() -> R {
            if (eof_rules_ && reap_due()) registry::reap(*seg_, reader_end(index_));
            return std::nullopt;
        });
}

channel::wait_result channel::wait_for_data(std::uint64_t head, const deadline& until,
                                            bool assembling) {
    auto arrived = [&] { return ring::bytes_of(load_tail()) != ring::bytes_of(head); };
    using R = std::optional<wait_result>;
    return await(
        st_.data, until, wait_result::timed_out,
        [&]() -> R {
            if (arrived()) return wait_result::ready;
            if (!assembling && writers_gone())
                return arrived() ? wait_result::ready : wait_result::eof;
            return std::nullopt;
        },
        [&]() -> R {
            if (assembling) {
                // The writer of this stream holds the writer lease until its last piece. If
                // nobody holds it, or its holder died, the rest of the message will never come.
                std::uint32_t owner = st_.wlock.owner();
                if ((owner == 0 || !is_alive(owner)) && !arrived()) return wait_result::abandoned;
            } else if (eof_rules_ && reap_due()) {
                registry::reap(*seg_, writer_end(index_));
            }
            return std::nullopt;
        });
}

io_status channel::write(std::span<const std::byte> msg, const deadline& until,
                         std::uint64_t max_messages, std::atomic<std::size_t>* uncount) {
    robust_lock lease(st_.wlock, until);
    if (!lease.owns()) return io_status::timed_out;
    if (eof_rules_) {
        if (reap_due()) registry::reap(*seg_, reader_end(index_));
        if (readers_gone()) return io_status::broken_pipe;
    }
    // A lease taken over from a dead writer needs no repair: that writer's unpublished bytes are
    // simply overwritten, and its published pieces are discarded by the reader.
    std::uint64_t tail = load_tail();
    if (msg.size() > whole_limit()) return stream(msg, tail, until, max_messages, uncount);

    const std::uint64_t need = ring::footprint(msg.size());
    switch (wait_for_space(tail, room_for(tail, need), until, max_messages)) {
    case wait_result::ready: break;
    case wait_result::broken_pipe: return io_status::broken_pipe;
    default: return io_status::timed_out;
    }
    std::uint64_t off = place(tail, need);
    ring::write_header(ring_, off, static_cast<std::uint32_t>(msg.size()), ring::kind::whole);
    if (!msg.empty()) std::memcpy(ring_ + off + ring::header_size, msg.data(), msg.size());
    if (uncount) uncount->fetch_sub(1, std::memory_order_acq_rel);
    st_.tail.store(ring::advance(tail, need, 1), std::memory_order_release);
    lease.unlock();                     // a seq_cst exchange: it orders the tail store...
    st_.data.notify_after_fence();      // ...before this check for sleeping readers
    return io_status::ok;
}

std::size_t channel::write_some(std::span<const std::span<const std::byte>> msgs,
                                const deadline& until, std::uint64_t max_messages,
                                std::atomic<std::size_t>* uncount) {
    robust_lock lease(st_.wlock, until);
    if (!lease.owns()) return 0;
    std::uint64_t tail = load_tail();
    std::uint64_t head = load_head();
    std::size_t n = 0;
    for (auto msg : msgs) {
        if (msg.size() > whole_limit()) break;
        std::uint64_t need = ring::footprint(msg.size());
        std::uint64_t used = ring::used(head, tail);
        if (used > cap_) corrupt("head is ahead of tail");
        if (cap_ - used < room_for(tail, need)) break;
        if (max_messages && ring::messages(head, tail) >= max_messages) break;
        std::uint64_t off = place(tail, need);
        ring::write_header(ring_, off, static_cast<std::uint32_t>(msg.size()), ring::kind::whole);
        if (!msg.empty()) std::memcpy(ring_ + off + ring::header_size, msg.data(), msg.size());
        tail = ring::advance(tail, need, 1);
        ++n;
    }
    if (n) {
        // One publication for the whole batch: readers see all of it or none of it.
        if (uncount) uncount->fetch_sub(n, std::memory_order_acq_rel);
        st_.tail.store(tail, std::memory_order_release);
        lease.unlock();
        st_.data.notify_after_fence();
    }
    return n;
}

io_status channel::stream(std::span<const std::byte> msg, std::uint64_t& tail,
                          const deadline& until, std::uint64_t max_messages,
                          std::atomic<std::size_t>* uncount) {
    // Pieces of a quarter ring: the reader drains one while the writer fills the next.
    const std::uint64_t piece_max = cap_ / 4 - ring::header_size;
    const std::uint64_t total = msg.size();
    std::uint64_t sent = 0;
    bool first = true;
    while (first || sent < total) {
        std::uint64_t data = first ? std::min(total, piece_max - ring::first_prefix)
                                   : std::min(total - sent, piece_max);
        std::uint64_t payload = data + (first ? ring::first_prefix : 0);
        ring::kind k = first ? ring::kind::first
                             : (sent + data == total ? ring::kind::last : ring::kind::middle);
        std::uint64_t need = ring::footprint(payload);
        // Every piece honours the deadline. Giving up mid-message is safe: the lease is released,
        // and a reader part-way through this message sees that its writer is gone and drops it.
        auto r = wait_for_space(tail, room_for(tail, need), until, first ? max_messages : 0);
        if (r == wait_result::broken_pipe) return io_status::broken_pipe;
        if (r != wait_result::ready) return io_status::timed_out;
        std::uint64_t off = place(tail, need);
        ring::write_header(ring_, off, static_cast<std::uint32_t>(payload), k);
        std::byte* dst = ring_ + off + ring::header_size;
        if (first) {
            std::memcpy(dst, &total, sizeof total);
            dst += ring::first_prefix;
        }
        std::memcpy(dst, msg.data() + sent, data);
        tail = ring::advance(tail, need, k == ring::kind::last ? 1 : 0);
        if (k == ring::kind::last && uncount) uncount->fetch_sub(1, std::memory_order_acq_rel);
        st_.tail.store(tail, std::memory_order_release);
        st_.data.notify();
        sent += data;
        first = false;
    }
    return io_status::ok;
}

io_status channel::read(message_sink& sink, const deadline& until,
                        std::optional<std::size_t> maxlength, std::size_t* length) {
    std::optional<robust_lock> lease;
    bool assembling = false;
    std::byte* dst = nullptr;
    std::uint64_t total = 0, got = 0;

    auto reserve = [&](std::uint64_t n) {
        try {
            return sink.reserve(static_cast<std::size_t>(n));
        } catch (const std::bad_alloc&) {
            throw error("shmq: cannot allocate " + std::to_string(n) + " bytes for a message");
        } catch (const std::length_error&) {
            throw error("shmq: cannot allocate " + std::to_string(n) + " bytes for a message");
        }
    };

    if (parked_.held.load(std::memory_order_acquire) && parked_.pid == self_pid()) {
        // This process holds the lease for a message an earlier read parked: resume it, unless
        // another thread of ours is doing so (then behave as if the lease were busy).
        bool expected = false;
        if (!parked_.busy.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
            while (!until.expired()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
            return io_status::timed_out;
        }
        lease.emplace(st_.rlock, std::adopt_lock);
        parked_.held.store(false, std::memory_order_release);
        if (maxlength && parked_.total > *maxlength) {
            if (length) *length = static_cast<std::size_t>(parked_.total);
            lease->release();
            parked_.held.store(true, std::memory_order_release);
            parked_.busy.store(false, std::memory_order_release);
            return io_status::too_long;
        }
        total = parked_.total;
        got = parked_.bytes.size();
        try {
            dst = reserve(total);
        } catch (...) {
            lease->release();
            parked_.held.store(true, std::memory_order_release);
            parked_.busy.store(false, std::memory_order_release);
            throw;
        }
        std::memcpy(dst, parked_.bytes.data(), got);
        std::vector<std::byte>().swap(parked_.bytes);
        parked_.busy.store(false, std::memory_order_release);
        assembling = true;
    } else {
        lease.emplace(st_.rlock, until);
        if (!lease->owns()) return io_status::timed_out;
    }
    // After a takeover from a dead reader, head may point into the middle of a streamed message:
    // the loop below skips such orphan pieces, so no repair is needed here.
    std::uint64_t head = load_head();

    auto consume = [&](std::uint64_t bytes, std::uint64_t msgs) {
        head = ring::advance(head, bytes, msgs);
        st_.head.store(head, std::memory_order_release);
        st_.space.notify();
    };
    // The message's last record: give the lease back first; its seq_cst exchange orders the head
    // store before the check for sleeping writers, which saves notify()'s fence.
    auto finish = [&](std::uint64_t bytes) {
        head = ring::advance(head, bytes, 1);
        st_.head.store(head, std::memory_order_release);
        lease->unlock();
        st_.space.notify_after_fence();
        return io_status::ok;
    };
    // The deadline passed while a live writer is still sending the rest: keep what we have and
    // the lease, so the message is neither lost nor given to another reader in pieces.
    auto park = [&] {
        parked_.bytes.assign(dst, dst + got);
        parked_.total = total;
        parked_.pid = self_pid();
        lease->release();
        parked_.held.store(true, std::memory_order_release);
        return io_status::timed_out;
    };

    for (;;) {
        std::uint64_t tail = seen_tail_.load(std::memory_order_relaxed);
        std::uint64_t avail = ring::used(head, tail);
        if (avail == 0 || avail > cap_) {
            // The cached tail says nothing is there (or is older than head): look again.
            tail = load_tail();
            seen_tail_.store(tail, std::memory_order_relaxed);
            avail = ring::used(head, tail);
            if (avail > cap_) corrupt("head is ahead of tail");
        }
        if (avail == 0) {
            switch (wait_for_data(head, until, assembling)) {
            case wait_result::ready: continue;
            case wait_result::eof: return io_status::eof;
            case wait_result::abandoned:
                assembling = false;
                if (until.expired()) return io_status::timed_out;
                continue;
            default: return assembling ? park() : io_status::timed_out;
            }
        }
        const std::uint64_t off = ring::bytes_of(head) & (cap_ - 1);
        const std::uint64_t cont = cap_ - off;
        if (avail < ring::header_size) corrupt("partial record header");
        const ring::record_header h = ring::read_header(ring_, off);
        const auto k = static_cast<ring::kind>(h.kind);
        if (k == ring::kind::pad) {
            if (h.size != cont - ring::header_size || avail < cont) corrupt("bad pad record");
            consume(cont, 0);
            continue;
        }
        const std::uint64_t rec = ring::footprint(h.size);
        if (rec > cont || rec > avail) corrupt("record runs past the published bytes");
        const std::byte* src = ring_ + off + ring::header_size;
        switch (k) {
        case ring::kind::whole:
            // A whole message in the middle of a stream: that stream's writer died.
            assembling = false;
            if (maxlength && h.size > *maxlength) {
                if (length) *length = h.size;
                return io_status::too_long;
            }
            dst = reserve(h.size);
            if (h.size) std::memcpy(dst, src, h.size);
            return finish(rec);
        case ring::kind::first: {
            if (h.size < ring::first_prefix) corrupt("short first piece");
            std::memcpy(&total, src, sizeof total);
            const std::uint64_t piece = h.size - ring::first_prefix;
            if (piece >= total || total > position_byte_mask) corrupt("bad message length");
            assembling = false;
            if (maxlength && total > *maxlength) {
                if (length) *length = static_cast<std::size_t>(total);
                return io_status::too_long;
            }
            dst = reserve(total);
            std::memcpy(dst, src + ring::first_prefix, piece);
            got = piece;
            assembling = true;
            consume(rec, 0);
            continue;
        }
        case ring::kind::middle:
        case ring::kind::last: {
            const bool last = k == ring::kind::last;
            if (!assembling) {
                // The rest of a message whose reader died: that message is lost; skip it.
                consume(rec, last ? 1 : 0);
                continue;
            }
            if (got + h.size > total || (last ? got + h.size != total : got + h.size == total))
                corrupt("pieces do not add up to the message length");
            std::memcpy(dst + got, src, h.size);
            got += h.size;
            if (last) return finish(rec);
            consume(rec, 0);
            continue;
        }
        default:
            corrupt("unknown record kind");
        }
    }
}

bool channel::poll(const deadline& until) {
    using R = std::optional<bool>;
    return await(
        st_.data, until, false,
        [&]() -> R {
            if (ring::bytes_of(load_tail()) != ring::bytes_of(load_head()) || writers_gone())
                return true;
            return std::nullopt;
        },
        [&]() -> R {
            check_writers();
            return std::nullopt;
        });
}

bool channel::ready() { return poll(deadline(timeout_t(std::chrono::duration<double>(0)))); }

void channel::check_writers() noexcept {
    if (eof_rules_ && reap_due()) registry::reap(*seg_, writer_end(index_));
}

std::uint64_t channel::size() const noexcept {
    std::uint64_t head = load_head();
    return ring::messages(head, load_tail());
}

bool channel::empty() const noexcept {
    return ring::bytes_of(load_tail()) == ring::bytes_of(load_head());
}

void channel::wake_all() noexcept {
    st_.data.notify();
    st_.space.notify();
}

} // namespace shmq::detail
