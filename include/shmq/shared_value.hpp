// SPDX-License-Identifier: BSL-1.0
// shmq — shared values: Python's multiprocessing.Value and multiprocessing.Array, for trivially
// copyable T, in shared memory with a Lock of their own.
//
//   shmq::Value<long> counter(0);              // anonymous: shared with children forked later
//   {
//       std::lock_guard g(counter.get_lock()); // read-modify-write under the lock, as in Python
//       if (counter.get_lock().previous_owner_died()) repair(counter);
//       ++counter.value();
//   }
//   auto a = shmq::Array<double>::create("samples", 1024);   // named: /dev/shm/shmq.samples
//   auto b = shmq::Array<double>::open("samples");           // type_error for another T
//
// The memory is plain shared memory: value() and operator[] are references into it, read and
// written without any locking or ordering by themselves. Use get_lock() around any
// read-modify-write or multi-field update, or make T a lock-free std::atomic (Value<std::atomic<
// long>> v; v.value().fetch_add(1): no lock needed; construct it from a prvalue or default). The lock takes over from a holder that died
// (see <shmq/sync.hpp>): after such a takeover previous_owner_died() is true and the value may
// hold a half-done update, which the new holder should repair.
//
// Handles are copyable and share the object. Named objects follow the queues' rules (names,
// options::mode, trust_foreign, remove() unlinks and never throws); open() of a name made for
// another T, or of a Value as an Array, throws type_error.
#pragma once

#include <shmq/errors.hpp>
#include <shmq/export.hpp>
#include <shmq/options.hpp>
#include <shmq/sync.hpp>

#include <atomic>   // the documented lock-free use: Value<std::atomic<long>>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>
#include <type_traits>
#include <typeinfo>

namespace shmq {
namespace detail {

/// FNV-1a 64 over the mangled name, mixed with size and alignment (codec.hpp). Never throws.
SHMQ_API std::uint64_t type_fingerprint(const std::type_info& type, std::size_t size,
                                        std::size_t align) noexcept;

/// The non-template core of Value and Array: a segment holding a Lock and `count` elements of
/// `elem_size` bytes, each initialized to `initial` (elem_size bytes) at creation.
struct SHMQ_API shared_block {
    std::shared_ptr<void> keep;
    lock_state* lock = nullptr;
    std::byte* data = nullptr;
    std::size_t count = 0;

    /// Anonymous. Throws value_error (too large), error.
    static shared_block make(bool array, std::uint64_t fingerprint, std::size_t elem_size,
                             std::size_t count, const void* initial);
    /// Throws exists_error, value_error, permission_error, error.
    static shared_block create(std::string_view name, bool array, std::uint64_t fingerprint,
                               std::size_t elem_size, std::size_t count, const void* initial,
                               const options& opts);
    /// Throws not_found_error, type_error (another kind or T), permission_error, broken_error.
    static shared_block open(std::string_view name, bool array, std::uint64_t fingerprint,
                             std::size_t elem_size, const options& opts);
    static bool remove(std::string_view name) noexcept;
};

template <class T> std::uint64_t value_fingerprint() noexcept {
    return type_fingerprint(typeid(T), sizeof(T), alignof(T));
}

} // namespace detail

/// multiprocessing.Value: one T in shared memory, with a Lock.
template <class T> class Value {
    static_assert(std::is_trivially_copyable_v<T>, "shmq::Value<T> needs a trivially copyable T");
    static_assert(alignof(T) <= 64, "shmq::Value<T>: T aligned beyond 64 bytes");

public:
    /// Anonymous, holding `initial`. Throws error (no shared memory).
    explicit Value(T initial = T{})
        : Value(detail::shared_block::make(false, detail::value_fingerprint<T>(), sizeof(T), 1, &initial)) {}
    static Value create(std::string_view name, T initial = T{}, options opts = {}) {
        return Value(detail::shared_block::create(name, false, detail::value_fingerprint<T>(),
                                                  sizeof(T), 1, &initial, opts));
    }
    static Value open(std::string_view name) { return open(name, options{}); }
    static Value open(std::string_view name, const options& opts) {
        return Value(detail::shared_block::open(name, false, detail::value_fingerprint<T>(), sizeof(T), opts));
    }
    static bool remove(std::string_view name) noexcept { return detail::shared_block::remove(name); }

    /// The shared T. Hold get_lock() for read-modify-write.
    T& value() noexcept { return *ptr(); }
    const T& value() const noexcept { return *ptr(); }
    Lock& get_lock() noexcept { return lock_; }

private:
    explicit Value(detail::shared_block b)
        : block_(std::move(b)), lock_(detail::object_access::make<Lock>(block_.keep, block_.lock)) {}
    T* ptr() const noexcept { return std::launder(reinterpret_cast<T*>(block_.data)); }
    detail::shared_block block_;
    Lock lock_;
};

/// multiprocessing.Array: n T in shared memory (contiguous), with a Lock.
template <class T> class Array {
    static_assert(std::is_trivially_copyable_v<T>, "shmq::Array<T> needs a trivially copyable T");
    static_assert(alignof(T) <= 64, "shmq::Array<T>: T aligned beyond 64 bytes");

public:
    /// Anonymous, n copies of `initial`. Throws value_error (too large), error.
    explicit Array(std::size_t n, T initial = T{})
        : Array(detail::shared_block::make(true, detail::value_fingerprint<T>(), sizeof(T), n, &initial)) {}
    static Array create(std::string_view name, std::size_t n, T initial = T{}, options opts = {}) {
        return Array(detail::shared_block::create(name, true, detail::value_fingerprint<T>(),
                                                  sizeof(T), n, &initial, opts));
    }
    static Array open(std::string_view name) { return open(name, options{}); }
    static Array open(std::string_view name, const options& opts) {
        return Array(detail::shared_block::open(name, true, detail::value_fingerprint<T>(), sizeof(T), opts));
    }
    static bool remove(std::string_view name) noexcept { return detail::shared_block::remove(name); }

    /// \pre i < size() (unchecked, as std::vector's).
    T& operator[](std::size_t i) noexcept { return data()[i]; }
    const T& operator[](std::size_t i) const noexcept { return data()[i]; }
    std::size_t size() const noexcept { return block_.count; }
    T* data() noexcept { return std::launder(reinterpret_cast<T*>(block_.data)); }
    const T* data() const noexcept { return std::launder(reinterpret_cast<const T*>(block_.data)); }
    T* begin() noexcept { return data(); }
    T* end() noexcept { return data() + size(); }
    const T* begin() const noexcept { return data(); }
    const T* end() const noexcept { return data() + size(); }
    Lock& get_lock() noexcept { return lock_; }

private:
    explicit Array(detail::shared_block b)
        : block_(std::move(b)), lock_(detail::object_access::make<Lock>(block_.keep, block_.lock)) {}
    detail::shared_block block_;
    Lock lock_;
};

} // namespace shmq
