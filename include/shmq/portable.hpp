// SPDX-License-Identifier: BSL-1.0
// shmq — a portable encoding for objects that cross hosts: `Queue<shmq::portable<job>>`.
//
// The default codecs (codec.hpp) assume both ends share the ABI: the raw codec copies the object
// representation and Boost's binary archive writes integers and doubles in the writer's byte order
// and sizes. Within one host that always holds; across hosts (a `nats://` queue) it need not, so
// such queues refuse a reader of the other byte order (type_error at open). portable<T> opts T
// into Boost.Serialization's text archive instead: numbers as decimal text, so any byte order and
// word size reads them. Every T goes through the text archive, including trivially copyable ones
// (a portable<int> travels as "42", not as four bytes): that is the point of asking for it.
//
// The choice: portable<T> is a plain aggregate-like wrapper with a public `value` member, plus
// implicit conversions both ways, so `q.put(job{...})` and `job j = q.get();` read as they do for
// Queue<job>, and `q.get().value.field` reaches a member. No operator-> or proxying: a wrapper that
// pretends to be T would hide which encoding a queue uses, and the type in the Queue's name is
// where a reader of the code should see it.
//
// T needs what the Boost path needs (codec.hpp): default-constructible, a serialize (member or
// free), and the <boost/serialization/...> header of each std container it holds. The type
// fingerprint of portable<T> differs from T's, so a Queue<T> and a Queue<portable<T>> never open
// each other's queue; it carries no byte order (codec<portable<T>>::portable_encoding), which is
// what lets hosts of either byte order share a NATS queue of portable<T>.
//
// Robustness, mirroring the binary path (codec.hpp): decoding bytes that are not a text encoding
// of T throws codec_error, never crashes or allocates without bound. String lengths are checked
// against the bytes left; every collection count may claim at most one element per byte left plus
// `collection_slack`, drawn from one budget for the whole message; an unordered container's
// bucket count (a hint) is clamped; a boost::variant index outside its alternatives is refused;
// anything but whitespace after the object is an error. Numbers that do not parse, or overflow
// their type, are errors (the stream's failbit). Limits, stricter than the binary path: pointers
// (raw, smart, exported polymorphic classes) are refused when decoding, because the class and
// object tables the binary path checks are not mirrored here; C strings (char*) are refused as
// there. A double that is NaN or infinite is written by the text archive as text its reader
// cannot parse, so it fails to decode (codec_error): send such values another way.
#pragma once

#include <shmq/serialization.hpp>

#include <boost/archive/text_iarchive.hpp>
#include <boost/archive/text_oarchive.hpp>

#include <istream>
#include <locale>
#include <ostream>
#include <stdexcept>
#include <utility>

namespace shmq {

/// T, to be sent with the portable (text) encoding. See the file comment.
template <class T> struct portable {
    T value{};

    portable() = default;
    /// Implicit, so `q.put(job{...})` works on a Queue<portable<job>>.
    portable(const T& v) : value(v) {}
    portable(T&& v) noexcept(std::is_nothrow_move_constructible_v<T>) : value(std::move(v)) {}

    /// Implicit, so `job j = q.get();` works.
    operator T&() & noexcept { return value; }
    operator const T&() const& noexcept { return value; }
    operator T() && { return std::move(value); }

    friend bool operator==(const portable&, const portable&) = default;
};

namespace detail {

/// text_iarchive with the lengths and counts it reads checked against the bytes left (see the
/// file comment): what checked_iarchive (serialization.hpp) is to the binary archive. Derives
/// from text_iarchive_impl as Boost documents for extensions; its Boost internals are
/// instantiated in lib/portable.cpp.
class SHMQ_API checked_text_iarchive
    : public boost::archive::text_iarchive_impl<checked_text_iarchive> {
    using impl = boost::archive::text_iarchive_impl<checked_text_iarchive>;
    using primitive = boost::archive::basic_text_iprimitive<std::istream>;
    using basic_pointer_iserializer = boost::archive::detail::basic_pointer_iserializer;
    friend class boost::archive::detail::interface_iarchive<checked_text_iarchive>;
    friend class boost::archive::basic_text_iarchive<checked_text_iarchive>;
    friend class boost::archive::load_access;

public:
    checked_text_iarchive(std::istream& is, span_istreambuf& sb, unsigned flags)
        : impl(is, flags), sb_(sb), elements_left_(sb.size() + collection_slack) {}

    template <class U> void load_override(U& t) { this->impl::load_override(t); }

    template <class C>
        requires unordered_container<C>
    void load_override(C& c) {
        // The next two counts are the element count and the bucket count (a rehash hint).
        next_count_ = next_count::unordered_size;
        this->impl::load_override(c);
        next_count_ = next_count::plain;
    }

    template <class... U> void load_override(boost::variant<U...>& v) {
        using types = typename boost::variant<U...>::types;
        variant_alternatives_ = static_cast<std::size_t>(boost::mpl::size<types>::value);
        this->impl::load_override(v);
        variant_alternatives_ = 0;
    }

    void load_override(boost::serialization::collection_size_type& t) {
        std::size_t n = 0;
        load(n);
        if (next_count_ == next_count::unordered_buckets) {
            // Only a hint to rehash: clamp it rather than refuse it.
            next_count_ = next_count::plain;
            t = boost::serialization::collection_size_type(std::min(n, unordered_size_ + 1));
            return;
        }
        // In text every element that writes anything takes at least one byte, so a count beyond
        // the bytes left (plus the slack for elements that write nothing) is garbage. The budget
        // keeps nested collections from multiplying their claims.
        if (n > sb_.remaining() + collection_slack || n > elements_left_)
            refuse("a collection claims more elements than the message can hold");
        elements_left_ -= n;
        if (next_count_ == next_count::unordered_size) {
            unordered_size_ = n;
            next_count_ = next_count::unordered_buckets;
        }
        t = boost::serialization::collection_size_type(n);
    }
    [[noreturn]] void load_override(boost::archive::class_name_type&) {
        refuse("shmq::portable does not decode pointers");
    }

    using impl::load;
    void load(int& t) {
        primitive::load(t);
        if (variant_alternatives_ != 0) {
            const std::size_t alternatives = std::exchange(variant_alternatives_, 0);
            if (t < 0 || static_cast<std::size_t>(t) >= alternatives)
                refuse("a variant index outside its alternatives");
        }
    }
    void load(std::string& s) {
        std::size_t size = 0;
        load(size);
        // One separating space, then exactly `size` characters (Boost's own load does not check
        // that they were all there).
        if (size >= sb_.remaining()) refuse("a string longer than the bytes left");
        is.get();
        s.resize(size);
        if (size > 0) {
            is.read(s.data(), static_cast<std::streamsize>(size));
            if (static_cast<std::size_t>(is.gcount()) != size) refuse("a truncated string");
        }
    }
    [[noreturn]] void load(std::wstring&) { refuse("shmq::portable does not decode wide strings"); }
    [[noreturn]] void load(char*) { refuse("shmq::portable does not decode C strings"); }
    [[noreturn]] void load(wchar_t*) { refuse("shmq::portable does not decode C strings"); }

    // Boost's iserializers call this on the most derived archive; hiding basic_iarchive's refuses
    // every pointer before Boost reads a class or object id it would trust.
    [[noreturn]] const basic_pointer_iserializer*
    load_pointer(void*&, const basic_pointer_iserializer*,
                 const basic_pointer_iserializer* (*)(const boost::serialization::extended_type_info&)) {
        refuse("shmq::portable does not decode pointers");
    }

private:
    enum class next_count : unsigned char { plain, unordered_size, unordered_buckets };

    [[noreturn]] static void refuse(const char* why) {
        // Any std::exception becomes codec_error with its message (rethrow_as_codec_error);
        // archive_exception(other_exception) would lose `why`.
        throw std::runtime_error(why);
    }

    span_istreambuf& sb_;
    std::size_t elements_left_;
    next_count next_count_ = next_count::plain;
    std::size_t unordered_size_ = 0;
    std::size_t variant_alternatives_ = 0;
};

} // namespace detail

/// The portable codec: Boost's text archive without its header, numbers in the classic locale.
template <class T> struct codec<portable<T>, void> {
    /// Read by detail::type_fingerprint (codec.hpp): no byte order in the fingerprint.
    static constexpr bool portable_encoding = true;

    /// Serializes obj.value as text into scratch (cleared first). Throws codec_error when
    /// serialization throws anything.
    static std::span<const std::byte> encode(const portable<T>& obj, std::vector<std::byte>& scratch) {
        scratch.clear();
        try {
            detail::encode_nesting nesting;
            detail::vector_append_streambuf sb(scratch);
            std::ostream os(&sb);
            // The global locale might group digits ("1,234"); the reader expects none.
            os.imbue(std::locale::classic());
            {
                boost::archive::text_oarchive oa(os, detail::archive_flags);
                oa << obj.value;
            }
            if (!os) throw codec_error("shmq: cannot encode: the text stream failed");
        } catch (...) {
            detail::rethrow_as_codec_error("encode", typeid(portable<T>));
        }
        return {scratch.data(), scratch.size()};
    }

    /// Deserializes one T from exactly `bytes`. Throws codec_error on malformed, truncated or
    /// oversized input, or when T's constructor or load throws.
    static portable<T> decode(std::span<const std::byte> bytes) {
        portable<T> obj = construct();
        try {
            detail::decode_nesting nesting;
            detail::span_istreambuf sb(bytes);
            std::istream is(&sb);
            is.imbue(std::locale::classic());
            {
                detail::checked_text_iarchive ia(is, sb, detail::archive_flags);
                ia >> obj.value;
            }
            // The writer ends with a newline; anything but whitespace after the object is garbage.
            for (std::istream::int_type c; (c = is.get()) != std::istream::traits_type::eof();)
                if (c != ' ' && c != '\n')
                    detail::throw_decode_error(typeid(portable<T>), "trailing bytes after the object");
        } catch (...) {
            detail::rethrow_as_codec_error("decode", typeid(portable<T>));
        }
        return obj;
    }

private:
    static portable<T> construct() {
        try {
            return portable<T>();
        } catch (...) {
            detail::rethrow_as_codec_error("decode", typeid(portable<T>));
        }
    }
};

/// codec<const T> behaves as codec<T> (codec.hpp); the primary template would pick the binary
/// archive for a const portable<T>, so it is forwarded here.
template <class T> struct codec<const portable<T>, void> : codec<portable<T>> {};

} // namespace shmq

BOOST_SERIALIZATION_REGISTER_ARCHIVE(shmq::detail::checked_text_iarchive)
