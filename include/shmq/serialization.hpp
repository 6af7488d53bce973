// SPDX-License-Identifier: BSL-1.0
// shmq — the Boost.Serialization path of the codec (see codec.hpp for when it is used and what it
// guarantees against hostile bytes). <shmq/shmq.hpp> includes it; a translation unit that uses the
// facade headers alone includes it only where a type needs it, and gets a static_assert saying so
// otherwise.
#pragma once

#include <shmq/codec.hpp>

#include <boost/archive/archive_exception.hpp>
#include <boost/archive/basic_archive.hpp>
#include <boost/archive/binary_iarchive_impl.hpp>
#include <boost/archive/binary_oarchive.hpp>
#include <boost/archive/detail/register_archive.hpp>
#include <boost/serialization/array_optimization.hpp>
#include <boost/serialization/collection_size_type.hpp>
#include <boost/serialization/is_bitwise_serializable.hpp>
#include <boost/serialization/singleton.hpp>
#include <boost/serialization/string.hpp>
#include <boost/serialization/type_info_implementation.hpp>
#include <shmq/detail/std_serialization.hpp>   // std::optional, variant, tuple, pair, map, ...

#include <boost/mpl/size.hpp>
#include <boost/variant/variant_fwd.hpp>

namespace boost {
template <class T> class shared_ptr;
template <class T> class scoped_ptr;
} // namespace boost

#include <concepts>
#include <streambuf>
#include <type_traits>

// A Queue<T> of a class that Boost cannot serialize (no member serialize, no free one) would fail
// deep inside Boost with dozens of lines. This overload is chosen exactly then: it has the
// signature of Boost's own catch-all (which forwards to the member `serialize`) but is more
// constrained, and any type-specific free serialize (Boost's for std::vector, yours) is more
// specialized than both. Final classes are left to Boost (the member probe cannot derive from them).
namespace shmq::detail {
template <class T>
concept lacks_member_serialize =
    std::is_class_v<T> && !std::is_final_v<T> && !has_member_serialize<T>;
} // namespace shmq::detail

namespace boost::serialization {
template <class Archive, class T>
    requires shmq::detail::lacks_member_serialize<T>
void serialize(Archive&, T&, const unsigned int) {
    static_assert(shmq::detail::always_false<T>,
                  "shmq: cannot send this type: it is not trivially copyable and has no "
                  "serialize(). Give it a member `template <class Ar> void serialize(Ar& ar, "
                  "unsigned)` (or a free one), include the <boost/serialization/...> header of "
                  "each std container it holds, or specialize shmq::codec<T>.");
}
} // namespace boost::serialization

namespace shmq::detail {

/// A streambuf that appends everything written to a vector: no iostreams, and no allocation
/// once the vector has grown to the message size.
class SHMQ_API vector_append_streambuf final : public std::streambuf {
public:
    explicit vector_append_streambuf(std::vector<std::byte>& out) noexcept : out_(out) {}

protected:
    int_type overflow(int_type ch) override;
    std::streamsize xsputn(const char_type* s, std::streamsize n) override;

private:
    std::vector<std::byte>& out_;
};

/// A read-only streambuf over a span. It never writes through the (const_cast) get area:
/// pbackfail keeps its default, which refuses.
class SHMQ_API span_istreambuf final : public std::streambuf {
public:
    explicit span_istreambuf(std::span<const std::byte> bytes) noexcept;
    /// Bytes not yet consumed.
    std::size_t remaining() const noexcept { return static_cast<std::size_t>(egptr() - gptr()); }
    /// Bytes of the whole message.
    std::size_t size() const noexcept { return static_cast<std::size_t>(egptr() - eback()); }

protected:
    std::streamsize xsgetn(char_type* s, std::streamsize n) override;
    std::streamsize showmanyc() override;
};

template <class C>
concept unordered_container = requires(C& c, std::size_t n) {
    c.rehash(n);
    { c.bucket_count() } -> std::convertible_to<std::size_t>;
};

struct checked_iarchive_state; // lib/codec.cpp: mirrors of Boost's class and object tables

/// Who a pointer being loaded will belong to: a plain pointer (none: an observer, or owned by
/// user code shmq cannot see), a unique owner (unique_ptr, scoped_ptr) or a shared one.
enum class pointer_owner : unsigned char { none, unique, shared };

/// binary_iarchive with every length it reads checked against the bytes left, so garbage input
/// throws instead of asserting, overflowing or allocating gigabytes, and with the class ids,
/// object ids and pointer ownership it reads checked too, so garbage cannot make Boost index its
/// tables out of range or hand one object to two owners (see load_pointer in lib/codec.cpp).
/// Reads exactly the format binary_oarchive writes. Derives from binary_iarchive_impl, as Boost
/// documents for extensions; the non-inline parts are instantiated in lib/codec.cpp.
class SHMQ_API checked_iarchive
    : public boost::archive::binary_iarchive_impl<checked_iarchive, char, std::char_traits<char>> {
    using impl = boost::archive::binary_iarchive_impl<checked_iarchive, char, std::char_traits<char>>;
    using primitive =
        boost::archive::basic_binary_iprimitive<checked_iarchive, char, std::char_traits<char>>;
    using basic_iserializer = boost::archive::detail::basic_iserializer;
    using basic_pointer_iserializer = boost::archive::detail::basic_pointer_iserializer;
    friend class boost::archive::detail::interface_iarchive<checked_iarchive>;
    friend class boost::archive::basic_binary_iarchive<checked_iarchive>;
    friend class boost::archive::load_access;

public:
    /// Throws what Boost's archive constructor throws (archive_exception, std::bad_alloc).
    checked_iarchive(span_istreambuf& sb, unsigned flags);
    ~checked_iarchive();

    // Boost dispatches every `ar >> x` to the most derived archive's load_override and every
    // primitive to its load(); the overloads below intercept the ones that carry lengths.
    template <class U> void load_override(U& t) { this->impl::load_override(t); }

    template <class U, class A> void load_override(std::vector<U, A>& v) {
        // The next count read is this vector's size. Boost stores a vector of bitwise-serializable
        // elements as that many raw elements, so the count can be checked exactly.
        next_count_ = boost::serialization::is_bitwise_serializable<U>::value
                          ? next_count::bitwise_vector
                          : next_count::plain;
        element_size_ = sizeof(U);
        this->impl::load_override(v);
        next_count_ = next_count::plain;
    }

    template <class C>
        requires unordered_container<C>
    void load_override(C& c) {
        // The next two counts are the element count and the bucket count (a rehash hint).
        next_count_ = next_count::unordered_size;
        this->impl::load_override(c);
        next_count_ = next_count::plain;
    }

    template <class... U> void load_override(boost::variant<U...>& v) {
        // The next int read is the index of the alternative (see load(int&)).
        using types = typename boost::variant<U...>::types;
        variant_alternatives_ = static_cast<std::size_t>(boost::mpl::size<types>::value);
        this->impl::load_override(v);
        variant_alternatives_ = 0;
    }

    template <class U> void load_override(U*& p) {
        // Every pointer, raw or inside a smart pointer: the type it is declared as. Boost loads
        // the object its class id names and only then converts the address to this type, so
        // load_pointer checks that conversion before handing the object on.
        pointer_type_ = &boost::serialization::singleton<
            typename boost::serialization::type_info_implementation<std::remove_cv_t<U>>::type>::
            get_const_instance();
        this->impl::load_override(p);
        pointer_type_ = nullptr;
    }

    // Owning smart pointers: the pointer loaded next must be a new object, or one that may
    // legitimately be shared (see load_pointer).
    template <class U, class D> void load_override(std::unique_ptr<U, D>& p) { owned(p, owner::unique); }
    template <class U> void load_override(std::shared_ptr<U>& p) { owned(p, owner::shared); }
    template <class U> void load_override(boost::shared_ptr<U>& p) { owned(p, owner::shared); }
    template <class U> void load_override(boost::scoped_ptr<U>& p) { owned(p, owner::unique); }

    void load_override(boost::serialization::collection_size_type& t);
    void load_override(boost::archive::class_id_type& t);
    void load_override(boost::archive::class_name_type& t);
    void load_override(boost::archive::object_id_type& t);

    using primitive::load;
    void load(bool& t);
    void load(int& t);
    void load(std::string& s);
    void load(std::wstring& s);
    [[noreturn]] void load(char* s);
    [[noreturn]] void load(wchar_t* s);

    // Boost's iserializers call these on the most derived archive (`ar.load_object(...)`), so
    // these hide basic_iarchive's to keep the mirrors in step and check what Boost would
    // otherwise trust. Not for users.
    void load_object(void* t, const basic_iserializer& bis);
    const basic_pointer_iserializer*
    load_pointer(void*& t, const basic_pointer_iserializer* bpis,
                 const basic_pointer_iserializer* (*finder)(
                     const boost::serialization::extended_type_info&));
    void register_basic_serializer(const basic_iserializer& bis);

private:
    enum class next_count : unsigned char { plain, bitwise_vector, unordered_size, unordered_buckets };
    using owner = pointer_owner;

    template <class P> void owned(P& p, owner kind) {
        pending_owner_ = kind; // consumed by the load_pointer this load makes
        this->impl::load_override(p);
        pending_owner_ = owner::none;
    }

    span_istreambuf& sb_;
    std::unique_ptr<checked_iarchive_state> state_;
    next_count next_count_ = next_count::plain;
    owner pending_owner_ = owner::none;
    const boost::serialization::extended_type_info* pointer_type_ = nullptr; // see load_override(U*&)
    std::size_t element_size_ = 0;
    std::size_t unordered_size_ = 0;
    // Elements all the collections still to be read may claim together: the message's size plus
    // collection_slack at the start, and every count read draws from it.
    std::size_t elements_left_ = 0;
    // Non-zero between a boost::variant's start and its index: the number of alternatives.
    std::size_t variant_alternatives_ = 0;
};

/// Boost archive flags used on both sides: no header (the frame says what it is), and no codecvt
/// (only file streams use it; with it Boost would imbue a new locale into our streambuf).
inline constexpr unsigned archive_flags = boost::archive::no_header | boost::archive::no_codecvt;

template <class T> struct boost_codec {
    /// Serializes obj into scratch (cleared first) and returns a span over it.
    /// Throws codec_error when serialization throws anything; scratch is then unspecified.
    static std::span<const std::byte> encode(const T& obj, std::vector<std::byte>& scratch) {
        scratch.clear();
        try {
            encode_nesting nesting;
            vector_append_streambuf sb(scratch);
            boost::archive::binary_oarchive oa(sb, archive_flags);
            oa << obj;
        } catch (...) {
            rethrow_as_codec_error("encode", typeid(T));
        }
        return {scratch.data(), scratch.size()};
    }
    /// Deserializes one T from exactly `bytes`. Throws codec_error on malformed, truncated or
    /// oversized input, or when T's constructor or load throws.
    static T decode(std::span<const std::byte> bytes) {
        // One named object returned on every path, so the compiler constructs it in the
        // caller's storage (NRVO): pointers Boost restores to the object's own members stay valid.
        T obj = construct();
        load_into(obj, bytes);
        return obj;
    }

private:
    static T construct() {
        try {
            return T();
        } catch (...) {
            rethrow_as_codec_error("decode", typeid(T));
        }
    }
    static void load_into(T& obj, std::span<const std::byte> bytes) {
        try {
            decode_nesting nesting;
            span_istreambuf sb(bytes);
            {
                checked_iarchive ia(sb, archive_flags);
                ia >> obj;
            }
            if (sb.remaining() != 0) throw_decode_error(typeid(T), "trailing bytes after the object");
        } catch (...) {
            rethrow_as_codec_error("decode", typeid(T));
        }
    }
};

} // namespace shmq::detail

// Registered so that BOOST_CLASS_EXPORT (polymorphic pointers) instantiates for shmq's archive
// too: include this header before the exports, as with any Boost archive.
BOOST_SERIALIZATION_REGISTER_ARCHIVE(shmq::detail::checked_iarchive)
// Must match binary_oarchive, which writes bitwise-serializable arrays as raw bytes.
BOOST_SERIALIZATION_USE_ARRAY_OPTIMIZATION(shmq::detail::checked_iarchive)
