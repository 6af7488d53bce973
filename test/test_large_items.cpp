// SPDX-License-Identifier: BSL-1.0
// Large items: messages streamed in pieces, get_into reusing the caller's container, an
// unbounded put that writes a large item directly when nothing is pending (parking a stream it
// cannot finish for the feeder thread), and a put that may not wait writing all of a streamed
// item or nothing.
#define BOOST_TEST_MODULE large_items
#include <boost/test/unit_test.hpp>

#include "queue_fixtures.hpp"

#include <shmq/connection.hpp>
#include <shmq/queue.hpp>
#include <shmq/serialization.hpp>
#include <shmq/simple_queue.hpp>

#include "test_hook.hpp"

#include <atomic>
#include <csignal>
#include <fstream>
#include <thread>
#include <cstring>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using namespace shmq::test;

namespace {

shmq::options ring(std::size_t bytes) {
    shmq::options o;
    o.capacity = bytes;
    return o;
}

#ifndef NDEBUG
std::atomic<int> pieces{0}, parks{0};
void count_pieces(const char* point) {
    if (std::strcmp(point, "channel.stream.piece") == 0) pieces.fetch_add(1);
    if (std::strcmp(point, "channel.stream.parked") == 0) parks.fetch_add(1);
}
struct piece_counter {
    piece_counter() {
        pieces = 0;
        parks = 0;
        shmq::detail::test_hook::install(count_pieces);
    }
    ~piece_counter() { shmq::detail::test_hook::install(nullptr); }
};
#endif

// Resident memory of this process, in bytes (/proc/self/statm's second field, in pages).
std::size_t resident_bytes() {
    std::ifstream f("/proc/self/statm");
    std::size_t size = 0, resident = 0;
    f >> size >> resident;
    return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

// Sent with Boost.Serialization.
struct record {
    int value = 0;
    std::string text;
    template <class Ar> void serialize(Ar& ar, unsigned) { ar& value& text; }
};

} // namespace

BOOST_AUTO_TEST_CASE(get_into_reuses_the_callers_string) {
    shmq::Queue<std::string> q(0, ring(1 << 20));
    q.put(pattern_string(200'000, 1));
    q.put(pattern_string(1'000, 2));
    q.put(pattern_string(150'000, 3));
    std::string s;
    q.get_into(s, true, 2s);
    BOOST_TEST(matches_pattern(s, 1));
    const char* storage = s.data();
    const std::size_t capacity = s.capacity();
    q.get_into(s, true, 2s);
    BOOST_TEST(matches_pattern(s, 2));
    q.get_into(s, true, 2s);
    BOOST_TEST(matches_pattern(s, 3));
    // No reallocation: smaller items fit the capacity the first one left.
    BOOST_TEST(static_cast<const void*>(s.data()) == static_cast<const void*>(storage));
    BOOST_TEST(s.capacity() == capacity);
    BOOST_CHECK_THROW(q.get_into(s, false), shmq::empty_error);
}

BOOST_AUTO_TEST_CASE(get_into_bytes_and_serialized_types) {
    shmq::SimpleQueue<std::vector<std::byte>> bytes;
    std::vector<std::byte> v(300'000, std::byte{7});
    bytes.put(v);
    std::vector<std::byte> out(10, std::byte{1});
    bytes.get_into(out);
    BOOST_TEST(out.size() == v.size());
    BOOST_TEST((out == v));

    shmq::Queue<record> q;
    record a;
    a.value = 41;
    a.text = pattern_string(100'000, 9);
    q.put(a);
    q.put(a);
    record got = q.get(true, 2s);
    BOOST_TEST(got.value == 41);
    BOOST_TEST(matches_pattern(got.text, 9));
    record into;
    q.get_into(into, true, 2s);
    BOOST_TEST(into.value == 41);
    BOOST_TEST(matches_pattern(into.text, 9));
}

// Streamed items of the same size into one string: the first sets its size, every later one is
// copied into the same bytes (no reallocation, and no zero-fill from a first piece's share).
// Then get() of a streamed item allocates once, for the whole item: the string it returns has
// room for about that much (a string grown by doubling would have up to twice as much).
BOOST_AUTO_TEST_CASE(get_into_of_streamed_items_keeps_the_buffer) {
    shmq::Queue<std::string> q(0, ring(256 << 10));
    const std::size_t n = (3 << 20) + 77;   // 12 rings' worth: dozens of pieces
    std::thread producer([&] {
        for (std::uint64_t i = 0; i < 5; ++i) q.put(pattern_string(n, 40 + i));
    });
    std::string s;
    const char* storage = nullptr;
    for (std::uint64_t i = 0; i < 4; ++i) {
        q.get_into(s, true, 10s);
        BOOST_TEST_REQUIRE(s.size() == n);
        BOOST_TEST_REQUIRE(matches_pattern(s, 40 + i));
        if (i == 0) storage = s.data();
        BOOST_TEST(static_cast<const void*>(s.data()) == static_cast<const void*>(storage));
    }
    const std::string got = q.get(true, 10s);
    BOOST_TEST(matches_pattern(got, 44));
    BOOST_TEST(got.capacity() < n + n / 4);
    producer.join();
}

// An unbounded put of an item larger than half the ring but smaller than its free space writes
// it directly: no feeder thread starts.
BOOST_AUTO_TEST_CASE(unbounded_put_of_a_large_item_writes_directly_when_it_fits) {
    shmq::Queue<std::string> q(0, ring(1 << 20));
    const std::size_t before = threads_of_this_process();
    q.put(pattern_string(700'000, 4));   // > half of the 1 MiB ring, < its free space
    BOOST_TEST(threads_of_this_process() == before);
    BOOST_TEST(q.qsize() == 1u);
    std::string s;
    q.get_into(s, true, 2s);
    BOOST_TEST(matches_pattern(s, 4));
    // Larger than the ring: its first pieces go directly, the rest through the feeder thread
    // (nobody reads meanwhile), and it still arrives whole.
    q.put(pattern_string(3'000'000, 5));
    q.get_into(s, true, 5s);
    BOOST_TEST(matches_pattern(s, 5));
}

// An unbounded put of a streamed item nobody reads: its first pieces go into the ring, then,
// once its short wait for room is over, the stream is parked (this process keeps the writer
// lease) and the feeder thread writes the rest. The put returns at once; the items put after it
// queue behind it, and everything arrives whole, in order, once.
BOOST_AUTO_TEST_CASE(an_unbounded_put_that_outlasts_its_wait_parks_the_rest_for_the_feeder, *boost::unit_test::timeout(60)) {
    shmq::Queue<std::string> q(0, ring(64 << 10));
#ifndef NDEBUG
    piece_counter counter;
#endif
    const std::size_t before = threads_of_this_process();
    BOOST_TEST(timed([&] { q.put(pattern_string(1 << 20, 11)); }) < at_once.count());
    BOOST_TEST(q.qsize() == 1u);
    BOOST_TEST(threads_of_this_process() == before + 1);   // the feeder, writing the rest
#ifndef NDEBUG
    BOOST_TEST(parks.load() == 1);
    BOOST_TEST(pieces.load() > 0);   // pieces went in before it parked
#endif
    BOOST_TEST(timed([&] { q.put("after"); }) < at_once.count());
    BOOST_TEST(timed([&] { q.put(pattern_string(300'000, 12)); }) < at_once.count());
    BOOST_TEST(q.qsize() == 3u);
    std::string s;
    q.get_into(s, true, 5s);
    BOOST_TEST(s.size() == std::size_t{1} << 20);
    BOOST_TEST(matches_pattern(s, 11));
    q.get_into(s, true, 5s);
    BOOST_TEST(s == "after");
    q.get_into(s, true, 5s);
    BOOST_TEST(matches_pattern(s, 12));
    BOOST_CHECK_THROW(q.get(false), shmq::empty_error);
    q.close();
    BOOST_TEST(timed([&] { q.join_thread(); }) < 5.0);
    BOOST_TEST(q.qsize() == 0u);
}

#ifndef NDEBUG
// A parked stream holds the writer lease, so the feeder thread, even in the middle of a batch,
// must write the parked rest before anything else, or it would wait for that lease for ever.
// Made certain here: at the first piece of a large put, its test hook puts a small item from
// inside that put. The lease is busy, so that item goes to the backlog and starts the feeder,
// which takes it and waits for the lease; then the large put parks.
shmq::Queue<std::string>* g_queue = nullptr;
std::atomic<bool> g_fired{false};
void put_at_first_piece(const char* point) {
    if (std::strcmp(point, "channel.stream.piece") == 0 && !g_fired.exchange(true)) g_queue->put("inner");
}

BOOST_AUTO_TEST_CASE(a_parked_rest_goes_before_the_batch_the_feeder_holds, *boost::unit_test::timeout(60)) {
    shmq::Queue<std::string> q(0, ring(64 << 10));
    g_queue = &q;
    g_fired = false;
    shmq::detail::test_hook::install(put_at_first_piece);
    q.put(pattern_string(4 << 20, 21));   // nobody reads: parks after its wait for room
    shmq::detail::test_hook::install(nullptr);
    BOOST_TEST(g_fired.load());
    BOOST_TEST(q.qsize() == 2u);
    std::string s;
    q.get_into(s, true, 5s);
    BOOST_TEST(s.size() == std::size_t{4} << 20);
    BOOST_TEST(matches_pattern(s, 21));
    q.get_into(s, true, 5s);
    BOOST_TEST(s == "inner");
    q.close();
    BOOST_TEST(timed([&] { q.join_thread(); }) < 5.0);
}
#endif

// Not under ThreadSanitizer, which CI runs this suite under for its threads (the feeder thread,
// parked rests, two producer threads): its runtime cannot start a thread in a child forked
// while the parent's feeder thread lives ("dup thread with used id"), and this case must fork
// exactly then. It runs in the debug and sanitize variants.
#if !defined(NDEBUG) && !defined(__SANITIZE_THREAD__)
// The parent's feeder thread is held (test hook) just before it takes a parked rest, so a child
// forked now inherits a feeder whose state says "a parked rest waits" while the lease that rest
// needs is the parent's. The child must forget it: its own put goes to its backlog and waits
// behind the parent's item instead of writing that item's rest a second time (which the ring
// reports as corrupt). Both items arrive whole, in that order, once.
pid_t g_hold_in = 0;
std::atomic<bool> g_holding{false}, g_release{false};
void hold_before_taking_a_parked_rest(const char* point) {
    if (std::strcmp(point, "feeder.parked.taking") != 0 || ::getpid() != g_hold_in) return;
    g_holding = true;
    for (int i = 0; i < 1000 && !g_release.load(); ++i) std::this_thread::sleep_for(10ms);
}

BOOST_AUTO_TEST_CASE(a_child_forked_with_a_parked_stream_does_not_finish_it,
                     *boost::unit_test::timeout(60)) {
    shmq::Queue<std::string> q(0, ring(64 << 10));
    g_hold_in = ::getpid();
    g_holding = false;
    g_release = false;
    shmq::detail::test_hook::install(hold_before_taking_a_parked_rest);
    q.put(pattern_string(4 << 20, 31));   // nobody reads: parked, for the held feeder thread
    for (int i = 0; i < 500 && !g_holding.load(); ++i) std::this_thread::sleep_for(10ms);
    BOOST_TEST_REQUIRE(g_holding.load());
    auto child = queue_child([&]() -> int {
        // The parent's item is not whole in the ring, and its rest is the parent's to write.
        if (q.qsize() != 0) return child_bad_count;
        q.put("from the child");
        q.close();
        q.join_thread();   // once the parent has read enough for it to fit
        return child_ok;
    });
    g_release = true;
    std::string s;
    q.get_into(s, true, 10s);
    BOOST_TEST(s.size() == std::size_t{4} << 20);
    BOOST_TEST(matches_pattern(s, 31));
    q.get_into(s, true, 10s);
    BOOST_TEST(s == "from the child");
    BOOST_CHECK_THROW(q.get(true, 0.2s), shmq::empty_error);
    BOOST_TEST(child.wait(20s) == child_ok);
    shmq::detail::test_hook::install(nullptr);
}
#endif

// Two threads of one process put large and small items while a slow reader drains a small
// ring: streams park and their rests wait for the feeder thread while the other thread's items
// are in its backlog or batch. A thread of the feeder waiting for the lease a parked stream
// holds would wait for ever; the parked rest must go first. Every item arrives whole, once,
// and each thread's items in order.
BOOST_AUTO_TEST_CASE(parked_streams_and_a_backlog_from_two_threads_all_arrive, *boost::unit_test::timeout(60)) {
    shmq::Queue<std::string> q(0, ring(64 << 10));
    constexpr std::uint64_t per_thread = 40;
    const std::size_t sizes[] = {300'000, 70'000, 5'000, 1'000'000, 130'000};
    auto make = [&](std::uint64_t tag) {
        std::string s = pattern_string(sizes[tag % 5] + tag % 7, tag);
        std::memcpy(s.data(), &tag, sizeof tag);   // who and which, for the reader
        return s;
    };
    std::atomic<bool> put_failed{false};
    auto producer = [&](std::uint64_t who) {
        try {
            for (std::uint64_t i = 0; i < per_thread; ++i) q.put(make(who * 1000 + i));
        } catch (...) {
            put_failed = true;
        }
    };
    std::thread a(producer, 1), b(producer, 2);
    std::uint64_t next[3] = {0, 0, 0};
    bool torn = false, out_of_order = false, timed_out = false;
    std::string s;
    for (std::uint64_t n = 0; n < 2 * per_thread && !timed_out; ++n) {
        if (n % 8 == 0) std::this_thread::sleep_for(2ms);   // slow: the ring stays full
        try {
            q.get_into(s, true, 10s);
        } catch (const shmq::empty_error&) {
            timed_out = true;
            break;
        }
        std::uint64_t tag = 0;
        if (s.size() < sizeof tag) { torn = true; continue; }
        std::memcpy(&tag, s.data(), sizeof tag);
        const std::uint64_t who = tag / 1000, i = tag % 1000;
        if ((who != 1 && who != 2) || i >= per_thread || s != make(tag)) { torn = true; continue; }
        if (i != next[who]) out_of_order = true;
        next[who] = i + 1;
    }
    a.join();
    b.join();
    BOOST_TEST(!put_failed.load());
    BOOST_TEST(!timed_out);
    BOOST_TEST(!torn);
    BOOST_TEST(!out_of_order);
    BOOST_TEST(next[1] == per_thread);
    BOOST_TEST(next[2] == per_thread);
    BOOST_CHECK_THROW(q.get(true, 0.2s), shmq::empty_error);   // nothing twice
    q.close();
    BOOST_TEST(timed([&] { q.join_thread(); }) < 5.0);
}

// The feeder thread outlives a drained backlog only briefly (it lingers for the next burst
// instead of starting again per item) and then ends: an idle queue holds no thread. join_thread
// ends a lingering thread at once.
BOOST_AUTO_TEST_CASE(the_feeder_thread_ends_soon_after_the_backlog_drains) {
    shmq::Queue<std::string> q(0, ring(64 << 10));
    const std::size_t before = threads_of_this_process();
    for (std::uint64_t i = 0; i < 6; ++i) q.put(pattern_string(100'000, 60 + i));   // > the ring
    BOOST_TEST(threads_of_this_process() == before + 1);
    std::string s;
    for (std::uint64_t i = 0; i < 6; ++i) {
        q.get_into(s, true, 5s);
        BOOST_TEST_REQUIRE(matches_pattern(s, 60 + i));
    }
    bool ended = false;
    for (int i = 0; i < 200 && !ended; ++i) {   // up to 2 s; the linger is 0.1 s
        std::this_thread::sleep_for(10ms);
        ended = threads_of_this_process() == before;
    }
    BOOST_TEST(ended);
    // Another burst starts it again; once drained, join_thread ends the lingering thread (it
    // joins it) rather than leaving it to time out.
    q.put(pattern_string(100'000, 70));
    BOOST_TEST(threads_of_this_process() == before + 1);
    q.get_into(s, true, 5s);
    BOOST_TEST(matches_pattern(s, 70));
    q.close();
    q.join_thread();
    BOOST_TEST(threads_of_this_process() == before);
}

// A burst of puts larger than the ring goes through the backlog, whose buffers are reused:
// every item arrives whole and in order whatever the sizes of the buffers it lands in.
BOOST_AUTO_TEST_CASE(backlog_buffers_are_reused_without_mixing_items) {
    shmq::Queue<std::string> q(0, ring(64 << 10));
    std::vector<std::size_t> sizes;
    for (int i = 0; i < 40; ++i) sizes.push_back(i % 3 == 0 ? 300'000 : (i % 3 == 1 ? 70'000 : 5'000));
    for (std::size_t i = 0; i < sizes.size(); ++i) q.put(pattern_string(sizes[i], 100 + i));
    std::string s;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        q.get_into(s, true, 5s);
        BOOST_TEST_REQUIRE(s.size() == sizes[i]);
        BOOST_TEST_REQUIRE(matches_pattern(s, 100 + i));
    }
    BOOST_CHECK_THROW(q.get(false), shmq::empty_error);
}

// Sizes around the whole-record limit (half the ring) and the piece boundaries (a quarter ring),
// and several times the ring, arrive whole through a Pipe (a thread receives while this one
// sends: a message larger than the free room waits for the reader).
BOOST_AUTO_TEST_CASE(sizes_around_the_piece_boundaries_arrive_whole) {
    auto [a, b] = shmq::Pipe(true, ring(256 << 10));
    const std::size_t whole = (128 << 10) - 8, piece = (64 << 10) - 8;
    const std::vector<std::size_t> sizes{piece - 1, piece, whole - 1, whole, whole + 1,
                                         whole + piece - 16, whole + piece - 15, 2 * whole + 9,
                                         std::size_t{1} << 20, (std::size_t{3} << 20) + 5};
    std::atomic<int> bad{-1};
    std::thread receiver([&, &b = b] {
        for (std::size_t i = 0; i < sizes.size(); ++i) {
            if (!b.poll(10s)) return bad.store(static_cast<int>(i));
            const auto got = b.recv<std::string>();
            if (got.size() != sizes[i] || !matches_pattern(got, sizes[i])) return bad.store(static_cast<int>(i));
        }
        bad.store(static_cast<int>(sizes.size()));
    });
    for (std::size_t n : sizes) a.send(pattern_string(n, n));
    receiver.join();
    BOOST_TEST(bad.load() == static_cast<int>(sizes.size()));   // else: the index that failed
}

#ifndef NDEBUG
// A put that may not wait (block=false) of an item that must be streamed writes nothing unless
// all of it fits: no half-written stream for the reader to skip.
BOOST_AUTO_TEST_CASE(nonblocking_put_of_a_streamed_item_is_all_or_nothing) {
    shmq::Queue<std::string> q(100, ring(64 << 10));
    q.put(pattern_string(20'000, 6));
    piece_counter counter;
    BOOST_CHECK_THROW(q.put(pattern_string(60'000, 7), false), shmq::full_error);
    BOOST_TEST(pieces.load() == 0);   // not one piece was published
    BOOST_TEST(matches_pattern(q.get(true, 2s), 6));
    BOOST_CHECK_THROW(q.get(false), shmq::empty_error);
    // Now it fits: streamed in pieces, and whole.
    pieces = 0;
    q.put(pattern_string(40'000, 8), false);
    BOOST_TEST(pieces.load() > 0);
    BOOST_TEST(matches_pattern(q.get(true, 2s), 8));
}

// A stream whose first piece claims 200 MiB and whose writer dies after it: the reader sets the
// address space aside but never touches what did not arrive, so its resident memory grows by
// about one piece, not by the claim; the item is dropped and the queue goes on.
BOOST_AUTO_TEST_CASE(a_claimed_length_costs_no_memory_until_the_bytes_arrive) {
    shmq::Queue<std::string> q(10, ring(1 << 20));   // bounded: put streams in the caller
    const std::size_t claimed = std::size_t{200} << 20;
    scoped_child child([&] {
        shmq::detail::test_hook::install([](const char* point) {
            if (std::strcmp(point, "channel.stream.piece") == 0) ::raise(SIGKILL);
        });
        std::string big(claimed, 'x');
        q.put(big, true, 10s);
        return 1;   // not reached: killed after the first piece
    });
    BOOST_TEST(child.wait(30s) == -SIGKILL);
    const std::size_t before = resident_bytes();
    std::string s;
    BOOST_CHECK_THROW(q.get_into(s, true, 1s), shmq::empty_error);   // its writer is dead
    BOOST_TEST(s.capacity() >= claimed);                              // reserved ...
    BOOST_TEST(resident_bytes() < before + (std::size_t{16} << 20));  // ... not touched
    q.put("next");
    BOOST_TEST(q.get(true, 2s) == "next");
}
#endif
