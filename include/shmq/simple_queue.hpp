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

namespace shmq {

template <class T> class SimpleQueue {
public:
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
    /// Throws closed_error.
    bool empty() const {
        core_.check_open();
        return core_.empty();
    }
    void close() noexcept { core_.close(); }

private:
    explicit SimpleQueue(detail::queue_core core) noexcept : core_(std::move(core)) {}
    detail::queue_core core_;
};

} // namespace shmq
