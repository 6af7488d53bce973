// SPDX-License-Identifier: BSL-1.0
// shmq — Queue<T>: Python's multiprocessing.Queue over a ring in shared memory.
//
// Multi-producer multi-consumer, across processes and threads. Every item is delivered exactly
// once, whole; items put by one process arrive in the order that process put them.
//
//  * put() encodes in the caller: a failing encode throws codec_error and changes nothing.
//  * Bounded (maxsize > 0): put waits for a free slot (block/timeout as in Python, full_error),
//    and for room in the ring (options::capacity bytes), which bounds the queue too.
//  * Unbounded (maxsize <= 0): put never blocks. With room in the ring the item is in shared
//    memory when put returns (empty()/get_nowait() anywhere see it at once); otherwise it waits in
//    this process's backlog, drained by a feeder thread started on demand (qsize() counts it).
//    An item of 64 KiB or more first waits for room for 300 µs per MiB (at most timeout,
//    not at all for put_nowait), about what its copy into the backlog would cost.
//  * get() waits for an item (block/timeout, empty_error); one deadline covers waiting behind
//    other consumers too. A failing decode throws codec_error and consumes that one item.
//  * Shutdown, as in Python: close() says this handle will not put or get any more (other
//    handles and processes are unaffected; qsize/empty/full keep working). join_thread() (after
//    close) waits until this process's backlog is in shared memory; the destructor, process exit
//    and a shmq::Process child's exit do the same unless cancel_join_thread() was called, in
//    which case the backlog may be lost. If nobody ever gets, that wait is forever — as in Python.
//    A cancelled handle's feeder goes on delivering after the handle is gone, while the process
//    lives and someone could read; once nobody can (the name is removed or the queue is
//    anonymous, and no other handle in any process holds it), it drops the backlog and ends.
//  * Anonymous queues are shared with children forked after construction. Named queues
//    (create/open) are shared by name with unrelated processes and live until remove().
//
// Over NATS JetStream (a name that is a URL: "nats://host:port[,host:port...]/name[?replicas=N&
// ack_wait=S&timeout=S]", README "Beyond one host"), the same calls with these differences:
//  * At-least-once: an item got by a process that dies before it is acknowledged (at get for
//    Queue and SimpleQueue, at task_done for JoinableQueue) is delivered again after ack_wait
//    (30 s by default), to another consumer. With shared memory it is gone with its process.
//  * Order: each producer's items leave the stream in the order it put them, but with several
//    consumers (or a redelivery) no consumer sees a global order.
//  * qsize(), empty() and full() are the server's counts (one or two round trips each);
//    qsize() does not count items got but not yet acknowledged.
//  * put() returns once the server has stored the item (replicated, with replicas > 1): an
//    unbounded put does not block for room but does wait for the network, bounded by its
//    timeout or the URL's `timeout` (10 s); there is no backlog, so join_thread() returns at once.
//    A put that throws error (engine unreachable) may still have been stored.
//  * Items larger than the server's max_payload (1 MiB by default) less 256 bytes are refused
//    with value_error at put; they are not split.
//  * The raw codec copies bytes and Boost's binary archive writes numbers in the writer's byte
//    order and sizes: both ends must have the same ABI. The fingerprint stored with the stream
//    (type, size, alignment, byte order) refuses a mismatch with type_error at open. For hosts
//    that differ, send shmq::portable<T> (<shmq/portable.hpp>): T through the text archive,
//    whose fingerprint leaves the byte order out.
//  * remove() deletes the stream with its items: handles still open then fail with error.
//  * No engine reachable gives error naming the URL (never a hang); create of an existing
//    stream exists_error, open of a missing one not_found_error. options are ignored.
#pragma once

#include <shmq/codec.hpp>
#include <shmq/detail/queue_core.hpp>
#include <shmq/errors.hpp>
#include <shmq/options.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>

namespace shmq { class waitable; }

namespace shmq {

template <class T> class Queue {
public:
    /// An item being written in the ring (loan()); see detail::item_loan. Move-only.
    using Loan = detail::item_loan<T>;
    /// An item read in place (get_view()); see detail::item_view. Move-only.
    using View = detail::item_view<T>;

    /// Throws value_error (maxsize or capacity out of range), error (no shared memory).
    explicit Queue(std::size_t maxsize = 0, options opts = {})
        : core_(detail::queue_flavor::queue, to_maxsize(maxsize), opts, fingerprint()) {}

    /// Creates the named queue /dev/shm/shmq.<name>. Throws exists_error, value_error (bad name).
    /// When the name exists, opts.if_exists decides: fail (exists_error), open it, or replace it
    /// if no live process holds it (if_exists::replace_stale; exists_error naming a live holder
    /// otherwise). Every handle, the creator's too, is a registered holder (`shmq stat`).
    static Queue create(std::string_view name, std::size_t maxsize = 0, options opts = {}) {
        return Queue(detail::queue_core::create(detail::queue_flavor::queue, name,
                                                to_maxsize(maxsize), opts, fingerprint()));
    }
    /// create() with if_exists::open: the existing queue (its creator's maxsize and options
    /// stand; type_error for another T or kind) or a new one. Throws as create() and open().
    static Queue open_or_create(std::string_view name, std::size_t maxsize = 0, options opts = {}) {
        opts.if_exists = if_exists::open;
        return create(name, maxsize, opts);
    }
    /// Opens a named queue. Throws not_found_error, type_error (another T or kind), broken_error
    /// (bad header, or smaller than it says), permission_error (a symbolic link at the name, or
    /// a segment owned by another user or writable by group/others: see options::trust_foreign).
    static Queue open(std::string_view name) { return open(name, options{}); }
    /// As open(name); of opts only trust_foreign counts (the creator fixed the rest).
    static Queue open(std::string_view name, const options& opts) {
        return Queue(detail::queue_core::open(detail::queue_flavor::queue, name, fingerprint(), opts));
    }
    /// Unlinks the name; handles already open keep working. Never throws.
    static bool remove(std::string_view name) noexcept { return detail::queue_core::remove(name); }

    Queue(Queue&&) noexcept = default;
    Queue& operator=(Queue&&) noexcept = default;

    /// Throws closed_error, full_error, codec_error.
    void put(const T& obj, bool block = true, timeout_t timeout = std::nullopt) {
        core_.check_open();
        auto& scratch = detail::encode_scratch();
        core_.put(codec<T>::encode(obj, scratch), block, timeout);
    }
    /// Throws closed_error, empty_error, codec_error, broken_error.
    T get(bool block = true, timeout_t timeout = std::nullopt) {
        return detail::get_item<T>(core_, block, timeout);
    }
    /// As get(), into `out`: a std::string or byte vector keeps its capacity, so a consumer that
    /// reuses one container allocates nothing once it has held the largest item (get() allocates
    /// and fills a new one for every item). Other types are move-assigned. On an exception `out`
    /// holds unspecified contents. Throws as get().
    void get_into(T& out, bool block = true, timeout_t timeout = std::nullopt) {
        detail::get_item_into(core_, out, block, timeout);
    }
    void put_nowait(const T& obj) { put(obj, false); }
    T get_nowait() { return get(false); }

    // ---- Zero copy: write an item in the ring, read it in place ------------------------------
    // For items whose bytes in the ring are the item (detail/queue_loan.hpp): std::string and
    // byte vectors, and trivially copyable T sent raw (at most 8-byte aligned); any other T does
    // not compile (static_assert). Shared memory only: a nats:// queue throws value_error.
    // JoinableQueue has none (its task_done accounting does not cover them).

    /// Room for one item of up to n bytes inside the ring (byte items), to fill in place
    /// (Loan::bytes(), 8-byte aligned) and publish with Loan::commit(size) — no copy on the way
    /// in. Destroyed uncommitted, or its process killed before commit: nothing is published.
    ///  * Order: the item comes after every item this process put before through this handle:
    ///    the loan first waits until this handle's backlog (feeder) is in the ring.
    ///  * Blocking, as a bounded put: waits for a free slot under maxsize and for room in the
    ///    ring (also on an unbounded queue, unlike put: a loan has no backlog to go to), up to
    ///    block/timeout; then full_error.
    ///  * The writer lease is held until commit or destruction: other putters of this queue (in
    ///    every process, this handle's feeder too) wait meanwhile, so fill it and commit
    ///    promptly. One loan at a time per handle: another thread's loan waits for this one.
    ///    The holder itself must not put meanwhile: a bounded put would wait for its own lease
    ///    (an unbounded one goes to the backlog, published after the loan).
    ///  * n may be at most max_loan(); larger items: put() (streamed in pieces).
    /// Throws closed_error, value_error (n > max_loan(), nats://), full_error, broken_error.
    template <std::integral N>
        requires(!std::same_as<N, bool>)   // loan(true) is the raw form's `block`
    Loan loan(N n, bool block = true, timeout_t timeout = std::nullopt) {
        // A negative size becomes one no loan can have: value_error, after the closed check.
        const std::size_t size = std::cmp_less(n, 0) ? SIZE_MAX : static_cast<std::size_t>(n);
        return Loan(detail::loan_bytes<T>(core_, size, block, timeout));
    }
    /// Room for one T inside the ring (trivially copyable T), aligned for T: fill
    /// Loan::value() and Loan::commit(). Otherwise as loan(n).
    Loan loan(bool block = true, timeout_t timeout = std::nullopt) {
        return Loan(detail::loan_value<T>(core_, block, timeout));
    }
    /// The largest loan: half the ring less a record header (options::capacity). Throws
    /// closed_error, value_error (nats://).
    std::size_t max_loan() const { return core_.max_loan(); }
    /// The next item, read in place in the ring (View::bytes() / View::value()) when it is one
    /// record (any item of up to max_loan() bytes); an item put with put() that was larger
    /// travelled in pieces and is assembled into a buffer the View owns. Releasing or
    /// destroying the View consumes the item. Waits as get() does (block/timeout, empty_error).
    ///  * The reader lease is held until then: other getters of this queue wait meanwhile, the
    ///    holder's own get() and get_view() too (release first). One view at a time per handle.
    ///  * A process killed holding a view loses that item, and only it: the next getter skips
    ///    it (so an item that crashes its reader does not crash the next one).
    ///  * A raw T's item must be exactly sizeof(T) bytes, else codec_error (the item is
    ///    consumed, as by a failing get).
    /// Throws closed_error, value_error (nats://), empty_error, codec_error, broken_error.
    View get_view(bool block = true, timeout_t timeout = std::nullopt) {
        return View(detail::view_item<T>(core_, block, timeout));
    }

    /// Items in the queue, plus this process's backlog. Exact when nothing moves.
    std::size_t qsize() const { return core_.qsize(); }
    bool empty() const { return core_.empty(); }
    bool full() const { return core_.full(); }
    /// A descriptor for epoll/poll/select and event loops, readable whenever get would not block
    /// (an item is waiting). Level-triggered, per process, owned by the queue (valid until
    /// close()); spurious readiness is possible (another consumer took the item first), missed
    /// readiness is not; it re-arms when this process calls get, get_nowait, empty() or wait()
    /// with it, so a loop takes what is there (or looks with empty()) after each wake-up. Free until first called (puts check one word they check anyway).
    /// Works for named queues opened by unrelated processes. At most 7 handles may poll one
    /// queue at a time. See Connection::fileno() for the details. Throws closed_error,
    /// value_error (a nats:// queue: it has none), error.
    int fileno() { return core_.fileno(); }
    /// Idempotent; never throws.
    void close() noexcept { core_.close(); }
    /// Throws value_error unless close() was called first.
    void join_thread() { core_.join_thread(); }
    void cancel_join_thread() noexcept { core_.cancel_join_thread(); }

protected:
    explicit Queue(detail::queue_core core) noexcept : core_(std::move(core)) {}
    Queue(detail::queue_flavor f, std::size_t maxsize, const options& opts)
        : core_(f, to_maxsize(maxsize), opts, fingerprint()) {}
    static std::int64_t to_maxsize(std::size_t maxsize) {
        // Python's maxsize <= 0 means unbounded; an unsigned argument can only say 0.
        if (maxsize > static_cast<std::size_t>(INT64_MAX)) throw value_error("shmq: maxsize too large");
        return static_cast<std::int64_t>(maxsize);
    }
    static std::uint64_t fingerprint() noexcept { return detail::type_fingerprint<T>(); }

    friend class waitable;
    detail::queue_core core_;
};

} // namespace shmq
