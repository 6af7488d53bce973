// SPDX-License-Identifier: BSL-1.0
// libFuzzer harness: the codec's decode of hostile bytes (issue 7, B.5). Build and run it with
// test/fuzz/run (see there).
//
// Input: one byte choosing the type, then the message. Each type goes through the library's
// decode entry point, shmq::codec<T>::decode, exactly as a receiving Queue or Connection calls it.
// What must hold for every input:
//  * only codec_error escapes (anything else, a crash or a sanitizer report is a finding);
//  * the decode never holds more than alloc_bound(size) bytes at once (the sanitizer allocator's
//    hooks measure the peak): garbage counts must not allocate beyond a multiple of the message;
//  * nothing leaks (LeakSanitizer, on by default in libFuzzer);
//  * what decodes encodes again, and that decodes to an equal object, so a "successful" decode is
//    a consistent object, not half-loaded garbage.
//
// SHMQ_FUZZ_MAKE_SEEDS=<dir> writes the seed corpus (valid encodings of every type) into <dir>
// and exits instead of fuzzing: test/fuzz/run seeds.
#include <shmq/codec.hpp>
#include <shmq/serialization.hpp>   // types sent with Boost.Serialization

#include <boost/optional.hpp>
#include <boost/serialization/base_object.hpp>
#include <boost/serialization/export.hpp>
#include <boost/serialization/list.hpp>
#include <boost/serialization/map.hpp>
#include <boost/serialization/optional.hpp>
#include <boost/serialization/shared_ptr.hpp>
#include <boost/serialization/unique_ptr.hpp>
#include <boost/serialization/unordered_map.hpp>
#include <boost/serialization/variant.hpp>
#include <boost/serialization/vector.hpp>

#include <sanitizer/allocator_interface.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

// ---- allocation accounting ------------------------------------------------------------------
// Live heap bytes and their peak, from the sanitizer allocator's hooks (every malloc and
// operator new, in the library and in Boost too). Hooks rather than a replaced operator new,
// which ASan would report as an alloc/dealloc mismatch against its own.
namespace {
std::atomic<std::size_t> live_bytes{0};
std::atomic<std::size_t> peak_bytes{0};

void on_malloc(const volatile void*, std::size_t size) {
    const std::size_t live = live_bytes.fetch_add(size, std::memory_order_relaxed) + size;
    std::size_t peak = peak_bytes.load(std::memory_order_relaxed);
    while (live > peak && !peak_bytes.compare_exchange_weak(peak, live)) {
    }
}
void on_free(const volatile void* p) {
    // Called before the chunk is released, so its size is still known.
    live_bytes.fetch_sub(__sanitizer_get_allocated_size(p), std::memory_order_relaxed);
}
} // namespace

// ---- the types decoded ------------------------------------------------------------------------

namespace fuzz {

/// Serializes to nothing: collections of these are the quadratic-growth case.
struct empty {
    template <class A> void serialize(A&, unsigned) {}
};

struct shape {
    virtual ~shape() = default;
    int id = 0;
    template <class A> void serialize(A& ar, unsigned) { ar & id; }
};
struct circle : shape {
    std::int64_t r = 0;
    template <class A> void serialize(A& ar, unsigned) {
        ar& boost::serialization::base_object<shape>(*this);
        ar & r;
    }
};
struct square : shape {
    std::string label;
    template <class A> void serialize(A& ar, unsigned) {
        ar& boost::serialization::base_object<shape>(*this);
        ar & label;
    }
};

/// Owning pointers only, and shared_ptr only to classes without pointers: a raw pointer in a
/// message that fails to decode is leaked by Boost (documented in codec.hpp), and a cycle of
/// shared_ptrs is legal to send and leaks as shared_ptr cycles do; LeakSanitizer would report
/// both, though neither is a codec defect.
struct node {
    int value = 0;
    std::unique_ptr<node> next;
    template <class A> void serialize(A& ar, unsigned) {
        ar & value;
        ar & next;
    }
};

/// Every kind of length the Boost path reads: strings, bitwise and plain vectors, maps, an
/// unordered map (count + bucket hint), a list, a variant index, an optional, nested
/// collections of empty elements, polymorphic and shared pointers.
struct message {
    bool flag = false;
    std::string name;
    std::vector<std::int32_t> ints;
    std::vector<std::string> words;
    std::map<std::string, std::vector<std::string>> index;
    std::unordered_map<std::int32_t, std::string> lookup;
    std::list<std::int64_t> numbers;
    boost::variant<std::int32_t, std::string, std::vector<std::int64_t>> choice;
    boost::optional<std::string> maybe;
    std::vector<std::vector<empty>> empties;
    std::vector<boost::variant<empty, std::string>> variants;
    std::wstring wide;
    std::unique_ptr<shape> owned;
    std::shared_ptr<shape> first, second;
    node chain;
    template <class A> void serialize(A& ar, unsigned) {
        ar & flag & name & ints & words & index & lookup & numbers & choice & maybe & empties &
            variants & wide & owned & first & second & chain;
    }
};

// Equality by value, pointers by what they point to (and first/second by whether they share).
// Not a byte comparison of encodings: an unordered_map's iteration order, and so its encoding,
// may differ between two equal maps.
bool same(const shape* a, const shape* b) {
    if (a == nullptr || b == nullptr) return a == b;
    if (typeid(*a) != typeid(*b) || a->id != b->id) return false;
    if (const auto* ca = dynamic_cast<const circle*>(a)) return ca->r == static_cast<const circle*>(b)->r;
    if (const auto* sa = dynamic_cast<const square*>(a))
        return sa->label == static_cast<const square*>(b)->label;
    return true;
}
bool same(const node& a, const node& b) {
    if (a.value != b.value) return false;
    if (!a.next || !b.next) return !a.next && !b.next;
    return same(*a.next, *b.next);
}
bool same(const message& a, const message& b) {
    return a.flag == b.flag && a.name == b.name && a.ints == b.ints && a.words == b.words &&
           a.index == b.index && a.lookup == b.lookup && a.numbers == b.numbers &&
           a.choice == b.choice && a.maybe == b.maybe && a.empties.size() == b.empties.size() &&
           std::equal(a.empties.begin(), a.empties.end(), b.empties.begin(),
                      [](const auto& x, const auto& y) { return x.size() == y.size(); }) &&
           a.variants.size() == b.variants.size() &&
           std::equal(a.variants.begin(), a.variants.end(), b.variants.begin(),
                      [](const auto& x, const auto& y) {
                          return x.which() == y.which() &&
                                 (x.which() == 0 || boost::get<std::string>(x) == boost::get<std::string>(y));
                      }) &&
           a.wide == b.wide && same(a.owned.get(), b.owned.get()) &&
           same(a.first.get(), b.first.get()) && same(a.second.get(), b.second.get()) &&
           (a.first == a.second) == (b.first == b.second) && same(a.chain, b.chain);
}

/// The raw fast path: exactly sizeof(T) bytes.
struct raw_record {
    std::int32_t id;
    double value;
    char tag[12];
    bool ok; // checked: a byte other than 0/1 would be a bool with no valid value
};

} // namespace fuzz

BOOST_CLASS_EXPORT(fuzz::circle)
BOOST_CLASS_EXPORT(fuzz::square)

namespace {

/// What one decode may hold at its peak: every collection count of a message is charged
/// against (size + collection_slack) elements, and the largest element or node here is well
/// under 256 bytes (a std::map node of string -> vector); strings are bounded by the size itself.
/// The constant covers Boost's per-archive tables.
std::size_t alloc_bound(std::size_t size) {
    return 256 * (size + shmq::detail::collection_slack) + (std::size_t{1} << 20);
}

template <class T> std::vector<std::byte> encode(const T& obj) {
    std::vector<std::byte> scratch;
    const auto bytes = shmq::codec<T>::encode(obj, scratch);
    return {bytes.begin(), bytes.end()};
}

template <class T> void check_decode(std::span<const std::byte> bytes) {
    const std::size_t held = live_bytes.load();
    peak_bytes = held;
    std::optional<T> decoded;
    try {
        decoded.emplace(shmq::codec<T>::decode(bytes));
    } catch (const shmq::codec_error&) {
        // the only acceptable failure
    }
    const std::size_t peak = peak_bytes.load() - held;
    if (peak > alloc_bound(bytes.size())) {
        std::fprintf(stderr, "fuzz_codec: decode of %zu bytes as %s held %zu bytes at its peak\n",
                     bytes.size(), typeid(T).name(), peak);
        std::abort();
    }
    if (!decoded) return;
    // A decoded object must be a consistent one: it encodes, and that decodes to an equal object.
    try {
        const std::vector<std::byte> again = encode(*decoded);
        const T second = shmq::codec<T>::decode(again);
        bool equal;
        if constexpr (requires { fuzz::same(second, second); }) equal = fuzz::same(*decoded, second);
        else equal = encode(second) == again;
        if (!equal) {
            std::fprintf(stderr, "fuzz_codec: %s changed in a round trip\n", typeid(T).name());
            std::abort();
        }
    } catch (const shmq::codec_error& e) {
        std::fprintf(stderr, "fuzz_codec: a decoded %s does not round-trip: %s\n",
                     typeid(T).name(), e.what());
        std::abort();
    }
}

fuzz::message sample_message() {
    fuzz::message m;
    m.flag = true;
    m.name = "job-17";
    m.ints = {1, -2, 3};
    m.words = {"alpha", "", "gamma"};
    m.index["a"] = {"x", "y"};
    m.index["b"] = {};
    m.lookup = {{1, "one"}, {2, "two"}};
    m.numbers = {10, 20};
    m.choice = std::vector<std::int64_t>{7, 8};
    m.maybe = std::string("here");
    m.empties = {{fuzz::empty{}, fuzz::empty{}}, {}};
    m.variants = {fuzz::empty{}, std::string("v")};
    m.wide = L"wide";
    auto c = std::make_unique<fuzz::circle>();
    c->r = 5;
    m.owned = std::move(c);
    auto s = std::make_shared<fuzz::square>();
    s->label = "sq";
    m.first = s;
    m.second = s; // shared: the second is a reference to the first's object
    m.chain.value = 1;
    m.chain.next = std::make_unique<fuzz::node>();
    m.chain.next->value = 2;
    return m;
}

void write_seed(const char* dir, const std::string& name, std::uint8_t type,
                const std::vector<std::byte>& body) {
    const std::string path = std::string(dir) + "/" + name;
    std::ofstream out(path, std::ios::binary);
    out.put(static_cast<char>(type));
    out.write(reinterpret_cast<const char*>(body.data()), static_cast<std::streamsize>(body.size()));
    if (!out) {
        std::fprintf(stderr, "fuzz_codec: cannot write %s\n", path.c_str());
        std::exit(1);
    }
}

void make_seeds(const char* dir) {
    write_seed(dir, "message-sample", 0, encode(sample_message()));
    write_seed(dir, "message-default", 0, encode(fuzz::message{}));
    fuzz::message variant_string;
    variant_string.choice = std::string("s");
    write_seed(dir, "message-variant-string", 0, encode(variant_string));
    write_seed(dir, "string", 1, encode(std::string("hello, shmq")));
    write_seed(dir, "raw-record", 2, encode(fuzz::raw_record{42, 2.5, "tag", true}));
    write_seed(dir, "bytes", 3, encode(std::vector<std::byte>{std::byte{1}, std::byte{2}}));
    write_seed(dir, "nested-empties", 4,
               encode(std::vector<std::vector<fuzz::empty>>(3, std::vector<fuzz::empty>(2))));
    write_seed(dir, "node-chain", 5, encode(sample_message().chain));
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    if (const char* dir = std::getenv("SHMQ_FUZZ_MAKE_SEEDS")) {
        make_seeds(dir);
        std::exit(0);
    }
    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
    // Boost's singletons (serializer maps, type info) are allocated on first use and live for the
    // process: warm them up so the first input's peak is the decode's own.
    (void)shmq::codec<fuzz::message>::decode(encode(sample_message()));
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
    switch (data[0] % 6) {
    case 0: check_decode<fuzz::message>(bytes); break;
    case 1: check_decode<std::string>(bytes); break;
    case 2: check_decode<fuzz::raw_record>(bytes); break;
    case 3: check_decode<std::vector<std::byte>>(bytes); break;
    case 4: check_decode<std::vector<std::vector<fuzz::empty>>>(bytes); break;
    default: check_decode<fuzz::node>(bytes); break;
    }
    return 0;
}
