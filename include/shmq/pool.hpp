// SPDX-License-Identifier: BSL-1.0
// shmq — Pool: Python's multiprocessing.Pool over forked worker processes, that survives a
// killed worker.
//
//   int square(int x) { return x * x; }
//   shmq::Pool pool(4);                                  // forks 4 workers now
//   std::vector<int> v = pool.map(square, items);        // in input order
//   shmq::AsyncResult<int> r = pool.apply_async(square, 7);
//   int y = r.get(std::chrono::seconds(1));              // timeout_error if not ready in time
//   pool.close(); pool.join();                           // or let the destructor terminate
//
// The function: `f` is a function pointer or a capture-less, non-generic lambda. Workers are
// forked from the process that made the pool, so a code address means the same there; only the
// address travels. Excluded therefore: anything with state (std::function, a lambda with
// captures, a functor object: put the state in the arguments), and code that was not mapped when
// a worker was forked (a library dlopen()ed after the pool started: its address means nothing in
// a worker forked earlier). Arguments and results travel through the codec (<shmq/codec.hpp>)
// by value: any T a Queue<T> accepts, each argument encoded as f's parameter type (so
// `apply(f, "text")` for `f(std::string)` works). R may be void.
//
// Lifecycle:
//  1. Pool(processes, initializer, maxtasksperchild) forks `processes` workers; each runs
//     `initializer` once, then takes tasks until told to stop.
//  2. apply/map/... submit tasks. Each call encodes its arguments in the calling thread (a
//     failing encode throws codec_error there and submits nothing). Several threads may submit
//     at once. Tasks start in submission order; `chunksize` items travel as one message and run
//     one after the other in one worker.
//  3. close(): no more submissions; the workers finish every task already submitted, then exit.
//     terminate(): the workers are killed (SIGKILL) now; every result not yet ready fails with
//     worker_lost_error. join() (after either) waits until the workers have exited and the
//     pool's result thread has ended. The destructor is terminate() + join(), as Python's
//     `with Pool() as p:`; it never throws.
//  4. AsyncResults outlive the pool: after the pool is gone each one is either ready or failed.
//
// In the parent a result thread reads the workers' answers and fulfils the AsyncResults; it
// also watches the workers (waitpid, at least every 50 ms). A worker has its own task queue
// (a shmq::Queue) filled by the parent a few tasks ahead, so the parent always knows which tasks
// each worker holds, and before each item the worker records in shared memory which item it runs.
//
// When a worker dies (SIGKILL, _exit, a crash, an exception escaping the initializer):
//  * the item it was running fails with worker_lost_error ("worker <pid> was killed by signal 9
//    (SIGKILL) while running item <i>"), normally within 100 ms; the other items of the same chunk
//    fail with it (their results travel together); tasks it held but had not started go to
//    other workers (they never ran, so nothing runs twice);
//  * a replacement is forked; every other task completes;
//  * map()/map_async() then fail with that worker_lost_error; imap() yields it for that item only.
//  * a worker that dies in its initializer: replaced too. The initializer failing (throwing or
//    dying) 3 x processes times in a row, with no task completed in between, breaks the pool
//    instead of respawning forever: every result not yet ready fails with worker_lost_error
//    saying so (with the initializer's exception text when it threw), the workers are stopped
//    and later submissions throw worker_lost_error. close()/terminate() and join() still work.
//  * maxtasksperchild: a worker exits after that many tasks (chunks) and is replaced; the pool
//    hands it no more than that, so nothing waits behind an exiting worker.
//
// Errors: an exception escaping f in a worker → that item's result throws task_error, whose
// what() names the exception's type and its what(); the worker lives on. Results that fail to
// decode in the parent throw codec_error. map() and map_async() fail with the first error to
// arrive (in completion order, as Python's), the other items still run.
//
// Not covered: a task that never returns (a deadlock, an endless loop) holds its worker and the
// tasks queued behind it for ever, as in Python; terminate() ends it.
//
// Forking: workers inherit this process as it is when they are forked (the first ones in the
// constructor, replacements later from the result thread), with the usual rules of fork in a
// threaded program: a lock another thread holds at that moment stays held in the worker (glibc's
// malloc and shmq's own objects are fork-safe; GCC 12's AddressSanitizer allocator is not, so
// under ASan a replacement forked while another thread allocates can deadlock), and so do signal
// handlers (a SIGSEGV handler that does not end the process keeps a crashed worker from dying:
// reset such handlers in the initializer).
//
// Processes: only the process that made the pool may use it. Any member called in another
// process (a forked child, a worker) throws value_error, and a copy's destructor there does
// nothing (the workers belong to the parent). Workers notice the parent's death within ~0.25 s
// and exit.
#pragma once

#include <shmq/export.hpp>

#include <shmq/codec.hpp>
#include <shmq/errors.hpp>
#include <shmq/options.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace shmq {

namespace detail {

// ---- the parent's view of one submission (apply: 1 item; map & co: n items) ----------------

/// The result state of one submission. Lives in the parent only (mutex + condvar); AsyncResult
/// and the imap ranges share it with the pool's result thread, which calls deliver()/fail().
class SHMQ_API pool_job {
public:
    explicit pool_job(std::size_t items, bool completion_order);
    virtual ~pool_job();
    pool_job(const pool_job&) = delete;
    pool_job& operator=(const pool_job&) = delete;

    std::size_t size() const noexcept { return items_; }

    // ---- for the result thread (any order, each item exactly once) ----
    /// Decodes one item's result (store()); a decode error becomes that item's error.
    void deliver(std::size_t item, std::span<const std::byte> bytes) noexcept;
    void fail(std::size_t item, std::exception_ptr e) noexcept;
    /// A worker's answer for items [first, first + count): per item a status byte (0 value,
    /// 1 error text), a u32 length and the bytes, all under one lock. Returns false (and
    /// settles nothing more) when the answer is malformed.
    bool deliver_chunk(std::size_t first, std::size_t count, std::span<const std::byte> answer) noexcept;

    // ---- for the front end ----
    /// Until every item is done or one failed. false on timeout.
    bool wait_ready(const timeout_t& timeout);
    /// True once every item is done or one failed (map's fail-fast, as Python).
    bool ready() const;
    /// The first error in completion order, null if none. Call when ready().
    std::exception_ptr first_error() const;
    /// The item imap's position `k` stands for: k itself (input order), or the k-th item to
    /// complete (completion order). Waits for it. Throws timeout_error, value_error (k >= size).
    std::size_t wait_position(std::size_t k, const timeout_t& timeout);
    /// That item's error, null if it succeeded. Call once the item is done.
    std::exception_ptr item_error(std::size_t item) const;

protected:
    /// Decodes `bytes` into item's storage. Called with the job's lock held. Throws codec_error.
    virtual void store(std::size_t item, std::span<const std::byte> bytes) = 0;

private:
    struct state;
    bool settle_locked(std::size_t item, std::span<const std::byte>* bytes, std::exception_ptr e) noexcept;
    void notify(std::unique_lock<std::mutex>& lock, bool became_ready, bool any) noexcept;
    std::unique_ptr<state> s_;
    std::size_t items_;
};

/// Storage for R (none for void). A default-constructible R is kept in a plain vector that
/// map() hands over as it is; other types (and bool, whose vector packs bits that imap may read
/// while the result thread writes their neighbours) in optionals. Items are written under the
/// job's lock, once each, and read only once settled.
template <class R> class pool_job_of final : public pool_job {
    static constexpr bool plain = std::is_default_constructible_v<R> && !std::is_same_v<R, bool>;
    using slot = std::conditional_t<plain, R, std::optional<R>>;

public:
    pool_job_of(std::size_t items, bool completion_order)
        : pool_job(items, completion_order), values_(items) {}
    /// The value of a done item (copied: imap may read a position twice).
    R value(std::size_t item) const { return get(values_[item]); }
    std::vector<R> take_all() {
        if constexpr (plain) {
            return std::move(values_);
        } else {
            std::vector<R> out;
            out.reserve(values_.size());
            for (auto& v : values_) out.push_back(std::move(*v));
            return out;
        }
    }
    std::vector<R> copy_all() const {
        if constexpr (plain) {
            return values_;
        } else {
            std::vector<R> out;
            out.reserve(values_.size());
            for (auto& v : values_) out.push_back(*v);
            return out;
        }
    }

private:
    static const R& get(const slot& s) {
        if constexpr (plain) return s;
        else return *s;
    }
    void store(std::size_t item, std::span<const std::byte> bytes) override {
        if constexpr (plain) values_[item] = codec<R>::decode(bytes);
        else values_[item].emplace(codec<R>::decode(bytes));
    }
    std::vector<slot> values_;
};

template <> class pool_job_of<void> final : public pool_job {
public:
    using pool_job::pool_job;
    void value(std::size_t) const {}

private:
    void store(std::size_t, std::span<const std::byte> bytes) override {
        if (!bytes.empty()) throw codec_error("shmq::Pool: a void task answered with bytes");
    }
};

// ---- the wire: what travels to a worker ---------------------------------------------------
//
// A task message is one chunk: pool_task_header, then `count` items, each `u32 length` + that
// many bytes; an item is f's arguments, each `u32 length` + its codec bytes. The worker runs
// invoker(fn, item bytes, out), which decodes the arguments, calls f and appends the encoded
// result to out.

using pool_invoker = void (*)(std::uintptr_t fn, std::span<const std::byte> args,
                              std::vector<std::byte>& out);

struct pool_task_header {
    std::uint64_t job;      // 0: stop (no items)
    std::uint64_t first;    // index of the chunk's first item in its submission
    std::uint64_t fn;       // f's address
    std::uint64_t invoker;  // pool_invoke<F>'s address
    std::uint32_t chunk;    // index of the chunk in its submission
    std::uint32_t count;    // items in the chunk
};

/// Reads the length-prefixed fields of one item. Throws codec_error on a malformed item.
class pool_fields {
public:
    explicit pool_fields(std::span<const std::byte> b) noexcept : b_(b) {}
    std::span<const std::byte> next() {
        std::uint32_t n = 0;
        if (b_.size() < sizeof n) throw codec_error("shmq::Pool: truncated task arguments");
        std::memcpy(&n, b_.data(), sizeof n);
        if (b_.size() - sizeof n < n) throw codec_error("shmq::Pool: truncated task arguments");
        auto out = b_.subspan(sizeof n, n);
        b_ = b_.subspan(sizeof n + n);
        return out;
    }
    bool done() const noexcept { return b_.empty(); }

private:
    std::span<const std::byte> b_;
};

/// A growable byte buffer that does not zero what it appends (a map of a million items writes
/// tens of MB here: no value-initialisation, and reserve() up front, so no copy on growth).
class SHMQ_API pool_bytes {
public:
    pool_bytes() = default;
    pool_bytes(pool_bytes&&) noexcept = default;
    pool_bytes& operator=(pool_bytes&&) noexcept = default;
    std::byte* data() noexcept { return p_.get(); }
    const std::byte* data() const noexcept { return p_.get(); }
    std::size_t size() const noexcept { return size_; }
    void reserve(std::size_t n);
    /// Appends n uninitialised bytes; returns where they start.
    std::byte* grow(std::size_t n) {
        if (cap_ - size_ < n) reserve(std::max(n + size_, cap_ * 2));
        std::byte* at = p_.get() + size_;
        size_ += n;
        return at;
    }

private:
    std::unique_ptr<std::byte[]> p_;
    std::size_t size_ = 0, cap_ = 0;
};

/// Every chunk of one submission, encoded back to back in one buffer (built in the caller's
/// thread, before the pool's lock is taken).
class SHMQ_API pool_batch {
public:
    pool_batch(std::uintptr_t fn, pool_invoker invoker, std::size_t chunksize);
    /// Room for `items` items of about `item_bytes` encoded bytes each.
    void reserve(std::size_t items, std::size_t item_bytes);
    // Inline: called per item and per argument.
    /// Starts the next item (and a new chunk every `chunksize` items).
    void begin_item() {
        if (in_chunk_ == 0) {
            chunk_starts_.push_back(buf_.size());
            pool_task_header h{};
            h.first = items_;
            h.fn = fn_;
            h.invoker = reinterpret_cast<std::uintptr_t>(invoker_);
            h.chunk = static_cast<std::uint32_t>(chunk_starts_.size() - 1);
            h.count = 0;
            std::memcpy(buf_.grow(sizeof h), &h, sizeof h);
        }
        item_start_ = buf_.size();
        buf_.grow(sizeof(std::uint32_t));   // the item's length, set by end_item
    }
    /// One argument of the current item. Throws codec_error (over 4 GiB).
    void add_field(std::span<const std::byte> bytes) {
        if (bytes.size() > UINT32_MAX) throw codec_error("shmq::Pool: an argument over 4 GiB");
        const auto n = static_cast<std::uint32_t>(bytes.size());
        std::byte* at = buf_.grow(sizeof n + bytes.size());
        std::memcpy(at, &n, sizeof n);
        if (!bytes.empty()) std::memcpy(at + sizeof n, bytes.data(), bytes.size());
    }
    /// Closes the current item. Throws codec_error (over 4 GiB).
    void end_item() {
        const std::size_t len = buf_.size() - item_start_ - sizeof(std::uint32_t);
        if (len > UINT32_MAX) throw codec_error("shmq::Pool: arguments over 4 GiB");
        const auto n = static_cast<std::uint32_t>(len);
        std::memcpy(buf_.data() + item_start_, &n, sizeof n);
        // Count it in its chunk's header.
        std::byte* h = buf_.data() + chunk_starts_.back();
        std::uint32_t count = 0;
        std::memcpy(&count, h + offsetof(pool_task_header, count), sizeof count);
        ++count;
        std::memcpy(h + offsetof(pool_task_header, count), &count, sizeof count);
        ++items_;
        if (++in_chunk_ == chunksize_) in_chunk_ = 0;
    }
    /// Closes the last chunk; returns the number of items.
    std::size_t finish();

    std::size_t chunks() const noexcept { return chunk_starts_.size(); }
    /// The message of chunk c, with its header's job id set to `job`.
    std::span<const std::byte> message(std::size_t c, std::uint64_t job);
    /// Index of chunk c's first item, and its item count.
    std::uint64_t first_item(std::size_t c) const noexcept;
    std::uint32_t chunk_items(std::size_t c) const noexcept;

private:
    pool_bytes buf_;
    std::vector<std::size_t> chunk_starts_;
    std::uintptr_t fn_;
    pool_invoker invoker_;
    std::size_t chunksize_;
    std::size_t items_ = 0;
    std::size_t item_start_ = 0;
    std::size_t in_chunk_ = 0;
};

// ---- functions ------------------------------------------------------------------------------

template <class F> struct pool_fn_traits;
template <class R, class... P> struct pool_fn_traits<R (*)(P...)> {
    using result = R;
    using params = std::tuple<std::remove_cvref_t<P>...>;
    static constexpr std::size_t arity = sizeof...(P);
};
template <class R, class... P> struct pool_fn_traits<R (*)(P...) noexcept> : pool_fn_traits<R (*)(P...)> {};

/// f decays (function) or converts (capture-less lambda) to a plain function pointer.
template <class F>
concept pool_function = requires(F f) {
    { +f };
    requires std::is_pointer_v<decltype(+f)>;
    requires std::is_function_v<std::remove_pointer_t<decltype(+f)>>;
};

template <class F> using pool_fn_ptr = decltype(+std::declval<F&>());
template <class F> using pool_result_t = typename pool_fn_traits<pool_fn_ptr<F>>::result;
template <class F> using pool_params_t = typename pool_fn_traits<pool_fn_ptr<F>>::params;

/// True when codec<T> is the raw copy, which needs no scratch buffer.
template <class T> inline constexpr bool pool_raw_v = sends_raw_v<T>;

/// codec<T>::encode, with the thread's scratch buffer only when the codec may use one.
template <class T> std::span<const std::byte> pool_encode(const T& v) {
    if constexpr (pool_raw_v<T>) {
        std::vector<std::byte> unused;   // empty: no allocation
        return codec<T>::encode(v, unused);
    } else {
        return codec<T>::encode(v, encode_scratch());
    }
}

template <class T> void pool_add_arg(pool_batch& b, const T& v) { b.add_field(pool_encode(v)); }

/// Runs in the worker: decode f's arguments, call it, append the encoded result.
template <class Fp> void pool_invoke(std::uintptr_t fn, std::span<const std::byte> args,
                                     std::vector<std::byte>& out) {
    using traits = pool_fn_traits<Fp>;
    using params = typename traits::params;
    using R = typename traits::result;
    const Fp f = reinterpret_cast<Fp>(fn);
    pool_fields fields(args);
    auto decoded = [&]<std::size_t... I>(std::index_sequence<I...>) {
        // Braced initialisation evaluates left to right: the fields are read in order.
        return params{codec<std::tuple_element_t<I, params>>::decode(fields.next())...};
    }(std::make_index_sequence<traits::arity>{});
    if (!fields.done()) throw codec_error("shmq::Pool: extra task arguments");
    if constexpr (std::is_void_v<R>) {
        std::apply(f, decoded);
    } else {
        const R r = std::apply(f, decoded);
        const std::span<const std::byte> bytes = pool_encode<std::remove_cvref_t<R>>(r);
        out.insert(out.end(), bytes.begin(), bytes.end());
    }
}

class pool_impl;

} // namespace detail

// ---- AsyncResult ----------------------------------------------------------------------------

/// multiprocessing.pool.AsyncResult: a copyable handle to the result of apply_async (R) or
/// map_async (std::vector<R>, or void for a void f). Every member may be called from any
/// thread of the process that made the pool, before or after the pool is gone.
template <class R> class AsyncResult {
public:
    /// Waits for the result (nullopt = forever, <= 0 = do not wait) and returns it (a copy: get
    /// may be called again). Throws timeout_error when the timeout passes first, task_error when
    /// the task threw, worker_lost_error when its worker died or the pool was terminated or
    /// broke, codec_error when the result could not be decoded.
    R get(timeout_t timeout = std::nullopt) {
        if (!job_->wait_ready(timeout))
            throw timeout_error("shmq::AsyncResult::get: timed out");
        if (auto e = job_->first_error()) std::rethrow_exception(e);
        return value_(*job_);
    }
    /// Waits until the result is ready or the timeout passes. Never throws (but std::bad_alloc).
    void wait(timeout_t timeout = std::nullopt) { job_->wait_ready(timeout); }
    /// Never throws.
    bool ready() const { return job_->ready(); }
    /// Whether the task completed without an error. Throws value_error if !ready().
    bool successful() const {
        if (!job_->ready()) throw value_error("shmq::AsyncResult::successful: result is not ready");
        return job_->first_error() == nullptr;
    }

    /// For the pool's front end.
    AsyncResult(std::shared_ptr<detail::pool_job> job, R (*value)(detail::pool_job&))
        : job_(std::move(job)), value_(value) {}

private:
    std::shared_ptr<detail::pool_job> job_;
    R (*value_)(detail::pool_job&);
};

// ---- imap / imap_unordered --------------------------------------------------------------------

/// multiprocessing.pool.IMapIterator: an input range over the results of imap (input order) or
/// imap_unordered (completion order), which fills while the range is read. Reading a position
/// waits for it; a failed item throws its error (task_error, worker_lost_error, codec_error) at
/// its position, and the range goes on after it. Copies share the results.
template <class R> class IMapIterator {
public:
    class iterator {
    public:
        using value_type = std::conditional_t<std::is_void_v<R>, std::monostate, R>;
        using difference_type = std::ptrdiff_t;
        using reference = R;
        using pointer = void;
        using iterator_category = std::input_iterator_tag;
        using iterator_concept = std::input_iterator_tag;
        iterator() = default;
        /// Waits for this position's result. Throws its error.
        R operator*() const { return owner_->at(pos_, std::nullopt); }
        iterator& operator++() { ++pos_; return *this; }
        iterator operator++(int) {
            iterator old = *this;
            ++pos_;
            return old;
        }
        friend bool operator==(const iterator& a, const iterator& b) noexcept { return a.pos_ == b.pos_; }

    private:
        friend class IMapIterator;
        iterator(const IMapIterator* o, std::size_t p) : owner_(o), pos_(p) {}
        const IMapIterator* owner_ = nullptr;
        std::size_t pos_ = 0;
    };

    /// From the first result next() has not returned. The range is a common range, so
    /// `std::vector<R>(r.begin(), r.end())` works too.
    iterator begin() const { return iterator(this, next_); }
    iterator end() const noexcept { return iterator(this, size()); }
    /// Number of results (the number of items).
    std::size_t size() const noexcept { return job_->size(); }

    /// Python's next(timeout): the next result not yet returned by next(). Throws timeout_error
    /// (the position is not consumed, so next() may be called again), value_error when every
    /// result was returned (StopIteration), or the item's error (the position is consumed).
    R next(timeout_t timeout = std::nullopt) {
        if (next_ >= size()) throw value_error("shmq::IMapIterator::next: no more results");
        const std::size_t item = job_->wait_position(next_, timeout);
        ++next_;
        if (auto e = job_->item_error(item)) std::rethrow_exception(e);
        return value(item);
    }
    /// Whether next() has results left. Never throws.
    bool has_next() const noexcept { return next_ < size(); }

    /// Result at position k (waits). Throws as next().
    R at(std::size_t k, timeout_t timeout) const {
        const std::size_t item = job_->wait_position(k, timeout);
        if (auto e = job_->item_error(item)) std::rethrow_exception(e);
        return value(item);
    }

    explicit IMapIterator(std::shared_ptr<detail::pool_job_of<R>> job) : job_(std::move(job)) {}

private:
    R value(std::size_t item) const { return job_->value(item); }
    std::shared_ptr<detail::pool_job_of<R>> job_;
    std::size_t next_ = 0;
};

// ---- Pool -------------------------------------------------------------------------------------

/// multiprocessing.Pool over forked workers; see the file comment for the lifecycle, what
/// happens when a worker dies, and what `f` may be. Move-only. Thread-safe: any thread of the
/// process that made the pool may call any member at any time.
class SHMQ_API Pool {
public:
    /// Forks the workers (nullopt: cpu_count(), the CPUs this process may run on).
    /// `initializer` runs once at the start of each worker (and each replacement);
    /// `maxtasksperchild` (nullopt: unlimited) replaces a worker after that many tasks. Throws
    /// value_error (processes or maxtasksperchild is 0), error (shared memory or fork failed).
    explicit Pool(std::optional<unsigned> processes = std::nullopt,
                  std::function<void()> initializer = {},
                  std::optional<unsigned> maxtasksperchild = std::nullopt);
    Pool(Pool&&) noexcept;
    /// terminate() + join() on the pool held before, then takes other's.
    Pool& operator=(Pool&&) noexcept;
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;
    /// terminate() + join(). Never throws. In another process than the pool's, does nothing.
    ~Pool();

    /// f(args...) in a worker; waits for it. Throws task_error, worker_lost_error, codec_error,
    /// value_error (pool closed or terminated, or not this process's pool).
    template <class F, class... Args>
        requires detail::pool_function<F>
    detail::pool_result_t<F> apply(F f, Args&&... args) {
        return apply_async(f, std::forward<Args>(args)...).get();
    }

    /// f(args...) in a worker. Throws codec_error (an argument failed to encode: nothing was
    /// submitted), value_error (closed/terminated, other process), worker_lost_error (pool
    /// broken). The result's get() throws the task's errors.
    template <class F, class... Args>
        requires detail::pool_function<F>
    AsyncResult<detail::pool_result_t<F>> apply_async(F f, Args&&... args) {
        using R = detail::pool_result_t<F>;
        using params = detail::pool_params_t<F>;
        static_assert(std::tuple_size_v<params> == sizeof...(Args),
                      "shmq::Pool::apply: wrong number of arguments for f");
        check_usable();
        detail::pool_batch batch = make_batch(f, 1);
        batch.reserve(1, arg_bytes_hint<params>());
        batch.begin_item();
        add_args<params>(batch, std::index_sequence_for<Args...>{}, std::forward<Args>(args)...);
        batch.end_item();
        auto job = std::make_shared<detail::pool_job_of<R>>(1, false);
        submit(job, std::move(batch));
        return AsyncResult<R>(std::move(job), [](detail::pool_job& j) -> R {
            return static_cast<detail::pool_job_of<R>&>(j).value(0);
        });
    }

    /// f(item) for every item, in input order; waits. For a void f returns nothing. Throws the
    /// first error to arrive (task_error, worker_lost_error naming the item, codec_error),
    /// value_error (closed/terminated, other process, chunksize 0).
    template <class F, class Items>
        requires detail::pool_function<F> && std::ranges::sized_range<const Items&>
    auto map(F f, const Items& items, std::size_t chunksize = 1) {
        using R = detail::pool_result_t<F>;
        auto job = submit_map<false>(f, items, chunksize, [](detail::pool_batch& b, const auto& item) {
            add_args<detail::pool_params_t<F>>(b, std::index_sequence<0>{}, item);
        });
        wait_job(*job);
        if constexpr (!std::is_void_v<R>) return job->take_all();
    }

    /// map() without waiting: AsyncResult<std::vector<R>> (AsyncResult<void> for a void f).
    template <class F, class Items>
        requires detail::pool_function<F> && std::ranges::sized_range<const Items&>
    auto map_async(F f, const Items& items, std::size_t chunksize = 1) {
        using R = detail::pool_result_t<F>;
        auto job = submit_map<false>(f, items, chunksize, [](detail::pool_batch& b, const auto& item) {
            add_args<detail::pool_params_t<F>>(b, std::index_sequence<0>{}, item);
        });
        if constexpr (std::is_void_v<R>) {
            return AsyncResult<void>(std::move(job), [](detail::pool_job&) {});
        } else {
            return AsyncResult<std::vector<R>>(std::move(job), [](detail::pool_job& j) {
                return static_cast<detail::pool_job_of<R>&>(j).copy_all();
            });
        }
    }

    /// f(item) for every item; the results as they come, in input order. Throws as map_async;
    /// reading the range throws each item's own error at its position.
    template <class F, class Items>
        requires detail::pool_function<F> && std::ranges::sized_range<const Items&>
    IMapIterator<detail::pool_result_t<F>> imap(F f, const Items& items, std::size_t chunksize = 1) {
        return IMapIterator<detail::pool_result_t<F>>(
            submit_map<false>(f, items, chunksize, [](detail::pool_batch& b, const auto& item) {
                add_args<detail::pool_params_t<F>>(b, std::index_sequence<0>{}, item);
            }));
    }

    /// As imap, in completion order.
    template <class F, class Items>
        requires detail::pool_function<F> && std::ranges::sized_range<const Items&>
    IMapIterator<detail::pool_result_t<F>> imap_unordered(F f, const Items& items,
                                                          std::size_t chunksize = 1) {
        return IMapIterator<detail::pool_result_t<F>>(
            submit_map<true>(f, items, chunksize, [](detail::pool_batch& b, const auto& item) {
                add_args<detail::pool_params_t<F>>(b, std::index_sequence<0>{}, item);
            }));
    }

    /// f(a, b, ...) for every tuple (std::tuple or std::pair) of `tuples`; as map otherwise.
    template <class F, class Tuples>
        requires detail::pool_function<F> && std::ranges::sized_range<const Tuples&>
    auto starmap(F f, const Tuples& tuples, std::size_t chunksize = 1) {
        using R = detail::pool_result_t<F>;
        auto job = submit_map<false>(f, tuples, chunksize, [](detail::pool_batch& b, const auto& t) {
            std::apply([&](const auto&... a) {
                add_args<detail::pool_params_t<F>>(b, std::make_index_sequence<sizeof...(a)>{}, a...);
            }, t);
        });
        wait_job(*job);
        if constexpr (!std::is_void_v<R>) return job->take_all();
    }

    /// starmap() without waiting.
    template <class F, class Tuples>
        requires detail::pool_function<F> && std::ranges::sized_range<const Tuples&>
    auto starmap_async(F f, const Tuples& tuples, std::size_t chunksize = 1) {
        using R = detail::pool_result_t<F>;
        auto job = submit_map<false>(f, tuples, chunksize, [](detail::pool_batch& b, const auto& t) {
            std::apply([&](const auto&... a) {
                add_args<detail::pool_params_t<F>>(b, std::make_index_sequence<sizeof...(a)>{}, a...);
            }, t);
        });
        if constexpr (std::is_void_v<R>) {
            return AsyncResult<void>(std::move(job), [](detail::pool_job&) {});
        } else {
            return AsyncResult<std::vector<R>>(std::move(job), [](detail::pool_job& j) {
                return static_cast<detail::pool_job_of<R>&>(j).copy_all();
            });
        }
    }

    /// No more submissions; the workers exit once every submitted task is done. Idempotent.
    /// Throws value_error (other process).
    void close();
    /// Kills the workers (SIGKILL) and fails every result not yet ready with worker_lost_error;
    /// returns once they are gone (promptly, whatever the tasks are doing). Idempotent. Throws
    /// value_error (other process).
    void terminate();
    /// Waits until every worker has exited and the result thread has ended. Throws value_error
    /// before close() or terminate(), or in another process.
    void join();

    /// The workers' pids now (a dead worker's replacement has a new one). Throws value_error
    /// (other process).
    std::vector<pid_t> worker_pids() const;
    /// The number of worker processes the pool keeps. Never throws.
    unsigned processes() const noexcept;

private:
    template <class F> static detail::pool_batch make_batch(F f, std::size_t chunksize) {
        using Fp = detail::pool_fn_ptr<F>;
        const Fp fp = +f;
        return detail::pool_batch(reinterpret_cast<std::uintptr_t>(fp), &detail::pool_invoke<Fp>,
                                  chunksize);
    }

    /// Encodes each argument as f's parameter type (converting first when they differ).
    template <class Params, std::size_t... I, class... A>
    static void add_args(detail::pool_batch& b, std::index_sequence<I...>, A&&... a) {
        static_assert(sizeof...(I) == std::tuple_size_v<Params>,
                      "shmq::Pool: wrong number of arguments for f");
        (add_one<std::tuple_element_t<I, Params>>(b, std::forward<A>(a)), ...);
    }
    template <class P, class A> static void add_one(detail::pool_batch& b, A&& a) {
        if constexpr (std::is_same_v<std::remove_cvref_t<A>, P>) {
            detail::pool_add_arg<P>(b, a);
        } else {
            const P converted(std::forward<A>(a));
            detail::pool_add_arg<P>(b, converted);
        }
    }

    /// About how many bytes an item's arguments take encoded (to reserve the batch).
    template <class Params> static constexpr std::size_t arg_bytes_hint() {
        return []<std::size_t... I>(std::index_sequence<I...>) {
            return (std::size_t{0} + ... +
                    (sizeof(std::uint32_t) +
                     (std::is_trivially_copyable_v<std::tuple_element_t<I, Params>>
                          ? sizeof(std::tuple_element_t<I, Params>)
                          : 16)));
        }(std::make_index_sequence<std::tuple_size_v<Params>>{});
    }

    template <bool CompletionOrder, class F, class Items, class Add>
    std::shared_ptr<detail::pool_job_of<detail::pool_result_t<F>>>
    submit_map(F f, const Items& items, std::size_t chunksize, Add add) {
        check_usable();
        if (chunksize == 0) throw value_error("shmq::Pool: chunksize must be at least 1");
        detail::pool_batch batch = make_batch(f, chunksize);
        batch.reserve(std::ranges::size(items), arg_bytes_hint<detail::pool_params_t<F>>());
        for (const auto& item : items) {
            batch.begin_item();
            add(batch, item);
            batch.end_item();
        }
        auto job = std::make_shared<detail::pool_job_of<detail::pool_result_t<F>>>(
            std::ranges::size(items), CompletionOrder);
        submit(job, std::move(batch));
        return job;
    }

    static void wait_job(detail::pool_job& job) {
        job.wait_ready(std::nullopt);
        if (auto e = job.first_error()) std::rethrow_exception(e);
    }

    /// value_error unless this process made the pool and it accepts tasks; worker_lost_error
    /// when it broke.
    void check_usable() const;
    void submit(std::shared_ptr<detail::pool_job> job, detail::pool_batch batch);

    std::unique_ptr<detail::pool_impl> impl_;
};

} // namespace shmq
