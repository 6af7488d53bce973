// SPDX-License-Identifier: BSL-1.0
// shmq — the non-template half of the codec layer: per-thread scratch buffers, the streambufs
// the Boost path writes into and reads from, the checks of checked_iarchive, and the explicit
// instantiation of that archive's Boost internals.
#include <shmq/serialization.hpp>

// The .ipp files hold the out-of-line members of Boost's archive templates; Boost's own
// binary_iarchive.cpp instantiates them the same way for binary_iarchive.
#include <boost/archive/detail/archive_serializer_map.hpp>
#include <boost/archive/impl/archive_serializer_map.ipp>
#include <boost/archive/impl/basic_binary_iarchive.ipp>
#include <boost/archive/impl/basic_binary_iprimitive.ipp>
#include <boost/serialization/void_cast.hpp>

#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <exception>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>

#include "type_name.hpp"

namespace boost::archive {
template class detail::archive_serializer_map<shmq::detail::checked_iarchive>;
template class basic_binary_iprimitive<shmq::detail::checked_iarchive, char, std::char_traits<char>>;
template class basic_binary_iarchive<shmq::detail::checked_iarchive>;
template class binary_iarchive_impl<shmq::detail::checked_iarchive, char, std::char_traits<char>>;
} // namespace boost::archive

namespace shmq::detail {

namespace {

/// One thread's buffers for one direction. Depth 0 is the ordinary case; deeper levels exist only
/// while a user's serialize sends or receives from inside an encode or decode, and each level
/// keeps its own buffer so the outer message is not overwritten. A deque keeps references to
/// existing levels valid while new ones are added.
struct scratch_stack {
    std::vector<std::byte> base;
    std::deque<std::vector<std::byte>> nested;
    unsigned depth = 0;

    std::vector<std::byte>& current() {
        std::vector<std::byte>* buf = &base;
        if (depth > 0) {
            while (nested.size() < depth) nested.emplace_back(); // may throw std::bad_alloc
            buf = &nested[depth - 1];
        }
        if (buf->capacity() > scratch_keep_bytes) std::vector<std::byte>().swap(*buf);
        return *buf;
    }
};

thread_local scratch_stack encode_stack;
thread_local scratch_stack decode_stack;

[[noreturn]] void throw_archive_error(const std::string& why) {
    throw codec_error("shmq: malformed message: " + why);
}

} // namespace

std::vector<std::byte>& encode_scratch() { return encode_stack.current(); }
std::vector<std::byte>& decode_scratch() { return decode_stack.current(); }

encode_nesting::encode_nesting() noexcept { ++encode_stack.depth; }
encode_nesting::~encode_nesting() { --encode_stack.depth; }
decode_nesting::decode_nesting() noexcept { ++decode_stack.depth; }
decode_nesting::~decode_nesting() { --decode_stack.depth; }

std::uint64_t type_fingerprint(const std::type_info& type, std::size_t size,
                               std::size_t align) noexcept {
    // Bump when an encoding changes, so processes built with different shmq versions refuse
    // each other's typed objects instead of misreading them.
    constexpr std::uint64_t codec_format_version = 1;
    std::uint64_t h = 14695981039346656037ull; // FNV-1a 64 offset basis
    auto mix_byte = [&h](unsigned char b) {
        h ^= b;
        h *= 1099511628211ull; // FNV prime
    };
    auto mix_word = [&](std::uint64_t v) {
        for (int i = 0; i < 8; ++i) mix_byte(static_cast<unsigned char>(v >> (8 * i)));
    };
    // typeid names are Itanium mangled names: the same string in every process, whatever the
    // compiler, and distinct for distinct types (int "i", float "f", unsigned "j", ...).
    for (const char* p = type.name(); *p != '\0'; ++p) mix_byte(static_cast<unsigned char>(*p));
    mix_byte(0); // end of name, so the numbers below cannot be read as more name
    mix_word(size);
    mix_word(align);
    mix_word(codec_format_version);
    return h != 0 ? h : 1; // 0 is left free to mean "untyped"
}

void rethrow_as_codec_error(const char* operation, const std::type_info& type) {
    try {
        throw;
    } catch (const codec_error&) {
        throw;
    } catch (abi::__forced_unwind&) {
        throw; // pthread_cancel unwinding must continue, or the process aborts
    } catch (const std::exception& e) {
        throw codec_error(std::string("shmq: cannot ") + operation + ' ' + type_name(&type) + ": " +
                          e.what());
    } catch (...) {
        throw codec_error(std::string("shmq: cannot ") + operation + ' ' + type_name(&type) +
                          ": unknown exception");
    }
}

void throw_size_mismatch(const std::type_info& type, std::size_t expected, std::size_t got) {
    throw codec_error("shmq: cannot decode " + type_name(&type) + ": expected " +
                      std::to_string(expected) + " bytes, got " + std::to_string(got));
}

void throw_decode_error(const std::type_info& type, const char* why) {
    throw codec_error("shmq: cannot decode " + type_name(&type) + ": " + why);
}

// ---- streambufs --------------------------------------------------------------------------

vector_append_streambuf::int_type vector_append_streambuf::overflow(int_type ch) {
    if (traits_type::eq_int_type(ch, traits_type::eof())) return traits_type::not_eof(ch);
    out_.push_back(static_cast<std::byte>(traits_type::to_char_type(ch)));
    return ch;
}

std::streamsize vector_append_streambuf::xsputn(const char_type* s, std::streamsize n) {
    if (n <= 0) return 0;
    const auto* first = reinterpret_cast<const std::byte*>(s);
    out_.insert(out_.end(), first, first + n);
    return n;
}

span_istreambuf::span_istreambuf(std::span<const std::byte> bytes) noexcept {
    // setg wants char*, but nothing here writes through it (see the class comment).
    auto* first = const_cast<char*>(reinterpret_cast<const char*>(bytes.data()));
    setg(first, first, first + bytes.size());
}

std::streamsize span_istreambuf::xsgetn(char_type* s, std::streamsize n) {
    if (n <= 0) return 0;
    const auto count = std::min<std::size_t>(static_cast<std::size_t>(n), remaining());
    if (count != 0) std::memcpy(s, gptr(), count);
    setg(eback(), gptr() + count, egptr()); // not gbump: it takes an int, messages can be larger
    return static_cast<std::streamsize>(count);
}

std::streamsize span_istreambuf::showmanyc() {
    // -1 tells callers that no more input will ever come: the span is all there is.
    return remaining() != 0 ? static_cast<std::streamsize>(remaining()) : -1;
}

// ---- checked_iarchive --------------------------------------------------------------------
//
// Boost's basic_iarchive trusts the class ids and object ids it reads: a garbage class id
// indexes its class table out of range (its only guard is a BOOST_ASSERT/BOOST_VERIFY, compiled
// out of the released library), and a garbage object id can make an owning smart pointer adopt
// an object that something else already owns (a member, or another unique owner), which ends in
// a double delete. checked_iarchive keeps mirrors of the two tables, fed by the same events that
// grow Boost's (checked against basic_iarchive.cpp of Boost 1.81):
//  * the class table (cobject_id_vector) grows when register_type meets a new class: from
//    load_object, register_basic_serializer, and load_pointer meeting a new class id, which is
//    only legal for a polymorphic or abstract pointer and is followed by the class's name;
//  * the object table (object_id_vector) grows by one exactly when an object id is read that is
//    not below its size (track() returns true, and the caller pushes the new object).
// The object id read right after load_pointer starts (before any nested load_object) is the
// pointer's own: below the table size it names an existing object, which must be of the class
// the pointer's class id names, and which an owning pointer may only take if it was created
// through a plain pointer (not yet owned) or, for shared owners, already belongs to shared
// owners. If a later Boost changes these events, test_codec's corrupted_pointer_graphs case
// (run under AddressSanitizer) is the one that notices.

struct checked_iarchive_state {
    using basic_iserializer = boost::archive::detail::basic_iserializer;
    using basic_pointer_iserializer = boost::archive::detail::basic_pointer_iserializer;

    std::vector<const basic_iserializer*> classes; // by class id
    const basic_iserializer* last_class = nullptr; // most loads repeat the previous class
    // Mirror of Boost's object table: the class of each object id. Boost trusts a pointer's
    // class id and object id independently, so a reference to an object of another class would
    // hand a pointer of one type an object of another.
    std::vector<const basic_iserializer*> object_classes;
    const basic_iserializer* current_class = nullptr; // class of the object whose id is read next

    // The innermost pointer being loaded.
    const basic_pointer_iserializer* pointer_bpis = nullptr;
    void* const* pointer_target = nullptr; // where Boost puts its new object, until recorded
    pointer_owner pointer_kind = pointer_owner::none;
    bool pointer_id_pending = false;   // its object id is the next one read
    bool pointer_is_reference = false; // that id named an existing object
    bool class_name_pending = false;   // a new class id was read; its name comes next
    // The class of the pointer's new object once it is constructed (Boost then loads its
    // contents through load_object): what can destroy it if its load fails.
    const basic_iserializer* pointer_constructed = nullptr;

    // Every object created through a pointer, by its most derived address: its owner, and
    // whether an owning pointer other than the one that created it took it (by reference).
    struct owner_record {
        pointer_owner kind;
        bool adopted = false;
    };
    std::unordered_map<const void*, owner_record> owners;

    static bool same_class(const basic_iserializer* a, const basic_iserializer* b) {
        return a == b || (a != nullptr && b != nullptr && a->get_eti() == b->get_eti());
    }
    bool known(const basic_iserializer& bis) const {
        for (const auto* c : classes)
            if (same_class(c, &bis)) return true;
        return false;
    }
    // What register_type does to Boost's class table.
    void note_class(const basic_iserializer& bis) {
        if (&bis == last_class) return;
        last_class = &bis;
        if (!known(bis)) classes.push_back(&bis);
    }
};

checked_iarchive::checked_iarchive(span_istreambuf& sb, unsigned flags)
    : impl(sb, flags), sb_(sb), state_(std::make_unique<checked_iarchive_state>()),
      elements_left_(sb.size() + collection_slack) {
    this->init(flags);
}

checked_iarchive::~checked_iarchive() = default;

void checked_iarchive::load_object(void* t, const basic_iserializer& bis) {
    auto& s = *state_;
    s.pointer_id_pending = false; // ids read from here on belong to this object's contents
    s.current_class = &bis;
    if (s.pointer_target != nullptr && *s.pointer_target == t) {
        // The new object of the pointer being loaded: record its owner now, before its
        // contents, which may point back at it (a cycle of shared_ptrs is legitimate).
        s.pointer_constructed = &bis; // first: the insert below may throw
        s.pointer_target = nullptr;
        s.owners[t] = {s.pointer_kind};
    }
    s.note_class(bis);
    boost::archive::detail::basic_iarchive::load_object(t, bis);
}

void checked_iarchive::register_basic_serializer(const basic_iserializer& bis) {
    state_->note_class(bis);
    boost::archive::detail::basic_iarchive::register_basic_serializer(bis);
}

const checked_iarchive::basic_pointer_iserializer*
checked_iarchive::load_pointer(void*& t, const basic_pointer_iserializer* bpis,
                               const basic_pointer_iserializer* (*finder)(
                                   const boost::serialization::extended_type_info&)) {
    auto& s = *state_;
    const owner kind = std::exchange(pending_owner_, owner::none);
    const auto* const declared = std::exchange(pointer_type_, nullptr);
    // Nested pointers (inside this one's object) save and restore the outer one's state.
    const auto saved_bpis = s.pointer_bpis;
    const auto saved_target = s.pointer_target;
    const auto saved_kind = s.pointer_kind;
    const bool saved_pending = s.pointer_id_pending;
    const bool saved_reference = s.pointer_is_reference;
    const auto saved_constructed = s.pointer_constructed;
    auto restore = [&] {
        s.pointer_bpis = saved_bpis;
        s.pointer_target = saved_target;
        s.pointer_kind = saved_kind;
        s.pointer_id_pending = saved_pending;
        s.pointer_is_reference = saved_reference;
        s.pointer_constructed = saved_constructed;
        s.class_name_pending = false;
    };
    t = nullptr; // Boost stores the new object's address here before loading its contents
    s.pointer_bpis = bpis;
    s.pointer_target = &t;
    s.pointer_kind = kind;
    s.pointer_id_pending = true;
    s.pointer_is_reference = false;
    s.pointer_constructed = nullptr;
    s.class_name_pending = false;
    // Destroys the new object this pointer created when the message fails: Boost hands it to
    // nobody, so every failed message would leak it (and what it owns), and a stream of hostile
    // messages would grow the receiver without bound. Not when an owning pointer inside it took
    // it (a shared_ptr cycle back to it), which would then delete it a second time. Its own
    // completed members are owned by it and go with it; nested pointers that failed were
    // destroyed by their own load_pointer.
    auto drop_new_object = [&](const basic_iserializer& its_class) {
        const auto it = s.owners.find(t);
        if (it != s.owners.end() && it->second.adopted) return;
        if (it != s.owners.end()) s.owners.erase(it);
        its_class.destroy(t);
    };
    const basic_pointer_iserializer* result = nullptr;
    try {
        result = boost::archive::detail::basic_iarchive::load_pointer(t, bpis, finder);
    } catch (...) {
        // Boost allocates the new object before loading its contents.
        if (t != nullptr && !s.pointer_is_reference && s.pointer_constructed != nullptr)
            drop_new_object(*s.pointer_constructed);
        restore();
        throw;
    }
    const bool reference = s.pointer_is_reference;
    restore();

    if (t == nullptr) return result;
    if (result != bpis && result != nullptr && declared != nullptr &&
        boost::serialization::void_upcast(result->get_eti(), *declared, t) == nullptr) {
        // The class id named a class that is not the declared type or derived from it (any
        // class already sent through a pointer may be named). Boost would throw only after this
        // returns, when the new object is loaded.
        if (!reference) drop_new_object(result->get_basic_serializer());
        throw_archive_error("a pointer names an object of a class that is not its type or "
                            "derived from it");
    }
    if (!reference) { // a new object: whoever loaded it owns it
        s.owners[t] = {kind};
        return result;
    }
    if (kind == owner::none) return result; // observers may point at anything already loaded
    const auto it = s.owners.find(t);
    if (it == s.owners.end())
        throw_archive_error("an owning pointer names an object that was not created through a "
                            "pointer (a member, or an unknown object)");
    if (kind == owner::unique ? it->second.kind != owner::none : it->second.kind == owner::unique)
        throw_archive_error("an owning pointer names an object that already has an owner");
    it->second = {kind, true};
    return result;
}

void checked_iarchive::load_override(boost::archive::object_id_type& t) {
    this->impl::load_override(t);
    auto& s = *state_;
    const auto oid = static_cast<std::size_t>(static_cast<std::uint_least32_t>(t));
    const bool existing = oid < s.object_classes.size();
    if (s.pointer_id_pending) {
        s.pointer_id_pending = false;
        s.pointer_is_reference = existing;
        // A saved pointer names its object by class and id, and both describe the same object.
        if (existing && !checked_iarchive_state::same_class(s.object_classes[oid], s.current_class))
            throw_archive_error("a pointer names object " + std::to_string(oid) +
                                " as an object of another class");
    }
    if (!existing) s.object_classes.push_back(s.current_class); // Boost adds the new object
}

void checked_iarchive::load_override(boost::archive::class_id_type& t) {
    this->impl::load_override(t);
    // Only load_pointer reads class ids (binary archives write no optional ones).
    auto& s = *state_;
    const int cid = static_cast<int>(static_cast<std::int_least16_t>(t));
    if (cid == -1) return; // NULL_POINTER_TAG: a null pointer
    if (cid < 0) throw_archive_error("class id " + std::to_string(cid));
    const auto known = s.classes.size();
    if (static_cast<std::size_t>(cid) < known) {
        // Boost would call heap_allocation() through this class's pointer serializer.
        s.current_class = s.classes[static_cast<std::size_t>(cid)];
        if (s.current_class->get_bpis_ptr() == nullptr)
            throw_archive_error("class id " + std::to_string(cid) +
                                " names a class never sent through a pointer");
        return;
    }
    // A new class: must be the next id, and Boost only looks one up (by the name that follows)
    // for an abstract or polymorphic pointer; otherwise it would index past its table.
    if (static_cast<std::size_t>(cid) != known ||
        (s.pointer_bpis != nullptr && !s.pointer_bpis->get_basic_serializer().is_polymorphic()))
        throw_archive_error("class id " + std::to_string(cid) + " with " +
                            std::to_string(known) + " classes known");
    s.class_name_pending = true;
}

void checked_iarchive::load_override(boost::archive::class_name_type& t) {
    this->impl::load_override(t);
    auto& s = *state_;
    if (!std::exchange(s.class_name_pending, false)) return;
    const char* key = t;
    const auto* eti = boost::serialization::extended_type_info::find(key);
    if (eti == nullptr) return; // Boost throws unregistered_class itself
    const auto* serializer =
        boost::archive::detail::archive_serializer_map<checked_iarchive>::find(*eti);
    if (serializer == nullptr) // Boost would dereference the missing pointer serializer
        throw_archive_error(std::string("class ") + key + " is not exported for this archive");
    const auto& bis =
        static_cast<const basic_pointer_iserializer*>(serializer)->get_basic_serializer();
    if (s.known(bis)) // Boost's register_type would return an older id than the one just read
        throw_archive_error(std::string("class ") + key + " is already known");
    s.classes.push_back(&bis);
    s.current_class = &bis;
}


void checked_iarchive::load_override(boost::serialization::collection_size_type& t) {
    this->impl::load_override(t);
    const auto n = static_cast<std::size_t>(t);
    const std::size_t left = sb_.remaining();
    switch (next_count_) {
    case next_count::bitwise_vector:
        next_count_ = next_count::plain;
        // Exactly n elements of element_size_ bytes follow.
        if (element_size_ != 0 && n > left / element_size_)
            throw_archive_error("a vector claims " + std::to_string(n) + " elements of " +
                                std::to_string(element_size_) + " bytes but only " +
                                std::to_string(left) + " bytes are left");
        return;
    case next_count::unordered_size:
        next_count_ = next_count::unordered_buckets;
        unordered_size_ = n;
        break; // checked as a plain count below
    case next_count::unordered_buckets:
        next_count_ = next_count::plain;
        // Only a hint to rehash(): a garbage value is clamped instead of refused, since a
        // legitimately sparse table (after reserve() or erase) may have more buckets than bytes.
        if (n > left + collection_slack)
            t = boost::serialization::collection_size_type(unordered_size_);
        return;
    case next_count::plain:
        break;
    }
    if (n > left + collection_slack)
        throw_archive_error("a collection claims " + std::to_string(n) +
                            " elements but only " + std::to_string(left) + " bytes are left");
    // Every element of every collection is charged, even one that will read no bytes: a count
    // checked only against the bytes left lets each of many nested collections claim them all
    // again, which grows quadratically with the message (issue 7: 107 MiB from 48 KiB). In a
    // genuine message each element that serializes to anything starts at a byte of its own (a
    // nested collection starts with its count), so only elements that serialize to nothing
    // draw on the slack.
    if (n > elements_left_)
        throw_archive_error("the collections of this message claim more elements than it has "
                            "bytes (plus " + std::to_string(collection_slack) +
                            " empty ones): " + std::to_string(n) + " more with " +
                            std::to_string(left) + " bytes left");
    elements_left_ -= n;
}

void checked_iarchive::load(bool& t) {
    // Boost's version asserts (aborts in debug builds) on a byte other than 0 or 1, and reading
    // such a bool is undefined behaviour: load the byte as a byte.
    unsigned char byte = 0;
    load_binary(&byte, 1);
    if (byte > 1) throw_archive_error("a bool byte is " + std::to_string(byte));
    t = byte != 0;
}

void checked_iarchive::load(int& t) {
    primitive::load(t);
    // A boost::variant's index: Boost checks only the upper bound, and from a negative index it
    // walks the alternatives down (which - 1 at each) and loads nothing, so a negative index
    // "succeeds" with a default value, and INT_MIN overflows (undefined behaviour).
    if (const auto alternatives = std::exchange(variant_alternatives_, 0); alternatives != 0) {
        if (t < 0 || static_cast<std::size_t>(t) >= alternatives)
            throw_archive_error("a variant index is " + std::to_string(t) + " with " +
                                std::to_string(alternatives) + " alternatives");
    }
}

void checked_iarchive::load(std::string& s) {
    std::size_t length = 0;
    load(length);
    if (length > sb_.remaining())
        throw_archive_error("a string claims " + std::to_string(length) + " bytes but only " +
                            std::to_string(sb_.remaining()) + " are left");
    s.resize(length);
    if (length != 0) load_binary(s.data(), length);
}

void checked_iarchive::load(std::wstring& s) {
    std::size_t length = 0;
    load(length);
    if (length > sb_.remaining() / sizeof(wchar_t))
        throw_archive_error("a wide string claims " + std::to_string(length) +
                            " characters but only " + std::to_string(sb_.remaining()) +
                            " bytes are left");
    s.resize(length);
    if (length != 0) load_binary(s.data(), length * sizeof(wchar_t));
}

void checked_iarchive::load(char*) {
    throw_archive_error("loading a char* C string is not supported (no bound on its buffer); "
                        "use std::string");
}

void checked_iarchive::load(wchar_t*) {
    throw_archive_error("loading a wchar_t* C string is not supported (no bound on its "
                        "buffer); use std::wstring");
}

} // namespace shmq::detail
