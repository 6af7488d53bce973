// SPDX-License-Identifier: BSL-1.0
// shmq — SimpleQueue<T>: Python's multiprocessing.SimpleQueue. put, get, empty, close; no
// maxsize, no timeouts, no feeder: put waits while the ring is full, get waits for an item.
// After close(), put, get and empty throw closed_error.
// A nats:// name puts the queue in NATS JetStream (differences: queue.hpp); put and get then
// wait for the network at most the URL's `timeout` (get waits for an item for ever, as here).
#pragma once

#include <shmq/codec.hpp>
#include <shmq/detail/queue_core.hpp>
#include <shmq/errors.hpp>
#include <shmq/options.hpp>

#include <string_view>

namespace shmq { class waitable; }

namespace shmq {

template <class T> class SimpleQueue {
public:
    /// As Queue<T>::Loan and Queue<T>::View.
    using Loan = detail::item_loan<T>;
    using View = detail::item_view<T>;

    SimpleQueue() : SimpleQueue(options{}) {}
    explicit SimpleQueue(options opts)
        : core_(detail::queue_flavor::simple, 0, opts, detail::type_fingerprint<T>()) {}
    static SimpleQueue create(std::string_view name, options opts = {}) {
        return SimpleQueue(detail::queue_core::create(detail::queue_flavor::simple, name, 0, opts,
                                                      detail::type_fingerprint<T>()));
    }
    /// As Queue::open_or_create.
    static SimpleQueue open_or_create(std::string_view name, options opts = {}) {
        opts.if_exists = if_exists::open;
        return create(name, opts);
    }
    /// Throws as Queue::open; the second form takes options::trust_foreign.
    static SimpleQueue open(std::string_view name) { return open(name, options{}); }
    static SimpleQueue open(std::string_view name, const options& opts) {
        return SimpleQueue(detail::queue_core::open(detail::queue_flavor::simple, name,
                                                    detail::type_fingerprint<T>(), opts));
    }
    static bool remove(std::string_view name) noexcept { return detail::queue_core::remove(name); }

    SimpleQueue(SimpleQueue&&) noexcept = default;
    SimpleQueue& operator=(SimpleQueue&&) noexcept = default;

    /// Throws closed_error, codec_error.
    void put(const T& obj) {
        core_.check_open();
        auto& scratch = detail::encode_scratch();
        core_.put(codec<T>::encode(obj, scratch), true, std::nullopt);
    }
    /// Throws closed_error, codec_error, broken_error.
    T get() {
        return detail::get_item<T>(core_, true, std::nullopt);
    }
    /// As get(), into `out`, reusing its capacity (Queue::get_into).
    void get_into(T& out) { detail::get_item_into(core_, out, true, std::nullopt); }

    /// Zero copy, as Queue<T>::loan(n) / loan() / get_view() / max_loan() (see there), without
    /// timeouts: the loan waits for room in the ring, get_view for an item. Byte items take
    /// loan(n) and View::bytes(); trivially copyable T takes loan() and value(). Throws
    /// closed_error, value_error (n > max_loan(), nats://), codec_error, broken_error.
    Loan loan(std::size_t n) { return Loan(detail::loan_bytes<T>(core_, n, true, std::nullopt)); }
    Loan loan() { return Loan(detail::loan_value<T>(core_, true, std::nullopt)); }
    std::size_t max_loan() const { return core_.max_loan(); }
    View get_view() { return View(detail::view_item<T>(core_, true, std::nullopt)); }
    /// Throws closed_error.
    bool empty() const {
        core_.check_open();
        return core_.empty();
    }
    /// A descriptor for epoll/poll/select and event loops, readable whenever get would not block
    /// (an item is waiting). Level-triggered, per process, owned by the queue (valid until
    /// close()); spurious readiness is possible (another consumer took the item first), missed
    /// readiness is not; it re-arms when this process calls get, get_nowait, empty() or wait()
    /// with it, so a loop takes what is there (or looks with empty()) after each wake-up. Free until first called (puts check one word they check anyway).
    /// Works for named queues opened by unrelated processes. At most 7 handles may poll one
    /// queue at a time. See Connection::fileno() for the details. Throws closed_error,
    /// value_error (a nats:// queue: it has none), error.
    int fileno() { return core_.fileno(); }
    void close() noexcept { core_.close(); }

private:
    explicit SimpleQueue(detail::queue_core core) noexcept : core_(std::move(core)) {}
    friend class waitable;
    detail::queue_core core_;
};

} // namespace shmq
