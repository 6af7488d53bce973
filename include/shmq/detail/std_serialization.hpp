// SPDX-License-Identifier: BSL-1.0
// shmq — Boost.Serialization for the standard types a message commonly holds, so that
// std::optional, std::variant, std::pair, std::tuple, std::map, std::unordered_map, std::set and
// std::array of serializable types work without the user including anything (serialization.hpp includes
// this with the rest of the Boost path).
//
// Boost 1.81 already has std::pair (utility.hpp), std::map (map.hpp), std::set (set.hpp),
// std::unordered_map (unordered_map.hpp) and std::array (array.hpp): included below. Their
// element counts are read as collection_size_type, so shmq's checked_iarchive holds them to the
// message's element budget (codec.hpp, lib/codec.cpp) like any other collection.
//
// Boost 1.81 lacks std::optional, std::variant (and std::monostate) and std::tuple: written here,
// non-intrusively in namespace boost::serialization (found through the version_type argument
// Boost passes, whatever the include order). Formats:
//   std::optional<T>   one byte, 0 (empty) or 1 (engaged), then the value if engaged;
//   std::variant<Ts..> the index as a uint32, then the alternative;
//   std::tuple<Ts..>   the elements in order, nothing else;
//   std::monostate     nothing.
// serialize() dispatches on Archive::is_saving instead of using split_free: split_free's
// unqualified load() would also consider Boost's `load(Archive&, SPT<class U>&, unsigned)`
// (shared_ptr_helper.hpp, included by shared_ptr.hpp), and deducing it against std::optional is a
// hard error with g++ 12.
// Loading checks what it reads: an optional's byte other than 0 or 1, or a variant index outside
// [0, sizeof...(Ts)), throws boost::archive::archive_exception (the codec reports it as
// codec_error). Saving a valueless_by_exception variant throws the same.
//
// Note: a trivially copyable std::optional, std::variant or std::array (of int, say) sent on its
// own takes the codec's raw path (its bytes), as every trivially copyable type does; this glue
// serves them inside serialized types, or when opted in with shmq::serialization_codec.
#pragma once

#include <boost/archive/archive_exception.hpp>
#include <boost/serialization/array.hpp>
#include <boost/serialization/map.hpp>
#include <boost/serialization/nvp.hpp>
#include <boost/serialization/set.hpp>
#include <boost/serialization/unordered_map.hpp>
#include <boost/serialization/utility.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <variant>

namespace boost::serialization {

namespace shmq_std {

[[noreturn]] inline void malformed(const std::string& what) {
    // input_stream_error's message carries the detail ("input stream error-<what>").
    throw boost::archive::archive_exception(boost::archive::archive_exception::input_stream_error,
                                            what.c_str());
}

template <std::size_t I, class Archive, class... Ts>
void load_alternative(Archive& ar, std::variant<Ts...>& v) {
    // Loaded in place: an object Boost tracks keeps the address it was loaded at.
    auto& value = v.template emplace<I>();
    ar >> boost::serialization::make_nvp("value", value);
}

template <class Archive, class... Ts, std::size_t... I>
void load_variant_index(Archive& ar, std::variant<Ts...>& v, std::size_t which,
                        std::index_sequence<I...>) {
    (void)((which == I ? (load_alternative<I>(ar, v), true) : false) || ...);
}

} // namespace shmq_std

// ---- std::optional ----------------------------------------------------------------------------

namespace shmq_std {

template <class Archive, class T> void save_optional(Archive& ar, const std::optional<T>& t) {
    const unsigned char engaged = t.has_value() ? 1 : 0;
    ar << boost::serialization::make_nvp("engaged", engaged);
    if (t) ar << boost::serialization::make_nvp("value", *t);
}

template <class Archive, class T> void load_optional(Archive& ar, std::optional<T>& t) {
    unsigned char engaged = 0;   // a byte, not a bool: any byte may arrive
    ar >> boost::serialization::make_nvp("engaged", engaged);
    if (engaged > 1)
        malformed("a std::optional's flag is " + std::to_string(engaged) + " (not 0 or 1)");
    if (!engaged) {
        t.reset();
        return;
    }
    if (!t) t.emplace();
    ar >> boost::serialization::make_nvp("value", *t);
}

} // namespace shmq_std

template <class Archive, class T>
void serialize(Archive& ar, std::optional<T>& t, const unsigned int /*version*/) {
    if constexpr (Archive::is_saving::value) shmq_std::save_optional(ar, t);
    else shmq_std::load_optional(ar, t);
}

// ---- std::variant, std::monostate ---------------------------------------------------------------

template <class Archive>
void serialize(Archive&, std::monostate&, const unsigned int /*version*/) {}

namespace shmq_std {

template <class Archive, class... Ts> void save_variant(Archive& ar, const std::variant<Ts...>& v) {
    if (v.valueless_by_exception())
        malformed("a std::variant is valueless (by exception)");
    const std::uint32_t which = static_cast<std::uint32_t>(v.index());
    ar << boost::serialization::make_nvp("which", which);
    std::visit([&](const auto& value) { ar << boost::serialization::make_nvp("value", value); }, v);
}

template <class Archive, class... Ts> void load_variant(Archive& ar, std::variant<Ts...>& v) {
    std::uint32_t which = 0;
    ar >> boost::serialization::make_nvp("which", which);
    if (which >= sizeof...(Ts))
        malformed("a std::variant's index is " + std::to_string(which) + " with " +
                  std::to_string(sizeof...(Ts)) + " alternatives");
    load_variant_index(ar, v, which, std::index_sequence_for<Ts...>{});
}

} // namespace shmq_std

template <class Archive, class... Ts>
void serialize(Archive& ar, std::variant<Ts...>& v, const unsigned int /*version*/) {
    if constexpr (Archive::is_saving::value) shmq_std::save_variant(ar, v);
    else shmq_std::load_variant(ar, v);
}

// ---- std::tuple ---------------------------------------------------------------------------------

template <class Archive, class... Ts>
void serialize(Archive& ar, std::tuple<Ts...>& t, const unsigned int /*version*/) {
    std::apply([&](auto&... element) {
        ((ar & boost::serialization::make_nvp("element", element)), ...);
    }, t);
}

} // namespace boost::serialization
