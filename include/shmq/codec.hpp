// SPDX-License-Identifier: BSL-1.0
// shmq — the codec layer: T <-> the bytes of one message.
//
// `shmq::codec<T>` is the customization point. Every specialization provides
//
//     static std::span<const std::byte> encode(const T& obj, std::vector<std::byte>& scratch);
//     static T decode(std::span<const std::byte> bytes);
//
// encode returns a view that stays valid until `scratch` or `obj` changes (it may point into
// `obj` itself); decode reads exactly one message. Both report failure as shmq::codec_error.
// The message length is the frame length, so no codec writes a length prefix of its own.
//
// What the primary template does, by kind of T (first match wins):
//  * char arrays and char pointers (`send("literal")`, a `const char*`): the characters up to the
//    first NUL, as a std::string would send them (the array's size bounds the search), so the
//    peer decodes a std::string. Encode only: decoding into an array or a pointer is a compile
//    error. A null pointer throws codec_error.
//  * other pointers, member pointers, arrays, std::span of non-bytes, std::basic_string_view of non-char:
//    refused at compile time. An address means nothing in another process; send the pointee, a
//    std::string or a std::vector, or specialize codec<T> if you really mean it.
//  * std::string_view, std::span<const std::byte|char|unsigned char>: encode only (sends the
//    viewed bytes, so the peer can decode a std::string or a byte vector); decoding into a view
//    is a compile error because nothing would own the bytes.
//  * std::string, std::vector<std::byte|char|unsigned char>: the bytes themselves. encode
//    returns a span over obj's buffer: no copy, no allocation.
//  * trivially copyable T (int, double, enums, PODs, std::array of them) without a member
//    `serialize` of its own: the object representation, sizeof(T) bytes. encode returns a span
//    over obj: no copy, no allocation. decode requires exactly sizeof(T) bytes. Both ends must
//    share the ABI (they share memory on one machine, so they do unless compiled differently).
//    A struct that *contains* pointers or views is trivially copyable too and is copied bit for
//    bit: give such a type its own specialization. Padding bytes travel as they are.
//    A type that declares a member `serialize` (public or private, or via
//    BOOST_SERIALIZATION_SPLIT_MEMBER) asked for it to be used, so it takes the Boost path even
//    when trivially copyable; `shmq::raw_codec` / `shmq::serialization_codec` override either
//    choice (a free-function serialize is not detected: opt in with serialization_codec).
//  * everything else: Boost.Serialization's binary archive without its header
//    (boost::archive::no_header), written into the reused `scratch` vector. This path is in
//    <shmq/serialization.hpp>, which <shmq/shmq.hpp> includes; a translation unit that includes
//    only facade headers (<shmq/queue.hpp>, ...) compiles no Boost archive, and a type that needs
//    one there is a compile error that says to include it. T needs a
//    `serialize` (or save/load) as usual with Boost, must be default-constructible, and both ends
//    must use the same Boost and architecture. std::string, std::optional, std::variant,
//    std::pair, std::tuple, std::map, std::unordered_map, std::set and std::array are supported
//    here (detail/std_serialization.hpp); include the other <boost/serialization/...> headers
//    your members need (vector.hpp for std::vector, ...).
//
// Robustness of the Boost path: decoding bytes that are not an encoding of T (a message sent as
// another type, a hostile peer) throws codec_error; it does not crash, assert, or allocate
// without bound. Any exception (archive_exception, std::bad_alloc, std::length_error, one from
// a user's serialize, ...) becomes codec_error. String lengths and vectors of bitwise types are
// checked exactly against the bytes left; any other collection may claim at most one element per
// byte left plus `collection_slack`. All the collections of one message together may claim at
// most one element per byte of the message plus one `collection_slack` (a budget the counts
// draw from as they are read), so nesting cannot multiply claims: collections of elements that
// serialize to nothing cannot grow quadratically. A decode of hostile bytes therefore allocates
// at most about (message size + 4096) x sizeof(largest element or node) for collections, plus
// strings no longer than the message, and only until the error unwinds. An unordered
// container's bucket count is only a hint, so it is clamped rather than refused. A
// boost::variant index outside [0, number of alternatives) is refused (Boost would walk the
// alternatives down from a negative one, and overflow at INT_MIN). Trailing bytes after the
// object are an error. Pointers (raw, std::unique_ptr, std/boost::shared_ptr,
// boost::scoped_ptr, exported polymorphic classes): class ids and object ids are checked against
// mirrors of Boost's own tables, a pointer may only name an object of the class it claims, that
// class must be the pointer's type or derived from it, and an owning pointer may only name a
// new object or one it may share, so garbage cannot cause an out-of-range read, a pointer to
// the wrong type, a leak or a double delete.
// Known limits: a message whose collections hold, together, more than `collection_slack`
// elements whose serialize writes nothing is refused; loading a `char*` C string is refused (Boost would write through it without
// a bound); raw pointers are taken as observers, so garbage can make two raw pointers name one
// object, which matters only if your destructor deletes them; an object created through a raw
// pointer in a message that then fails to decode is leaked once its own load completed (its
// owner is user code shmq cannot see), whereas Boost would leak any pointer's object whose load
// fails and shmq destroys it (an owning pointer's objects are always freed, unless a shared_ptr
// cycle holds them, as shared_ptr cycles do); the pre-1.33
// boost::shared_ptr format (boost/serialization/shared_ptr_132.hpp) is not checked.
//
// decode constructs its result directly in the caller's storage, so pointers that Boost restores
// to the object's own members stay valid. A user's serialize may itself send or receive on
// another shmq object: nested encodes and decodes get their own scratch buffers.
//
// Customizing: specialize for your type (a full or partial specialization always wins over the
// defaults above; the Enable parameter allows enable_if-constrained partial specializations):
//
//     template <> struct shmq::codec<my_type> {
//         static std::span<const std::byte> encode(const my_type&, std::vector<std::byte>& scratch);
//         static my_type decode(std::span<const std::byte>);   // throw shmq::codec_error on bad input
//     };
//
// Threads: codecs are stateless; the scratch buffers below are per thread.
#pragma once

#include <shmq/export.hpp>

#include <shmq/detail/message_sink.hpp>
#include <shmq/errors.hpp>

#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <vector>

namespace shmq {

/// The customization point: how a T becomes the bytes of one message and back. See the file
/// comment for the defaults and how to specialize.
template <class T, class Enable = void>
struct codec;

namespace detail {

/// The calling thread's buffer for encoding (Boost path) one message. Reused, so steady-state
/// sends allocate nothing. Safe against nesting: while this thread is inside a Boost encode
/// (a user's serialize sending on another connection), a different buffer is returned. A buffer
/// that grew beyond scratch_keep_bytes is released here, before its next use.
/// Throws std::bad_alloc only when called nested and memory is exhausted (the enclosing encode
/// then reports codec_error); at the top level it never throws.
SHMQ_API std::vector<std::byte>& encode_scratch();
/// The calling thread's buffer for receiving one message before it is decoded; same rules as
/// encode_scratch (nested receives inside a user's load get their own buffer).
SHMQ_API std::vector<std::byte>& decode_scratch();

/// A scratch buffer above this capacity is released before its next use instead of being kept
/// for the thread's lifetime: one huge message must not pin its size forever.
inline constexpr std::size_t scratch_keep_bytes = std::size_t{16} << 20;

/// Any collection count may exceed the bytes left by this much (collections of elements that
/// serialize to nothing are legal); beyond it the count is garbage. It is also the allowance of
/// such free elements for a whole message: all counts of one message together may exceed the
/// message's size by at most this much.
inline constexpr std::size_t collection_slack = 4096;

/// FNV-1a 64 over the mangled name, mixed with size and alignment; never 0. Never throws.
SHMQ_API std::uint64_t type_fingerprint(const std::type_info& type, std::size_t size,
                               std::size_t align) noexcept;

/// Converts the exception being handled into codec_error (codec_error itself passes through
/// unchanged, as does the forced unwinding of a cancelled thread). Call only from a catch block.
[[noreturn]] SHMQ_API void rethrow_as_codec_error(const char* operation, const std::type_info& type);
/// Throws codec_error: a raw T needs exactly `expected` bytes.
[[noreturn]] SHMQ_API void throw_size_mismatch(const std::type_info& type, std::size_t expected,
                                      std::size_t got);
/// Throws codec_error with "shmq: cannot decode <type>: <why>".
[[noreturn]] SHMQ_API void throw_decode_error(const std::type_info& type, const char* why);

/// Marks this thread as inside a Boost encode (resp. decode), so that encode_scratch()
/// (resp. decode_scratch()) called from a user's serialize hands out a different buffer.
class SHMQ_API encode_nesting {
public:
    encode_nesting() noexcept;
    ~encode_nesting();
    encode_nesting(const encode_nesting&) = delete;
    encode_nesting& operator=(const encode_nesting&) = delete;
};
class SHMQ_API decode_nesting {
public:
    decode_nesting() noexcept;
    ~decode_nesting();
    decode_nesting(const decode_nesting&) = delete;
    decode_nesting& operator=(const decode_nesting&) = delete;
};

template <class T> inline constexpr bool always_false = false;

template <class T> struct is_span : std::false_type {};
template <class E, std::size_t N> struct is_span<std::span<E, N>> : std::true_type {};
template <class T> struct is_string_view : std::false_type {};
template <class C, class Tr> struct is_string_view<std::basic_string_view<C, Tr>> : std::true_type {};

template <class E>
inline constexpr bool is_byte_like_v =
    std::is_same_v<std::remove_cv_t<E>, std::byte> || std::is_same_v<std::remove_cv_t<E>, char> ||
    std::is_same_v<std::remove_cv_t<E>, unsigned char>;

template <class T>
inline constexpr bool is_bytes_container_v =
    std::is_same_v<T, std::string> || std::is_same_v<T, std::vector<std::byte>> ||
    std::is_same_v<T, std::vector<char>> || std::is_same_v<T, std::vector<unsigned char>>;

template <class T> constexpr bool is_bytes_view() {
    if constexpr (is_span<T>::value) return is_byte_like_v<typename T::element_type>;
    else return std::is_same_v<T, std::string_view>;
}

enum class codec_kind { unsupported, c_string, bytes_view, bytes, raw, serialized };

template <class T> struct is_c_string : std::false_type {};
template <std::size_t N> struct is_c_string<char[N]> : std::true_type {};
template <std::size_t N> struct is_c_string<const char[N]> : std::true_type {};
template <> struct is_c_string<char*> : std::true_type {};
template <> struct is_c_string<const char*> : std::true_type {};

// Finds a member named `serialize` even when it is private (the usual Boost idiom, with
// `friend class boost::serialization::access`): in a class deriving from both T and a probe that
// has its own `serialize`, the name is ambiguous exactly when T has one. Lookup ambiguity is
// decided before access checking, so privacy does not hide it.
struct serialize_name_probe {
    void serialize();
};
template <class T> struct serialize_probe : T, serialize_name_probe {};
template <class T>
concept has_member_serialize =
    std::is_class_v<T> && !std::is_final_v<T> && !requires { &serialize_probe<T>::serialize; };

template <class T> constexpr codec_kind kind_of() {
    if constexpr (is_c_string<T>::value)
        return codec_kind::c_string;
    else if constexpr (std::is_pointer_v<T> || std::is_member_pointer_v<T> || std::is_array_v<T> ||
                  std::is_function_v<T> || std::is_reference_v<T> || std::is_void_v<T>)
        return codec_kind::unsupported;
    else if constexpr (is_span<T>::value || is_string_view<T>::value)
        return is_bytes_view<T>() ? codec_kind::bytes_view : codec_kind::unsupported;
    else if constexpr (is_bytes_container_v<T>)
        return codec_kind::bytes;
    else if constexpr (std::is_trivially_copyable_v<T> && !has_member_serialize<T>)
        return codec_kind::raw;
    else
        return codec_kind::serialized;
}

template <class T, codec_kind K = kind_of<T>()> struct default_codec;

template <class T> struct default_codec<T, codec_kind::unsupported> {
    static_assert(always_false<T>,
                  "shmq::codec<T>: pointers, arrays, functions and views of non-byte data cannot "
                  "be sent (an address means nothing in another process). Send the value, a "
                  "std::string or a std::vector, or specialize shmq::codec<T>.");
};

template <class T> struct default_codec<T, codec_kind::c_string> {
    /// Returns a span over the characters before the first NUL (no copy). Throws codec_error
    /// for a null pointer.
    static std::span<const std::byte> encode(const T& s, std::vector<std::byte>&) {
        if constexpr (std::is_array_v<T>) {
            // A literal's array ends with its NUL; a filled buffer may have none, so the array's
            // size bounds the search.
            const char* nul = std::char_traits<char>::find(s, std::extent_v<T>, '\0');
            const std::size_t n = nul ? static_cast<std::size_t>(nul - s) : std::extent_v<T>;
            return std::as_bytes(std::span<const char>(s, n));
        } else {
            if (s == nullptr) throw codec_error("shmq: cannot encode a null C string");
            return std::as_bytes(std::span<const char>(s, std::char_traits<char>::length(s)));
        }
    }
    // void: a function cannot return an array; only instantiated by a recv<T> of a C string.
    static void decode(std::span<const std::byte>) {
        static_assert(always_false<T>,
                      "shmq::codec: a C string is sent as a std::string; receive a std::string");
    }
};

template <class T> struct default_codec<T, codec_kind::bytes_view> {
    /// Returns a span over the viewed bytes. Never throws.
    static std::span<const std::byte> encode(const T& view, std::vector<std::byte>&) noexcept {
        return std::as_bytes(std::span(view.data(), view.size()));
    }
    static T decode(std::span<const std::byte>) {
        static_assert(always_false<T>,
                      "shmq::codec: cannot decode into a view (nothing would own the bytes); "
                      "receive a std::string or a std::vector<std::byte> instead");
    }
};

template <class T> struct default_codec<T, codec_kind::bytes> {
    using element = typename T::value_type;
    /// Returns a span over obj's own buffer (no copy). Never throws.
    static std::span<const std::byte> encode(const T& obj, std::vector<std::byte>&) noexcept {
        return std::as_bytes(std::span<const element>(obj.data(), obj.size()));
    }
    /// Copies the bytes into a new T. Throws codec_error if the allocation fails.
    static T decode(std::span<const std::byte> bytes) {
        try {
            const auto* first = reinterpret_cast<const element*>(bytes.data());
            return T(first, first + bytes.size());
        } catch (...) {
            rethrow_as_codec_error("decode", typeid(T));
        }
    }
};

template <class T> struct default_codec<T, codec_kind::raw> {
    /// Returns a span over obj's object representation (no copy). Never throws.
    static std::span<const std::byte> encode(const T& obj, std::vector<std::byte>&) noexcept {
        return std::as_bytes(std::span<const T, 1>(std::addressof(obj), 1));
    }
    /// Copies exactly sizeof(T) bytes into a T. Throws codec_error on any other size, or (for
    /// bool) on a byte other than 0 or 1.
    static T decode(std::span<const std::byte> bytes) {
        if (bytes.size() != sizeof(T)) throw_size_mismatch(typeid(T), sizeof(T), bytes.size());
        if constexpr (std::is_same_v<T, bool>) {
            // Any other byte would be a bool with no valid value (undefined behaviour to read).
            if (bytes[0] != std::byte{0} && bytes[0] != std::byte{1})
                throw_decode_error(typeid(T), "a bool byte must be 0 or 1");
        }
        if constexpr (std::is_default_constructible_v<T>) {
            T out;
            std::memcpy(static_cast<void*>(std::addressof(out)), bytes.data(), sizeof(T));
            return out;
        } else {
            // Trivially copyable types are implicit-lifetime: memcpy into storage creates one.
            alignas(T) std::byte storage[sizeof(T)];
            std::memcpy(storage, bytes.data(), sizeof(T));
            return *std::launder(reinterpret_cast<T*>(storage));
        }
    }
};

/// The Boost.Serialization path lives in <shmq/serialization.hpp> (included by <shmq/shmq.hpp>),
/// so that a translation unit that sends only raw types, strings and byte vectors through the
/// facade headers (<shmq/queue.hpp>, <shmq/connection.hpp>, ...) does not compile Boost's archives.
template <class T> struct boost_codec;   // defined in <shmq/serialization.hpp>

template <class T>
concept boost_codec_available = requires { sizeof(boost_codec<T>); };

#define SHMQ_DETAIL_NEEDS_SERIALIZATION                                                          \
    "shmq::codec<T>: T is not trivially copyable (or declares serialize), so it is sent with "    \
    "Boost.Serialization: #include <shmq/serialization.hpp> (or <shmq/shmq.hpp>), or specialize " \
    "shmq::codec<T>"

template <class T> struct default_codec<T, codec_kind::serialized> {
    /// See boost_codec (<shmq/serialization.hpp>).
    static std::span<const std::byte> encode(const T& obj, std::vector<std::byte>& scratch) {
        if constexpr (boost_codec_available<T>) return boost_codec<T>::encode(obj, scratch);
        else { static_assert(boost_codec_available<T>, SHMQ_DETAIL_NEEDS_SERIALIZATION); __builtin_unreachable(); }
    }
    /// See boost_codec (<shmq/serialization.hpp>). The result is a prvalue all the way down, so
    /// it is constructed in the caller's storage.
    static T decode(std::span<const std::byte> bytes) {
        if constexpr (boost_codec_available<T>) return boost_codec<T>::decode(bytes);
        else { static_assert(boost_codec_available<T>, SHMQ_DETAIL_NEEDS_SERIALIZATION); __builtin_unreachable(); }
    }
};

#undef SHMQ_DETAIL_NEEDS_SERIALIZATION

/// True when codec<T> says its bytes do not depend on the host's byte order or word size.
template <class T>
inline constexpr bool is_portable_v = requires { requires codec<T>::portable_encoding == true; };

/// The fingerprint stored for an encoding: `fp` unchanged when the encoding is portable or the
/// byte order little-endian, else a fixed fold of it. The order is a parameter so that a test on a
/// little-endian host can check what a big-endian host stores.
constexpr std::uint64_t fold_byte_order(std::uint64_t fp, bool portable, std::endian order) noexcept {
    if (portable || order == std::endian::little) return fp;
    return fp ^ 0x9e3779b97f4a7c15ull;
}

/// Identifies T across processes for typed named objects: differs for any two distinct types
/// (int vs float, unsigned vs int, two structs), equal for the same type in every process built
/// with an Itanium-ABI compiler (gcc, clang). Never 0. Limits: two types with the same qualified
/// name in different anonymous namespaces, or one struct changed between two builds without
/// changing its size, are not told apart. Never throws.
///
/// The byte order is folded in too, unless codec<T> declares `static constexpr bool
/// portable_encoding = true` (shmq::portable<T>, portable.hpp): the raw codec and the binary
/// archive write numbers in the writer's byte order, so a NATS queue (stored fingerprint, checked
/// at open across hosts) must refuse a reader of the other one, and a portable encoding must not.
/// The fold is done here rather than in the NATS backend so that the backend needs no separate
/// "portable" bit through queue_core: the fingerprint it is given already says everything. On a
/// little-endian host the fold is the identity, so every existing fingerprint is unchanged.
template <class T> std::uint64_t type_fingerprint() noexcept {
    return fold_byte_order(type_fingerprint(typeid(T), sizeof(T), alignof(T)), is_portable_v<T>,
                           std::endian::native);
}

} // namespace detail

/// The primary template: the defaults described at the top of this file. cv-qualifiers are
/// ignored (codec<const T> behaves as codec<T>).
template <class T, class Enable>
struct codec : detail::default_codec<std::remove_cv_t<T>> {};

namespace detail {
/// True when codec<T> is the default byte-container codec, whose decode is "copy the bytes into
/// a new T": the facades then receive straight into the T they return (one copy, no scratch).
template <class T>
inline constexpr bool decodes_in_place_v =
    is_byte_container_v<T> && std::is_base_of_v<default_codec<T, codec_kind::bytes>, codec<T>>;
/// True when codec<T> is the raw copy (the default for trivially copyable T, or raw_codec<T>):
/// the message is T's object representation, sizeof(T) bytes.
template <class T>
inline constexpr bool sends_raw_v = std::is_base_of_v<default_codec<T, codec_kind::raw>, codec<T>>;
} // namespace detail

/// The raw codec, to opt a type in explicitly: `template <> struct shmq::codec<X> :
/// shmq::raw_codec<X> {};` (for instance a trivially copyable type whose serialize should be
/// ignored).
template <class T>
struct raw_codec : detail::default_codec<T, detail::codec_kind::raw> {
    static_assert(std::is_trivially_copyable_v<T>, "shmq::raw_codec<T> needs a trivially copyable T");
};

/// The Boost.Serialization codec, to opt a type in explicitly: `template <> struct
/// shmq::codec<X> : shmq::serialization_codec<X> {};` (for instance a trivially copyable type
/// whose free-function serialize should be used).
template <class T>
struct serialization_codec : detail::default_codec<T, detail::codec_kind::serialized> {};

} // namespace shmq
