// SPDX-License-Identifier: BSL-1.0
// shmq — the loans and views of Queue and SimpleQueue (Queue<T>::Loan, Queue<T>::View): an item
// written in place in the ring, and an item read in place. queue_loan and queue_view are the
// byte-level handles, compiled once in lib/ (lib/queue_loan.cpp); item_loan<T> and item_view<T>
// only give them T's face: bytes() for byte items, value() for raw ones.
//
// Which T may be lent: the ones whose codec<T> sends the item's bytes as they are, so that
// the bytes in the ring *are* the item — std::string and byte vectors (decodes_in_place_v) and
// trivially copyable T sent raw (sends_raw_v, at most 8-byte aligned: records start 8-aligned).
// A Boost-serialized T has no such bytes; the facades refuse it with a static_assert.
#pragma once

#include <shmq/export.hpp>

#include <shmq/codec.hpp>
#include <shmq/errors.hpp>

#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>
#include <typeinfo>
#include <span>
#include <vector>

namespace shmq {
template <class T> class Queue;
template <class T> class SimpleQueue;
} // namespace shmq

namespace shmq::detail {

class queue_impl;
class queue_core;

/// T's bytes in the ring are the whole item: std::string and byte vectors.
template <class T> inline constexpr bool lends_bytes_v = decodes_in_place_v<T>;
/// T's object representation is the item and a ring record can hold it aligned.
template <class T> inline constexpr bool lends_value_v = sends_raw_v<T> && alignof(T) <= 8;

#define SHMQ_DETAIL_NOT_LENDABLE                                                                 \
    "shmq: loans and views need an item whose bytes in the ring are the item itself: "           \
    "std::string, std::vector<std::byte|char|unsigned char> (loan(n), bytes()) or a trivially "  \
    "copyable T sent raw (loan(), value()). This T is encoded (Boost.Serialization or a codec "  \
    "of its own), so use put()/get()"
#define SHMQ_DETAIL_OVERALIGNED                                                                  \
    "shmq: loans and views of a trivially copyable T need alignof(T) <= 8: ring records start "  \
    "8-byte aligned, so a T in place could be misaligned. Use put()/get()"

/// A byte-level loan: n bytes of the ring, published by commit. Move-only. Holds its queue's
/// backend alive, so it may outlive the Queue object (commit then still publishes).
class SHMQ_API queue_loan {
public:
    queue_loan() noexcept = default;
    queue_loan(queue_loan&& other) noexcept;
    queue_loan& operator=(queue_loan&& other) noexcept;
    ~queue_loan();   // not committed: nothing is published
    std::span<std::byte> bytes() const noexcept { return bytes_; }
    /// Publishes the first `size` bytes as one item. value_error when size > bytes().size() or
    /// nothing is on loan (committed already, moved from).
    void commit(std::size_t size);

private:
    friend class queue_core;
    queue_loan(std::shared_ptr<queue_impl> impl, std::span<std::byte> bytes,
               std::uint64_t ticket) noexcept;
    std::shared_ptr<queue_impl> impl_;   // non-null while on loan
    std::span<std::byte> bytes_;
    std::uint64_t ticket_ = 0;           // which loan of the handle this is
};

/// A byte-level view: an item read in place (or assembled in own_). Move-only.
class SHMQ_API queue_view {
public:
    queue_view() noexcept = default;
    queue_view(queue_view&& other) noexcept;
    queue_view& operator=(queue_view&& other) noexcept;
    ~queue_view() { release(); }
    std::span<const std::byte> bytes() const noexcept { return bytes_; }
    /// Consumes the item and lets other getters go on. Idempotent; never throws.
    void release() noexcept;

private:
    friend class queue_core;
    std::shared_ptr<queue_impl> impl_;   // non-null while lent in place
    std::span<const std::byte> bytes_;
    std::vector<std::byte> own_;         // an item that came in pieces
    std::uint64_t ticket_ = 0;           // which view of the handle this is
};

/// Queue<T>::Loan: room for one item in the ring. Byte items: bytes() and commit(size);
/// raw T: value() (a T in the ring, holding whatever bytes were there: assign all of it) and
/// commit(). Destroyed uncommitted, or its process killed first: nothing is published.
template <class T> class item_loan {
public:
    item_loan() noexcept = default;
    /// The room: loan(n)'s n bytes, 8-byte aligned. Empty once committed.
    std::span<std::byte> bytes() const noexcept
        requires lends_bytes_v<T>
    {
        return l_.bytes();
    }
    /// The item being written, in the ring. value_error once committed (or moved from).
    T& value() const
        requires lends_value_v<T>
    {
        if (l_.bytes().empty()) throw value_error("shmq: value(): nothing is on loan (committed already, or moved from)");
        // Trivially copyable T is an implicit-lifetime type: the shared mapping's bytes may be
        // used as one, as codec<T>::decode does with memcpy'd storage.
        return *std::launder(reinterpret_cast<T*>(l_.bytes().data()));
    }
    /// Publishes the first `size` bytes as one item. Throws value_error (size > bytes().size(),
    /// nothing on loan).
    void commit(std::size_t size)
        requires lends_bytes_v<T>
    {
        l_.commit(size);
    }
    /// Publishes the whole room (a raw T: the item). Throws value_error (nothing on loan).
    void commit() { l_.commit(l_.bytes().size()); }

private:
    friend class shmq::Queue<T>;
    friend class shmq::SimpleQueue<T>;
    explicit item_loan(queue_loan l) noexcept : l_(std::move(l)) {}
    queue_loan l_;
};

/// Queue<T>::View: the next item, read in place. Byte items: bytes(); raw T: value(). Released
/// (or destroyed): the item is consumed.
template <class T> class item_view {
public:
    item_view() noexcept = default;
    std::span<const std::byte> bytes() const noexcept
        requires lends_bytes_v<T>
    {
        return v_.bytes();
    }
    /// value_error once released (or moved from).
    const T& value() const
        requires lends_value_v<T>
    {
        if (v_.bytes().empty()) throw value_error("shmq: value(): the view was released (or moved from)");
        return *std::launder(reinterpret_cast<const T*>(v_.bytes().data()));
    }
    /// Consumes the item and lets other getters go on. Idempotent; never throws.
    void release() noexcept { v_.release(); }

private:
    friend class shmq::Queue<T>;
    friend class shmq::SimpleQueue<T>;
    explicit item_view(queue_view v) : v_(std::move(v)) {
        if constexpr (lends_value_v<T>) {
            // What codec<T>::decode would refuse is refused here, and consumed like a failing
            // decode (Queue::get): exactly sizeof(T) bytes, and a bool must be 0 or 1.
            const std::span<const std::byte> b = v_.bytes();
            if (b.size() != sizeof(T)) {
                v_.release();
                throw_size_mismatch(typeid(T), sizeof(T), b.size());
            }
            if constexpr (std::is_same_v<T, bool>) {
                if (b[0] != std::byte{0} && b[0] != std::byte{1}) {
                    v_.release();
                    throw_decode_error(typeid(T), "a bool byte must be 0 or 1");
                }
            }
        }
    }
    queue_view v_;
};

} // namespace shmq::detail
