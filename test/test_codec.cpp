// SPDX-License-Identifier: BSL-1.0
// Tests of the codec layer: raw fast paths, the Boost.Serialization path, user
// specializations, error reporting on bad input, and the type fingerprint.
#define BOOST_TEST_MODULE codec
#include <boost/test/unit_test.hpp>

#include <shmq/codec.hpp>
#include <shmq/queue.hpp>
#include <shmq/serialization.hpp>   // types sent with Boost.Serialization

#include <boost/archive/binary_iarchive.hpp>
#include <boost/optional.hpp>
#include <boost/serialization/base_object.hpp>
#include <boost/serialization/export.hpp>
#include <boost/serialization/map.hpp>
#include <boost/serialization/optional.hpp>
#include <boost/serialization/shared_ptr.hpp>
#include <boost/serialization/unique_ptr.hpp>
#include <boost/serialization/unordered_map.hpp>
#include <boost/serialization/variant.hpp>
#include <boost/serialization/vector.hpp>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include <malloc.h>

#include <array>
#include <climits>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <new>
#include <random>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <variant>
#include <vector>

// ---- allocation accounting ------------------------------------------------------------------
// The test binary replaces operator new to count allocations and record the largest one, so it
// can check "no allocation per message" on the fast paths and "a garbage length does not
// allocate gigabytes" on the Boost path. (Only this test binary does this; the library never.)
namespace {
std::atomic<std::size_t> allocation_count{0};
std::atomic<std::size_t> largest_allocation{0};
// Bytes held through operator new right now, and the most ever held since the last reset: the
// peak of a decode is what a hostile message can make a receiver commit.
std::atomic<std::size_t> live_bytes{0};
std::atomic<std::size_t> peak_live_bytes{0};

void* counted_alloc(std::size_t n) {
    allocation_count.fetch_add(1, std::memory_order_relaxed);
    std::size_t seen = largest_allocation.load(std::memory_order_relaxed);
    while (n > seen && !largest_allocation.compare_exchange_weak(seen, n)) {
    }
    if (void* p = std::malloc(n == 0 ? 1 : n)) {
        const std::size_t live =
            live_bytes.fetch_add(malloc_usable_size(p), std::memory_order_relaxed) +
            malloc_usable_size(p);
        std::size_t peak = peak_live_bytes.load(std::memory_order_relaxed);
        while (live > peak && !peak_live_bytes.compare_exchange_weak(peak, live)) {
        }
        return p;
    }
    throw std::bad_alloc();
}

void counted_free(void* p) noexcept {
    if (p == nullptr) return;
    live_bytes.fetch_sub(malloc_usable_size(p), std::memory_order_relaxed);
    std::free(p);
}

/// Starts measuring the peak from what is held now.
void reset_peak() { peak_live_bytes = live_bytes.load(); }
/// Bytes allocated at the peak since reset_peak(), above what was held then.
std::size_t peak_growth(std::size_t held_before) {
    const std::size_t peak = peak_live_bytes.load();
    return peak > held_before ? peak - held_before : 0;
}
} // namespace

void* operator new(std::size_t n) { return counted_alloc(n); }
void* operator new[](std::size_t n) { return counted_alloc(n); }
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_free(p); }

namespace {

using bytes_t = std::vector<std::byte>;

template <class T> T round_trip(const T& obj) {
    bytes_t scratch;
    auto bytes = shmq::codec<T>::encode(obj, scratch);
    bytes_t copy(bytes.begin(), bytes.end()); // what travels through the ring
    return shmq::codec<T>::decode(copy);
}

template <class T> bytes_t encoded(const T& obj) {
    bytes_t scratch;
    auto bytes = shmq::codec<T>::encode(obj, scratch);
    return bytes_t(bytes.begin(), bytes.end());
}

/// Offset of the first 8-byte little-endian occurrence of value in wire (where a length is).
std::size_t find_u64(const bytes_t& wire, std::uint64_t value) {
    for (std::size_t at = 0; at + 8 <= wire.size(); ++at) {
        std::uint64_t v;
        std::memcpy(&v, wire.data() + at, 8);
        if (v == value) return at;
    }
    BOOST_FAIL("length field not found");
    return 0;
}

template <class T> bool decode_fails(std::span<const std::byte> bytes) {
    try {
        (void)shmq::codec<T>::decode(bytes);
        return false;
    } catch (const shmq::codec_error&) {
        return true;
    }
}

// ---- types ----------------------------------------------------------------------------------

struct pod {
    int i;
    double d;
    char tag[5];
    friend bool operator==(const pod&, const pod&) = default;
};

enum class colour : std::uint8_t { red = 1, green = 2 };

struct no_default {
    explicit no_default(int v) : value(v) {}
    int value;
};
static_assert(std::is_trivially_copyable_v<no_default> && !std::is_default_constructible_v<no_default>);

struct record {
    int id = 0;
    bool flag = false;
    std::string name;
    std::vector<int> values;
    std::vector<std::string> tags;
    std::map<std::string, double> scores;
    boost::optional<std::string> note;

    template <class Ar> void serialize(Ar& ar, unsigned) {
        ar & id & flag & name & values & tags & scores & note;
    }
    friend bool operator==(const record&, const record&) = default;
};

record sample_record() {
    record r;
    r.id = 42;
    r.flag = true;
    r.name = "a name with a NUL";
    r.name.push_back('\0');
    r.name += "inside";
    r.values = {1, -2, 3, 1 << 30};
    r.tags = {"", "x", std::string(300, 'y')};
    r.scores = {{"alpha", 1.5}, {"beta", -2.25}};
    r.note = "note";
    return r;
}

struct throws_on_save {
    template <class Ar> void save(Ar&, unsigned) const { throw std::runtime_error("refused by save"); }
    template <class Ar> void load(Ar&, unsigned) {}
    BOOST_SERIALIZATION_SPLIT_MEMBER()
};

struct throws_int_on_save {
    template <class Ar> void save(Ar&, unsigned) const { throw 7; }
    template <class Ar> void load(Ar&, unsigned) {}
    BOOST_SERIALIZATION_SPLIT_MEMBER()
};

struct throws_on_load {
    int x = 1;
    template <class Ar> void save(Ar& ar, unsigned) const { ar & x; }
    template <class Ar> void load(Ar&, unsigned) { throw std::logic_error("refused by load"); }
    BOOST_SERIALIZATION_SPLIT_MEMBER()
};

struct with_unordered {
    std::unordered_map<int, std::string> m;
    template <class Ar> void serialize(Ar& ar, unsigned) { ar & m; }
};

struct with_wide {
    std::vector<std::vector<std::string>> nested;
    std::vector<std::uint64_t> words;
    template <class Ar> void serialize(Ar& ar, unsigned) { ar & nested & words; }
};

// A user type with its own codec: text "x,y".
struct point {
    int x = 0, y = 0;
    std::string label; // not trivially copyable, so the default would be Boost
};

// A trivially copyable type whose user specialization must win over the raw default.
struct celsius {
    float degrees;
};

} // namespace

template <> struct shmq::codec<point> {
    static std::span<const std::byte> encode(const point& p, std::vector<std::byte>& scratch) {
        const std::string text = std::to_string(p.x) + "," + std::to_string(p.y) + "," + p.label;
        scratch.assign(reinterpret_cast<const std::byte*>(text.data()),
                       reinterpret_cast<const std::byte*>(text.data()) + text.size());
        return scratch;
    }
    static point decode(std::span<const std::byte> bytes) {
        std::string text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        point p;
        char c1 = 0, c2 = 0;
        std::istringstream in(text);
        if (!(in >> p.x >> c1 >> p.y >> c2) || c1 != ',' || c2 != ',')
            throw shmq::codec_error("point: bad text");
        std::getline(in, p.label);
        return p;
    }
};

template <> struct shmq::codec<celsius> {
    static std::span<const std::byte> encode(const celsius& c, std::vector<std::byte>& scratch) {
        scratch.assign(1, static_cast<std::byte>(static_cast<int>(c.degrees)));
        return scratch;
    }
    static celsius decode(std::span<const std::byte> bytes) {
        if (bytes.size() != 1) throw shmq::codec_error("celsius: one byte");
        return celsius{static_cast<float>(static_cast<signed char>(bytes[0]))};
    }
};

namespace {
// Trivially copyable, but with a serialize of their own (public, private): Boost path.
struct pod_with_serialize {
    int x = 0;
    template <class Ar> void serialize(Ar& ar, unsigned) { ar & x; }
};
class pod_with_private_serialize {
public:
    int x = 0;

private:
    friend class boost::serialization::access;
    template <class Ar> void serialize(Ar& ar, unsigned) { ar & x; }
};
// Opted into Boost explicitly although it has no member serialize.
struct pod_free_serialize {
    int x = 0;
};
template <class Ar> void serialize(Ar& ar, pod_free_serialize& p, unsigned) { ar & p.x; }
// Opted into raw explicitly although it has a member serialize.
struct pod_forced_raw {
    int x = 0;
    template <class Ar> void serialize(Ar&, unsigned) { throw std::runtime_error("not used"); }
};
} // namespace
template <> struct shmq::codec<pod_free_serialize> : shmq::serialization_codec<pod_free_serialize> {};
template <> struct shmq::codec<pod_forced_raw> : shmq::raw_codec<pod_forced_raw> {};

// Kinds chosen by the primary template (compile-time part of the contract).
namespace {
using shmq::detail::codec_kind;
using shmq::detail::kind_of;
static_assert(kind_of<pod_with_serialize>() == codec_kind::serialized);
static_assert(kind_of<pod_with_private_serialize>() == codec_kind::serialized);
static_assert(kind_of<pod_free_serialize>() == codec_kind::raw); // not detected: opted in below
static_assert(kind_of<int>() == codec_kind::raw);
static_assert(kind_of<pod>() == codec_kind::raw);
static_assert(kind_of<std::array<int, 3>>() == codec_kind::raw);
static_assert(kind_of<std::string>() == codec_kind::bytes);
static_assert(kind_of<std::vector<std::byte>>() == codec_kind::bytes);
static_assert(kind_of<std::vector<char>>() == codec_kind::bytes);
static_assert(kind_of<std::vector<unsigned char>>() == codec_kind::bytes);
static_assert(kind_of<std::string_view>() == codec_kind::bytes_view);
static_assert(kind_of<std::span<const std::byte>>() == codec_kind::bytes_view);
static_assert(kind_of<std::span<const int>>() == codec_kind::unsupported);
static_assert(kind_of<int*>() == codec_kind::unsupported);
static_assert(kind_of<const char*>() == codec_kind::c_string);   // issue 8: send("literal")
static_assert(kind_of<char[4]>() == codec_kind::c_string);
static_assert(kind_of<int[4]>() == codec_kind::unsupported);
static_assert(kind_of<record>() == codec_kind::serialized);
static_assert(kind_of<std::vector<int>>() == codec_kind::serialized);
} // namespace

// ---- raw fast paths ---------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(raw_trivially_copyable_round_trips) {
    BOOST_TEST(round_trip(0) == 0);
    BOOST_TEST(round_trip(-123456789) == -123456789);
    BOOST_TEST(round_trip(std::uint64_t{0xfedcba9876543210ull}) == 0xfedcba9876543210ull);
    BOOST_TEST(round_trip(3.25) == 3.25);
    BOOST_TEST(round_trip(true) == true);
    BOOST_TEST(round_trip(false) == false);
    BOOST_TEST(round_trip('z') == 'z');
    BOOST_TEST((round_trip(colour::green) == colour::green));
    const pod p{7, -0.5, {'a', 'b', 'c', 'd', '\0'}};
    BOOST_TEST((round_trip(p) == p));
    const std::array<int, 4> a{1, 2, 3, 4};
    BOOST_TEST((round_trip(a) == a));
    BOOST_TEST(round_trip(no_default(99)).value == 99);
    BOOST_TEST(shmq::codec<const int>::decode(encoded(5)) == 5);
    BOOST_TEST(encoded(p).size() == sizeof(pod));
}

BOOST_AUTO_TEST_CASE(raw_encode_points_into_the_object_without_allocating) {
    bytes_t scratch;
    const pod p{1, 2.0, {}};
    const std::string s(100000, 'q');
    const std::vector<std::byte> vb(1000, std::byte{9});
    const std::vector<char> vc(10, 'c');
    const std::vector<unsigned char> vu(20, 200);
    const std::string_view view = s;

    const std::size_t before = allocation_count.load();
    auto bp = shmq::codec<pod>::encode(p, scratch);
    auto bs = shmq::codec<std::string>::encode(s, scratch);
    auto bvb = shmq::codec<std::vector<std::byte>>::encode(vb, scratch);
    auto bvc = shmq::codec<std::vector<char>>::encode(vc, scratch);
    auto bvu = shmq::codec<std::vector<unsigned char>>::encode(vu, scratch);
    auto bview = shmq::codec<std::string_view>::encode(view, scratch);
    BOOST_TEST(allocation_count.load() == before);

    BOOST_TEST(static_cast<const void*>(bp.data()) == static_cast<const void*>(&p));
    BOOST_TEST(bp.size() == sizeof(pod));
    BOOST_TEST(static_cast<const void*>(bs.data()) == static_cast<const void*>(s.data()));
    BOOST_TEST(bs.size() == s.size());
    BOOST_TEST(static_cast<const void*>(bvb.data()) == static_cast<const void*>(vb.data()));
    BOOST_TEST(bvb.size() == vb.size());
    BOOST_TEST(static_cast<const void*>(bvc.data()) == static_cast<const void*>(vc.data()));
    BOOST_TEST(static_cast<const void*>(bvu.data()) == static_cast<const void*>(vu.data()));
    BOOST_TEST(static_cast<const void*>(bview.data()) == static_cast<const void*>(s.data()));
    BOOST_TEST(scratch.capacity() == 0u); // the raw paths never touch scratch

    // Decoding a raw T allocates nothing either.
    const bytes_t wire = encoded(p);
    const std::size_t before_decode = allocation_count.load();
    const pod back = shmq::codec<pod>::decode(wire);
    BOOST_TEST(allocation_count.load() == before_decode);
    BOOST_TEST((back == p));
}

BOOST_AUTO_TEST_CASE(strings_and_byte_vectors_round_trip) {
    BOOST_TEST(round_trip(std::string()).empty());
    BOOST_TEST(encoded(std::string()).empty()); // no length prefix: the frame is the length
    BOOST_TEST(round_trip(std::string("hello")) == "hello");
    std::string with_nul("a\0b", 3);
    BOOST_TEST(round_trip(with_nul) == with_nul);
    std::string long_string(3 << 20, '\0');
    for (std::size_t i = 0; i < long_string.size(); ++i) long_string[i] = static_cast<char>(i * 31);
    BOOST_TEST((round_trip(long_string) == long_string));
    BOOST_TEST(encoded(std::string("abc")).size() == 3u);

    BOOST_TEST(round_trip(std::vector<std::byte>()).empty());
    const std::vector<std::byte> vb{std::byte{0}, std::byte{255}, std::byte{7}};
    BOOST_TEST((round_trip(vb) == vb));
    BOOST_TEST(round_trip(std::vector<char>()).empty());
    const std::vector<char> vc{'x', '\0', 'y'};
    BOOST_TEST((round_trip(vc) == vc));
    BOOST_TEST(round_trip(std::vector<unsigned char>()).empty());
    const std::vector<unsigned char> vu{0, 128, 255};
    BOOST_TEST((round_trip(vu) == vu));

    // Views encode the viewed bytes, so the peer can decode an owning type.
    bytes_t scratch;
    const std::string_view view = "viewed";
    auto bytes = shmq::codec<std::string_view>::encode(view, scratch);
    BOOST_TEST(shmq::codec<std::string>::decode(bytes) == "viewed");
    const std::span<const std::byte> span_view(vb);
    auto span_bytes = shmq::codec<std::span<const std::byte>>::encode(span_view, scratch);
    BOOST_TEST((shmq::codec<std::vector<std::byte>>::decode(span_bytes) == vb));
    // Every kind of byte container reads the same bytes.
    BOOST_TEST(shmq::codec<std::string>::decode(encoded(vc)) == std::string("x\0y", 3));
}

// ---- Boost.Serialization path -----------------------------------------------------------------

BOOST_AUTO_TEST_CASE(serialized_struct_round_trips) {
    const record r = sample_record();
    BOOST_TEST((round_trip(r) == r));
    BOOST_TEST((round_trip(record{}) == record{}));

    record big;
    for (int i = 0; i < 20000; ++i) big.tags.push_back("tag" + std::to_string(i));
    big.values.assign(100000, 5);
    BOOST_TEST((round_trip(big) == big));

    // Plain containers go through Boost too.
    const std::vector<int> ints{1, 2, 3};
    BOOST_TEST((round_trip(ints) == ints));
    const std::map<int, std::string> m{{1, "one"}, {2, "two"}};
    BOOST_TEST((round_trip(m) == m));
}

BOOST_AUTO_TEST_CASE(serialized_bytes_are_a_headerless_binary_archive) {
    // The format is exactly binary_oarchive without its header, so it is readable by a standard
    // binary_iarchive: checked_iarchive only adds checks.
    const record r = sample_record();
    const bytes_t wire = encoded(r);
    std::string as_text(reinterpret_cast<const char*>(wire.data()), wire.size());
    BOOST_TEST(as_text.find("serialization::archive") == std::string::npos);
    std::istringstream in(as_text);
    boost::archive::binary_iarchive ia(in, boost::archive::no_header | boost::archive::no_codecvt);
    record back;
    ia >> back;
    BOOST_TEST((back == r));
}

BOOST_AUTO_TEST_CASE(serialized_encode_reuses_scratch) {
    const record r = sample_record();
    bytes_t scratch;
    auto first = shmq::codec<record>::encode(r, scratch);
    const bytes_t first_copy(first.begin(), first.end());
    BOOST_TEST(static_cast<const void*>(first.data()) == static_cast<const void*>(scratch.data()));
    const std::byte* storage = scratch.data();
    auto second = shmq::codec<record>::encode(r, scratch);
    BOOST_TEST(static_cast<const void*>(second.data()) == static_cast<const void*>(storage));
    BOOST_TEST((bytes_t(second.begin(), second.end()) == first_copy)); // cleared, not appended
}

BOOST_AUTO_TEST_CASE(sparse_and_large_unordered_containers_round_trip) {
    with_unordered sparse;
    sparse.m.reserve(200000); // far more buckets than the message has bytes
    sparse.m[1] = "one";
    auto back = round_trip(sparse);
    BOOST_TEST(back.m.size() == 1u);
    BOOST_TEST(back.m.at(1) == "one");

    with_unordered cleared;
    for (int i = 0; i < 50000; ++i) cleared.m[i] = "v";
    cleared.m.clear();
    BOOST_TEST(round_trip(cleared).m.empty());

    with_unordered full;
    for (int i = 0; i < 5000; ++i) full.m[i] = std::to_string(i);
    BOOST_TEST((round_trip(full).m == full.m));
}

BOOST_AUTO_TEST_CASE(bools_and_wide_strings_round_trip) {
    const std::vector<bool> bits{true, false, true, true};
    BOOST_TEST((round_trip(bits) == bits));
    const std::wstring wide = L"wide \u00e9";
    BOOST_TEST((round_trip(std::vector<std::wstring>{wide, L""}) == std::vector<std::wstring>{wide, L""}));
}

BOOST_AUTO_TEST_CASE(nested_containers_round_trip) {
    with_wide w;
    w.nested = {{}, {"a"}, {"b", "", std::string(1000, 'c')}};
    w.words = {0, ~std::uint64_t{0}, 12345};
    auto back = round_trip(w);
    BOOST_TEST((back.nested == w.nested));
    BOOST_TEST((back.words == w.words));
}

// ---- std types out of the box (issue 8 item 5: shmq/detail/std_serialization.hpp) ------------

namespace {
// Members that make a struct take the Boost path, holding every std type the glue covers.
struct std_members {
    std::optional<std::string> name;
    std::optional<int> missing;
    std::variant<std::monostate, int, std::string> choice;
    std::pair<int, std::string> pair;
    std::tuple<int, std::string, double> tuple;
    std::map<std::string, int> map;
    std::unordered_map<int, std::string> umap;
    std::set<std::string> set;
    std::array<std::string, 3> array;

    template <class Ar> void serialize(Ar& ar, unsigned) {
        ar & name & missing & choice & pair & tuple & map & umap & set & array;
    }
    friend bool operator==(const std_members&, const std_members&) = default;
};
} // namespace

// Not trivially copyable: these take the Boost path on their own.
static_assert(kind_of<std::optional<std::string>>() == codec_kind::serialized);
static_assert(kind_of<std::variant<int, std::string>>() == codec_kind::serialized);
static_assert(kind_of<std::tuple<int, std::string>>() == codec_kind::serialized);
static_assert(kind_of<std::pair<int, int>>() == codec_kind::serialized);

BOOST_AUTO_TEST_CASE(std_types_round_trip_through_the_codec) {
    using opt = std::optional<std::string>;
    BOOST_TEST((round_trip(opt{}) == opt{}));
    BOOST_TEST((round_trip(opt{"x"}) == opt{"x"}));
    BOOST_TEST((round_trip(opt{""}) == opt{""}));

    using var = std::variant<int, std::string, std::vector<int>>;
    BOOST_TEST((round_trip(var{5}) == var{5}));
    BOOST_TEST((round_trip(var{std::string("five")}) == var{std::string("five")}));
    BOOST_TEST((round_trip(var{std::vector<int>{1, 2}}) == var{std::vector<int>{1, 2}}));
    // The same type twice: the index, not the type, is what travels.
    using twice = std::variant<std::string, std::string>;
    BOOST_TEST(round_trip(twice{std::in_place_index<1>, "b"}).index() == 1u);

    const std::pair<int, std::string> p{7, "seven"};
    BOOST_TEST((round_trip(p) == p));
    const std::tuple<int, std::string, std::optional<double>> t{1, "one", 1.5};
    BOOST_TEST((round_trip(t) == t));
    BOOST_TEST((round_trip(std::tuple<std::string>{}) == std::tuple<std::string>{}));
    const std::map<std::string, int> m{{"a", 1}, {"b", 2}};
    BOOST_TEST((round_trip(m) == m));
    const std::unordered_map<std::string, std::string> um{{"k", "v"}, {"", ""}};
    BOOST_TEST((round_trip(um) == um));
    const std::set<std::string> st{"x", "y", ""};
    BOOST_TEST((round_trip(st) == st));
    const std::array<std::string, 2> arr{"first", "second"};
    BOOST_TEST((round_trip(arr) == arr));

    // As members, trivially copyable ones included (std::optional<int>), and empty.
    std_members s;
    s.name = "n";
    s.choice = std::string("c");
    s.pair = {1, "p"};
    s.tuple = {2, "t", 0.5};
    s.map = {{"m", 3}};
    s.umap = {{4, "u"}};
    s.set = {"s1", "s2"};
    s.array = {"a", "", "c"};
    BOOST_TEST((round_trip(s) == s));
    BOOST_TEST((round_trip(std_members{}) == std_members{}));

    // Trivially copyable ones opted into Boost go through the glue too.
    using sopt = shmq::serialization_codec<std::optional<int>>;
    bytes_t scratch;
    auto wire = sopt::encode(std::optional<int>(42), scratch);
    BOOST_TEST((sopt::decode(wire) == std::optional<int>(42)));
    wire = sopt::encode(std::nullopt, scratch);
    BOOST_TEST(!sopt::decode(wire).has_value());
}

BOOST_AUTO_TEST_CASE(nested_std_types_round_trip_through_a_queue) {
    using nested = std::map<std::string, std::vector<std::optional<int>>>;
    const nested n{{"a", {1, std::nullopt, 3}}, {"b", {}}, {"", {std::nullopt}}};
    BOOST_TEST((round_trip(n) == n));

    using deep = std::vector<std::variant<std::monostate, std::tuple<int, std::set<std::string>>,
                                          std::optional<std::pair<std::string, std::string>>>>;
    const deep d{std::monostate{}, std::tuple<int, std::set<std::string>>{1, {"x"}},
                 std::optional<std::pair<std::string, std::string>>{},
                 std::optional<std::pair<std::string, std::string>>{{"k", "v"}}};
    BOOST_TEST((round_trip(d) == d));

    shmq::Queue<nested> q;
    q.put(n);
    BOOST_TEST((q.get(true, std::chrono::seconds(10)) == n));
    shmq::Queue<deep> qd;
    qd.put(d);
    BOOST_TEST((qd.get(true, std::chrono::seconds(10)) == d));
}

BOOST_AUTO_TEST_CASE(hostile_optional_flags_and_variant_indexes_are_codec_error) {
    // An optional's flag is the last byte of an empty one's encoding (after the class preamble).
    using opt = std::optional<std::string>;
    const bytes_t empty = encoded(opt{});
    const std::size_t flag_at = empty.size() - 1;
    BOOST_TEST_REQUIRE(std::to_integer<int>(empty[flag_at]) == 0);
    const bytes_t full = encoded(opt{"hi"});
    BOOST_TEST_REQUIRE(std::to_integer<int>(full[flag_at]) == 1);
    for (int bad : {2, 7, 0x80, 0xff}) {
        bytes_t w = full;
        w[flag_at] = std::byte(bad);
        BOOST_TEST(decode_fails<opt>(w), "flag " << bad);
        w = empty;
        w[flag_at] = std::byte(bad);
        BOOST_TEST(decode_fails<opt>(w), "flag " << bad << ", alone");
    }
    // A flag of 1 with no value after it, and an empty one followed by a value: both malformed.
    bytes_t cut = empty;
    cut[flag_at] = std::byte{1};
    BOOST_TEST(decode_fails<opt>(cut));
    bytes_t extra = full;
    extra[flag_at] = std::byte{0};
    BOOST_TEST(decode_fails<opt>(extra));

    // A variant's index (uint32) comes right before an int alternative's 4 bytes.
    using var = std::variant<int, std::string>;
    const bytes_t as_int = encoded(var{0x01020304});
    const std::size_t which_at = as_int.size() - sizeof(std::uint32_t) - sizeof(int);
    std::uint32_t which = 99;
    std::memcpy(&which, as_int.data() + which_at, sizeof which);
    BOOST_TEST_REQUIRE(which == 0u);
    const bytes_t as_string = encoded(var{std::string("hi")});
    std::memcpy(&which, as_string.data() + which_at, sizeof which);
    BOOST_TEST_REQUIRE(which == 1u);
    for (std::uint32_t bad : {2u, 3u, 0x80000000u, 0xffffffffu}) {
        for (const bytes_t* base : {&as_int, &as_string}) {
            bytes_t w = *base;
            std::memcpy(w.data() + which_at, &bad, sizeof bad);
            BOOST_TEST(decode_fails<var>(w), "which " << bad);
        }
    }
    // Nested in a collection, each is checked on its own.
    const std::vector<var> many{var{1}, var{std::string("x")}};
    BOOST_TEST((round_trip(many) == many));
    try {
        bytes_t w = full;
        w[flag_at] = std::byte{2};
        shmq::codec<opt>::decode(w);
        BOOST_FAIL("decoded a flag of 2");
    } catch (const shmq::codec_error& e) {
        BOOST_TEST(std::string(e.what()).find("flag is 2") != std::string::npos, e.what());
    }
}

BOOST_AUTO_TEST_CASE(hostile_std_collection_counts_are_codec_error) {
    // std::map and std::set counts draw from the message's element budget (checked_iarchive).
    using m = std::map<int, std::string>;
    const bytes_t wire = encoded(m{{1, "a"}});
    // The count (collection_size_type, 8 bytes) follows the class preamble (5 bytes).
    constexpr std::size_t count_at = 5;
    std::uint64_t count = 0;
    std::memcpy(&count, wire.data() + count_at, sizeof count);
    BOOST_TEST_REQUIRE(count == 1u);
    for (std::uint64_t bad : {std::uint64_t{1} << 40, ~std::uint64_t{0}, std::uint64_t{100000}}) {
        bytes_t w = wire;
        std::memcpy(w.data() + count_at, &bad, sizeof bad);
        largest_allocation = 0;
        BOOST_TEST(decode_fails<m>(w), "count " << bad);
        BOOST_TEST(largest_allocation.load() < (std::size_t{1} << 20));
    }
}

// ---- user specializations ---------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(user_specialization_is_used) {
    const point p{3, -4, "label"};
    const bytes_t wire = encoded(p);
    BOOST_TEST(std::string(reinterpret_cast<const char*>(wire.data()), wire.size()) == "3,-4,label");
    const point back = round_trip(p);
    BOOST_TEST(back.x == 3);
    BOOST_TEST(back.y == -4);
    BOOST_TEST(back.label == "label");
    const std::string junk = "nonsense";
    BOOST_TEST(decode_fails<point>(std::as_bytes(std::span(junk))));

    // A full specialization beats the raw default for a trivially copyable type.
    BOOST_TEST(encoded(celsius{21.0f}).size() == 1u);
    BOOST_TEST(round_trip(celsius{-5.0f}).degrees == -5.0f);
}

BOOST_AUTO_TEST_CASE(own_serialize_wins_over_raw_and_opt_ins_work) {
    pod_with_serialize a;
    a.x = 5;
    BOOST_TEST(encoded(a).size() != sizeof(a)); // a Boost archive, not the object bytes
    BOOST_TEST(round_trip(a).x == 5);
    pod_with_private_serialize b;
    b.x = 6;
    BOOST_TEST(round_trip(b).x == 6);
    BOOST_TEST(encoded(pod_free_serialize{7}).size() != sizeof(pod_free_serialize));
    BOOST_TEST(round_trip(pod_free_serialize{7}).x == 7);
    BOOST_TEST(encoded(pod_forced_raw{8}).size() == sizeof(pod_forced_raw));
    BOOST_TEST(round_trip(pod_forced_raw{8}).x == 8);
}

// ---- encode errors ----------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(throwing_serialize_becomes_codec_error) {
    bytes_t scratch;
    try {
        (void)shmq::codec<throws_on_save>::encode(throws_on_save{}, scratch);
        BOOST_FAIL("encode should have thrown");
    } catch (const shmq::codec_error& e) {
        BOOST_TEST(std::string(e.what()).find("refused by save") != std::string::npos);
        BOOST_TEST(std::string(e.what()).find("throws_on_save") != std::string::npos);
    }
    BOOST_CHECK_THROW((void)shmq::codec<throws_int_on_save>::encode(throws_int_on_save{}, scratch),
                      shmq::codec_error);
    // codec_error is a shmq::error, so callers can catch the root.
    BOOST_CHECK_THROW((void)shmq::codec<throws_on_save>::encode(throws_on_save{}, scratch),
                      shmq::error);
    // The scratch is still usable afterwards.
    const record r = sample_record();
    auto bytes = shmq::codec<record>::encode(r, scratch);
    BOOST_TEST((shmq::codec<record>::decode(bytes) == r));
}

// ---- decode errors ----------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(raw_decode_checks_the_size_exactly) {
    const bytes_t four(4), eight(8), none;
    BOOST_TEST(!decode_fails<int>(four));
    BOOST_TEST(decode_fails<int>(eight));
    BOOST_TEST(decode_fails<int>(none));
    BOOST_TEST(decode_fails<int>(std::span(four).first(3)));
    BOOST_TEST(decode_fails<pod>(four));
    BOOST_TEST(decode_fails<double>(four));
    try {
        (void)shmq::codec<std::uint64_t>::decode(four);
        BOOST_FAIL("decode should have thrown");
    } catch (const shmq::codec_error& e) {
        BOOST_TEST(std::string(e.what()).find("expected 8 bytes, got 4") != std::string::npos);
    }
    // A bool must be 0 or 1 (anything else would be undefined behaviour once read).
    const bytes_t two{std::byte{2}};
    BOOST_TEST(decode_fails<bool>(two));
}

BOOST_AUTO_TEST_CASE(truncated_or_extended_serialized_input_is_codec_error) {
    const bytes_t wire = encoded(sample_record());
    for (std::size_t n = 0; n < wire.size(); ++n)
        BOOST_TEST_REQUIRE(decode_fails<record>(std::span(wire).first(n)), "prefix " << n);
    bytes_t longer = wire;
    longer.push_back(std::byte{0});
    BOOST_TEST(decode_fails<record>(longer)); // trailing bytes
    BOOST_TEST(!decode_fails<record>(wire));
}

BOOST_AUTO_TEST_CASE(garbage_lengths_are_refused_without_huge_allocations) {
    // record's layout: Boost's class preamble, int id, bool flag, size_t name length, ...
    const record r = sample_record();
    bytes_t wire = encoded(r);
    const std::size_t length_at = find_u64(wire, r.name.size());
    BOOST_TEST_REQUIRE(length_at >= sizeof(int) + 1);
    BOOST_TEST_REQUIRE((wire[length_at - 1] == std::byte{1})); // the flag just before
    auto with_length = [&](std::uint64_t len) {
        bytes_t w = wire;
        std::memcpy(w.data() + length_at, &len, sizeof len);
        return w;
    };
    largest_allocation = 0;
    for (std::uint64_t len : {std::uint64_t{1} << 62, ~std::uint64_t{0}, std::uint64_t{3} << 30,
                              std::uint64_t{wire.size()}})
        BOOST_TEST(decode_fails<record>(with_length(len)), "length " << len);
    BOOST_TEST(largest_allocation.load() < std::size_t{1} << 20);

    // A bool byte other than 0/1 is an error, not an assertion failure.
    bytes_t bad_bool = wire;
    bad_bool[length_at - 1] = std::byte{7};
    BOOST_TEST(decode_fails<record>(bad_bool));

    // Huge collection counts: a bitwise vector (checked exactly) and one of strings.
    const std::vector<int> ints{1, 2, 3};
    bytes_t ints_wire = encoded(ints); // count (8 bytes), then the ints
    const std::size_t ints_count_at = find_u64(ints_wire, ints.size());
    const std::uint64_t huge = std::uint64_t{1} << 40;
    std::memcpy(ints_wire.data() + ints_count_at, &huge, sizeof huge);
    largest_allocation = 0;
    BOOST_TEST(decode_fails<std::vector<int>>(ints_wire));
    const std::uint64_t four = 4;
    std::memcpy(ints_wire.data() + ints_count_at, &four, sizeof four); // one more than fits
    BOOST_TEST(decode_fails<std::vector<int>>(ints_wire));
    BOOST_TEST(largest_allocation.load() < std::size_t{1} << 20);

    const std::vector<std::string> strings{"a", "b"};
    bytes_t strings_wire = encoded(strings);
    const std::size_t strings_count_at = find_u64(strings_wire, strings.size());
    const std::uint64_t billion = 1000000000;
    std::memcpy(strings_wire.data() + strings_count_at, &billion, sizeof billion);
    largest_allocation = 0;
    BOOST_TEST(decode_fails<std::vector<std::string>>(strings_wire));
    BOOST_TEST(largest_allocation.load() < std::size_t{1} << 20);
}

BOOST_AUTO_TEST_CASE(random_garbage_never_crashes) {
    std::mt19937_64 rng(12345);
    std::size_t failures = 0, total = 0;
    largest_allocation = 0;
    for (int i = 0; i < 3000; ++i) {
        bytes_t junk(rng() % 200);
        for (auto& b : junk) b = static_cast<std::byte>(rng());
        failures += decode_fails<record>(junk);
        failures += decode_fails<with_unordered>(junk);
        failures += decode_fails<with_wide>(junk);
        total += 3;
    }
    // Random bytes practically never form a valid message; what matters is no crash.
    BOOST_TEST(failures >= total - total / 100);
    BOOST_TEST(largest_allocation.load() < std::size_t{64} << 20);
}

BOOST_AUTO_TEST_CASE(mutated_valid_messages_never_crash) {
    // Corrupting a valid message in place hits real length fields far more often than pure
    // noise does. Any outcome but a crash or a non-codec exception is acceptable.
    std::mt19937_64 rng(777);
    with_unordered u;
    for (int i = 0; i < 20; ++i) u.m[i] = std::string(static_cast<std::size_t>(i), 'u');
    with_wide w;
    w.nested = {{"a", "bb"}, {}, {"ccc"}};
    w.words = {1, 2, 3, 4};
    const bytes_t wires[] = {encoded(sample_record()), encoded(u), encoded(w)};
    largest_allocation = 0;
    for (int i = 0; i < 3000; ++i) {
        for (int which = 0; which < 3; ++which) {
            bytes_t m = wires[which];
            const int edits = 1 + static_cast<int>(rng() % 3);
            for (int e = 0; e < edits; ++e) {
                const std::size_t at = rng() % m.size();
                switch (rng() % 3) {
                case 0: m[at] = static_cast<std::byte>(rng()); break;
                case 1: m[at] = std::byte{0xff}; break;
                default: m.resize(at); break;
                }
                if (m.empty()) break;
            }
            try {
                switch (which) {
                case 0: (void)shmq::codec<record>::decode(m); break;
                case 1: (void)shmq::codec<with_unordered>::decode(m); break;
                default: (void)shmq::codec<with_wide>::decode(m); break;
                }
            } catch (const shmq::codec_error&) {
            }
        }
    }
    BOOST_TEST(largest_allocation.load() < std::size_t{64} << 20);
}

BOOST_AUTO_TEST_CASE(throwing_load_becomes_codec_error) {
    const bytes_t wire = encoded(throws_on_load{});
    try {
        (void)shmq::codec<throws_on_load>::decode(wire);
        BOOST_FAIL("decode should have thrown");
    } catch (const shmq::codec_error& e) {
        BOOST_TEST(std::string(e.what()).find("refused by load") != std::string::npos);
    }
}

// ---- hostile variant indexes and collection counts (issue 7, A.11) -------------------------

namespace {
/// Serializes to nothing (after its class preamble): the element that lets a count claim
/// elements without paying for them in bytes.
struct empty_element {
    template <class A> void serialize(A&, unsigned) {}
};

void put_u64(bytes_t& out, std::uint64_t v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    out.insert(out.end(), p, p + sizeof v);
}
void put_u32(bytes_t& out, std::uint32_t v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    out.insert(out.end(), p, p + sizeof v);
}
void put_preamble(bytes_t& out) { // class preamble: tracking (1 byte), version (4 bytes)
    out.push_back(std::byte{0});
    put_u32(out, 0);
}

/// A std::vector<std::vector<empty_element>> of `outer` inner vectors, each claiming `inner`
/// elements: 12 bytes per inner vector, and no bytes at all for its elements.
bytes_t nested_empty_collections(std::size_t outer, std::uint64_t inner) {
    bytes_t w;
    put_preamble(w);  // the outer vector's class
    put_u64(w, outer);
    put_u32(w, 0);    // item version
    for (std::size_t i = 0; i < outer; ++i) {
        if (i == 0) put_preamble(w); // the inner vector's class, before its first instance
        put_u64(w, inner);
        put_u32(w, 0);
        if (i == 0 && inner != 0) put_preamble(w); // empty_element's class, before its first
    }
    return w;
}
} // namespace

BOOST_AUTO_TEST_CASE(variant_index_outside_the_alternatives_is_codec_error) {
    using var = boost::variant<int, std::string>;
    const bytes_t wire = encoded(var(std::string("hi")));
    // tracking (1), version (4), object id (4), then `which` (int), then the string.
    constexpr std::size_t which_at = 9;
    std::int32_t which = 0;
    std::memcpy(&which, wire.data() + which_at, sizeof which);
    BOOST_TEST_REQUIRE(which == 1);
    BOOST_TEST(boost::get<std::string>(shmq::codec<var>::decode(wire)) == "hi");

    // Boost walks the alternatives down from a negative index: INT_MIN is signed overflow (UB),
    // and any negative index loads nothing, so a message cut right after it "succeeded".
    const bytes_t head(wire.begin(), wire.begin() + which_at + sizeof which);
    for (std::int32_t bad : {-1, -2, INT_MIN, 2, 3, INT_MAX}) {
        bytes_t w = head;
        std::memcpy(w.data() + which_at, &bad, sizeof bad);
        BOOST_TEST(decode_fails<var>(w), "which " << bad << ", alone");
        bytes_t full = wire;
        std::memcpy(full.data() + which_at, &bad, sizeof bad);
        BOOST_TEST(decode_fails<var>(full), "which " << bad << ", before the string");
    }
    // Nested: a variant inside a collection is checked the same way, each one on its own.
    const std::vector<var> many{var(1), var(std::string("x")), var(2)};
    BOOST_TEST((round_trip(many) == many));
}

BOOST_AUTO_TEST_CASE(nested_collections_of_empty_elements_allocate_linearly) {
    using nested = std::vector<std::vector<empty_element>>;
    // The shape of the report: ~4 000 inner vectors in 48 KiB, each claiming as many
    // elements as there are bytes left. Every count alone is plausible (elements that serialize
    // to nothing are legal), but together they asked for ~200 MB, and the decode "succeeded".
    const bytes_t hostile = nested_empty_collections(4000, 48000);
    BOOST_TEST_REQUIRE(hostile.size() < 49 * 1024);
    const std::size_t held = live_bytes.load();
    reset_peak();
    BOOST_TEST(decode_fails<nested>(hostile));
    BOOST_TEST(peak_growth(held) < 8 * hostile.size(),
               "peak " << peak_growth(held) << " bytes for a message of " << hostile.size());

    // The budget is shared by the whole message, not per collection: many small claims that
    // add up are refused too.
    const bytes_t spread = nested_empty_collections(4000, 100);
    BOOST_TEST(decode_fails<nested>(spread));

    // Legitimate messages with empty elements still decode: one collection_slack's worth of
    // free elements per message, plus one per byte of the message.
    const nested fine(100, std::vector<empty_element>(40));
    BOOST_TEST(round_trip(fine).size() == 100);
    const nested at_slack(1, std::vector<empty_element>(shmq::detail::collection_slack));
    BOOST_TEST(round_trip(at_slack).front().size() == shmq::detail::collection_slack);
    const std::vector<std::vector<int>> ints(1000, std::vector<int>{1, 2, 3});
    BOOST_TEST((round_trip(ints) == ints));
}

BOOST_AUTO_TEST_CASE(hostile_collection_counts_cost_at_most_a_multiple_of_the_message) {
    // One count as large as the check per collection allows: allocation is bounded by the
    // message size (plus the slack) times the element size, not more.
    using nested = std::vector<std::vector<empty_element>>;
    for (std::size_t outer : {std::size_t{1}, std::size_t{10}, std::size_t{1000}}) {
        bytes_t w = nested_empty_collections(outer, 0);
        std::uint64_t claim = w.size() + shmq::detail::collection_slack;
        std::memcpy(w.data() + 5, &claim, sizeof claim); // the outer count
        const std::size_t held = live_bytes.load();
        reset_peak();
        BOOST_TEST(decode_fails<nested>(w));
        BOOST_TEST(peak_growth(held) <=
                       (w.size() + shmq::detail::collection_slack) * sizeof(std::vector<int>) * 2,
                   "outer " << outer << ": peak " << peak_growth(held));
    }
}

// ---- pointers: graphs round trip; corrupted ones are refused, never a crash or double delete ----

namespace codec_test {
struct shape {
    int id = 1;
    virtual ~shape() = default;
    template <class Ar> void serialize(Ar& ar, unsigned) { ar & id; }
};
struct circle : shape {
    std::string name = "circle";
    template <class Ar> void serialize(Ar& ar, unsigned) {
        ar & boost::serialization::base_object<shape>(*this) & name;
    }
};
struct square : shape {
    std::vector<int> sides{1, 1, 1, 1};
    template <class Ar> void serialize(Ar& ar, unsigned) {
        ar & boost::serialization::base_object<shape>(*this) & sides;
    }
};
struct node {
    int value = 0;
    std::string text;
    node* next = nullptr; // an observer
    template <class Ar> void serialize(Ar& ar, unsigned) { ar & value & text & next; }
};
struct shared_node {
    int value = 0;
    std::shared_ptr<shared_node> next;
    template <class Ar> void serialize(Ar& ar, unsigned) { ar & value & next; }
};
struct graph {
    node member{5, "member", nullptr};
    node* observes_member = nullptr;       // Boost restores pointers to tracked members
    node* observes_owned = nullptr;        // saved before the unique_ptr that owns the object
    std::unique_ptr<node> owner;
    std::shared_ptr<node> shared_a, shared_b; // one object, two shared owners
    node* observes_shared = nullptr;
    std::vector<std::shared_ptr<shape>> shapes; // polymorphic, exported
    std::shared_ptr<shape> shape_alias;
    std::shared_ptr<shared_node> ring;          // a cycle of shared_ptrs (leaks, but legal)
    template <class Ar> void serialize(Ar& ar, unsigned) {
        ar & member & observes_member & observes_owned & owner & shared_a & shared_b &
            observes_shared & shapes & shape_alias & ring;
    }
};
} // namespace codec_test
BOOST_CLASS_EXPORT(codec_test::circle)
BOOST_CLASS_EXPORT(codec_test::square)

namespace {
codec_test::graph make_graph() {
    codec_test::graph g;
    g.observes_member = &g.member;
    g.owner = std::make_unique<codec_test::node>();
    g.owner->value = 7;
    g.observes_owned = g.owner.get();
    g.shared_a = std::make_shared<codec_test::node>();
    g.shared_a->text = "shared";
    g.shared_b = g.shared_a;
    g.observes_shared = g.shared_a.get();
    g.shapes = {std::make_shared<codec_test::circle>(), std::make_shared<codec_test::square>(),
                std::make_shared<codec_test::shape>()};
    g.shape_alias = g.shapes[1];
    g.ring = std::make_shared<codec_test::shared_node>();
    g.ring->next = std::make_shared<codec_test::shared_node>();
    g.ring->next->value = 2;
    g.ring->next->next = g.ring;
    return g;
}
void break_ring(codec_test::graph& g) {
    if (g.ring && g.ring->next) g.ring->next->next.reset();
}
} // namespace

BOOST_AUTO_TEST_CASE(pointer_graphs_round_trip) {
    auto g = make_graph();
    const bytes_t wire = encoded(g);
    break_ring(g);
    // decode constructs in the caller's storage, so pointers to members stay valid.
    const codec_test::graph r = shmq::codec<codec_test::graph>::decode(wire);
    BOOST_TEST(r.observes_member == &r.member);
    BOOST_TEST(r.owner->value == 7);
    BOOST_TEST(r.observes_owned == r.owner.get());
    BOOST_TEST(r.shared_a == r.shared_b);
    BOOST_TEST(r.shared_a.use_count() == 2);
    BOOST_TEST(r.observes_shared == r.shared_a.get());
    BOOST_TEST(r.shared_a->text == "shared");
    BOOST_TEST_REQUIRE(r.shapes.size() == 3u);
    const auto* c = dynamic_cast<const codec_test::circle*>(r.shapes[0].get());
    BOOST_TEST_REQUIRE(c != nullptr);
    BOOST_TEST(c->name == "circle");
    BOOST_TEST((dynamic_cast<const codec_test::square*>(r.shapes[1].get()) != nullptr));
    BOOST_TEST(r.shape_alias == r.shapes[1]);
    BOOST_TEST(r.ring->next->value == 2);
    BOOST_TEST(r.ring->next->next == r.ring);
    break_ring(const_cast<codec_test::graph&>(r));
}

BOOST_AUTO_TEST_CASE(corrupted_pointer_graphs_never_crash) {
    // Boost trusts class ids and object ids; garbage ones would index its tables out of range,
    // give a pointer an object of another class, or give one object two owners (double delete).
    // The decoder must refuse those: under AddressSanitizer any of them is a failure here.
    auto g = make_graph();
    const bytes_t wire = encoded(g);
    break_ring(g);
#if defined(__SANITIZE_ADDRESS__)
    // Objects created through pointers in a message that then fails are leaked (Boost cannot
    // know who owns them); that is expected here, so keep it out of the leak report.
    __lsan_disable();
#endif
    std::mt19937_64 rng(4242);
    std::size_t refused = 0;
    for (int i = 0; i < 20000; ++i) {
        bytes_t m = wire;
        const int edits = 1 + static_cast<int>(rng() % 3);
        for (int e = 0; e < edits && !m.empty(); ++e) {
            const std::size_t at = rng() % m.size();
            switch (rng() % 5) {
            case 0: m[at] = static_cast<std::byte>(rng()); break;
            case 1: m[at] = std::byte{0xff}; break;
            case 2: m[at] = std::byte{0}; break;
            case 3: m[at] ^= std::byte{1}; break;
            default: m.resize(at); break;
            }
        }
        try {
            auto r = shmq::codec<codec_test::graph>::decode(m);
            break_ring(r);
        } catch (const shmq::codec_error&) {
            ++refused;
        }
    }
#if defined(__SANITIZE_ADDRESS__)
    __lsan_enable();
#endif
    BOOST_TEST(refused > 1000u); // most corruptions are caught, the rest decode to something
}

namespace codec_test {
/// Owning pointers only (no observers, no cycles): everything a failed decode created must be
/// freed by the time decode has thrown.
struct owning_tree {
    std::unique_ptr<circle> owned{new circle};
    std::unique_ptr<shape> poly{new square};      // polymorphic, through the exported name
    std::shared_ptr<shared_node> shared{new shared_node{7, std::make_shared<shared_node>()}};
    std::shared_ptr<shared_node> alias = shared;
    std::vector<std::unique_ptr<circle>> many;
    template <class Ar> void serialize(Ar& ar, unsigned) { ar & owned & poly & shared & alias & many; }
};
} // namespace codec_test

BOOST_AUTO_TEST_CASE(failed_decodes_free_the_objects_pointers_created) {
    // Found by fuzz_codec (LeakSanitizer): Boost allocates a pointer's object before loading its
    // contents and hands it to nobody when that load throws, so each malformed message leaked
    // what its pointers had created: a receiver fed hostile messages grew without bound.
    codec_test::owning_tree tree;
    tree.many.emplace_back(new codec_test::circle);
    tree.many.emplace_back(new codec_test::circle);
    tree.many.back()->name = std::string(100, 'n');
    const bytes_t wire = encoded(tree);
    BOOST_TEST_REQUIRE(!decode_fails<codec_test::owning_tree>(wire));
    std::size_t failed = 0, leaked = 0;
    for (std::size_t n = 0; n < wire.size(); ++n) {
        const std::size_t before = live_bytes.load();
        failed += decode_fails<codec_test::owning_tree>(std::span(wire).first(n));
        if (live_bytes.load() != before) ++leaked;
    }
    BOOST_TEST(failed == wire.size()); // every prefix is refused
    BOOST_TEST(leaked == 0u, leaked << " of " << wire.size() << " prefixes leaked");
}

namespace codec_test {
struct shape_then_shared_node {
    std::unique_ptr<shape> first;
    std::unique_ptr<shared_node> second;
    template <class Ar> void serialize(Ar& ar, unsigned) { ar & first & second; }
};
struct two_shapes {
    std::unique_ptr<shape> first{new shape};
    std::unique_ptr<shape> second{new shape};
    template <class Ar> void serialize(Ar& ar, unsigned) { ar & first & second; }
};
} // namespace codec_test

BOOST_AUTO_TEST_CASE(a_pointer_naming_an_unrelated_class_is_refused_and_freed) {
    // Found by fuzz_codec (LeakSanitizer, 16 bytes): a pointer's class id may name any class
    // already sent through a pointer. Boost creates and loads an object of that class, then
    // fails to convert it to the pointer's type and throws, handing the object to nobody.
    // The message: a shape_then_shared_node whose second pointer, instead of null, is the
    // second pointer of a two_shapes (class id of shape, a new object id, a shape's contents).
    codec_test::shape_then_shared_node half;
    half.first = std::make_unique<codec_test::shape>();
    bytes_t wire = encoded(half);
    const bytes_t shapes = encoded(codec_test::two_shapes{});
    const bytes_t null_pointer{std::byte{0xff}, std::byte{0xff}}; // class id -1
    constexpr std::size_t second_shape = 2 + 4 + 4; // class id, object id, shape::id
    BOOST_TEST_REQUIRE(wire.size() > 2u);
    BOOST_TEST_REQUIRE((bytes_t(wire.end() - 2, wire.end()) == null_pointer));
    BOOST_TEST_REQUIRE(shapes.size() > second_shape);
    wire.resize(wire.size() - 2);
    wire.insert(wire.end(), shapes.end() - second_shape, shapes.end());

    codec_test::shape_then_shared_node valid;
    valid.first = std::make_unique<codec_test::shape>();
    valid.second = std::make_unique<codec_test::shared_node>();
    BOOST_TEST_REQUIRE(!decode_fails<codec_test::shape_then_shared_node>(encoded(valid)));
    BOOST_TEST_REQUIRE(decode_fails<codec_test::shape_then_shared_node>(wire)); // warms Boost up
    const std::size_t before = live_bytes.load();
    try {
        (void)shmq::codec<codec_test::shape_then_shared_node>::decode(wire);
        BOOST_ERROR("decoded a shape into a shared_node pointer");
    } catch (const shmq::codec_error& e) {
        BOOST_TEST(std::string(e.what()).find("not its type or derived from it") != std::string::npos,
                   e.what());
    }
    BOOST_TEST(live_bytes.load() == before, live_bytes.load() - before << " bytes leaked");
}

// ---- nesting: a user's serialize that itself sends or receives ---------------------------------

namespace {
// Side channels of inner_sender (decode builds fresh objects, so they cannot be members).
bytes_t* sent_inside = nullptr;
const bytes_t* to_receive = nullptr;
record* received_inside = nullptr;

struct inner_sender {
    // Stands in for a serialize that logs through another shmq connection: it encodes another
    // message into this thread's encode scratch while the outer message is being encoded.
    int value = 0;
    template <class Ar> void save(Ar& ar, unsigned) const {
        auto& scratch = shmq::detail::encode_scratch();
        auto inner = shmq::codec<record>::encode(sample_record(), scratch);
        sent_inside->assign(inner.begin(), inner.end());
        ar & value;
    }
    template <class Ar> void load(Ar& ar, unsigned) {
        ar & value;
        auto& buf = shmq::detail::decode_scratch(); // as Connection::recv does
        buf = *to_receive;
        *received_inside = shmq::codec<record>::decode(std::span<const std::byte>(buf));
    }
    BOOST_SERIALIZATION_SPLIT_MEMBER()
};
struct outer_message {
    std::string before = std::string(500, 'b');
    inner_sender middle;
    std::string after = std::string(500, 'a');
    template <class Ar> void serialize(Ar& ar, unsigned) { ar & before & middle & after; }
};
} // namespace

BOOST_AUTO_TEST_CASE(nested_encode_and_decode_use_separate_scratch) {
    bytes_t sent, to_send_back = encoded(sample_record());
    record received;
    sent_inside = &sent;
    to_receive = &to_send_back;
    received_inside = &received;
    outer_message out;
    out.middle.value = 17;

    auto& scratch = shmq::detail::encode_scratch(); // as Connection::send does
    auto wire_span = shmq::codec<outer_message>::encode(out, scratch);
    const bytes_t wire(wire_span.begin(), wire_span.end());
    BOOST_TEST((shmq::codec<record>::decode(sent) == sample_record()));

    auto& buf = shmq::detail::decode_scratch();
    buf = wire;
    outer_message back;
    back = shmq::codec<outer_message>::decode(std::span<const std::byte>(buf));
    BOOST_TEST(back.before == out.before);
    BOOST_TEST(back.after == out.after);
    BOOST_TEST(back.middle.value == 17);
    BOOST_TEST((received == sample_record()));
}

BOOST_AUTO_TEST_CASE(scratch_accessors_are_per_thread_and_released_when_huge) {
    auto& a = shmq::detail::encode_scratch();
    BOOST_TEST(&a == &shmq::detail::encode_scratch());
    BOOST_TEST(&a != &shmq::detail::decode_scratch());
    a.reserve(shmq::detail::scratch_keep_bytes + 1);
    BOOST_TEST(shmq::detail::encode_scratch().capacity() <= shmq::detail::scratch_keep_bytes);
    a.reserve(1000);
    BOOST_TEST(shmq::detail::encode_scratch().capacity() >= 1000u); // kept when small
    const void* other_thread = nullptr;
    std::thread([&] { other_thread = &shmq::detail::encode_scratch(); }).join();
    BOOST_TEST(other_thread != static_cast<const void*>(&a));
}

// ---- fingerprint ------------------------------------------------------------------------------

namespace {
struct fp_a { int x; };
struct fp_b { int x; };
} // namespace

BOOST_AUTO_TEST_CASE(fingerprints_tell_types_apart_and_are_stable) {
    using shmq::detail::type_fingerprint;
    const std::vector<std::uint64_t> prints{
        type_fingerprint<int>(),         type_fingerprint<float>(),
        type_fingerprint<unsigned>(),    type_fingerprint<long>(),
        type_fingerprint<double>(),      type_fingerprint<std::int64_t>() == type_fingerprint<long>()
                                             ? type_fingerprint<long long>()
                                             : type_fingerprint<std::int64_t>(),
        type_fingerprint<fp_a>(),        type_fingerprint<fp_b>(),
        type_fingerprint<std::string>(), type_fingerprint<std::vector<char>>(),
        type_fingerprint<record>(),      type_fingerprint<std::array<int, 1>>(),
    };
    for (std::size_t i = 0; i < prints.size(); ++i) {
        BOOST_TEST(prints[i] != 0u);
        for (std::size_t j = i + 1; j < prints.size(); ++j)
            BOOST_TEST(prints[i] != prints[j], "fingerprints " << i << " and " << j << " collide");
    }
    BOOST_TEST(type_fingerprint<int>() == type_fingerprint<int>());
    BOOST_TEST(type_fingerprint<const int>() == type_fingerprint<int>()); // typeid drops cv
    // Pinned: processes built from different versions of shmq must agree on the fingerprint of
    // a type. If this changes on purpose (codec_format_version), named typed objects created by
    // older builds are refused, which is the intent.
    BOOST_TEST(type_fingerprint<int>() == 0xdb8650104cbe754dull);
}
