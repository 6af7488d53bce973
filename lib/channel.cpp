// SPDX-License-Identifier: BSL-1.0
#include "channel.hpp"

#include "liveness.hpp"
#include "poller.hpp"
#include "registry.hpp"
#include "retained.hpp"
#include "ring.hpp"
#include "sync/wait_loop.hpp"
#include "test_hook.hpp"

#include <shmq/errors.hpp>

#include <cstring>
#include <ctime>
#include <new>
#include <optional>
#include <thread>

namespace shmq::detail {
namespace {

// How often the fast path of write() checks that some reader is still alive (README, Behaviour:
// a peer's death shows as broken pipe within 100 ms; doc/design.md §4).
constexpr auto reap_interval = std::chrono::milliseconds(20);

// A read that has begun a streamed message goes on past its deadline while the writer sends; it
// parks the message only when the writer has sent nothing for this long (stopped, or blocked
// elsewhere). Long enough that a writer merely descheduled is waited for, so the message is not
// left with a reader that may idle; short enough that a timed get overruns its timeout by this
// much at most.
constexpr auto stall_grace = std::chrono::milliseconds(500);

[[noreturn]] void corrupt(const char* what) {
    throw broken_error(std::string("shmq: shared ring is corrupt: ") + what);
}

} // namespace

channel::channel(std::shared_ptr<segment> seg, std::uint32_t index, bool eof_rules) noexcept
    : revoker_(*seg, index),
      seg_(std::move(seg)),
      st_(seg_->channel(index)),
      ring_(seg_->ring(index)),
      cap_(seg_->capacity()),
      index_(index),
      eof_rules_(eof_rules),
      retain_(index == 0 && (seg_->header().flags & retain_records) != 0),
      kind_mask_(retain_ ? retained::kind_mask : ~std::uint32_t{0}) {}

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

channel::~channel() {
    drop_bias();
    drop_parked();
    // A loan or view still out when its connection closes: the loan publishes nothing, the
    // view's message stays for the next reader.
    drop_lent(loan_lease_, loan_pid_.load(std::memory_order_relaxed));
    if (view_lease_ && view_pid_.load(std::memory_order_relaxed) == self_pid())
        st_.viewing.store(0, std::memory_order_relaxed);
    drop_lent(view_lease_, view_pid_.load(std::memory_order_relaxed));
}

void channel::drop_parked() noexcept {
    if (parked_pid_.load(std::memory_order_acquire) != self_pid()) return;
    std::lock_guard<std::timed_mutex> guard(parked_mutex_);
    if (!parked_.held) return;
    // The rest of that message is skipped by the next reader as orphan pieces.
    parked_.held = false;
    std::vector<std::byte>().swap(parked_.bytes);
    parked_pid_.store(0, std::memory_order_release);
    st_.rlock.unlock();
    st_.space.notify();
}

const std::atomic<std::uint32_t>* channel::foreign() const noexcept {
    return &seg_->header().foreign_pidns;
}

namespace {
// After taking a lease: the handle's cached copy of the other side's position stays trusted only
// if no other handle held this lease since (gen still holds the value this handle left, see
// layout.hpp); otherwise it is reloaded. Only lease holders touch gen: plain load and store.
template <class Fresh>
void claim_lease(std::atomic<std::uint64_t>& gen, std::atomic<std::uint64_t>& mine,
                 std::atomic<std::uint64_t>& cache, Fresh fresh) noexcept {
    const std::uint64_t g = gen.load(std::memory_order_relaxed);
    if (g != mine.load(std::memory_order_relaxed)) cache.store(fresh(), std::memory_order_relaxed);
    gen.store(g + 1, std::memory_order_relaxed);
    mine.store(g + 1, std::memory_order_relaxed);
}
} // namespace

bool channel::claim_writer_lease() noexcept {
    const bool alone = st_.wgen.load(std::memory_order_relaxed) == my_wgen_.load(std::memory_order_relaxed);
    claim_lease(st_.wgen, my_wgen_, seen_head_, [&] { return load_floor(); });
    return alone;
}

void channel::claim_reader_lease() noexcept {
    claim_lease(st_.rgen, my_rgen_, seen_tail_, [&] { return load_tail(); });
}

bool channel::stream_alive(std::uint64_t writer) const noexcept {
    // The writer of a stream holds the writer lease until its last piece. If somebody else holds
    // it, or nobody, or its holder died, the rest of the message will never come.
    if (st_.wlock.owner() != writer) return false;
    // Is it dead? A /proc read, so at most once a liveness slice per writer and handle; waiters
    // call this on every look.
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    const clock::rep now = static_cast<clock::rep>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
    if (probed_writer_.load(std::memory_order_relaxed) == writer &&
        now - probed_at_.load(std::memory_order_relaxed) <
            std::chrono::nanoseconds(liveness_slice).count())
        return true;
    if (robust_mutex::owner_dead(writer, foreign())) return false;
    probed_writer_.store(writer, std::memory_order_relaxed);
    probed_at_.store(now, std::memory_order_relaxed);
    return true;
}

namespace {
// One header word for walk(), which reads without the reader lease: a reader may consume the
// record and a writer (or a loan being filled) reuse its bytes meanwhile, and walk() validates
// what it read instead. ThreadSanitizer cannot know that, so under it this load is left out of
// its bookkeeping (not inlined into instrumented code); everywhere else it is the same relaxed
// atomic load, inlined.
#if defined(__SANITIZE_THREAD__)
__attribute__((no_sanitize_thread, noinline))
#endif
std::uint32_t speculative_word(const std::byte* at) noexcept {
    // The builtin rather than std::atomic_ref, whose out-of-line load TSan would instrument.
    return __atomic_load_n(reinterpret_cast<const std::uint32_t*>(at), __ATOMIC_RELAXED);
}
} // namespace

channel::walk_result channel::walk(std::uint64_t head, std::uint64_t tail) const noexcept {
    // Reads headers with atomic loads (speculative_word): without the reader lease, a reader may
    // consume and a writer overwrite them meanwhile, so anything odd (a header that does not
    // validate) answers "ready" and lets a reader decide under its lease, where a real
    // corruption is broken_error.
    walk_result r{false, head, 0};
    std::uint64_t pos = head;
    std::uint64_t stream_start = head, stream_writer = 0;   // inside a stream begun there, by it
    for (int records = 0; records < 4096; ++records) {
        const std::uint64_t avail = ring::used(pos, tail);
        if (avail == 0) {
            r.ready = stream_writer != 0 && stream_alive(stream_writer);
            if (!r.ready && stream_writer) r.garbage_end = pos;   // an abandoned stream
            return r;
        }
        if (avail > cap_ || avail < ring::header_size) return {true, r.garbage_end, r.garbage_msgs};
        const std::uint64_t off = ring::bytes_of(pos) & (cap_ - 1);
        // Records start 8-aligned; anything else is a corrupt position (a reader reports it).
        if (off % ring::header_size != 0) return {true, r.garbage_end, r.garbage_msgs};
        const std::uint64_t cont = cap_ - off;
        auto word = [&](std::uint64_t at) { return speculative_word(ring_ + at); };
        const std::uint32_t size = word(off);
        const auto k = static_cast<ring::kind>(word(off + 4) & kind_mask_);
        const std::uint64_t rec = k == ring::kind::pad ? cont : ring::footprint(size);
        if (rec > cont || rec > avail) return {true, r.garbage_end, r.garbage_msgs};
        switch (k) {
        case ring::kind::pad:
            if (!stream_writer) r.garbage_end = ring::advance(pos, rec, 0);
            break;
        case ring::kind::whole:
            // A whole message after an unfinished stream: that stream was abandoned.
            if (stream_writer) r.garbage_end = pos;
            r.ready = true;
            return r;
        case ring::kind::first: {
            if (size < ring::first_prefix) return {true, r.garbage_end, r.garbage_msgs};
            // A first piece after an unfinished one: that earlier stream was abandoned.
            if (stream_writer) r.garbage_end = pos;
            std::uint64_t writer = 0;
            for (int i = 0; i < 2; ++i)
                writer |= std::uint64_t{word(off + ring::header_size + 8 + 4 * i)} << (32 * i);
            stream_start = pos;
            stream_writer = writer ? writer : ~std::uint64_t{0};
            break;
        }
        case ring::kind::middle:
            if (!stream_writer) r.garbage_end = ring::advance(pos, rec, 0);   // an orphan
            break;
        case ring::kind::last:
            if (stream_writer) {   // a complete stream
                r.ready = true;
                return r;
            }
            // An orphan: the rest of a dead reader's message (it counts as a message in tail).
            r.garbage_end = ring::advance(pos, rec, 1);
            ++r.garbage_msgs;
            break;
        default: return {true, r.garbage_end, r.garbage_msgs};
        }
        pos = ring::advance(pos, rec, k == ring::kind::last ? 1 : 0);
    }
    (void)stream_start;
    return {true, r.garbage_end, r.garbage_msgs};
}

bool channel::message_ready() noexcept {
    walk_result r = walk(load_head(), load_tail());
    if (r.ready || r.garbage_end == load_head()) return r.ready;
    // Only pieces that can never make a message stand at the front (a dead writer's or a dead
    // reader's): drop them if the reader lease is free, so that writers get their room back
    // even when nobody calls recv. Under the lease the walk is exact.
    robust_lock lease(st_.rlock, deadline(timeout_t(std::chrono::duration<double>(0))), foreign());
    if (!lease.owns()) return false;
    claim_reader_lease();
    std::uint64_t head = load_head();
    skip_dead_view(head);
    r = walk(head, load_tail());
    if (r.garbage_end != head) {
        // garbage_end counts the orphan last pieces as messages, like tail does.
        st_.head.store(r.garbage_end, std::memory_order_release);
        lease.unlock();
        st_.space.notify();
    }
    return r.ready;
}

std::uint64_t channel::load_tail() const { return st_.tail.load(std::memory_order_acquire); }
std::uint64_t channel::load_head() const { return st_.head.load(std::memory_order_acquire); }
std::uint64_t channel::load_floor() const {
    // With retained records (retained.hpp) the writers' room ends where unfinished records begin.
    return retain_ ? st_.release.load(std::memory_order_acquire) : load_head();
}

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

bool channel::fits_cached(std::uint64_t tail, std::uint64_t need,
                          std::uint64_t max_messages) const noexcept {
    if (retain_) return false;
    const std::uint64_t head = seen_head_.load(std::memory_order_relaxed);
    const std::uint64_t used = ring::used(head, tail);
    return used <= cap_ && cap_ - used >= need &&
           (max_messages == 0 || ring::messages(head, tail) < max_messages);
}

channel::wait_result channel::wait_for_space(std::uint64_t tail, std::uint64_t need,
                                             const deadline& until, std::uint64_t max_messages) {
    // Room for `want` bytes (and a message under maxsize).
    auto fits = [&](std::uint64_t want) {
        if (retain_) {
            // Bytes end at release, but maxsize counts only the items not yet got (head).
            const std::uint64_t floor = load_floor(), head = load_head();
            const std::uint64_t used = ring::used(floor, tail);
            if (used > cap_ || ring::used(head, tail) > used) corrupt("release is ahead of tail");
            return cap_ - used >= want &&
                   (max_messages == 0 || ring::messages(head, tail) < max_messages);
        }
        // Try the cached head first: in steady state this touches no line of the reader's.
        if (fits_cached(tail, want, max_messages)) return true;
        const std::uint64_t head = load_head();
        seen_head_.store(head, std::memory_order_relaxed);
        const std::uint64_t used = ring::used(head, tail);
        if (used > cap_) corrupt("head is ahead of tail");
        return cap_ - used >= want &&
               (max_messages == 0 || ring::messages(head, tail) < max_messages);
    };
    if (fits(need)) return wait_result::ready;
    // The ring is full and this record is small: first, during a busy spin, wait for room for a
    // batch of records, looking every space_look_pauses (channel.hpp, space_batch). Then, or
    // when the deadline passes, the usual wait for this record alone.
    if (need < space_batch && !until.expired()) {
        const std::uint64_t batch = std::max(need, std::min(space_batch, cap_ / 4));
        spinner spin;
        for (unsigned pauses = 1; spin.busy_spin(); ++pauses) {
            if (pauses % space_look_pauses != 0) continue;
            if (fits(batch)) return wait_result::ready;
            if (until.expired()) break;
        }
    }
    using R = std::optional<wait_result>;
    return await(
        st_.space, until, wait_result::timed_out,
        [&]() -> R {
            if (fits(need)) return wait_result::ready;
            if (readers_gone()) return wait_result::broken_pipe;
            return std::nullopt;
        },
        [&]() -> R {
            if (eof_rules_ && reap_due()) registry::reap(*seg_, reader_end(index_));
            if (unread_ && unread_()) return wait_result::broken_pipe;
            return std::nullopt;
        });
}

channel::wait_result channel::wait_for_data(std::uint64_t head, const deadline& until,
                                            std::uint64_t stream_writer) {
    auto arrived = [&] { return ring::bytes_of(load_tail()) != ring::bytes_of(head); };
    using R = std::optional<wait_result>;
    return await(
        st_.data, until, wait_result::timed_out,
        [&]() -> R {
            if (arrived()) return wait_result::ready;
            // Retained records of a dead taker to deliver again: look at them (read() claims).
            if (retain_ && seg_->queue().redeliverable.load(std::memory_order_acquire) != 0)
                return wait_result::ready;
            if (stream_writer) {
                if (!stream_alive(stream_writer))
                    return arrived() ? wait_result::ready : wait_result::abandoned;
            } else if (writers_gone()) {
                return arrived() ? wait_result::ready : wait_result::eof;
            }
            return std::nullopt;
        },
        [&]() -> R {
            if (!stream_writer && eof_rules_ && reap_due()) registry::reap(*seg_, writer_end(index_));
            // With retained records a consumer that waits is what finds dead takers, whose
            // records then come to it (registry reap -> retained::release_dead).
            if (retain_ && reap_due()) registry::reap_any(*seg_);
            return std::nullopt;
        },
        [this] { return seal_writer(); }, bias_blind_sleep);
}

io_status channel::write(std::span<const std::byte> msg, const deadline& until,
                         std::uint64_t max_messages, const uncounter* uncount, stream_wait wait,
                         std::size_t* written) {
    // This thread holds the bias: no locked instruction at all (bias.hpp).
    if (bias_holder_.load(std::memory_order_relaxed) == thread_token()) {
        io_status st;
        if (write_biased(msg, max_messages, uncount, &st)) return st;
    }
    // Uncontended: one compare-exchange, no clock read (as read() does). A bias this thread
    // held and could not use for this message becomes a plain hold.
    bool asked = false;   // a revoker's bit was on the bias
    const bool own = take_own_bias(&asked);
    const bool fast = !own && st_.wlock.try_lock_fast();
    robust_lock lease = own || fast ? robust_lock(st_.wlock, std::adopt_lock)
                                    : robust_lock(st_.wlock, until, foreign(), &revoker_);
    if (!lease.owns()) return io_status::timed_out;
    const bool alone = claim_writer_lease();
    if (eof_rules_) {
        if (reap_due()) registry::reap(*seg_, reader_end(index_));
        if (readers_gone()) return io_status::broken_pipe;
    }
    // A lease taken over from a dead writer needs no repair: that writer's unpublished bytes are
    // simply overwritten, and its published pieces are discarded by the reader.
    std::uint64_t tail = load_tail();
    if (msg.size() > stream_limit()) {
        const io_status st = stream(msg, tail, until, max_messages, uncount, wait, false, written);
        if (st == io_status::parked) lease.release();   // kept for finish_stream
        return st;
    }

    const std::uint64_t need = ring::footprint(msg.size());
    const std::uint64_t room = room_for(tail, need);
    if (!fits_cached(tail, room, max_messages)) {
        switch (wait_for_space(tail, room, until, max_messages)) {
        case wait_result::ready: break;
        case wait_result::broken_pipe: return io_status::broken_pipe;
        default: return io_status::timed_out;
        }
    }
    tail = publish_whole(msg, tail, need, uncount);
    // A bias given up only because this message did not fit is granted again at once.
    if (bias_due(fast && alone, own && !asked) && grant_bias(tail)) lease.release();   // kept, biased
    else lease.unlock();
    notify_data();
    return io_status::ok;
}

std::uint64_t channel::publish_whole(std::span<const std::byte> msg, std::uint64_t tail,
                                    std::uint64_t need, const uncounter* uncount) noexcept {
    const std::uint64_t off = place(tail, need);
    ring::write_header(ring_, off, static_cast<std::uint32_t>(msg.size()), ring::kind::whole);
    if (!msg.empty()) std::memcpy(ring_ + off + ring::header_size, msg.data(), msg.size());
    SHMQ_TEST_HOOK("channel.write.copied");
    if (uncount) uncount->fetch_sub(1, std::memory_order_acq_rel);
    SHMQ_TEST_HOOK("channel.write.uncounted");
    const std::uint64_t published = ring::advance(tail, need, 1);
    st_.tail.store(published, std::memory_order_release);
    SHMQ_TEST_HOOK("channel.write.published");
    return published;
}

std::uint64_t channel::thread_token() noexcept {
    static std::atomic<std::uint32_t> next{0};
    thread_local const std::uint32_t tag = next.fetch_add(1, std::memory_order_relaxed) + 1;
    return (std::uint64_t{self_pid()} << 32) | tag;
}

bool channel::write_biased(std::span<const std::byte> msg, std::uint64_t max_messages,
                           const uncounter* uncount, io_status* out) {
    auto& word = st_.wlock.word();
    const std::uint64_t mine = robust_mutex::self_word() | robust_mutex::biased_bit;
    if (msg.size() > bias_max || word.load(std::memory_order_relaxed) != mine) return false;
    SHMQ_TEST_HOOK("channel.bias.checked");
    // Everything that may look elsewhere or fail comes before the mark: inside, nothing throws
    // or waits, since a revoker waits for the mark to go down. Only this thread moves tail while
    // the word is `mine` (checked again after the mark), so what it reads now still holds then.
    if (eof_rules_) {
        if (reap_due()) registry::reap(*seg_, reader_end(index_));
        if (readers_gone()) return false;   // the plain path says broken_pipe
    }
    // Not st_.tail: that line is what a spinning reader keeps loading, so reading it here costs
    // a transfer back from the reader's core on every message (bias_tail_).
    std::uint64_t tail = bias_tail_;
    const std::uint64_t need = ring::footprint(msg.size());
    const std::uint64_t room = room_for(tail, need);
    if (!fits_cached(tail, room, max_messages)) {
        // Out of room by the cached head: one look at head, as wait_for_space's first.
        const std::uint64_t head = load_head();
        if (ring::used(head, tail) > cap_) return false;   // corrupt: the plain path says so
        seen_head_.store(head, std::memory_order_relaxed);
        if (!fits_cached(tail, room, max_messages)) return false;
    }
    // The mark, then the check: a revoker raises its bit, then runs membarrier, then reads the
    // mark, so it either sees the mark or this load sees its bit (bias.hpp). The compiler must
    // not reorder them; the CPU's store buffer is what the membarrier drains.
    bias_busy_->store(1, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (word.load(std::memory_order_acquire) != mine) {
        bias_busy_->store(0, std::memory_order_release);
        return false;
    }
    SHMQ_TEST_HOOK("channel.bias.inside");
    bias_tail_ = publish_whole(msg, tail, need, uncount);
    // Released: a revoker that reads 0 (acquire) sees everything this message wrote.
    bias_busy_->store(0, std::memory_order_release);
    // No fence: a reader going to sleep runs membarrier instead (seal).
    if (st_.data.notify_unfenced()) [[unlikely]] poke_pollers(st_.pollers);
    *out = io_status::ok;
    return true;
}

bool channel::unbias(std::uint64_t to, std::uint64_t* was) noexcept {
    auto& word = st_.wlock.word();
    const std::uint64_t mine = robust_mutex::self_word() | robust_mutex::biased_bit;
    std::uint64_t v = word.load(std::memory_order_relaxed);
    // Biased by this process, with or without a revoker's bit: only this thread can hold it
    // (bias.hpp), and it is outside its message, so a revoker waiting for that may as well find
    // the word taken.
    while ((v & ~robust_mutex::revoke_bit) == mine) {
        if (word.compare_exchange_weak(v, to, std::memory_order_acq_rel, std::memory_order_relaxed)) {
            if (was) *was = v;
            return true;
        }
    }
    return false;
}

bool channel::take_own_bias(bool* asked) noexcept {
    if (bias_holder_.load(std::memory_order_relaxed) != thread_token()) return false;
    bias_holder_.store(0, std::memory_order_relaxed);
    std::uint64_t was = 0;
    if (!unbias(robust_mutex::self_word(), &was)) return false;
    if (asked) *asked = (was & robust_mutex::revoke_bit) != 0;
    SHMQ_TEST_HOOK("channel.bias.given_up");
    return true;
}

bool channel::bias_due(bool uncontended, bool again) noexcept {
    const std::uint64_t me = thread_token();
    std::uint64_t t = bias_thread_.load(std::memory_order_relaxed);
    if (t != me) {
        // The first thread to write through the handle (or the first in a forked child) is its
        // writer; any other makes it a handle that is never biased again.
        if (t == bias_multi) return false;
        const bool fresh = t == 0 || (t >> 32) != (me >> 32);
        bias_thread_.store(fresh ? me : bias_multi, std::memory_order_relaxed);
        bias_streak_.store(0, std::memory_order_relaxed);
        if (!fresh) SHMQ_TEST_HOOK("channel.bias.multi");
        return false;
    }
    if (again) return bias_busy_ != nullptr;
    if (!uncontended || retain_) {   // retained records' room never fits the cached head
        bias_streak_.store(0, std::memory_order_relaxed);
        return false;
    }
    const std::uint32_t n = bias_streak_.load(std::memory_order_relaxed) + 1;
    bias_streak_.store(n, std::memory_order_relaxed);
    if (n < bias_after) return false;
    bias_streak_.store(0, std::memory_order_relaxed);
    if (!membarrier_ready()) return false;
    // This process's only handle on this side (bias.hpp): a queue's handles, a Pipe's writer ends.
    // Looked up without the registry lock, which a stopped process may hold for seconds.
    holder_slot* slot = slot_of_word(*seg_, robust_mutex::self_word());
    if (!slot) return false;
    const std::uint32_t end = eof_rules_ ? writer_end(index_) : queue_handle_end;
    if (slot->count[end].load(std::memory_order_relaxed) != 1) return false;
    bias_busy_ = &slot->bias_busy[index_];
    return true;
}

bool channel::grant_bias(std::uint64_t tail) noexcept {
    bias_busy_->store(0, std::memory_order_relaxed);
    bias_tail_ = tail;
    bias_holder_.store(thread_token(), std::memory_order_relaxed);
    std::uint64_t me = robust_mutex::self_word();
    // Exactly the plain word: with the waiters bit set, somebody sleeps for the lease.
    if (st_.wlock.word().compare_exchange_strong(me, me | robust_mutex::biased_bit,
                                                 std::memory_order_release, std::memory_order_relaxed)) {
        SHMQ_TEST_HOOK("channel.bias.granted");
        return true;
    }
    bias_holder_.store(0, std::memory_order_relaxed);
    return false;
}

void channel::drop_bias() noexcept {
    const std::uint64_t holder = bias_holder_.load(std::memory_order_relaxed);
    if (holder == 0 || (holder >> 32) != self_pid()) return;
    bias_holder_.store(0, std::memory_order_relaxed);
    unbias(0, nullptr);
}

std::size_t channel::write_some(std::span<const std::span<const std::byte>> msgs,
                                const deadline& until, std::uint64_t max_messages,
                                const uncounter* uncount) {
    const bool own = take_own_bias();
    robust_lock lease = own ? robust_lock(st_.wlock, std::adopt_lock)
                            : robust_lock(st_.wlock, until, foreign(), &revoker_);
    if (!lease.owns()) return 0;
    claim_writer_lease();
    std::uint64_t tail = load_tail();
    std::uint64_t head = load_floor();
    const std::uint64_t unread_from = retain_ ? load_head() : head;   // for the maxsize count
    std::size_t n = 0;
    for (auto msg : msgs) {
        if (msg.size() > whole_limit()) break;
        std::uint64_t need = ring::footprint(msg.size());
        std::uint64_t used = ring::used(head, tail);
        if (used > cap_) corrupt("head is ahead of tail");
        if (cap_ - used < room_for(tail, need)) break;
        if (max_messages && ring::messages(unread_from, tail) >= max_messages) break;
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
        notify_data();
    }
    return n;
}

std::uint64_t channel::stream_room(std::uint64_t tail, std::uint64_t total) const noexcept {
    // The same walk as stream()'s, on offsets only.
    const std::uint64_t piece_max = this->piece_max();
    std::uint64_t off = ring::bytes_of(tail) & (cap_ - 1), room = 0, sent = 0;
    for (bool first = true; first || sent < total; first = false) {
        const std::uint64_t data = first ? std::min(total, piece_max - ring::first_prefix)
                                         : std::min(total - sent, piece_max);
        const std::uint64_t need = ring::footprint(data + (first ? ring::first_prefix : 0));
        if (need > cap_ - off) {   // place() pads to the end of the ring first
            room += cap_ - off;
            off = 0;
        }
        room += need;
        off = (off + need) & (cap_ - 1);
        sent += data;
        if (room > cap_) break;   // cannot fit anyway
    }
    return room;
}

io_status channel::stream(std::span<const std::byte> msg, std::uint64_t& tail,
                          const deadline& until, std::uint64_t max_messages,
                          const uncounter* uncount, stream_wait wait, bool rest,
                          std::size_t* written) {
    const std::uint64_t total = msg.size();
    // A caller that may not wait (an unbounded queue's put_nowait, any put with a zero timeout)
    // writes the message only if all of it fits now: it never leaves a stream half written,
    // which the reader would have to skip, while the caller sends the message again.
    if (until.expired() && !rest) {
        switch (wait_for_space(tail, stream_room(tail, total), until, max_messages)) {
        case wait_result::ready: break;
        case wait_result::broken_pipe: return io_status::broken_pipe;
        default: return io_status::timed_out;
        }
    }
    // Pieces of piece_max(): the reader drains one while the writer fills the next.
    const std::uint64_t piece_max = this->piece_max();
    std::uint64_t sent = 0;
    bool first = !rest;
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
        if (r != wait_result::ready) {
            // Parked: the lease stays with this process (write() releases its guard without
            // unlocking), and the reader waits for the rest as for any slow writer.
            if (wait == stream_wait::park && !first) {
                *written = sent;
                SHMQ_TEST_HOOK("channel.stream.parked");
                return io_status::parked;
            }
            return io_status::timed_out;
        }
        std::uint64_t off = place(tail, need);
        ring::write_header(ring_, off, static_cast<std::uint32_t>(payload), k);
        std::byte* dst = ring_ + off + ring::header_size;
        if (first) {
            // The writer's lease word: readers wait for the rest only while it holds the lease.
            const std::uint64_t writer = st_.wlock.owner();
            std::memcpy(dst, &total, sizeof total);
            std::memcpy(dst + 8, &writer, sizeof writer);
            dst += ring::first_prefix;
        }
        std::memcpy(dst, msg.data() + sent, data);
        tail = ring::advance(tail, need, k == ring::kind::last ? 1 : 0);
        if (k == ring::kind::last) {
            if (uncount) uncount->fetch_sub(1, std::memory_order_acq_rel);
            SHMQ_TEST_HOOK("channel.write.uncounted");
        }
        st_.tail.store(tail, std::memory_order_release);
        notify_data();
        if (k != ring::kind::last) SHMQ_TEST_HOOK("channel.stream.piece");
        sent += data;
        first = false;
    }
    return io_status::ok;
}

io_status channel::finish_stream(std::span<const std::byte> rest, const deadline& until,
                                 const uncounter* uncount) {
    robust_lock lease(st_.wlock, std::adopt_lock);   // kept by write() when it parked
    std::uint64_t tail = load_tail();   // the parked stream's last piece is published
    return stream(rest, tail, until, 0, uncount, stream_wait::pieces, true, nullptr);
}

void channel::abandon_stream() noexcept {
    st_.wlock.unlock();
    notify_data();   // a reader waiting for the next piece sees the writer gone and drops it
}

std::uint64_t channel::published_after(std::uint64_t head) {
    std::uint64_t tail = seen_tail_.load(std::memory_order_relaxed);
    std::uint64_t avail = ring::used(head, tail);
    if (avail == 0 || avail > cap_) {
        // The cached tail says nothing is there (or is older than head): look again.
        tail = load_tail();
        seen_tail_.store(tail, std::memory_order_relaxed);
        avail = ring::used(head, tail);
        if (avail > cap_) corrupt("head is ahead of tail");
    }
    return avail;
}

channel::record_at_head channel::record_at(std::uint64_t head, std::uint64_t avail) const {
    const std::uint64_t off = ring::bytes_of(head) & (cap_ - 1);
    if (avail < ring::header_size) corrupt("partial record header");
    if (off % ring::header_size != 0) corrupt("misaligned head");
    const ring::record_header h = ring::read_header(ring_, off);
    return {off, cap_ - off, h, static_cast<ring::kind>(h.kind & kind_mask_)};
}

io_status channel::read(message_sink& sink, const deadline& until,
                        std::size_t maxlength, std::size_t* length,
                        const struct taker* taker) {
    // The short path: the lease free, a whole record at head (there already, or arriving during
    // a busy spin), a sink that takes it. A small message's round trip is mostly the instructions
    // between the record's arrival and the reply's publication, and read_any()'s generality (the
    // parked message, streams, retained records, its lambdas' state kept in memory) cost about
    // twice these. Anything else goes to read_any(), with the lease if this path took it.
    // A reader in a stream that emptied the ring last time waits a little before it looks again
    // (catch_up_wait), without the lease, so that other readers of a Queue go on meanwhile.
    const bool probing = caught_up_.load(std::memory_order_relaxed) && !until.expired() && catch_up_wait();
    if (retain_ || parked_pid_.load(std::memory_order_acquire) == self_pid() ||
        !st_.rlock.try_lock_fast())
        return read_any(sink, until, maxlength, length, taker, false);
    robust_lock lease(st_.rlock, std::adopt_lock);
    claim_reader_lease();
    std::uint64_t head = load_head();
    skip_dead_view(head);
    std::uint64_t avail = published_after(head);
    if (avail == 0 && !until.expired()) {
        // read_any()'s wait spins this way first too; an expired deadline (a non-blocking get)
        // does not spin.
        spinner spin;
        while ((avail = published_after(head)) == 0 && spin.busy_spin()) {}
    }
    if (avail != 0) {
        const auto [off, cont, h, k] = record_at(head, avail);
        if (probing) learn_stream(avail > ring::footprint(h.size));
        if (k == ring::kind::whole && h.size <= maxlength) {
            const std::uint64_t rec = ring::footprint(h.size);
            if (rec > cont || rec > avail) corrupt("record runs past the published bytes");
            caught_up_.store(avail == rec, std::memory_order_relaxed);
            std::byte* dst = nullptr;
            try {
                dst = sink.reserve_whole(h.size);
            } catch (const std::bad_alloc&) {
            } catch (const std::length_error&) {
            }
            if (dst) {
                if (h.size) std::memcpy(dst, ring_ + off + ring::header_size, h.size);
                // The same steps, hooks and order as read_any()'s finish.
                SHMQ_TEST_HOOK("channel.read.copied");
                st_.head.store(ring::advance(head, rec, 1), std::memory_order_release);
                SHMQ_TEST_HOOK("channel.read.consumed");
                if (taker) taker->taken->fetch_add(1, std::memory_order_acq_rel);
                lease.unlock();
                st_.space.notify();
                return io_status::ok;
            }
            // The sink cannot hold it: read_any() drops it and says so.
        }
    }
    lease.release();
    return read_any(sink, until, maxlength, length, taker, true);
}

bool channel::catch_up_wait() noexcept {
    if (!streaming_.load(std::memory_order_relaxed)) {
        const std::uint32_t in = probe_in_.load(std::memory_order_relaxed);
        if (in != 0) {
            probe_in_.store(in - 1, std::memory_order_relaxed);
            return false;
        }
    }
    for (unsigned i = 0; i < catch_up_pauses; ++i) cpu_relax();
    return true;
}

void channel::learn_stream(bool batch) noexcept {
    streaming_.store(batch, std::memory_order_relaxed);
    if (batch) {
        probe_gap_.store(1, std::memory_order_relaxed);
        return;
    }
    const std::uint32_t gap =
        std::min(probe_gap_.load(std::memory_order_relaxed) * 2, catch_up_probe_max);
    probe_gap_.store(gap, std::memory_order_relaxed);
    probe_in_.store(gap, std::memory_order_relaxed);
}

io_status channel::read_any(message_sink& sink, const deadline& until,
                            std::size_t maxlength, std::size_t* length,
                            const struct taker* taker, bool held) {
    // The message being assembled from a stream: its writer (0 = not in a stream), its length,
    // the bytes so far, and how much of the sink is reserved. The sink grows with what arrived
    // (at most twice the bytes received), never with what a first piece claims: a hostile or
    // corrupt length costs no more memory than the bytes that really came.
    std::uint64_t stream_writer = 0;
    std::uint64_t total = 0, got = 0, reserved = 0;
    // Whether the message being read is already counted in taker's `taken`: a streamed one is
    // counted when its first piece is consumed (the reader is then committed to it: if it dies,
    // the message is lost with it and must be accounted to it), and uncounted if its writer
    // abandons it.
    bool counted = false;
    auto count = [&](bool on) {
        if (!taker || counted == on) return;
        if (on) taker->taken->fetch_add(1, std::memory_order_acq_rel);
        else taker->taken->fetch_sub(1, std::memory_order_acq_rel);
        counted = on;
    };
    // The stream being read can no longer complete (its writer died or gave up).
    auto drop_stream = [&] {
        stream_writer = 0;
        count(false);
    };
    std::byte* dst = nullptr;

    auto reserve = [&](std::uint64_t n) {
        try {
            dst = sink.reserve(static_cast<std::size_t>(n));
            reserved = n;
        } catch (const std::bad_alloc&) {
            return false;
        } catch (const std::length_error&) {
            return false;
        }
        return true;
    };

    // The reader lease: taken normally, or adopted from a message this process parked (then held
    // together with parked_mutex_ until this read ends, so one thread at a time resumes it).
    // Taken a slice at a time, so a thread that waits for the lease while another thread of ours
    // parks a message (our process then holds the lease) turns to resuming it.
    std::optional<robust_lock> lease;
    std::unique_lock<std::timed_mutex> resuming(parked_mutex_, std::defer_lock);
    if (held) lease.emplace(st_.rlock, std::adopt_lock);
    while (!held) {
        if (parked_pid_.load(std::memory_order_acquire) == self_pid()) {
            const bool got_it = until.forever() ? (resuming.lock(), true)
                                                : resuming.try_lock_until(until.at());
            if (!got_it) return io_status::timed_out;
            if (parked_.held) {
                if (parked_.total > maxlength) {
                    if (length) *length = static_cast<std::size_t>(parked_.total);
                    return io_status::too_long;
                }
                lease.emplace(st_.rlock, std::adopt_lock);
                parked_.held = false;
                parked_pid_.store(0, std::memory_order_release);
                stream_writer = parked_.writer;
                counted = parked_.counted;
                total = parked_.total;
                got = parked_.bytes.size();
                if (!reserve(std::max(got, std::min(total, 2 * got)))) {
                    // Give up the message rather than the lease's consistency: what is left of
                    // it is skipped by the next reader as orphan pieces.
                    std::vector<std::byte>().swap(parked_.bytes);
                    throw error("shmq: cannot allocate " + std::to_string(total) +
                                " bytes for a message; the message was dropped");
                }
                std::memcpy(dst, parked_.bytes.data(), got);
                std::vector<std::byte>().swap(parked_.bytes);
                break;
            }
            resuming.unlock();
        }
        // Uncontended: one compare-exchange, no clock (a deadline step reads the clock, which
        // costs a system call on some virtual machines).
        if (st_.rlock.try_lock_fast()) {
            lease.emplace(st_.rlock, std::adopt_lock);
            break;
        }
        lease.emplace(st_.rlock, until.within(liveness_slice), foreign());
        if (lease->owns()) break;
        lease.reset();
        if (until.expired()) return io_status::timed_out;
    }
    claim_reader_lease();
    std::uint64_t head = load_head();
    skip_dead_view(head);
    // Retained records whose taker died come first (retained.hpp): they were delivered before
    // anything still at head.
    if (retain_ && !stream_writer && taker && retained::claim(*seg_, taker->slot, sink)) {
        taker->taken->fetch_add(1, std::memory_order_acq_rel);
        lease->unlock();
        return io_status::ok;
    }
    // After a takeover from a dead reader, head may point into the middle of a streamed message:
    // the loop below skips such orphan pieces, so no repair is needed here.

    auto consume = [&](std::uint64_t bytes, std::uint64_t msgs) {
        head = ring::advance(head, bytes, msgs);
        st_.head.store(head, std::memory_order_release);
        st_.space.notify();
    };
    // The message's last record: publish head, give the lease back, wake writers.
    auto finish = [&](std::uint64_t bytes) {
        SHMQ_TEST_HOOK("channel.read.copied");
        head = ring::advance(head, bytes, 1);
        st_.head.store(head, std::memory_order_release);
        SHMQ_TEST_HOOK("channel.read.consumed");
        // Ours to task_done now. Counted right after the head store, before anything that can
        // take time (the unlock's futex wake), so that a reader killed here almost never leaves
        // an item consumed but unaccounted (registry reaper, queue_shm.cpp's crash windows).
        count(true);
        lease->unlock();
        st_.space.notify();
        return io_status::ok;
    };
    // The deadline passed while a live writer stalls mid-stream: keep the bytes and the lease.
    auto park = [&] {
        if (!resuming.owns_lock()) resuming.lock();   // short: only resumers hold it
        parked_.bytes.assign(dst, dst + got);
        parked_.writer = stream_writer;
        parked_.counted = counted;
        parked_.total = total;
        parked_.held = true;
        lease->release();
        parked_pid_.store(self_pid(), std::memory_order_release);
        return io_status::timed_out;
    };
    // The sink cannot hold this message: drop it (the rest of a stream is skipped as orphan
    // pieces by whoever reads next) and say so; the next message stays readable.
    auto unfit = [&](std::uint64_t bytes, std::uint64_t msgs, std::uint64_t size) -> io_status {
        consume(bytes, msgs);
        lease->unlock();
        throw error("shmq: cannot allocate " + std::to_string(size) +
                    " bytes for a message; the message was dropped");
    };

    for (;;) {
        const std::uint64_t avail = published_after(head);
        if (avail == 0) {
            if (retain_ && !stream_writer && taker && retained::claim(*seg_, taker->slot, sink)) {
                taker->taken->fetch_add(1, std::memory_order_acq_rel);
                lease->unlock();
                return io_status::ok;
            }
            // Inside a stream, read on past the deadline while pieces keep coming.
            const deadline wait_until = stream_writer ? until.at_least(stall_grace) : until;
            switch (wait_for_data(head, wait_until, stream_writer)) {
            case wait_result::ready: continue;
            case wait_result::eof: return io_status::eof;
            case wait_result::abandoned:
                // Its writer died or gave up: that message is lost; look for the next one.
                drop_stream();
                if (until.expired()) return io_status::timed_out;
                continue;
            default: return stream_writer ? park() : io_status::timed_out;
            }
        }
        const auto [off, cont, h, k] = record_at(head, avail);
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
            // A whole message in the middle of a stream: that stream's writer gave up or died.
            drop_stream();
            if (h.size > maxlength) {
                if (length) *length = h.size;
                return io_status::too_long;
            }
            if (!reserve(h.size)) return unfit(rec, 1, h.size);
            if (h.size) std::memcpy(dst, src, h.size);
            if (retain_ && taker) retained::take(ring_, off, taker->slot);
            return finish(rec);
        case ring::kind::first: {
            if (h.size < ring::first_prefix) corrupt("short first piece");
            drop_stream();   // a first piece in the middle of a stream: that one was abandoned
            std::memcpy(&total, src, sizeof total);
            std::memcpy(&stream_writer, src + 8, sizeof stream_writer);
            const std::uint64_t piece = h.size - ring::first_prefix;
            if (piece >= total || total > position_byte_mask || stream_writer == 0)
                corrupt("bad streamed message header");
            if (total > maxlength) {
                if (length) *length = static_cast<std::size_t>(total);
                return io_status::too_long;
            }
            if (!reserve(sink.expect(static_cast<std::size_t>(total)) ? total
                                                                       : std::min(total, 2 * piece)))
                return unfit(rec, 0, total);
            std::memcpy(dst, src + ring::first_prefix, piece);
            got = piece;
            consume(rec, 0);
            count(true);
            SHMQ_TEST_HOOK("channel.read.piece");
            continue;
        }
        case ring::kind::middle:
        case ring::kind::last: {
            const bool last = k == ring::kind::last;
            if (!stream_writer) {
                // The rest of a message whose reader died: that message is lost; skip it.
                consume(rec, last ? 1 : 0);
                continue;
            }
            if (got + h.size > total || (last ? got + h.size != total : got + h.size == total))
                corrupt("pieces do not add up to the message length");
            if (got + h.size > reserved &&
                !reserve(std::min(total, std::max(got + h.size, 2 * reserved))))
                return unfit(rec, last ? 1 : 0, total);
            std::memcpy(dst + got, src, h.size);
            got += h.size;
            if (last) return finish(rec);
            consume(rec, 0);
            SHMQ_TEST_HOOK("channel.read.piece");
            continue;
        }
        default:
            corrupt("unknown record kind");
        }
    }
}

namespace {
// Gives a lease held in a member back on every exit but the one that lends it out (a corrupt
// ring throws broken_error, and the lease must not stay with this process then).
struct lease_keeper {
    std::optional<robust_lock>& lease;
    bool keep = false;
    ~lease_keeper() {
        if (!keep) lease.reset();
    }
};
} // namespace

void channel::skip_dead_view(std::uint64_t& head) noexcept {
    // One load of a word on the lease's own line, which the lease holder has just written.
    if (st_.viewing.load(std::memory_order_relaxed) != head + 1) return;
    // The viewer died after it set the mark and before head moved: its record (a whole one,
    // view() lends nothing else) is dropped, so a message that killed its reader does not kill
    // the next one. Anything else at head means the mark is stale: just clear it.
    const std::uint64_t off = ring::bytes_of(head) & (cap_ - 1);
    const std::uint64_t avail = ring::used(head, load_tail());
    if (avail >= ring::header_size && off % ring::header_size == 0) {
        const ring::record_header h = ring::read_header(ring_, off);
        const std::uint64_t rec = ring::footprint(h.size);
        if (static_cast<ring::kind>(h.kind & kind_mask_) == ring::kind::whole && rec <= avail &&
            rec <= cap_ - off) {
            head = ring::advance(head, rec, 1);
            st_.head.store(head, std::memory_order_release);
            SHMQ_TEST_HOOK("channel.view.skipped");
        }
    }
    st_.viewing.store(0, std::memory_order_relaxed);
    st_.space.notify();
}

namespace {
// Gives a turn back on every exit but the one that lends something out.
struct turn_keeper {
    handle_turn& turn;
    bool keep = false;
    ~turn_keeper() {
        if (!keep) turn.give_back();
    }
};
} // namespace

io_status channel::loan(std::size_t n, const deadline& until, std::byte** data,
                        std::uint64_t* ticket, std::uint64_t max_messages) {
    bool inherited = false;
    if (!loan_turn_.take(until, &inherited)) return io_status::timed_out;
    turn_keeper turn{loan_turn_};
    // Taken over from the parent this process was forked from: what it lent is not ours.
    if (inherited) drop_lent(loan_lease_, loan_pid_.load(std::memory_order_relaxed));
    if (take_own_bias())
        loan_lease_.emplace(st_.wlock, std::adopt_lock);
    else
        loan_lease_.emplace(st_.wlock, until, foreign(), &revoker_);
    if (!loan_lease_->owns()) {
        loan_lease_.reset();
        return io_status::timed_out;
    }
    lease_keeper keeper{loan_lease_};
    claim_writer_lease();
    if (eof_rules_) {
        if (reap_due()) registry::reap(*seg_, reader_end(index_));
        if (readers_gone()) return io_status::broken_pipe;
    }
    std::uint64_t tail = load_tail();
    const std::uint64_t need = ring::footprint(n);
    switch (wait_for_space(tail, room_for(tail, need), until, max_messages)) {
    case wait_result::ready: break;
    case wait_result::broken_pipe: return io_status::broken_pipe;
    default: return io_status::timed_out;
    }
    // place() writes a pad at the end of the ring if the record wraps; it is published with the
    // record, or overwritten by the next writer if the loan is abandoned.
    const std::uint64_t off = place(tail, need);
    loan_tail_ = tail;
    loan_size_ = n;
    *ticket = loan_ticket_.load(std::memory_order_relaxed) + 1;
    loan_ticket_.store(*ticket, std::memory_order_relaxed);
    loan_pid_.store(self_pid(), std::memory_order_release);
    *data = ring_ + off + ring::header_size;
    keeper.keep = true;
    turn.keep = true;
    return io_status::ok;
}

void channel::drop_lent(std::optional<robust_lock>& lease, std::uint32_t pid) noexcept {
    if (!lease) return;
    if (pid != self_pid()) lease->release();   // the parent's: forget it, leave it held
    lease.reset();
}

bool channel::finish_lent(handle_turn& turn, std::optional<robust_lock>& lease,
                          const std::atomic<std::uint32_t>& pid,
                          const std::atomic<std::uint64_t>& current, std::uint64_t ticket) noexcept {
    // The pid before the ticket: a thread that took the turn over stores them the other way
    // round, so seeing its pid means seeing its ticket too.
    const std::uint32_t lender = pid.load(std::memory_order_acquire);
    const bool is_current = ticket == current.load(std::memory_order_relaxed);
    if (lender == self_pid()) return is_current;
    // Lent in the parent this process was forked from (an inherited Loan or View): forget it
    // under the turn, unless a thread of ours has taken the turn over, and forgotten it, already.
    if (is_current && turn.take_from(lender)) {
        drop_lent(lease, lender);
        turn.give_back();
    }
    return false;
}

void channel::commit_loan(std::uint64_t ticket, std::size_t size) noexcept {
    if (!finish_lent(loan_turn_, loan_lease_, loan_pid_, loan_ticket_, ticket)) return;
    turn_keeper turn{loan_turn_};   // given back on the way out
    const std::uint64_t off = ring::bytes_of(loan_tail_) & (cap_ - 1);
    ring::write_header(ring_, off, static_cast<std::uint32_t>(size), ring::kind::whole);
    SHMQ_TEST_HOOK("channel.loan.filled");
    st_.tail.store(ring::advance(loan_tail_, ring::footprint(size), 1), std::memory_order_release);
    loan_lease_.reset();   // unlocks
    notify_data();
}

void channel::abandon_loan(std::uint64_t ticket) noexcept {
    if (!finish_lent(loan_turn_, loan_lease_, loan_pid_, loan_ticket_, ticket)) return;
    turn_keeper turn{loan_turn_};
    loan_lease_.reset();   // unlocks: nothing was published
}

void channel::check_commit(bool on_loan, std::size_t size, std::size_t lent) {
    if (!on_loan) throw value_error("shmq: commit: nothing is on loan (committed already, or moved from)");
    if (size > lent)
        throw value_error("shmq: commit: " + std::to_string(size) + " bytes is more than the " +
                          std::to_string(lent) + " on loan");
}

io_status channel::view(const deadline& until, const std::byte** data, std::size_t* size,
                        std::uint64_t* ticket) {
    // A streamed message this process parked (read()) is resumed by read(), not lent.
    if (parked_pid_.load(std::memory_order_acquire) == self_pid()) return io_status::streamed;
    bool inherited = false;
    if (!view_turn_.take(until, &inherited)) return io_status::timed_out;
    turn_keeper turn{view_turn_};
    // Taken over from the parent this process was forked from: its view is not ours.
    if (inherited) drop_lent(view_lease_, view_pid_.load(std::memory_order_relaxed));
    for (;;) {
        // A slice at a time, like read(): another thread of ours may park a stream meanwhile
        // (then our process holds the lease, and only read() can resume it).
        view_lease_.emplace(st_.rlock, until.within(liveness_slice), foreign());
        if (view_lease_->owns()) break;
        view_lease_.reset();
        if (parked_pid_.load(std::memory_order_acquire) == self_pid()) return io_status::streamed;
        if (until.expired()) return io_status::timed_out;
    }
    lease_keeper keeper{view_lease_};
    claim_reader_lease();
    std::uint64_t head = load_head();
    skip_dead_view(head);
    for (;;) {
        const std::uint64_t avail = published_after(head);
        if (avail == 0) {
            switch (wait_for_data(head, until, 0)) {
            case wait_result::ready: continue;
            case wait_result::eof: return io_status::eof;
            default: return io_status::timed_out;
            }
        }
        const auto [off, cont, h, k] = record_at(head, avail);
        if (k == ring::kind::pad) {
            if (h.size != cont - ring::header_size || avail < cont) corrupt("bad pad record");
            head = ring::advance(head, cont, 0);
            st_.head.store(head, std::memory_order_release);
            continue;
        }
        if (k != ring::kind::whole) return io_status::streamed;   // read() handles pieces
        const std::uint64_t rec = ring::footprint(h.size);
        if (rec > cont || rec > avail) corrupt("record runs past the published bytes");
        st_.viewing.store(head + 1, std::memory_order_seq_cst);
        SHMQ_TEST_HOOK("channel.view.lent");
        view_head_ = head;
        view_rec_ = rec;
        *ticket = view_ticket_.load(std::memory_order_relaxed) + 1;
        view_ticket_.store(*ticket, std::memory_order_relaxed);
        view_pid_.store(self_pid(), std::memory_order_release);
        *data = ring_ + off + ring::header_size;
        *size = h.size;
        keeper.keep = true;
        turn.keep = true;
        return io_status::ok;
    }
}

void channel::release_view(std::uint64_t ticket) noexcept {
    if (!finish_lent(view_turn_, view_lease_, view_pid_, view_ticket_, ticket)) return;
    turn_keeper turn{view_turn_};   // given back on the way out
    st_.head.store(ring::advance(view_head_, view_rec_, 1), std::memory_order_release);
    // Cleared after head moved: a viewer killed between the two leaves a mark that no longer
    // matches head, so nothing more is skipped.
    st_.viewing.store(0, std::memory_order_relaxed);
    view_lease_.reset();   // unlocks
    st_.space.notify();
}

bool channel::poll(const deadline& until) {
    using R = std::optional<bool>;
    return await(
        st_.data, until, false,
        [&]() -> R {
            if (message_ready() || writers_gone()) return true;
            return std::nullopt;
        },
        [&]() -> R {
            check_writers();
            return std::nullopt;
        },
        [this] { return seal_writer(); }, bias_blind_sleep);
}

bool channel::readers_present() noexcept {
    if (eof_rules_) registry::reap(*seg_, reader_end(index_));
    return !readers_gone();
}

void channel::notify_data() noexcept {
    if (st_.data.notify()) [[unlikely]] poke_pollers(st_.pollers);
}

bool channel::readable_now() {
    if (retain_ && seg_->queue().redeliverable.load(std::memory_order_acquire) != 0) return true;
    return message_ready() || writers_gone();
}

bool channel::ready() { return poll(deadline(timeout_t(std::chrono::duration<double>(0)))); }

void channel::check_writers() noexcept {
    if (eof_rules_ && reap_due()) registry::reap(*seg_, writer_end(index_));
}

std::uint64_t channel::size() const noexcept {
    std::uint64_t head = load_head();
    std::uint64_t n = ring::messages(head, load_tail());
    if (retain_) n += seg_->queue().redeliverable.load(std::memory_order_acquire);
    return n;
}

bool channel::empty() noexcept {
    if (retain_ && seg_->queue().redeliverable.load(std::memory_order_acquire) != 0) return false;
    return !message_ready();
}

void channel::wake_all() noexcept {
    notify_data();
    st_.space.notify();
}

} // namespace shmq::detail
