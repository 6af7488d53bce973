// SPDX-License-Identifier: BSL-1.0
// shmq::Pipe and shmq::Connection (README: A short tour, Guarantees; the Cn labels below number the
// clauses of Python's Connection contract that these tests check): directions, closed handles,
// framing, message sizes around every internal threshold, send_bytes / recv_bytes / recv_bytes_into
// arguments, poll, end of stream and broken pipe with forked holders of the ends, duplex echo,
// typed send/recv.
//
// Peer death (SIGKILL), kills at random points and corrupted shared memory are in
// test_channel_death.cpp.
//
// Children never call Boost.Test: they report through exit codes (test_fixtures.hpp). Every
// blocking call is bounded: test cases that can block carry a Boost.Test timeout, children start a
// watchdog, and waits for children have deadlines.
#define BOOST_TEST_MODULE connection
#include <boost/test/unit_test.hpp>

#include <shmq/connection.hpp>
#include <shmq/serialization.hpp>   // types sent with Boost.Serialization

#include "test_fixtures.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <vector>

#include <pthread.h>
#include <signal.h>

namespace utf = boost::unit_test;
using namespace std::chrono_literals;
using namespace shmq::test;
using shmq::Connection;
using shmq::Pipe;

namespace {

constexpr std::size_t KiB = 1024, MiB = 1024 * 1024;

void send_str(Connection& c, std::string_view s) { c.send_bytes(to_bytes(s)); }
std::string recv_str(Connection& c) { return to_string(c.recv_bytes()); }

/// Every method of a closed connection throws closed_error, whatever its arguments or direction
/// (the closed check comes first), and close() stays a no-op.
void check_closed_everywhere(Connection& c) {
    BOOST_TEST(c.closed());
    std::vector<std::byte> buf(8);
    const auto abc = to_bytes("abc");
    BOOST_CHECK_THROW(c.send(1), shmq::closed_error);
    BOOST_CHECK_THROW(c.send(std::string("x")), shmq::closed_error);
    BOOST_CHECK_THROW(c.send_bytes(abc), shmq::closed_error);
    BOOST_CHECK_THROW(c.send_bytes({}), shmq::closed_error);
    BOOST_CHECK_THROW(c.send_bytes(abc, 10), shmq::closed_error);      // bad offset: closed first
    BOOST_CHECK_THROW(c.send_bytes(abc, 1, 10), shmq::closed_error);   // bad size: closed first
    BOOST_CHECK_THROW(c.recv<int>(), shmq::closed_error);
    BOOST_CHECK_THROW(c.recv<std::string>(), shmq::closed_error);
    BOOST_CHECK_THROW(c.recv_bytes(), shmq::closed_error);
    BOOST_CHECK_THROW(c.recv_bytes(0), shmq::closed_error);
    BOOST_CHECK_THROW(c.recv_bytes_into(buf), shmq::closed_error);
    BOOST_CHECK_THROW(c.recv_bytes_into(buf, 100), shmq::closed_error);   // bad offset: closed first
    BOOST_CHECK_THROW(c.poll(), shmq::closed_error);
    BOOST_CHECK_THROW(c.poll(-1s), shmq::closed_error);
    BOOST_CHECK_THROW(c.poll(std::nullopt), shmq::closed_error);         // must not block either
    c.close();
    c.close();
    BOOST_TEST(c.closed());
}

struct pod {
    std::int32_t a;
    double b;
    char c[5];
    std::uint8_t d;
};
static_assert(std::is_trivially_copyable_v<pod>);

/// A type that goes through Boost.Serialization and refuses to be saved.
struct refuses_to_save {
    std::string s;
    template <class Archive> void serialize(Archive&, unsigned) {
        throw std::runtime_error("refuses_to_save: refused");
    }
};

} // namespace

// ------------------------------------------------------------------------------------------------
// C1: construction and directions.

BOOST_AUTO_TEST_CASE(duplex_ends_both_read_and_write, *utf::timeout(10))
{
    auto [a, b] = Pipe();
    BOOST_TEST(a.readable());
    BOOST_TEST(a.writable());
    BOOST_TEST(b.readable());
    BOOST_TEST(b.writable());
    BOOST_TEST(!a.closed());
    BOOST_TEST(!b.closed());
    send_str(a, "ping");
    send_str(b, "pong");
    BOOST_TEST(recv_str(b) == "ping");
    BOOST_TEST(recv_str(a) == "pong");
    BOOST_TEST(!a.poll());
    BOOST_TEST(!b.poll());
}

BOOST_AUTO_TEST_CASE(simplex_returns_reader_then_writer, *utf::timeout(10))
{
    auto [r, w] = Pipe(false);
    BOOST_TEST(r.readable());
    BOOST_TEST(!r.writable());
    BOOST_TEST(!w.readable());
    BOOST_TEST(w.writable());
    BOOST_TEST(!r.closed());
    BOOST_TEST(!w.closed());
    send_str(w, "one way");
    BOOST_TEST(recv_str(r) == "one way");
}

BOOST_AUTO_TEST_CASE(capacity_beyond_the_maximum_is_a_value_error)
{
    BOOST_CHECK_THROW(Pipe(true, {.capacity = (std::size_t{1} << 30) + 1}), shmq::value_error);
    BOOST_CHECK_THROW(Pipe(false, {.capacity = std::size_t{1} << 40}), shmq::value_error);
}

BOOST_AUTO_TEST_CASE(tiny_capacities_are_rounded_up_and_work, *utf::timeout(20))
{
    for (std::size_t cap : {std::size_t{0}, std::size_t{1}, std::size_t{100}, std::size_t{5000}}) {
        auto [r, w] = Pipe(false, {.capacity = cap});
        scoped_child child([&] {
            watchdog wd(15);
            r.close();
            w.send_bytes(make_pattern(30000, cap));   // larger than any of these rings
            send_str(w, "small");
            return 0;
        });
        w.close();
        const auto big = r.recv_bytes();
        BOOST_TEST(big.size() == 30000u);
        BOOST_TEST(matches_pattern(big, cap));
        BOOST_TEST(recv_str(r) == "small");
        BOOST_CHECK_THROW(r.recv_bytes(), shmq::eof_error);
        BOOST_TEST(child.wait() == 0);
    }
}

// ------------------------------------------------------------------------------------------------
// C2: wrong direction -> value_error for every method, and nothing changes.

BOOST_AUTO_TEST_CASE(wrong_direction_is_a_value_error_for_every_method, *utf::timeout(10))
{
    auto [r, w] = Pipe(false);
    std::vector<std::byte> buf(8);
    const auto x = to_bytes("x");
    BOOST_CHECK_THROW(r.send(1), shmq::value_error);
    BOOST_CHECK_THROW(r.send(std::string("x")), shmq::value_error);
    BOOST_CHECK_THROW(r.send_bytes(x), shmq::value_error);
    BOOST_CHECK_THROW(r.send_bytes({}), shmq::value_error);
    BOOST_CHECK_THROW(w.recv<int>(), shmq::value_error);
    BOOST_CHECK_THROW(w.recv_bytes(), shmq::value_error);
    BOOST_CHECK_THROW(w.recv_bytes(10), shmq::value_error);
    BOOST_CHECK_THROW(w.recv_bytes_into(buf), shmq::value_error);
    BOOST_CHECK_THROW(w.recv_bytes_into(buf, 4), shmq::value_error);
    BOOST_CHECK_THROW(w.poll(), shmq::value_error);
    BOOST_CHECK_THROW(w.poll(100ms), shmq::value_error);
    BOOST_CHECK_THROW(w.poll(std::nullopt), shmq::value_error);
    // Nothing was sent or consumed, and both ends still work.
    BOOST_TEST(!r.poll());
    send_str(w, "still fine");
    BOOST_TEST(recv_str(r) == "still fine");
    BOOST_TEST(!r.closed());
    BOOST_TEST(!w.closed());
}

// ------------------------------------------------------------------------------------------------
// C11: closed handles.

BOOST_AUTO_TEST_CASE(closed_duplex_ends_throw_closed_error_everywhere, *utf::timeout(10))
{
    auto [a, b] = Pipe();
    send_str(a, "pending");
    a.close();
    check_closed_everywhere(a);
    b.close();
    check_closed_everywhere(b);
}

BOOST_AUTO_TEST_CASE(closed_check_comes_before_direction, *utf::timeout(10))
{
    // A closed reader asked to send, or a closed writer asked to receive, reports closed_error,
    // not value_error (check_closed_everywhere tries both directions on each).
    auto [r, w] = Pipe(false);
    r.close();
    check_closed_everywhere(r);
    w.close();
    check_closed_everywhere(w);
}

BOOST_AUTO_TEST_CASE(close_is_idempotent, *utf::timeout(10))
{
    auto [r, w] = Pipe(false);
    send_str(w, "a");
    w.close();
    w.close();
    w.close();
    // Closing the writer three times released exactly one hold: the message is still there, then EOF.
    BOOST_TEST(recv_str(r) == "a");
    BOOST_CHECK_THROW(r.recv_bytes(), shmq::eof_error);
    r.close();
    r.close();
    BOOST_TEST(r.closed());
}

BOOST_AUTO_TEST_CASE(default_constructed_connection_is_closed)
{
    Connection c;
    BOOST_TEST(c.closed());
    BOOST_TEST(!c.readable());
    BOOST_TEST(!c.writable());
    check_closed_everywhere(c);
}

BOOST_AUTO_TEST_CASE(move_transfers_the_ends, *utf::timeout(10))
{
    auto [r, w] = Pipe(false);

    Connection w2(std::move(w));
    BOOST_TEST(!w2.closed());
    BOOST_TEST(w2.writable());
    check_closed_everywhere(w);   // the moved-from handle behaves as closed
    send_str(w2, "a");
    BOOST_TEST(recv_str(r) == "a");

    Connection w3;
    w3 = std::move(w2);
    BOOST_TEST(w2.closed());
    send_str(w3, "b");
    BOOST_TEST(recv_str(r) == "b");

    // Move-assigning over a live connection closes the ends it held: here the only writer of p2.
    auto [r2, wb] = Pipe(false);
    send_str(wb, "last of p2");
    wb = std::move(w3);
    BOOST_TEST(recv_str(r2) == "last of p2");
    BOOST_CHECK_THROW(r2.recv_bytes(), shmq::eof_error);
    send_str(wb, "c");
    BOOST_TEST(recv_str(r) == "c");

    // Self-move-assignment keeps the connection.
    Connection& alias = wb;
    wb = std::move(alias);
    BOOST_TEST(!wb.closed());
    send_str(wb, "d");
    BOOST_TEST(recv_str(r) == "d");

    // The destructor closes: the last writer going away is EOF.
    { Connection gone = std::move(wb); }
    BOOST_TEST(r.poll());   // EOF makes poll true
    BOOST_CHECK_THROW(r.recv_bytes(), shmq::eof_error);
}

// ------------------------------------------------------------------------------------------------
// C3: framing.

BOOST_AUTO_TEST_CASE(messages_are_never_merged_or_split, *utf::timeout(10))
{
    auto [a, b] = Pipe();
    const std::vector<std::string> msgs{"a", "b", "cd", "", "", "efg", "", "h"};
    for (const auto& m : msgs) send_str(a, m);
    for (const auto& m : msgs) {
        BOOST_TEST(b.poll());
        BOOST_TEST(recv_str(b) == m);
    }
    BOOST_TEST(!b.poll());
}

BOOST_AUTO_TEST_CASE(empty_messages_are_messages, *utf::timeout(10))
{
    auto [r, w] = Pipe(false);
    w.send_bytes({});
    BOOST_TEST(r.poll());
    BOOST_TEST(r.poll());
    BOOST_TEST(r.recv_bytes().empty());
    BOOST_TEST(!r.poll());
    w.send_bytes({});
    std::array<std::byte, 4> buf{};
    BOOST_TEST(r.recv_bytes_into(buf) == 0u);
    w.send(std::string());
    BOOST_TEST(r.recv<std::string>().empty());
    BOOST_TEST(!r.poll());
}

BOOST_AUTO_TEST_CASE(messages_arrive_in_fifo_order, *utf::timeout(10))
{
    auto [r, w] = Pipe(false);
    for (std::uint32_t i = 0; i < 500; ++i) w.send_bytes(make_pattern(i * 7, i));
    std::size_t bad = 0;
    for (std::uint32_t i = 0; i < 500; ++i) {
        const auto m = r.recv_bytes();
        if (m.size() != i * 7 || !matches_pattern(m, i)) ++bad;
    }
    BOOST_TEST(bad == 0u);
    BOOST_TEST(!r.poll());
}

// ------------------------------------------------------------------------------------------------
// C4, §2.1: typed send/recv.

BOOST_AUTO_TEST_CASE(typed_send_and_recv, *utf::timeout(20))
{
    auto [a, b] = Pipe(true, {.capacity = 8 * MiB});
    a.send(42);
    BOOST_TEST(b.recv<int>() == 42);
    a.send(-1.5);
    BOOST_TEST(b.recv<double>() == -1.5);

    const pod p{-7, 2.25, {'h', 'e', 'l', 'l', 'o'}, 200};
    b.send(p);
    const pod q = a.recv<pod>();
    BOOST_TEST(q.a == p.a);
    BOOST_TEST(q.b == p.b);
    BOOST_TEST(std::string(q.c, 5) == "hello");
    BOOST_TEST(q.d == 200);

    a.send(std::string("hello"));
    BOOST_TEST(b.recv<std::string>() == "hello");
    a.send(std::string());
    BOOST_TEST(b.recv<std::string>().empty());
    std::string big(3 * MiB, '\0');   // larger than half the ring: streamed
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(pattern_byte(9, i));
    a.send(big);
    BOOST_TEST((b.recv<std::string>() == big));
    BOOST_TEST(!a.poll());
    BOOST_TEST(!b.poll());
}

BOOST_AUTO_TEST_CASE(send_is_exactly_the_codec_bytes, *utf::timeout(10))
{
    // §2.1: no framing in the payload, so recv_bytes sees the encoding and send_bytes of those
    // bytes decodes on the other side.
    auto [a, b] = Pipe();
    const int v = 0x01020304;
    a.send(v);
    const auto raw = b.recv_bytes();
    BOOST_TEST_REQUIRE(raw.size() == sizeof v);
    BOOST_TEST(std::memcmp(raw.data(), &v, sizeof v) == 0);
    b.send_bytes(raw);
    BOOST_TEST(a.recv<int>() == v);

    a.send(std::string("abc"));
    BOOST_TEST(recv_str(b) == "abc");
    send_str(a, "xyz");
    BOOST_TEST(b.recv<std::string>() == "xyz");
}

BOOST_AUTO_TEST_CASE(failed_decode_consumes_one_message, *utf::timeout(10))
{
    auto [a, b] = Pipe();
    send_str(a, "abc");   // 3 bytes: not an int
    a.send(7);
    BOOST_CHECK_THROW(b.recv<int>(), shmq::codec_error);
    BOOST_TEST(b.recv<int>() == 7);
    BOOST_TEST(!b.poll());
}

BOOST_AUTO_TEST_CASE(failed_encode_sends_nothing, *utf::timeout(10))
{
    auto [a, b] = Pipe();
    BOOST_CHECK_THROW(a.send(refuses_to_save{"payload"}), shmq::codec_error);
    BOOST_TEST(!b.poll());
    a.send(1);
    BOOST_TEST(b.recv<int>() == 1);
}

// ------------------------------------------------------------------------------------------------
// C13: sizes around every threshold, byte for byte, from a forked sender.

BOOST_AUTO_TEST_CASE(sizes_through_a_1mib_ring, *utf::timeout(60))
{
    // The whole/stream threshold of a 1 MiB ring is capacity/2 - 8 = 512 KiB - 8.
    const std::vector<std::size_t> sizes{
        0,           1,           16 * KiB - 1, 16 * KiB,    16 * KiB + 1, 64 * KiB - 1,
        64 * KiB,    64 * KiB + 1, 512 * KiB - 16, 512 * KiB - 9, 512 * KiB - 8, 512 * KiB - 7,
        512 * KiB,   512 * KiB + 8, MiB - 1,     MiB,         MiB + 1,     64 * MiB};
    auto [r, w] = Pipe(false, {.capacity = MiB});
    scoped_child child([&] {
        watchdog wd(55);
        r.close();
        for (int pass = 0; pass < 2; ++pass)
            for (std::size_t i = 0; i < sizes.size(); ++i)
                w.send_bytes(make_pattern(sizes[i], i + 100 * pass));
        return 0;
    });
    w.close();

    // Pass 1: recv_bytes.
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        const auto got = r.recv_bytes();
        BOOST_TEST_CONTEXT("message " << i << " of " << sizes[i] << " bytes") {
            BOOST_TEST_REQUIRE(got.size() == sizes[i]);
            BOOST_TEST(pattern_mismatch(got, i) == SIZE_MAX);
        }
    }
    // Pass 2: recv_bytes_into at offset 16 of one big buffer. Sizes grow, so the bytes after each
    // message were never written: they must still be the fill.
    constexpr std::byte fill{0xEE};
    std::vector<std::byte> buf(64 * MiB + 64, fill);
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        BOOST_TEST_CONTEXT("message " << i << " of " << sizes[i] << " bytes, into a buffer") {
            const std::size_t n = r.recv_bytes_into(buf, 16);
            BOOST_TEST_REQUIRE(n == sizes[i]);
            BOOST_TEST(pattern_mismatch(std::span(buf).subspan(16, n), i + 100) == SIZE_MAX);
            bool untouched = true;
            for (std::size_t k = 0; k < 16; ++k) untouched &= buf[k] == fill;
            for (std::size_t k = 16 + n; k < std::min(buf.size(), 16 + n + 48); ++k)
                untouched &= buf[k] == fill;
            BOOST_TEST(untouched);
        }
    }
    BOOST_CHECK_THROW(r.recv_bytes(), shmq::eof_error);
    BOOST_TEST(child.wait(20s) == 0);
}

BOOST_AUTO_TEST_CASE(small_ring_random_sizes_wrap_around, *utf::timeout(60))
{
    const auto seed = test_seed();
    BOOST_TEST_MESSAGE("small_ring_random_sizes_wrap_around: SHMQ_TEST_SEED=" << seed);
    constexpr std::size_t count = 1500;
    std::mt19937_64 rng(seed);
    std::vector<std::size_t> sizes(count);
    // A third around the 4 KiB ring's whole/stream threshold (2040), the rest up to 20000.
    for (auto& s : sizes) s = rng() % 3 == 0 ? rng() % 2100 : rng() % 20001;

    auto [r, w] = Pipe(false, {.capacity = 4096});
    scoped_child child([&] {
        watchdog wd(55);
        r.close();
        for (std::size_t i = 0; i < count; ++i) w.send_bytes(make_pattern(sizes[i], i));
        return 0;
    });
    w.close();
    std::vector<std::byte> buf(20001);
    for (std::size_t i = 0; i < count; ++i) {
        std::span<const std::byte> got;
        std::vector<std::byte> v;
        if (i % 2) {
            v = r.recv_bytes();
            got = v;
        } else {
            got = std::span(buf).first(r.recv_bytes_into(buf));
        }
        if (got.size() != sizes[i] || !matches_pattern(got, i)) {
            BOOST_TEST_REQUIRE(got.size() == sizes[i], "message " << i);
            BOOST_TEST_REQUIRE(pattern_mismatch(got, i) == SIZE_MAX, "message " << i);
        }
    }
    BOOST_CHECK_THROW(r.recv_bytes(), shmq::eof_error);
    BOOST_TEST(child.wait() == 0);
}

// ------------------------------------------------------------------------------------------------
// C5: send_bytes(buf, offset, size) (CPython test_sendbytes, unsigned).

BOOST_AUTO_TEST_CASE(send_bytes_offset_and_size, *utf::timeout(10))
{
    const std::string_view msg = "abcdefghijklmnopqrstuvwxyz";
    const auto m = to_bytes(msg);
    BOOST_TEST_REQUIRE(m.size() == 26u);
    auto [a, b] = Pipe();

    a.send_bytes(m);
    BOOST_TEST(recv_str(b) == msg);
    a.send_bytes(m, 5);
    BOOST_TEST(recv_str(b) == msg.substr(5));
    a.send_bytes(m, 7, 8);
    BOOST_TEST(recv_str(b) == msg.substr(7, 8));
    a.send_bytes(m, 26);
    BOOST_TEST(recv_str(b) == "");
    a.send_bytes(m, 26, 0);
    BOOST_TEST(recv_str(b) == "");
    a.send_bytes(m, 0, 26);
    BOOST_TEST(recv_str(b) == msg);
    a.send_bytes(m, 25, 1);
    BOOST_TEST(recv_str(b) == "z");
    a.send_bytes(m, 3, std::nullopt);
    BOOST_TEST(recv_str(b) == msg.substr(3));
    a.send_bytes({}, 0);
    BOOST_TEST(recv_str(b) == "");
    BOOST_TEST(!b.poll());

    BOOST_CHECK_THROW(a.send_bytes(m, 27), shmq::value_error);
    BOOST_CHECK_THROW(a.send_bytes(m, 22, 5), shmq::value_error);
    BOOST_CHECK_THROW(a.send_bytes(m, 26, 1), shmq::value_error);
    BOOST_CHECK_THROW(a.send_bytes(m, 0, 27), shmq::value_error);
    BOOST_CHECK_THROW(a.send_bytes(m, 1, SIZE_MAX), shmq::value_error);   // offset + size wraps
    BOOST_CHECK_THROW(a.send_bytes(m, SIZE_MAX), shmq::value_error);
    BOOST_CHECK_THROW(a.send_bytes(m, SIZE_MAX, 2), shmq::value_error);
    BOOST_CHECK_THROW(a.send_bytes({}, 1), shmq::value_error);
    // Nothing was sent by any of them.
    BOOST_TEST(!b.poll());
    BOOST_TEST(!b.poll(20ms));
    // And the connection is still usable.
    a.send_bytes(m, 24);
    BOOST_TEST(recv_str(b) == "yz");
}

// ------------------------------------------------------------------------------------------------
// C6 (a deliberate difference from Python): recv_bytes(maxlength) leaves a longer message unread.

BOOST_AUTO_TEST_CASE(recv_bytes_maxlength, *utf::timeout(10))
{
    auto [a, b] = Pipe();
    send_str(a, "hello");
    BOOST_TEST(to_string(b.recv_bytes(5)) == "hello");   // exact fit
    send_str(a, "hello");
    BOOST_TEST(to_string(b.recv_bytes(6)) == "hello");

    send_str(a, "hello!");
    send_str(a, "after");
    BOOST_CHECK_THROW(b.recv_bytes(5), shmq::message_too_long_error);
    BOOST_CHECK_THROW(b.recv_bytes(0), shmq::message_too_long_error);
    BOOST_TEST(b.poll());                        // still there
    BOOST_TEST(b.readable());                    // and the connection is still usable
    BOOST_TEST(!b.closed());
    BOOST_TEST(recv_str(b) == "hello!");
    BOOST_TEST(to_string(b.recv_bytes(5)) == "after");

    a.send_bytes({});
    BOOST_TEST(b.recv_bytes(0).empty());
    send_str(a, "x");
    BOOST_CHECK_THROW(b.recv_bytes(0), shmq::message_too_long_error);
    std::array<std::byte, 1> one{};
    BOOST_TEST(b.recv_bytes_into(one) == 1u);   // other receive calls still get it
    BOOST_TEST(static_cast<char>(one[0]) == 'x');
    // The error is a shmq::error.
    send_str(a, "yy");
    BOOST_CHECK_THROW(b.recv_bytes(1), shmq::error);
    BOOST_TEST(recv_str(b) == "yy");
    BOOST_TEST(!b.poll());
}

BOOST_AUTO_TEST_CASE(recv_bytes_maxlength_on_a_streamed_message, *utf::timeout(20))
{
    // A message over the 4 KiB ring is streamed: the reader sees its first piece while the writer
    // is still blocked. maxlength must judge the whole length and leave the message intact.
    auto [r, w] = Pipe(false, {.capacity = 4096});
    scoped_child child([&] {
        watchdog wd(15);
        r.close();
        w.send_bytes(make_pattern(10000, 5));
        send_str(w, "next");
        return 0;
    });
    w.close();
    BOOST_TEST_REQUIRE(r.poll(5s));
    BOOST_CHECK_THROW(r.recv_bytes(9999), shmq::message_too_long_error);
    BOOST_CHECK_THROW(r.recv_bytes(4096), shmq::message_too_long_error);
    BOOST_TEST(r.poll());
    const auto got = r.recv_bytes(10000);
    BOOST_TEST(got.size() == 10000u);
    BOOST_TEST(matches_pattern(got, 5));
    BOOST_TEST(recv_str(r) == "next");
    BOOST_CHECK_THROW(r.recv_bytes(), shmq::eof_error);
    BOOST_TEST(child.wait() == 0);
}

// ------------------------------------------------------------------------------------------------
// C7: recv_bytes_into.

BOOST_AUTO_TEST_CASE(recv_bytes_into_offsets_and_tail, *utf::timeout(10))
{
    // CPython test_connection: array('i', range(4)) into array('i', [0]*10), then at offset 3 ints.
    auto [a, b] = Pipe();
    const std::array<std::int32_t, 4> arr{0, 1, 2, 3};
    const auto arr_bytes = std::as_bytes(std::span(arr));
    std::array<std::int32_t, 10> buffer{};
    auto buffer_bytes = std::as_writable_bytes(std::span(buffer));

    a.send_bytes(arr_bytes);
    BOOST_TEST(b.recv_bytes_into(buffer_bytes) == 16u);   // the message length, not offset + length
    BOOST_TEST((buffer == std::array<std::int32_t, 10>{0, 1, 2, 3, 0, 0, 0, 0, 0, 0}));

    buffer.fill(0);
    a.send_bytes(arr_bytes);
    BOOST_TEST(b.recv_bytes_into(buffer_bytes, 3 * sizeof(std::int32_t)) == 16u);
    BOOST_TEST((buffer == std::array<std::int32_t, 10>{0, 0, 0, 0, 1, 2, 3, 0, 0, 0}));

    // Bytes outside [offset, offset + n) are untouched.
    std::vector<std::byte> buf(32, std::byte{0xAB});
    send_str(a, "xyz");
    BOOST_TEST(b.recv_bytes_into(buf, 5) == 3u);
    BOOST_TEST(to_string(std::span(buf).subspan(5, 3)) == "xyz");
    bool untouched = true;
    for (std::size_t i = 0; i < buf.size(); ++i)
        if (i < 5 || i >= 8) untouched &= buf[i] == std::byte{0xAB};
    BOOST_TEST(untouched);

    // Exact fit at the end of the buffer.
    send_str(a, "abc");
    BOOST_TEST(b.recv_bytes_into(buf, 29) == 3u);
    BOOST_TEST(to_string(std::span(buf).subspan(29)) == "abc");

    // offset == size is allowed, and takes an empty message.
    a.send_bytes({});
    BOOST_TEST(b.recv_bytes_into(buf, buf.size()) == 0u);
    a.send_bytes({});
    BOOST_TEST(b.recv_bytes_into(std::span<std::byte>{}) == 0u);
    BOOST_TEST(!b.poll());
}

BOOST_AUTO_TEST_CASE(recv_bytes_into_bad_offset_consumes_nothing, *utf::timeout(10))
{
    auto [a, b] = Pipe();
    std::vector<std::byte> buf(8);
    send_str(a, "kept");
    BOOST_CHECK_THROW(b.recv_bytes_into(buf, 9), shmq::value_error);
    BOOST_CHECK_THROW(b.recv_bytes_into(buf, SIZE_MAX), shmq::value_error);
    BOOST_CHECK_THROW(b.recv_bytes_into(std::span<std::byte>{}, 1), shmq::value_error);
    BOOST_TEST(b.poll());
    BOOST_TEST(b.recv_bytes_into(buf) == 4u);
    BOOST_TEST(to_string(std::span(buf).first(4)) == "kept");
    BOOST_TEST(!b.poll());
    // With nothing waiting, a bad offset is still reported at once rather than waited on.
    BOOST_CHECK_THROW(b.recv_bytes_into(buf, 9), shmq::value_error);
}

BOOST_AUTO_TEST_CASE(recv_bytes_into_too_short_consumes_and_carries_the_message, *utf::timeout(10))
{
    auto [a, b] = Pipe();
    std::string longmsg;
    for (int i = 0; i < 10; ++i) longmsg += "abcdefghij";
    longmsg += "0123456789";   // 110 bytes, as in CPython's test_connection
    std::vector<std::byte> buf(40, std::byte{0x11});
    send_str(a, longmsg);
    send_str(a, "next");
    try {
        b.recv_bytes_into(buf);
        BOOST_ERROR("recv_bytes_into of 110 bytes into 40 did not throw");
    } catch (const shmq::buffer_too_short_error& e) {
        BOOST_TEST(to_string(e.message()) == longmsg);
    }
    BOOST_TEST(recv_str(b) == "next");   // consumed: the next recv gets the next message

    // Too short because of the offset; and offset == size with a non-empty message.
    send_str(a, "123456");
    try {
        b.recv_bytes_into(std::span(buf).first(10), 5);
        BOOST_ERROR("6 bytes at offset 5 of 10 did not throw");
    } catch (const shmq::buffer_too_short_error& e) {
        BOOST_TEST(to_string(e.message()) == "123456");
    }
    send_str(a, "z");
    try {
        b.recv_bytes_into(buf, buf.size());
        BOOST_ERROR("1 byte at offset == size did not throw");
    } catch (const shmq::buffer_too_short_error& e) {
        BOOST_TEST(to_string(e.message()) == "z");
    }
    BOOST_TEST(!b.poll());
    // It is a shmq::error.
    send_str(a, "123456");
    BOOST_CHECK_THROW(b.recv_bytes_into(std::span(buf).first(2)), shmq::error);
    BOOST_TEST(!b.poll());
}

BOOST_AUTO_TEST_CASE(recv_bytes_into_too_short_for_a_streamed_message, *utf::timeout(20))
{
    auto [r, w] = Pipe(false, {.capacity = 4096});
    scoped_child child([&] {
        watchdog wd(15);
        r.close();
        w.send_bytes(make_pattern(50000, 77));
        send_str(w, "next");
        return 0;
    });
    w.close();
    std::vector<std::byte> buf(100);
    try {
        r.recv_bytes_into(buf);
        BOOST_ERROR("50000 bytes into 100 did not throw");
    } catch (const shmq::buffer_too_short_error& e) {
        BOOST_TEST(e.message().size() == 50000u);
        BOOST_TEST(matches_pattern(e.message(), 77));
    }
    BOOST_TEST(recv_str(r) == "next");
    BOOST_CHECK_THROW(r.recv_bytes(), shmq::eof_error);
    BOOST_TEST(child.wait() == 0);
}

// ------------------------------------------------------------------------------------------------
// C12: poll.

BOOST_AUTO_TEST_CASE(poll_timeouts_and_no_consumption, *utf::timeout(10))
{
    auto [a, b] = Pipe();
    stopwatch sw;
    BOOST_TEST(!b.poll());
    BOOST_TEST(!b.poll(0s));
    BOOST_TEST(!b.poll(-1s));
    BOOST_TEST(!b.poll(std::chrono::hours(-5)));
    BOOST_TEST(sw.millis() < 100.0);   // none of them waits

    sw.restart();
    BOOST_TEST(!b.poll(100ms));
    const double waited = sw.millis();
    BOOST_TEST(waited >= 90.0);
    BOOST_TEST(waited < 1000.0);

    send_str(a, "x");
    sw.restart();
    BOOST_TEST(b.poll(100ms));
    BOOST_TEST(sw.millis() < 100.0);   // ready at once, not after the timeout
    for (int i = 0; i < 5; ++i) BOOST_TEST(b.poll());
    BOOST_TEST(b.poll(-1s));
    BOOST_TEST(recv_str(b) == "x");   // polls consumed nothing
    BOOST_TEST(!b.poll());
    BOOST_TEST(!a.poll());            // the other direction saw nothing
}

BOOST_AUTO_TEST_CASE(poll_forever_returns_on_data_and_at_eof, *utf::timeout(20))
{
    auto [r, w] = Pipe(false);
    scoped_child child([&] {
        watchdog wd(15);
        r.close();
        std::this_thread::sleep_for(150ms);
        send_str(w, "late");
        std::this_thread::sleep_for(150ms);
        return 0;   // exiting releases the writer: EOF
    });
    w.close();
    stopwatch sw;
    BOOST_TEST(r.poll(std::nullopt));
    BOOST_TEST(sw.millis() >= 100.0);
    BOOST_TEST(recv_str(r) == "late");
    BOOST_TEST(r.poll(std::nullopt));   // returns at EOF
    BOOST_TEST(child.exited());         // ... and not before the child ended
    BOOST_TEST(r.poll());               // true at EOF, every time
    BOOST_TEST(r.poll(1s));
    BOOST_CHECK_THROW(r.recv_bytes(), shmq::eof_error);
    BOOST_TEST(r.poll());
    BOOST_TEST(child.wait() == 0);
}

BOOST_AUTO_TEST_CASE(poll_is_true_at_the_first_piece_of_a_streamed_message, *utf::timeout(20))
{
    auto [r, w] = Pipe(false, {.capacity = 4096});
    scoped_child child([&] {
        watchdog wd(15);
        r.close();
        w.send_bytes(make_pattern(100000, 3));
        return 0;
    });
    w.close();
    BOOST_TEST_REQUIRE(r.poll(5s));
    // The writer cannot have finished: 100000 bytes do not fit in a 4 KiB ring.
    std::this_thread::sleep_for(50ms);
    BOOST_TEST(!child.exited());
    BOOST_TEST(r.poll());
    const auto got = r.recv_bytes();
    BOOST_TEST(got.size() == 100000u);
    BOOST_TEST(matches_pattern(got, 3));
    BOOST_TEST(child.wait() == 0);
}

BOOST_AUTO_TEST_CASE(poll_in_another_process_does_not_consume, *utf::timeout(20))
{
    // CPython _TestPoll.test_boundaries: a poll on the same read end elsewhere must not take or
    // split a message.
    auto [r, w] = Pipe(false);
    scoped_child child([&] {
        watchdog wd(15);
        w.close();
        return r.poll(5s) ? 0 : 1;
    });
    std::this_thread::sleep_for(20ms);
    send_str(w, "first");
    BOOST_TEST(child.wait() == 0);
    send_str(w, "second");
    BOOST_TEST(recv_str(r) == "first");
    BOOST_TEST(recv_str(r) == "second");
}

BOOST_AUTO_TEST_CASE(blocking_calls_survive_signals, *utf::timeout(20))
{
    // C15: a signal handler running during poll or recv neither ends the wait early nor loses data.
    static std::atomic<int> handled{0};
    struct handler_guard {
        struct sigaction old {};
        handler_guard() {
            struct sigaction sa {};
            sa.sa_handler = [](int) { handled.fetch_add(1); };
            sigemptyset(&sa.sa_mask);
            sa.sa_flags = 0;   // no SA_RESTART: futex waits come back with EINTR
            BOOST_TEST_REQUIRE(::sigaction(SIGUSR1, &sa, &old) == 0);
        }
        ~handler_guard() { ::sigaction(SIGUSR1, &old, nullptr); }
    } guard;

    auto [r, w] = Pipe(false);
    scoped_child child([&] {
        watchdog wd(15);
        r.close();
        std::this_thread::sleep_for(500ms);       // after the parent's poll has timed out
        w.send_bytes(make_pattern(3 * MiB, 1));   // over the ring: streamed while signals arrive
        return 0;
    });
    w.close();
    // The pest thread starts after the fork, so the child inherits no second thread; jthread
    // stops and joins it however this scope ends.
    const pthread_t me = ::pthread_self();
    std::jthread pest([me](std::stop_token stop) {
        while (!stop.stop_requested()) {
            ::pthread_kill(me, SIGUSR1);
            std::this_thread::sleep_for(10ms);
        }
    });
    stopwatch sw;
    const bool polled = r.poll(300ms);
    const double waited = sw.millis();
    const auto got = r.recv_bytes();
    pest.request_stop();
    pest.join();

    BOOST_TEST(!polled);
    BOOST_TEST(waited >= 290.0);
    BOOST_TEST(handled.load() > 5);
    BOOST_TEST(got.size() == 3 * MiB);
    BOOST_TEST(matches_pattern(got, 1));
    BOOST_TEST(child.wait() == 0);
}

// ------------------------------------------------------------------------------------------------
// C8: end of stream.

BOOST_AUTO_TEST_CASE(eof_after_the_messages_sent_before_close, *utf::timeout(10))
{
    for (bool duplex : {false, true}) {
        BOOST_TEST_CONTEXT("duplex " << duplex) {
            auto [r, w] = Pipe(duplex);
            w.send(1);
            w.send(2);
            w.close();
            BOOST_TEST(r.poll());
            BOOST_TEST(r.recv<int>() == 1);
            BOOST_TEST(r.recv<int>() == 2);
            std::vector<std::byte> buf(8);
            for (int i = 0; i < 3; ++i) {
                BOOST_TEST(r.poll());
                BOOST_CHECK_THROW(r.recv<int>(), shmq::eof_error);
                BOOST_CHECK_THROW(r.recv_bytes(), shmq::eof_error);
                BOOST_CHECK_THROW(r.recv_bytes(4), shmq::eof_error);
                BOOST_CHECK_THROW(r.recv_bytes_into(buf), shmq::eof_error);
            }
            BOOST_CHECK_THROW(r.recv_bytes_into(buf, 9), shmq::value_error);   // arguments still first
        }
    }
}

BOOST_AUTO_TEST_CASE(eof_waits_for_a_forked_copy_of_the_writer, *utf::timeout(20))
{
    auto [r, w] = Pipe(false);
    scoped_child child([&] {
        r.close();
        std::this_thread::sleep_for(300ms);
        return 0;   // still holds w, released by its exit
    });
    w.close();
    BOOST_TEST(!r.poll(100ms));   // the child's copy keeps the stream open
    stopwatch sw;
    BOOST_CHECK_THROW(r.recv_bytes(), shmq::eof_error);
    BOOST_TEST(child.exited());   // EOF came only once the child had ended
    BOOST_TEST(sw.millis() >= 150.0);
    BOOST_TEST(child.wait() == 0);
}

BOOST_AUTO_TEST_CASE(eof_when_the_child_closes_its_copy, *utf::timeout(20))
{
    auto [r, w] = Pipe(false);
    scoped_child child([&] {
        watchdog wd(15);
        r.close();
        send_str(w, "bye");
        w.close();
        std::this_thread::sleep_for(3s);   // alive, but holds no end
        return 0;
    });
    w.close();
    stopwatch sw;
    BOOST_TEST(recv_str(r) == "bye");
    BOOST_CHECK_THROW(r.recv_bytes(), shmq::eof_error);
    BOOST_TEST(sw.seconds() < 2.0);
    BOOST_TEST(!child.exited());
    child.kill();
    BOOST_TEST(child.wait() == -SIGKILL);
}

namespace {
/// Generation k forks generation k-1 and exits at once; generation 0 sends after a pause.
int generation(int k, Connection& w) {
    if (k == 0) {
        watchdog wd(15);
        std::this_thread::sleep_for(200ms);
        send_str(w, "from the last generation");
        return 0;
    }
    fork_child([k, &w] { return generation(k - 1, w); });
    return 0;   // exit without waiting: the descendant is orphaned but keeps the writer
}
} // namespace

BOOST_AUTO_TEST_CASE(eof_waits_for_grandchildren, *utf::timeout(20))
{
    // CPython TestForkAwareThreadLock: a writer inherited through 5 generations still delivers,
    // and EOF waits for the last holder.
    for (int depth : {2, 5}) {
        BOOST_TEST_CONTEXT("depth " << depth) {
            auto [r, w] = Pipe(false);
            scoped_child child([&] {
                r.close();
                return generation(depth - 1, w);
            });
            w.close();
            BOOST_TEST(child.wait() == 0);   // the child is gone: only its descendants hold w
            BOOST_TEST(!r.poll(50ms));
            BOOST_TEST(recv_str(r) == "from the last generation");
            BOOST_CHECK_THROW(r.recv_bytes(), shmq::eof_error);
        }
    }
}

BOOST_AUTO_TEST_CASE(closing_a_duplex_end_is_eof_and_broken_pipe_for_its_peer, *utf::timeout(10))
{
    auto [a, b] = Pipe();
    send_str(a, "before close");
    a.close();
    BOOST_TEST(recv_str(b) == "before close");
    BOOST_CHECK_THROW(b.recv_bytes(), shmq::eof_error);
    BOOST_CHECK_THROW(send_str(b, "x"), shmq::broken_pipe_error);
    BOOST_CHECK_THROW(b.send(1), shmq::broken_pipe_error);
}

// ------------------------------------------------------------------------------------------------
// C10: broken pipe.

BOOST_AUTO_TEST_CASE(send_after_the_reader_closed_is_broken_pipe_without_sigpipe, *utf::timeout(20))
{
    // In a child with SIGPIPE at its default action: a SIGPIPE would kill it (exit -13).
    scoped_child child([] {
        watchdog wd(15);
        auto [r, w] = Pipe(false);
        r.close();
        int broken = 0;
        for (int i = 0; i < 3; ++i) {
            try { w.send_bytes(to_bytes("data")); } catch (const shmq::broken_pipe_error&) { ++broken; }
            try { w.send_bytes({}); } catch (const shmq::broken_pipe_error&) { ++broken; }
            try { w.send(42); } catch (const shmq::broken_pipe_error&) { ++broken; }
            try { w.send(std::string(2 * MiB, 'x')); } catch (const shmq::broken_pipe_error&) { ++broken; }
        }
        SHMQ_CHILD_CHECK(broken == 12, 1);
        auto [a, b] = Pipe();
        b.close();
        try { a.send_bytes({}); return 2; } catch (const shmq::broken_pipe_error&) {}
        return 0;
    });
    BOOST_TEST(child.wait() == 0);
}

BOOST_AUTO_TEST_CASE(broken_pipe_only_once_every_reader_copy_is_closed, *utf::timeout(20))
{
    auto [r, w] = Pipe(false);
    scoped_child child([&] {
        watchdog wd(15);
        w.close();
        SHMQ_CHILD_CHECK(recv_str(r) == "to the child", 1);
        r.close();
        std::this_thread::sleep_for(3s);   // alive, holding no end
        return 0;
    });
    r.close();
    send_str(w, "to the child");   // the child's copy still reads
    stopwatch sw;
    bool broken = false;
    while (!broken && sw.seconds() < 5) {
        try {
            send_str(w, "x");
            std::this_thread::sleep_for(1ms);
        } catch (const shmq::broken_pipe_error&) {
            broken = true;
        }
    }
    BOOST_TEST(broken);
    BOOST_TEST(!child.exited());
    child.kill();
    BOOST_TEST(child.wait() == -SIGKILL);
}

BOOST_AUTO_TEST_CASE(send_blocked_on_a_full_ring_gets_broken_pipe_when_the_reader_closes,
                     *utf::timeout(30))
{
    // Streamed message (over the ring) and whole messages that fill it.
    for (bool streamed : {true, false}) {
        BOOST_TEST_CONTEXT("streamed " << streamed) {
            auto [r, w] = Pipe(false, {.capacity = 4096});
            scoped_child child([&] {
                watchdog wd(15);
                w.close();
                std::this_thread::sleep_for(300ms);
                r.close();                           // never read a thing
                std::this_thread::sleep_for(3s);     // stay alive: closing alone must do it
                return 0;
            });
            r.close();
            stopwatch sw;
            try {
                if (streamed) {
                    w.send_bytes(make_pattern(64 * KiB, 1));
                } else {
                    for (int i = 0; i < 1000; ++i) w.send_bytes(make_pattern(1000, i));
                }
                BOOST_ERROR("send did not block and fail");
            } catch (const shmq::broken_pipe_error&) {
                BOOST_TEST(sw.millis() >= 200.0);    // not before the reader closed
                BOOST_TEST(sw.millis() < 1500.0);
            }
            BOOST_TEST(!child.exited());
            child.kill();
            BOOST_TEST(child.wait() == -SIGKILL);
        }
    }
}

BOOST_AUTO_TEST_CASE(a_send_into_a_full_ring_goes_once_its_record_fits, *utf::timeout(30))
{
    // A writer that finds the ring full of small records first waits for room for a batch of
    // them (channel.hpp, space_batch). A reader that takes one record and then stops must still
    // let exactly one more record in, promptly: "send blocks only while the ring is full".
    auto [r, w] = Pipe(false, {.capacity = 4096});
    constexpr int total = 1000;
    std::atomic<int> sent{0};
    std::jthread writer([&, w = std::move(w)]() mutable {
        try {
            for (int i = 0; i < total; ++i) {
                w.send_bytes(make_pattern(8, i));
                sent.store(i + 1);
            }
        } catch (const shmq::broken_pipe_error&) {
            // The test failed and closed the reader (below) so that this thread ends.
        }
    });
    struct closer {
        Connection& c;
        ~closer() { c.close(); }
    } close_reader_first{r};
    // Full: the count stops growing.
    auto settle = [&] {
        int last = -1;
        stopwatch sw;
        while (sent.load() != last && sw.millis() < 5000.0) {
            last = sent.load();
            std::this_thread::sleep_for(100ms);
        }
        return last;
    };
    const int full = settle();
    BOOST_TEST_REQUIRE(full > 0);
    BOOST_TEST_REQUIRE(full < total);
    for (int taken = 1; taken <= 3; ++taken) {
        BOOST_TEST((r.recv_bytes() == make_pattern(8, taken - 1)));
        // One record's room: one more send completes, within far less than a sleep slice.
        stopwatch sw;
        while (sent.load() < full + taken && sw.millis() < 1000.0) std::this_thread::yield();
        BOOST_TEST(sent.load() == full + taken);
        BOOST_TEST(sw.millis() < 500.0);
        std::this_thread::sleep_for(50ms);
        BOOST_TEST(sent.load() == full + taken);   // and no more: the ring is full again
    }
    // Everything arrives, in order.
    for (int i = 3; i < total; ++i) {
        BOOST_TEST_REQUIRE((r.recv_bytes() == make_pattern(8, i)));
    }
    writer.join();
    BOOST_TEST(sent.load() == total);
}

// ------------------------------------------------------------------------------------------------
// C18 and fork inheritance: both directions at once, children using inherited connections.

BOOST_AUTO_TEST_CASE(duplex_echo_through_a_child, *utf::timeout(30))
{
    auto [parent_end, child_end] = Pipe(true);
    scoped_child child([&] {
        watchdog wd(25);
        parent_end.close();
        for (;;) {
            std::vector<std::byte> m;
            try {
                m = child_end.recv_bytes();
            } catch (const shmq::eof_error&) {
                return 0;
            }
            child_end.send_bytes(m);
        }
    });
    child_end.close();   // CPython test_spawn_close: close the child's end right after the fork
    const std::vector<std::size_t> sizes{0, 1, 100, 5000, 600 * KiB, 3 * MiB, 7};
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        parent_end.send_bytes(make_pattern(sizes[i], i));
        const auto back = parent_end.recv_bytes();
        BOOST_TEST(back.size() == sizes[i]);
        BOOST_TEST(matches_pattern(back, i));
    }
    parent_end.close();   // the child's recv sees EOF and it exits 0
    BOOST_TEST(child.wait() == 0);
}

BOOST_AUTO_TEST_CASE(parent_and_child_send_on_the_same_end, *utf::timeout(20))
{
    auto [r, w] = Pipe(false);
    scoped_child child([&] {
        watchdog wd(15);
        r.close();
        for (int i = 0; i < 200; ++i) send_str(w, "c" + std::to_string(i));
        return 0;
    });
    for (int i = 0; i < 200; ++i) send_str(w, "p" + std::to_string(i));
    w.close();
    int next_c = 0, next_p = 0, bad = 0;
    for (int i = 0; i < 400; ++i) {
        const std::string m = recv_str(r);
        if (m == "c" + std::to_string(next_c)) ++next_c;
        else if (m == "p" + std::to_string(next_p)) ++next_p;
        else ++bad;
    }
    BOOST_TEST(bad == 0);
    BOOST_TEST(next_c == 200);
    BOOST_TEST(next_p == 200);
    BOOST_CHECK_THROW(r.recv_bytes(), shmq::eof_error);
    BOOST_TEST(child.wait() == 0);
}

// issue 8: a string literal or a C string is sent as a std::string (the characters before the
// NUL), so the peer receives it as one; a null C string is a codec_error and sends nothing.
BOOST_AUTO_TEST_CASE(literals_and_c_strings_are_sent_as_strings, *utf::timeout(10))
{
    auto [a, b] = Pipe();
    a.send("literal");
    const char* c_string = "c string";
    a.send(c_string);
    char buffer[8] = {'f', 'u', 'l', 'l', 'f', 'u', 'l', 'l'};   // no NUL: the size bounds it
    a.send(buffer);
    BOOST_TEST(b.recv<std::string>() == "literal");
    BOOST_TEST(b.recv<std::string>() == "c string");
    BOOST_TEST(b.recv<std::string>() == "fullfull");
    const char* null_string = nullptr;
    BOOST_CHECK_THROW(a.send(null_string), shmq::codec_error);
    BOOST_TEST(!b.poll());
}
