// SPDX-License-Identifier: BSL-1.0
// shmq — the non-template core of Queue, SimpleQueue and JoinableQueue. The class templates
// only encode T and hand bytes here (as fmt's front end does), so this is compiled once in lib/.
#pragma once

#include <shmq/export.hpp>

#include <shmq/codec.hpp>
#include <shmq/detail/message_sink.hpp>
#include <shmq/detail/queue_loan.hpp>
#include <shmq/errors.hpp>
#include <shmq/options.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace shmq::detail {

class queue_impl;

enum class queue_flavor : std::uint32_t { queue = 2, simple = 3, joinable = 4 };

class SHMQ_API queue_core {
public:
    /// Anonymous: shared with children forked later. Throws value_error (bad maxsize/capacity).
    queue_core(queue_flavor flavor, std::int64_t maxsize, const options& opts,
               std::uint64_t type_fingerprint);
    /// Named. create: exists_error, value_error, error; open: not_found_error, permission_error,
    /// type_error, broken_error, error. open uses only opts.trust_foreign.
    static queue_core create(queue_flavor flavor, std::string_view name, std::int64_t maxsize,
                             const options& opts, std::uint64_t type_fingerprint);
    static queue_core open(queue_flavor flavor, std::string_view name,
                           std::uint64_t type_fingerprint, const options& opts = {});
    static bool remove(std::string_view name) noexcept;

    queue_core(queue_core&&) noexcept;
    queue_core& operator=(queue_core&&) noexcept;
    ~queue_core();   // close(); then waits for this handle's backlog unless cancel_join_thread()

    /// One encoded item. Throws closed_error, full_error.
    void put(std::span<const std::byte> item, bool block, const timeout_t& timeout);
    /// One item into sink. Throws closed_error, empty_error, broken_error.
    void get(message_sink& sink, bool block, const timeout_t& timeout);
    /// A descriptor readable whenever get would not block (Queue::fileno()). Throws
    /// closed_error, error.
    int fileno();
    /// Whether a get would not block now; re-arms this process's fileno() (wait()).
    bool poll_ready();
    std::size_t qsize() const;
    bool empty() const;
    bool full() const;
    std::int64_t maxsize() const noexcept;
    void close() noexcept;
    bool closed() const noexcept;
    void join_thread();
    void cancel_join_thread() noexcept;
    void task_done();
    bool join(const timeout_t& timeout);
    /// Items got by processes that died before their task_done (JoinableQueue).
    std::uint64_t lost_to_dead_consumers() const noexcept;
    /// Unlinks the name if it still names this handle's segment (not a replacement). Never throws.
    bool remove_if_named_here() const noexcept;
    /// Throws closed_error when closed (SimpleQueue's empty() after close).
    void check_open() const;
    /// Room for an item of n bytes in the ring (Queue::loan). Throws closed_error, value_error
    /// (n > max_loan(), a nats:// queue), full_error, broken_error.
    queue_loan loan(std::size_t n, bool block, const timeout_t& timeout);
    /// The next item in place (Queue::get_view). Throws closed_error, value_error (nats://),
    /// empty_error, broken_error.
    queue_view get_view(bool block, const timeout_t& timeout);
    /// Throws closed_error, value_error (nats://).
    std::size_t max_loan() const;

private:
    explicit queue_core(std::shared_ptr<queue_impl> impl) noexcept;
    std::shared_ptr<queue_impl> impl_;
};

/// One item from `core`, for the queue facades' get(): a string or a byte vector receives the
/// item's bytes directly; any other T decodes from the thread's scratch buffer (T need not be
/// default-constructible).
template <class T> T get_item(queue_core& core, bool block, const timeout_t& timeout) {
    if constexpr (decodes_in_place_v<T>) {
        T out;
        container_sink<T> sink(out);
        core.get(sink, block, timeout);
        return out;
    } else {
        auto& buf = decode_scratch();
        container_sink<std::vector<std::byte>> sink(buf);
        core.get(sink, block, timeout);
        return codec<T>::decode(std::span<const std::byte>(buf.data(), buf.size()));
    }
}

/// The same into `out`, for get_into(): a string or a byte vector keeps its capacity (and its
/// size: one already as large as the item is not zero-filled again); other types are
/// move-assigned.
template <class T> void get_item_into(queue_core& core, T& out, bool block, const timeout_t& timeout) {
    if constexpr (decodes_in_place_v<T>) {
        container_sink<T> sink(out);
        core.get(sink, block, timeout);
    } else {
        out = get_item<T>(core, block, timeout);
    }
}

/// queue_core::loan for the facades' loan(n): byte items only (queue_loan.hpp says why).
template <class T>
queue_loan loan_bytes(queue_core& core, std::size_t n, bool block, const timeout_t& timeout) {
    static_assert(lends_bytes_v<T> || !sends_raw_v<T>,
                  "shmq: loan(n) is for byte items; a trivially copyable T takes loan(), room for one T");
    static_assert(lends_bytes_v<T> || lends_value_v<T>, SHMQ_DETAIL_NOT_LENDABLE);
    return core.loan(n, block, timeout);
}

/// queue_core::loan for the facades' loan(): room for one raw T.
template <class T> queue_loan loan_value(queue_core& core, bool block, const timeout_t& timeout) {
    static_assert(sends_raw_v<T> || !lends_bytes_v<T>,
                  "shmq: loan() is for trivially copyable items; a byte item says how many bytes "
                  "it needs: loan(n)");
    static_assert(!sends_raw_v<T> || alignof(T) <= 8, SHMQ_DETAIL_OVERALIGNED);
    static_assert(lends_bytes_v<T> || sends_raw_v<T>, SHMQ_DETAIL_NOT_LENDABLE);
    return core.loan(sizeof(T), block, timeout);
}

/// queue_core::get_view for the facades' get_view().
template <class T> queue_view view_item(queue_core& core, bool block, const timeout_t& timeout) {
    static_assert(!sends_raw_v<T> || alignof(T) <= 8, SHMQ_DETAIL_OVERALIGNED);
    static_assert(lends_bytes_v<T> || sends_raw_v<T>, SHMQ_DETAIL_NOT_LENDABLE);
    return core.get_view(block, timeout);
}

} // namespace shmq::detail
