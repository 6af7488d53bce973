// SPDX-License-Identifier: BSL-1.0
// Ring positions across the wrap of their packed fields (issue 7, A.1), parked streams included.
//
// A ring position packs a byte count (low 36 bits) and a message count (high 28 bits); both wrap.
// Each handle keeps a cached copy of the other side's position, and leases rotate between handles,
// so a copy can be a whole wrap (2^36 bytes, 2^28 messages) stale and look current. These tests
//  * reproduce the scenarios by moving a named segment's head and tail forward by exactly
//    one wrap (what 64 GiB of other traffic would have left behind, ring kept consistent): a
//    reader's stale cache must not return an old message twice, and a writer's stale cache must
//    not let a bounded queue exceed maxsize;
//  * start rings just below each wrap boundary (test_hook::start_position) and run a few thousand
//    messages of mixed sizes, streamed ones included, through a Pipe and a bounded Queue, checking
//    content, FIFO order and maxsize right at the message-count wrap.
#define BOOST_TEST_MODULE wrap
#include <boost/test/unit_test.hpp>

#include <shmq/shmq.hpp>

#include "ring.hpp"
#include "segment.hpp"
#include "test_fixtures.hpp"
#include "test_hook.hpp"

#include <atomic>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using namespace shmq::test;
namespace sd = shmq::detail;

namespace {

constexpr std::uint64_t byte_wrap = std::uint64_t{1} << sd::position_byte_bits;   // 2^36
constexpr std::uint64_t msg_wrap = std::uint64_t{1} << (64 - sd::position_byte_bits);   // 2^28

constexpr std::uint64_t pack(std::uint64_t msgs, std::uint64_t bytes) {
    return ((msgs & sd::position_msg_mask) << sd::position_byte_bits) | (bytes & sd::position_byte_mask);
}

shmq::options small_ring(std::size_t cap) {
    shmq::options o;
    o.capacity = cap;
    return o;
}

/// Sets the start position of rings created in this scope (and in children forked meanwhile).
class start_at {
public:
    explicit start_at(std::uint64_t packed) noexcept { sd::test_hook::start_position(packed); }
    ~start_at() { sd::test_hook::start_position(0); }
    start_at(const start_at&) = delete;
    start_at& operator=(const start_at&) = delete;
};

std::string payload(std::uint64_t seed, std::size_t n) {
    auto v = make_pattern(n, seed);
    return to_string(v);
}

bool payload_ok(const std::string& s, std::uint64_t seed, std::size_t n) {
    return s.size() == n &&
           matches_pattern(std::span<const std::byte>(reinterpret_cast<const std::byte*>(s.data()), s.size()), seed);
}

/// Message i's size: mostly small, some near the whole-record limit, every 37th streamed
/// (larger than the ring).
std::size_t size_of(std::uint64_t i, std::size_t cap) {
    std::uint64_t x = i * 0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    if (i % 37 == 5) return cap * 2 + (x % 1000);          // streamed, > ring
    if (i % 11 == 3) return cap / 2 - 16 - (x % 64);      // near the whole limit
    return x % 300;
}

} // namespace

// A.1, the scenario. Reader r1 gets one message while its cached tail already saw two;
// r2 then takes the lease, and "64 GiB" of traffic pass (head and tail moved to the byte position
// r1 last saw as head, plus 2^36). The queue is empty: r1's next get must time out, not return an
// old message, and the writer's next message must arrive intact.
BOOST_AUTO_TEST_CASE(stale_reader_cache_after_byte_wrap)
{
    const auto name = unique_name("wrapr");
    shm_remover cleanup(name);
    auto w = shmq::Queue<std::string>::create(name, 0, small_ring(64 * 1024));
    auto r1 = shmq::Queue<std::string>::open(name);
    auto r2 = shmq::Queue<std::string>::open(name);
    const std::string m1 = "first:" + payload(1, 100), m2 = "second:" + payload(2, 200);
    w.put(m1);
    w.put(m2);
    BOOST_REQUIRE(r1.get(true, 2s) == m1);   // r1's cached tail is past m2 now

    auto seg = sd::segment::inspect(name, sd::inspect_mode{.read_only = false, .wait = true});   // writes positions
    auto& st = seg->channel(0);
    const std::uint64_t h1 = st.head.load();   // where m2 starts
    BOOST_REQUIRE(r2.get(true, 2s) == m2);
    const std::uint64_t t = st.tail.load();
    BOOST_REQUIRE_EQUAL(st.head.load(), t);
    // 2^36 - footprint(m2) bytes and 1000 messages later the ring is empty again, at h1 + 2^36.
    const std::uint64_t pos = pack(sd::ring::msgs_of(t) + 1000, sd::ring::bytes_of(h1) + byte_wrap);
    st.head.store(pos);
    st.tail.store(pos);

    try {
        std::string got = r1.get(true, 300ms);
        BOOST_ERROR("get on an empty queue returned an old message again (" << got.size()
                    << " bytes, " << (got == m2 ? "m2" : "other") << ")");
    } catch (const shmq::empty_error&) {
    } catch (const shmq::error& e) {
        BOOST_ERROR("get on an empty queue threw " << e.what());
    }
    const std::string m3 = "third:" + payload(3, 300);
    BOOST_CHECK_NO_THROW(w.put(m3));
    for (auto* r : {&r1, &r2}) {
        try {
            std::string got = r->get(true, 1s);
            BOOST_CHECK_MESSAGE(got == m3, "the writer's next message did not arrive intact ("
                                               << got.size() << " bytes)");
            break;
        } catch (const shmq::error& e) {
            BOOST_ERROR("the writer's next message was lost: " << e.what());
        }
    }
    try {
        r2.get(true, 100ms);
        BOOST_ERROR("a message appeared twice");
    } catch (const shmq::empty_error&) {
    } catch (const shmq::error& e) {
        BOOST_ERROR("the queue is broken afterwards: " << e.what());
    }
    BOOST_CHECK_EQUAL(r1.qsize(), 0u);
}

// A.1, the message count. Writer w1's cached head is from before a wrap of the message count
// (2^28 messages and 2^36 bytes of other traffic): it must still see the queue full at maxsize.
BOOST_AUTO_TEST_CASE(stale_writer_cache_after_message_wrap)
{
    const auto name = unique_name("wrapw");
    shm_remover cleanup(name);
    auto w1 = shmq::Queue<std::string>::create(name, 3, small_ring(64 * 1024));
    auto w2 = shmq::Queue<std::string>::open(name);
    auto r = shmq::Queue<std::string>::open(name);
    w1.put("a");
    BOOST_REQUIRE(r.get(true, 2s) == "a");

    auto seg = sd::segment::inspect(name, sd::inspect_mode{.read_only = false, .wait = true});   // writes positions
    auto& st = seg->channel(0);
    const std::uint64_t p = st.tail.load();
    BOOST_REQUIRE_EQUAL(st.head.load(), p);
    // 2^36 bytes and 2^28 - 2 messages of other traffic: empty again at the same ring offset.
    const std::uint64_t pos = pack(sd::ring::msgs_of(p) + msg_wrap - 2, sd::ring::bytes_of(p) + byte_wrap);
    st.head.store(pos);
    st.tail.store(pos);

    w2.put("b", true, 1s);
    w2.put("c", true, 1s);
    w2.put("d", true, 1s);
    BOOST_CHECK_THROW(w2.put_nowait("x"), shmq::full_error);
    BOOST_CHECK_EQUAL(r.qsize(), 3u);
    BOOST_CHECK_THROW(w1.put_nowait("e"), shmq::full_error);   // stale cache: "2 items"
    BOOST_CHECK_LE(r.qsize(), 3u);
    std::vector<std::string> got;
    try {
        while (got.size() < 5) got.push_back(r.get(true, 200ms));
    } catch (const shmq::empty_error&) {
    }
    BOOST_CHECK_MESSAGE((got == std::vector<std::string>{"b", "c", "d"}),
                        "expected b c d, got " << got.size() << " items");
}

namespace {

struct boundary {
    const char* what;
    std::uint64_t packed;
};

// Starts just below each wrap: bytes (a few ring turns before 2^36), messages, and both at once.
const boundary boundaries[] = {
    {"bytes", pack(12345, byte_wrap - 100'000)},
    {"messages", pack(msg_wrap - 700, 4096 * 3 + 8)},
    {"both", pack(msg_wrap - 300, byte_wrap - 50'000)},
    {"bytes-at-edge", pack(7, byte_wrap - 8)},
    {"messages-at-edge", pack(msg_wrap - 1, 0)},
};

constexpr int traffic_messages = 3000;

/// A Queue whose ring starts at `packed` (start_at covers only the ring's creation).
shmq::Queue<std::string> queue_at(std::uint64_t packed, std::size_t maxsize, std::size_t cap) {
    start_at guard(packed);
    return shmq::Queue<std::string>(maxsize, small_ring(cap));
}

/// The reading side of the Queue tests below: gets `items` items, each within 10 s, and checks
/// that item i is payload(i, size(i)); after each, `then(i)` may check more (false: it failed).
/// Stops after 5 bad items.
template <class Size, class Then>
void get_in_order(shmq::Queue<std::string>& q, int items, Size size, Then then) {
    int bad = 0;
    for (int i = 0; i < items && bad < 5; ++i) {
        std::string m;
        try {
            m = q.get(true, 10s);
        } catch (const shmq::error& e) {
            BOOST_ERROR("item " << i << ": " << e.what());
            break;
        }
        if (!payload_ok(m, i, size(i))) {
            BOOST_ERROR("item " << i << ": " << m.size() << " bytes, expected " << size(i));
            ++bad;
        }
        if (!then(i)) ++bad;
    }
}

} // namespace

// A.1: a Pipe started below each wrap boundary moves a few thousand messages of mixed sizes,
// streamed ones included, intact and in order.
BOOST_AUTO_TEST_CASE(pipe_traffic_across_each_wrap, *boost::unit_test::timeout(120))
{
    constexpr std::size_t cap = 16 * 1024;
    for (const auto& b : boundaries) {
        BOOST_TEST_CONTEXT("start below the " << b.what << " wrap") {
            std::optional<std::pair<shmq::Connection, shmq::Connection>> ends;
            {
                start_at guard(b.packed);
                ends.emplace(shmq::Pipe(false, small_ring(cap)));
            }
            auto& [rx, tx] = *ends;
            scoped_child writer([&] {
                rx.close();
                for (int i = 0; i < traffic_messages; ++i) tx.send_bytes(make_pattern(size_of(i, cap), i));
                return 0;
            });
            tx.close();
            int bad = 0;
            for (int i = 0; i < traffic_messages && bad < 5; ++i) {
                if (!rx.poll(10s)) {
                    BOOST_ERROR("message " << i << " did not arrive");
                    break;
                }
                auto m = rx.recv_bytes();
                if (m.size() != size_of(i, cap) || !matches_pattern(m, i)) {
                    BOOST_ERROR("message " << i << ": " << m.size() << " bytes, expected "
                                           << size_of(i, cap) << (m.size() == size_of(i, cap) ? ", content differs" : ""));
                    ++bad;
                }
            }
            BOOST_CHECK_EQUAL(writer.wait(20s), 0);
            BOOST_CHECK_THROW(rx.recv_bytes(), shmq::eof_error);
        }
    }
}

// A.1: a bounded Queue (maxsize 3) started below each wrap boundary: maxsize holds right at the
// message-count wrap, and a few thousand mixed messages pass intact and in order.
BOOST_AUTO_TEST_CASE(bounded_queue_across_each_wrap, *boost::unit_test::timeout(120))
{
    constexpr std::size_t cap = 16 * 1024;
    for (const auto& b : boundaries) {
        BOOST_TEST_CONTEXT("start below the " << b.what << " wrap") {
            auto q = queue_at(b.packed, 3, cap);
            // Fill across the wrap, one at a time: the 4th must be refused at every step.
            for (int round = 0; round < 4; ++round) {
                for (int k = 0; k < 3; ++k) BOOST_CHECK_NO_THROW(q.put_nowait("item" + std::to_string(k)));
                BOOST_CHECK_THROW(q.put_nowait("fourth"), shmq::full_error);
                BOOST_CHECK(q.full());
                BOOST_CHECK_EQUAL(q.qsize(), 3u);
                for (int k = 0; k < 3; ++k) BOOST_CHECK_EQUAL(q.get(true, 1s), "item" + std::to_string(k));
                BOOST_CHECK(q.empty());
            }
            scoped_child producer([&] {
                for (int i = 0; i < traffic_messages; ++i) q.put(payload(i, size_of(i, cap)), true, 10s);
                q.close();
                q.join_thread();
                return 0;
            });
            get_in_order(q, traffic_messages, [&](int i) { return size_of(i, cap); }, [&](int) {
                if (q.qsize() <= 3) return true;
                BOOST_ERROR("qsize " << q.qsize() << " above maxsize 3");
                return false;
            });
            BOOST_CHECK_EQUAL(producer.wait(20s), 0);
            BOOST_CHECK(q.empty());
        }
    }
}

// The reader that waits in a stream (lib/channel.hpp, catch_up_wait): bursts of 1 to 40 whole
// records with short gaps between them turn the reader's stream guess on and off again and
// again, on a ring started below each wrap, and some near-half-ring records sit among the small
// ones. Every item must arrive intact and in order, each get bounded by its own timeout.
BOOST_AUTO_TEST_CASE(streaming_reader_across_each_wrap, *boost::unit_test::timeout(120))
{
    constexpr std::size_t cap = 16 * 1024;
    constexpr int items = 4000;
    auto size = [](int i) -> std::size_t { return i % 97 == 13 ? cap / 2 - 64 : (i * 37) % 120; };
    for (const auto& b : boundaries) {
        BOOST_TEST_CONTEXT("start below the " << b.what << " wrap") {
            auto q = queue_at(b.packed, 1000, cap);
            scoped_child producer([&] {
                for (int i = 0, burst = 0; i < items; ++i) {
                    q.put(payload(i, size(i)), true, 10s);
                    if (++burst == 1 + i % 40) {   // a gap: the reader runs dry and waits
                        burst = 0;
                        std::this_thread::sleep_for(std::chrono::microseconds(20 + i % 7 * 15));
                    }
                }
                q.close();
                q.join_thread();
                return 0;
            });
            get_in_order(q, items, size, [](int) { return true; });
            BOOST_CHECK_EQUAL(producer.wait(20s), 0);
            BOOST_CHECK(q.empty());
        }
    }
}

#ifndef NDEBUG
namespace {
// The parks of the producing child, counted where the reader sees them (shared memory).
std::atomic<int>* g_parks = nullptr;
void count_parks(const char* point) {
    if (std::strcmp(point, "channel.stream.parked") == 0) g_parks->fetch_add(1, std::memory_order_relaxed);
}
} // namespace

// An unbounded Queue's large puts park their streams (lib/feeder.hpp: the put keeps the writer
// lease and the feeder thread writes the rest later, with finish_stream) on a ring started below
// each wrap, so parked streams begin before a wrap and finish after it. Every fourth item is
// 64-200 KiB on a 16 KiB ring. Before each of the first six large items, and every 32nd item
// after, the reader stops until the producer has parked (counted through a test hook): the item
// cannot finish while nobody reads, so whoever writes it parks, put() after its short direct
// wait or the feeder thread after its slice. A reader that merely paused now and then left a
// loaded machine with no park at all in some runs. Every item must arrive whole and in order,
// and qsize never count more than the items still to come (finish_stream resuming from a tail
// without its message count was caught only by this).
BOOST_AUTO_TEST_CASE(parked_streams_across_each_wrap, *boost::unit_test::timeout(120))
{
    constexpr std::size_t cap = 16 * 1024;
    constexpr int items = 240;
    auto size = [](int i) -> std::size_t {
        return i % 4 == 1 ? (64u << 10) + static_cast<std::size_t>(i) * 577 % (136u << 10)
                          : static_cast<std::size_t>(i) * 37 % 300;
    };
    auto park_before = [](int i) { return i % 4 == 1 && (i < 24 || i % 32 == 1); };
    shared_array<std::atomic<int>> parks(1);
    g_parks = &parks[0];
    for (const auto& b : boundaries) {
        BOOST_TEST_CONTEXT("start below the " << b.what << " wrap") {
            parks[0] = 0;
            auto q = queue_at(b.packed, 0, cap);
            scoped_child producer([&] {
                sd::test_hook::install(count_parks);
                for (int i = 0; i < items; ++i) q.put(payload(i, size(i)), true, 10s);
                q.close();
                q.join_thread();
                sd::test_hook::install(nullptr);
                return 0;
            });
            int awaited = 0;
            get_in_order(q, items, size, [&](int i) {
                if (park_before(i + 1)) {
                    // Bounded: a feeder thread parks after its slice (50 ms), put() sooner.
                    const auto until = std::chrono::steady_clock::now() + 10s;
                    while (parks[0].load() <= awaited && std::chrono::steady_clock::now() < until)
                        std::this_thread::sleep_for(100us);
                    if (parks[0].load() <= awaited) {
                        BOOST_ERROR("no park before item " << i + 1);
                        return false;
                    }
                    awaited = parks[0].load();
                }
                // The message count in the positions crosses its wrap too: what the ring counts
                // can never exceed the items still to come.
                if (q.qsize() <= static_cast<std::size_t>(items - 1 - i)) return true;
                BOOST_ERROR("after item " << i << ": qsize " << q.qsize());
                return false;
            });
            BOOST_CHECK_EQUAL(producer.wait(20s), 0);
            BOOST_CHECK(q.empty());
            BOOST_CHECK_EQUAL(q.qsize(), 0u);
            BOOST_TEST_MESSAGE(b.what << ": " << parks[0].load() << " parks");
        }
    }
}
#endif

#ifndef NDEBUG
namespace {
// The biased writer's reaches, counted in the writing child and seen by the reader: grants,
// biased messages, and which message indices were written biased.
std::atomic<std::uint64_t>* g_bias_counts = nullptr;   // [0] granted, [1] inside
std::atomic<std::uint8_t>* g_biased = nullptr;         // per message index
int g_sending = 0;                                     // the index the child sends now
void count_bias(const char* point) {
    if (std::strcmp(point, "channel.bias.granted") == 0) {
        g_bias_counts[0].fetch_add(1, std::memory_order_relaxed);
    } else if (std::strcmp(point, "channel.bias.inside") == 0) {
        g_bias_counts[1].fetch_add(1, std::memory_order_relaxed);
        g_biased[g_sending].store(1, std::memory_order_relaxed);
    }
}

/// The index of the message whose record carries a ring started at `start` across the byte
/// wrap, and of the one that carries it across the message wrap (-1: none within n), as
/// channel::place and ring::advance move it: a record that does not fit before the ring's end
/// goes after a pad record, which counts bytes and no message.
template <class Size>
std::pair<int, int> wrap_crossings(std::uint64_t start, std::uint64_t cap, int n, Size size) {
    std::uint64_t bytes = sd::ring::bytes_of(start), msgs = sd::ring::msgs_of(start);
    int at_bytes = -1, at_msgs = -1;
    for (int i = 0; i < n; ++i) {
        const std::uint64_t need = sd::ring::footprint(size(i));
        const std::uint64_t cont = cap - (bytes & (cap - 1));
        bytes += (need > cont ? cont : 0) + need;
        ++msgs;
        if (at_bytes < 0 && bytes >= byte_wrap) at_bytes = i;
        if (at_msgs < 0 && msgs >= msg_wrap) at_msgs = i;
    }
    return {at_bytes, at_msgs};
}
} // namespace

// The biased writer lease (lib/bias.hpp) across each wrap: a writer alone is biased after 256
// messages and then writes without the lease, computing positions on its own (write_biased).
// Each ring starts 800 messages and 8 ring turns (same ring offsets) before a boundary, so the
// writer is biased long before the byte and message wraps and goes on biased across them. The
// reader never sleeps (it looks without waiting and yields): a sleeping reader seals the bias,
// and the writer would then write its next 256 messages plain, maybe the ones across a wrap.
// Every message must arrive whole and in order, and messages before and after each wrap must
// have been written biased (which ones: counted through the test hook in the child).
BOOST_AUTO_TEST_CASE(biased_writer_across_each_wrap, *boost::unit_test::timeout(120))
{
    constexpr std::size_t cap = 16 * 1024;
    constexpr int messages = 3000, lead = 800;
    auto size = [](int i) -> std::size_t {
        std::uint64_t x = static_cast<std::uint64_t>(i) * 0x9E3779B97F4A7C15ull;
        return (x ^ (x >> 29)) % 301;
    };
    shared_array<std::atomic<std::uint64_t>> counted(2);
    shared_array<std::atomic<std::uint8_t>> biased(messages);
    g_bias_counts = &counted[0];
    g_biased = &biased[0];
    for (const auto& b : boundaries) {
        BOOST_TEST_CONTEXT("start below the " << b.what << " wrap") {
            counted[0] = 0;
            counted[1] = 0;
            for (int i = 0; i < messages; ++i) biased[i] = 0;
            const std::uint64_t start = pack(sd::ring::msgs_of(b.packed) - lead,
                                             sd::ring::bytes_of(b.packed) - 8 * cap);
            const auto [at_bytes, at_msgs] = wrap_crossings(start, cap, messages, size);
            // Each wrap within reach comes long after the grant (-1: not within reach).
            BOOST_TEST_REQUIRE(at_bytes > lead / 2);
            BOOST_TEST_REQUIRE((at_msgs == -1 || at_msgs > lead / 2));
            std::optional<std::pair<shmq::Connection, shmq::Connection>> ends;
            {
                start_at guard(start);
                ends.emplace(shmq::Pipe(false, small_ring(cap)));
            }
            auto& [rx, tx] = *ends;
            scoped_child writer([&] {
                rx.close();
                sd::test_hook::install(count_bias);
                for (int i = 0; i < messages; ++i) {
                    g_sending = i;
                    tx.send_bytes(make_pattern(size(i), i));
                }
                sd::test_hook::install(nullptr);
                return 0;
            });
            tx.close();
            int bad = 0;
            for (int i = 0; i < messages && bad < 5; ++i) {
                const auto until = std::chrono::steady_clock::now() + 10s;
                bool arrived;
                while (!(arrived = rx.poll(0s)) && std::chrono::steady_clock::now() < until)
                    std::this_thread::yield();
                if (!arrived) {
                    BOOST_ERROR("message " << i << " did not arrive");
                    break;
                }
                auto m = rx.recv_bytes();
                if (m.size() != size(i) || !matches_pattern(m, i)) {
                    BOOST_ERROR("message " << i << ": " << m.size() << " bytes, expected " << size(i));
                    ++bad;
                }
            }
            BOOST_CHECK_EQUAL(writer.wait(20s), 0);
            BOOST_CHECK_THROW(rx.recv_bytes(), shmq::eof_error);
            BOOST_TEST(counted[0].load() > 0u);
            BOOST_TEST(counted[1].load() > 0u);
            for (const int at : {at_bytes, at_msgs}) {
                if (at < 0) continue;
                int before = 0, after = 0;
                for (int i = 0; i < messages; ++i)
                    if (biased[i].load()) ++(i < at ? before : after);
                BOOST_TEST_MESSAGE(b.what << ": wrap at message " << at << ", " << before
                                          << " biased before, " << after << " after");
                BOOST_TEST(before > 0);
                BOOST_TEST(after > 0);
            }
        }
    }
}
#endif
