// SPDX-License-Identifier: BSL-1.0
// Tests of shmq::portable<T> (portable.hpp): the text-archive codec round-trips through a Queue and
// a Pipe, refuses hostile and truncated bytes with codec_error, and its type fingerprint carries
// no byte order, on a NATS stream too (nats-server started by the test, nats_server.hpp).
#define BOOST_TEST_MODULE portable
#include <boost/test/unit_test.hpp>

#include "nats_server.hpp"
#include "test_fixtures.hpp"

#include "nats/client.hpp"
#include "nats/stream.hpp"
#include "nats/url.hpp"

#include <shmq/shmq.hpp>

#include <boost/serialization/map.hpp>
#include <boost/serialization/unique_ptr.hpp>
#include <boost/serialization/unordered_map.hpp>
#include <boost/serialization/variant.hpp>
#include <boost/serialization/vector.hpp>

#include <bit>
#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

using namespace std::chrono_literals;
using shmq::portable;

namespace {

struct job {
    std::int64_t id = 0;
    std::int32_t small = 0;
    std::uint64_t big = 0;
    double weight = 0;
    std::string name;
    std::vector<std::int32_t> parts;
    std::map<std::string, double> scores;

    template <class Ar> void serialize(Ar& ar, unsigned) {
        ar & id & small & big & weight & name & parts & scores;
    }
    friend bool operator==(const job&, const job&) = default;
};

job sample(int i) {
    job j;
    j.id = -1234567890123ll * i;
    j.small = std::numeric_limits<std::int32_t>::min() + i;
    j.big = std::numeric_limits<std::uint64_t>::max() - static_cast<std::uint64_t>(i);
    j.weight = 0.1 * i - 1e-300;
    j.name = "job " + std::to_string(i) + " with spaces\nand a newline";
    j.parts = {i, -i, 0, 42};
    j.scores = {{"a", 1.5}, {"b b", -2.25 * i}, {"", 3e100}};
    return j;
}

struct with_unordered {
    std::unordered_map<std::int32_t, std::string> m;
    template <class Ar> void serialize(Ar& ar, unsigned) { ar & m; }
};

struct nothing {
    template <class Ar> void serialize(Ar&, unsigned) {}
};

struct inner {
    std::int32_t x = 0;
    template <class Ar> void serialize(Ar& ar, unsigned) { ar & x; }
};

struct with_pointer {
    std::unique_ptr<inner> p;
    template <class Ar> void serialize(Ar& ar, unsigned) { ar & p; }
};

struct with_variant {
    boost::variant<std::int32_t, std::string> v;
    template <class Ar> void serialize(Ar& ar, unsigned) { ar & v; }
};

using pjob = portable<job>;
using codec = shmq::codec<pjob>;

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s)); }
std::string text_of(std::span<const std::byte> b) {
    return {reinterpret_cast<const char*>(b.data()), b.size()};
}

/// True when decoding s as portable<T> throws codec_error (whose message holds `why`, if given).
template <class T> bool decodes_to_codec_error(const std::string& s, const std::string& why = "") {
    try {
        (void)shmq::codec<portable<T>>::decode(bytes_of(s));
    } catch (const shmq::codec_error& e) {
        BOOST_TEST_MESSAGE("refused: " << e.what());
        return std::string(e.what()).find(why) != std::string::npos;
    } catch (const std::exception& e) {
        BOOST_TEST_MESSAGE("not a codec_error: " << e.what());
        return false;
    }
    BOOST_TEST_MESSAGE("accepted: [" << s << "]");
    return false;
}

} // namespace

BOOST_AUTO_TEST_SUITE(encoding)

BOOST_AUTO_TEST_CASE(integers_travel_as_text_and_round_trip) {
    std::vector<std::byte> scratch;
    const pjob in = sample(7);
    const std::string text = text_of(codec::encode(in, scratch));
    // Decimal text, not the object representation: the id's digits appear as written.
    BOOST_TEST(text.find("-8641975230861") != std::string::npos);
    BOOST_TEST(text.find("18446744073709551608") != std::string::npos);
    BOOST_TEST((codec::decode(bytes_of(text)) == in));

    // A trivially copyable T goes through the text archive too.
    const std::string four = text_of(shmq::codec<portable<std::int32_t>>::encode(portable<std::int32_t>(-42), scratch));
    BOOST_TEST(four.substr(0, 3) == "-42");
    BOOST_TEST(shmq::codec<portable<std::int32_t>>::decode(bytes_of(four)).value == -42);
}

BOOST_AUTO_TEST_CASE(wrapper_converts_both_ways) {
    pjob p = sample(1);                    // from T
    job j = p;                             // to T (lvalue)
    BOOST_TEST((j == sample(1)));
    job k = pjob(sample(2));               // to T (rvalue: moved)
    BOOST_TEST((k == sample(2)));
    BOOST_TEST(p.value.name == sample(1).name);
}

BOOST_AUTO_TEST_CASE(the_global_locale_does_not_group_digits) {
    // A locale whose numpunct groups by three would write "1,234,567" with the stream's locale.
    struct grouping : std::numpunct<char> {
        char do_thousands_sep() const override { return ','; }
        std::string do_grouping() const override { return "\3"; }
    };
    const std::locale old = std::locale::global(std::locale(std::locale::classic(), new grouping));
    std::vector<std::byte> scratch;
    std::string text;
    try {
        text = text_of(shmq::codec<portable<std::int64_t>>::encode(portable<std::int64_t>(1234567), scratch));
    } catch (...) {
        std::locale::global(old);
        throw;
    }
    std::locale::global(old);
    BOOST_TEST(text.substr(0, 7) == "1234567");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(hostile_bytes)

BOOST_AUTO_TEST_CASE(crafted_inputs_are_codec_errors) {
    // Empty, not numbers, a number out of range, a string claiming far more than the message,
    // a collection claiming billions of elements, a negative count, garbage after the object.
    const std::string valid = text_of([] {
        static std::vector<std::byte> s;
        return codec::encode(sample(3), s);
    }());
    BOOST_TEST(decodes_to_codec_error<job>(""));
    BOOST_TEST(decodes_to_codec_error<job>("hello world"));
    BOOST_TEST(decodes_to_codec_error<std::int32_t>("99999999999"));
    BOOST_TEST(decodes_to_codec_error<std::string>("18446744073709551615 abc"));
    BOOST_TEST(decodes_to_codec_error<std::string>("4000000000 abc", "longer than the bytes left"));
    BOOST_TEST(decodes_to_codec_error<std::string>("5 abc", "longer than the bytes left"));
    BOOST_TEST(decodes_to_codec_error<std::string>("3 ab"));
    BOOST_TEST(decodes_to_codec_error<std::vector<std::int32_t>>("4000000000 0 1 2", "more elements"));
    BOOST_TEST(decodes_to_codec_error<std::vector<std::int32_t>>("-1 0 1 2"));
    BOOST_TEST(decodes_to_codec_error<std::vector<std::vector<std::int32_t>>>(
        "3000 0 " + std::string(3000, '0')));
    // Collections of elements that write nothing: each count alone fits the bytes left plus the
    // slack, but all of them together exceed the message's one budget, so nesting cannot
    // multiply claims (100 x 4000 empty elements from a message of under a kilobyte).
    {
        std::vector<std::byte> scratch;
        const portable<std::vector<std::vector<nothing>>> many(
            std::vector<std::vector<nothing>>(100, std::vector<nothing>(4000)));
        const std::string text = text_of(shmq::codec<decltype(many)>::encode(many, scratch));
        BOOST_TEST(text.size() < 1000u);
        BOOST_TEST(decodes_to_codec_error<std::vector<std::vector<nothing>>>(text, "more elements"));
    }
    BOOST_TEST(decodes_to_codec_error<std::int32_t>("12 junk"));
    BOOST_TEST(decodes_to_codec_error<job>(valid + "7"));
    // A boost::variant index outside its two alternatives (Boost would walk down from -1).
    // A valid encoding ends with the variant's index and its value ("0 5\n"): replace the index.
    {
        std::vector<std::byte> scratch;
        const portable<with_variant> ok(with_variant{std::int32_t{5}});
        const std::string text = text_of(shmq::codec<portable<with_variant>>::encode(ok, scratch));
        BOOST_REQUIRE(text.size() > 4u);
        BOOST_REQUIRE(text.substr(text.size() - 4) == "0 5\n");
        BOOST_TEST(shmq::codec<portable<with_variant>>::decode(bytes_of(text)).value.v.which() == 0);
        const std::string head = text.substr(0, text.size() - 4);
        BOOST_TEST(decodes_to_codec_error<with_variant>(head + "-1 5\n", "variant index"));
        BOOST_TEST(decodes_to_codec_error<with_variant>(head + "2 5\n", "variant index"));
        BOOST_TEST(decodes_to_codec_error<with_variant>(head + "-2147483648 5\n", "variant index"));
    }
}

BOOST_AUTO_TEST_CASE(a_huge_bucket_count_is_clamped_not_allocated) {
    std::vector<std::byte> scratch;
    with_unordered u;
    u.m = {{1, "one"}, {2, "two"}};
    std::string text = text_of(shmq::codec<portable<with_unordered>>::encode(u, scratch));
    BOOST_TEST_MESSAGE("unordered: [" << text << "]");
    // Format: with_unordered's class info (tracking, version), the map's, then its count, its
    // bucket count and the item version, then the elements. Replace the bucket count: decoding a
    // garbage hint must not rehash to trillions of buckets; it is clamped.
    std::vector<std::string> tokens;
    for (std::size_t at = 0, sp; at < text.size(); at = sp + 1) {
        sp = text.find(' ', at);
        if (sp == std::string::npos) sp = text.size();
        tokens.push_back(text.substr(at, sp - at));
    }
    BOOST_REQUIRE(tokens.size() > 6u);
    BOOST_REQUIRE(tokens[4] == "2");
    tokens[5] = "4000000000000";
    text.clear();
    for (const auto& t : tokens) text += (text.empty() ? "" : " ") + t;
    const auto out = shmq::codec<portable<with_unordered>>::decode(bytes_of(text));
    BOOST_TEST(out.value.m == u.m);
    BOOST_TEST(out.value.m.bucket_count() < 1000u);
}

BOOST_AUTO_TEST_CASE(every_truncation_of_a_valid_encoding_is_a_codec_error) {
    std::vector<std::byte> scratch;
    const std::string text = text_of(codec::encode(sample(5), scratch));
    // The last byte is the writer's newline; a cut anywhere before the last value is refused. A
    // cut inside the final number or string could still parse (a shorter number), so the cuts
    // are checked up to the start of the last token.
    const std::size_t last = text.find_last_of(' ', text.size() - 2);
    BOOST_REQUIRE(last != std::string::npos);
    int refused = 0;
    for (std::size_t n = 0; n <= last; ++n) {
        const bool ok = decodes_to_codec_error<job>(text.substr(0, n));
        if (!ok) BOOST_TEST_MESSAGE("cut at " << n << " accepted");
        refused += ok;
        BOOST_TEST(ok);
    }
    BOOST_TEST(refused == static_cast<int>(last + 1));
}

BOOST_AUTO_TEST_CASE(pointers_are_refused_when_decoding) {
    // The class and object tables the binary path checks are not mirrored for text: a pointer in
    // a portable message is refused at decode, whatever the bytes say.
    std::vector<std::byte> scratch;
    with_pointer w;
    w.p = std::make_unique<inner>(inner{5});
    const portable<with_pointer> pw(std::move(w));
    const std::string text = text_of(shmq::codec<portable<with_pointer>>::encode(pw, scratch));
    BOOST_TEST_MESSAGE("pointer: [" << text << "]");
    BOOST_TEST(decodes_to_codec_error<with_pointer>(text, "pointers"));
    BOOST_TEST(decodes_to_codec_error<with_pointer>("0 0 0 0 0 0 0\n", "pointers"));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(shared_memory)

BOOST_AUTO_TEST_CASE(round_trip_through_a_queue) {
    shmq::Queue<pjob> q;
    for (int i = 0; i < 10; ++i) q.put(sample(i));
    for (int i = 0; i < 10; ++i) {
        job j = q.get(true, 5s);
        BOOST_TEST((j == sample(i)));
    }
    BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_CASE(round_trip_through_a_pipe) {
    auto [a, b] = shmq::Pipe();
    for (int i = 0; i < 5; ++i) a.send(pjob(sample(i)));
    for (int i = 0; i < 5; ++i) BOOST_TEST((b.recv<pjob>().value == sample(i)));
    b.send(portable<std::string>("back"));
    BOOST_TEST(a.recv<portable<std::string>>().value == "back");
}

BOOST_AUTO_TEST_CASE(portable_and_plain_queues_do_not_open_each_other) {
    const std::string name = shmq::test::unique_name("portable");
    shmq::test::shm_remover rm(name);
    auto q = shmq::Queue<pjob>::create(name);
    BOOST_CHECK_THROW(shmq::Queue<job>::open(name), shmq::type_error);
    BOOST_CHECK_NO_THROW(shmq::Queue<pjob>::open(name));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(fingerprint)

BOOST_AUTO_TEST_CASE(portable_fingerprints_carry_no_byte_order) {
    using shmq::detail::fold_byte_order;
    using shmq::detail::is_portable_v;
    BOOST_TEST(is_portable_v<pjob>);
    BOOST_TEST(!is_portable_v<job>);
    BOOST_TEST(!is_portable_v<std::int32_t>);

    const std::uint64_t base_p = shmq::detail::type_fingerprint(typeid(pjob), sizeof(pjob), alignof(pjob));
    const std::uint64_t base_j = shmq::detail::type_fingerprint(typeid(job), sizeof(job), alignof(job));
    // What a big-endian and a little-endian host store: the same for portable<T>, not for T.
    BOOST_TEST(fold_byte_order(base_p, is_portable_v<pjob>, std::endian::big) ==
               fold_byte_order(base_p, is_portable_v<pjob>, std::endian::little));
    BOOST_TEST(fold_byte_order(base_j, is_portable_v<job>, std::endian::big) !=
               fold_byte_order(base_j, is_portable_v<job>, std::endian::little));
    // The facade's fingerprint is the unfolded one on every host for portable<T>.
    BOOST_TEST(shmq::detail::type_fingerprint<pjob>() == base_p);
    BOOST_TEST(shmq::detail::type_fingerprint<job>() ==
               fold_byte_order(base_j, false, std::endian::native));
    // And portable<T> is another type than T.
    BOOST_TEST(shmq::detail::type_fingerprint<pjob>() != shmq::detail::type_fingerprint<job>());
    BOOST_TEST(shmq::detail::type_fingerprint<portable<std::int32_t>>() !=
               shmq::detail::type_fingerprint<std::int32_t>());
}

BOOST_AUTO_TEST_CASE(a_nats_stream_stores_the_unfolded_fingerprint) {
    shmq::test::nats_server srv;
    const std::string url = srv.url(shmq::test::unique_name("pq"));
    auto q = shmq::Queue<pjob>::create(url);
    q.put(sample(9));

    const auto parsed = shmq::detail::parse_nats_url(url);
    shmq::detail::nats_client client(parsed, 5s);
    const auto counts = shmq::detail::nats_counts(client, parsed, 5000);
    BOOST_REQUIRE(counts.tag.has_value());
    BOOST_TEST(counts.tag->fingerprint ==
               shmq::detail::type_fingerprint(typeid(pjob), sizeof(pjob), alignof(pjob)));
    BOOST_TEST(counts.tag->fingerprint == shmq::detail::type_fingerprint<pjob>());

    BOOST_CHECK_THROW(shmq::Queue<job>::open(url), shmq::type_error);
    auto r = shmq::Queue<pjob>::open(url);
    BOOST_TEST((r.get(true, 5s).value == sample(9)));
    BOOST_TEST(shmq::Queue<pjob>::remove(url));
}

BOOST_AUTO_TEST_SUITE_END()
