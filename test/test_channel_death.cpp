// SPDX-License-Identifier: BSL-1.0
// Peer death, kills at random points, concurrency and corrupted shared memory (README: Guarantees;
// doc/design.md §4-§6; Connection clauses C8–C10, C14):
//  * a peer killed with SIGKILL is EOF (recv) or a broken pipe (send) within 100 ms, even while
//    it is still an unreaped zombie;
//  * a writer killed at a random point costs at most its in-flight message: the reader sees a
//    prefix of intact messages, never a torn or duplicated one, then EOF; a reader killed
//    mid-stream costs at most one message and the other reader carries on;
//  * writers killed while holding the writer lease are taken over;
//  * several writers (readers) on one end keep every message whole, FIFO per writer, exactly once;
//  * a corrupted ring or segment header gives broken_error, never a crash, a hang or a wild access;
//    named segments: exists / not found / wrong kind or T / bad names / remove / exact mode.
//
// The corruption tests work below the facade (lib/segment.hpp, lib/channel.hpp), because a
// Connection does not expose its segment. Children report through exit codes only.
#define BOOST_TEST_MODULE channel_death
#include <boost/test/unit_test.hpp>

#include <shmq/connection.hpp>

#include "channel.hpp"
#include "ring.hpp"
#include "segment.hpp"
#include "test_fixtures.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace utf = boost::unit_test;
using namespace std::chrono_literals;
using namespace shmq::test;
using shmq::Connection;
using shmq::Pipe;
namespace sd = shmq::detail;

namespace {

constexpr std::size_t KiB = 1024, MiB = 1024 * 1024;

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(clk::now().time_since_epoch()).count();
}

std::uint64_t mix(std::uint64_t x) {   // splitmix64
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/// Size of message `seq` in a run with seed s: at least 8 bytes (room for the tag); about half
/// small, some between small and `whole_max`, some up to `big_max` (streamed through the ring).
std::size_t size_for(std::uint64_t s, std::uint64_t seq, std::size_t whole_max, std::size_t big_max) {
    const std::uint64_t h = mix(s ^ mix(seq));
    switch (h % 10) {
    case 0: case 1: case 2: case 3: case 4: return 8 + (h >> 8) % 200;
    case 5: case 6: case 7: return 8 + (h >> 8) % whole_max;
    default: return 8 + (h >> 8) % big_max;
    }
}

/// A message tagged with (id, seq) in its first 8 bytes and a pattern of that tag after them.
std::vector<std::byte> make_tagged(std::uint32_t id, std::uint32_t seq, std::size_t size) {
    std::vector<std::byte> m(std::max<std::size_t>(size, 8));
    std::memcpy(m.data(), &id, 4);
    std::memcpy(m.data() + 4, &seq, 4);
    fill_pattern(std::span(m).subspan(8), (std::uint64_t{id} << 32) | seq);
    return m;
}

struct tag {
    std::uint32_t id = 0, seq = 0;
};

std::optional<tag> read_tag(std::span<const std::byte> m) {
    if (m.size() < 8) return std::nullopt;
    tag t;
    std::memcpy(&t.id, m.data(), 4);
    std::memcpy(&t.seq, m.data() + 4, 4);
    return t;
}

/// True when m is exactly make_tagged(id, seq, size).
bool intact(std::span<const std::byte> m, std::uint32_t id, std::uint32_t seq, std::size_t size) {
    auto t = read_tag(m);
    return t && t->id == id && t->seq == seq && m.size() == size &&
           matches_pattern(m.subspan(8), (std::uint64_t{id} << 32) | seq);
}

/// Sink for channel::read into a vector.
class vec_sink final : public sd::message_sink {
public:
    std::byte* reserve(std::size_t n) override {
        v.resize(n);
        return v.data();
    }
    std::vector<std::byte> v;
};

sd::deadline within(std::chrono::duration<double> d) { return sd::deadline(shmq::timeout_t(d)); }

std::shared_ptr<sd::segment> anonymous_segment(std::uint64_t capacity, std::uint32_t channels = 1) {
    sd::segment_params p;
    p.kind = sd::segment_kind::pipe;
    p.channels = channels;
    p.capacity = capacity;
    return sd::segment::create_anonymous(p);
}

} // namespace

// ================================================================================================
// A peer killed with SIGKILL: EOF and broken pipe within 100 ms, zombies count as dead.

BOOST_AUTO_TEST_CASE(blocked_receive_gets_eof_soon_after_the_writer_is_killed, *utf::timeout(40))
{
    const char* names[] = {"recv_bytes", "recv<int>", "recv_bytes_into", "poll(nullopt)"};
    for (int variant = 0; variant < 4; ++variant) {
        BOOST_TEST_CONTEXT(names[variant]) {
            auto [r, w] = Pipe(false);
            scoped_child writer([&]() -> int {
                watchdog wd(20);
                r.close();
                for (;;) ::pause();   // holds w until killed
            });
            w.close();
            std::atomic<std::int64_t> killed_at{0};
            std::jthread killer([&] {
                std::this_thread::sleep_for(150ms);
                killed_at = now_ns();
                writer.kill();   // no reaping: the child stays a zombie until wait() below
            });
            bool eof = false;
            std::vector<std::byte> buf(16);
            try {
                switch (variant) {
                case 0: r.recv_bytes(); break;
                case 1: r.recv<int>(); break;
                case 2: r.recv_bytes_into(buf); break;
                default: eof = r.poll(std::nullopt); break;
                }
            } catch (const shmq::eof_error&) {
                eof = true;
            }
            const std::int64_t seen = now_ns();
            killer.join();
            BOOST_TEST(eof);
            BOOST_TEST(seen >= killed_at.load());   // not before the kill
            const double latency_ms = (seen - killed_at.load()) / 1e6;
            BOOST_TEST_MESSAGE(names[variant] << ": EOF " << latency_ms << " ms after SIGKILL");
            BOOST_TEST(latency_ms < 500.0);
            BOOST_TEST(writer.exited());   // dead, and still unreaped when EOF was seen
            BOOST_CHECK_THROW(r.recv_bytes(), shmq::eof_error);
            BOOST_TEST(r.poll());
            BOOST_TEST(writer.wait() == -SIGKILL);
        }
    }
}

BOOST_AUTO_TEST_CASE(send_gets_broken_pipe_soon_after_the_reader_is_killed, *utf::timeout(30))
{
    // Paced small messages into a 4 MiB ring: the ring cannot fill during the test, so the
    // broken pipe must come from noticing the death, not from a full ring.
    auto [r, w] = Pipe(false, {.capacity = 4 * MiB});
    scoped_child reader([&]() -> int {
        watchdog wd(20);
        w.close();
        for (;;) ::pause();   // holds r, reads nothing
    });
    r.close();
    const auto msg = to_bytes("0123456789abcdef");
    stopwatch sw;
    std::int64_t killed_at = 0, broken_at = 0;
    std::size_t sent = 0;
    while (sw.seconds() < 5) {
        if (!killed_at && sw.millis() > 50) {
            killed_at = now_ns();
            reader.kill();
        }
        try {
            w.send_bytes(msg);
            ++sent;
        } catch (const shmq::broken_pipe_error&) {
            broken_at = now_ns();
            break;
        }
        std::this_thread::sleep_for(20us);
    }
    BOOST_TEST_REQUIRE(broken_at != 0);
    BOOST_TEST(killed_at != 0);
    BOOST_TEST(broken_at >= killed_at);   // not before the kill
    const double latency_ms = (broken_at - killed_at) / 1e6;
    BOOST_TEST_MESSAGE("broken pipe " << latency_ms << " ms after SIGKILL, " << sent << " messages sent");
    BOOST_TEST(latency_ms < 500.0);
    BOOST_TEST(sent * 24 < 4 * MiB);   // the ring never filled
    BOOST_TEST(reader.exited());       // zombie
    BOOST_CHECK_THROW(w.send_bytes({}), shmq::broken_pipe_error);
    BOOST_TEST(reader.wait() == -SIGKILL);
}

BOOST_AUTO_TEST_CASE(send_blocked_on_a_full_ring_gets_broken_pipe_when_the_reader_is_killed,
                     *utf::timeout(30))
{
    for (bool streamed : {true, false}) {
        BOOST_TEST_CONTEXT("streamed " << streamed) {
            auto [r, w] = Pipe(false, {.capacity = 4096});
            scoped_child reader([&]() -> int {
                watchdog wd(20);
                w.close();
                for (;;) ::pause();
            });
            r.close();
            std::atomic<std::int64_t> killed_at{0};
            std::jthread killer([&] {
                std::this_thread::sleep_for(150ms);
                killed_at = now_ns();
                reader.kill();
            });
            bool broken = false;
            try {
                if (streamed) w.send_bytes(make_pattern(64 * KiB, 2));
                else for (int i = 0; i < 100; ++i) w.send_bytes(make_pattern(1000, i));
            } catch (const shmq::broken_pipe_error&) {
                broken = true;
            }
            const std::int64_t seen = now_ns();
            killer.join();
            BOOST_TEST(broken);
            BOOST_TEST(seen >= killed_at.load());
            const double latency_ms = (seen - killed_at.load()) / 1e6;
            BOOST_TEST_MESSAGE("blocked send: broken pipe " << latency_ms << " ms after SIGKILL");
            BOOST_TEST(latency_ms < 500.0);
            BOOST_TEST(reader.wait() == -SIGKILL);
        }
    }
}

BOOST_AUTO_TEST_CASE(killed_duplex_peer_is_eof_and_broken_pipe, *utf::timeout(20))
{
    auto [mine, theirs] = Pipe(true);
    scoped_child peer([&]() -> int {
        watchdog wd(15);
        mine.close();
        theirs.send_bytes(to_bytes("hello"));
        for (;;) ::pause();
    });
    theirs.close();
    BOOST_TEST(to_string(mine.recv_bytes()) == "hello");
    BOOST_TEST(!mine.poll(50ms));
    peer.kill();
    BOOST_TEST(wait_exited_no_reap(peer.pid(), 5s));
    stopwatch sw;
    BOOST_CHECK_THROW(mine.recv_bytes(), shmq::eof_error);
    BOOST_TEST(sw.millis() < 500.0);
    sw.restart();
    bool broken = false;
    while (!broken && sw.millis() < 2000) {
        try {
            mine.send(1);
        } catch (const shmq::broken_pipe_error&) {
            broken = true;
        }
    }
    BOOST_TEST(broken);
    BOOST_TEST(sw.millis() < 500.0);
    BOOST_TEST(peer.wait() == -SIGKILL);
}

BOOST_AUTO_TEST_CASE(child_killed_right_after_fork_counts_as_gone, *utf::timeout(40))
{
    // A child killed before it ran any code of its own (here: SIGKILL straight after fork, which
    // usually lands while the child is still in shmq's atfork handler) held the inherited ends
    // and is dead, so once the parent closes its own copy the peer must see EOF / broken pipe.
    // KNOWN BUG at the time of writing (lib/endpoint.cpp): the prepare handler adds the child's
    // copy to the *parent's* registry slot and only the child's handler moves it; a child killed
    // before that leaves the count in the live parent's slot for good: EOF and broken pipe never
    // come. Reported to the lead with a stand-alone reproduction.
    for (bool writer_end : {true, false}) {
        int first_failure = -1;
        for (int i = 0; i < 20 && first_failure < 0; ++i) {
            auto [r, w] = Pipe(false);
            scoped_child child([]() -> int {
                for (;;) ::pause();
            });
            child.kill();
            bool gone = false;
            if (writer_end) {
                w.close();
                gone = r.poll(1s);   // EOF makes poll true
                if (gone) BOOST_CHECK_THROW(r.recv_bytes(), shmq::eof_error);
            } else {
                r.close();
                stopwatch sw;
                while (!gone && sw.seconds() < 1) {
                    try {
                        w.send_bytes({});
                        std::this_thread::sleep_for(1ms);
                    } catch (const shmq::broken_pipe_error&) {
                        gone = true;
                    }
                }
            }
            BOOST_TEST(child.wait() == -SIGKILL);
            if (!gone) first_failure = i;
        }
        BOOST_TEST(first_failure == -1, (writer_end ? "no EOF" : "no broken pipe")
                                            << " 1 s after the only other holder was killed right "
                                               "after fork (iteration " << first_failure << " of 20)");
    }
}

// ================================================================================================
// kill -9 at random points.

BOOST_AUTO_TEST_CASE(writer_killed_at_random_points_leaves_a_prefix_of_intact_messages,
                     *utf::timeout(60))
{
    const auto seed = test_seed();
    BOOST_TEST_MESSAGE("writer_killed_at_random_points: SHMQ_TEST_SEED=" << seed);
    std::mt19937_64 rng(seed);
    constexpr std::size_t ring = 64 * KiB;   // whole messages up to 32 KiB - 8, larger ones streamed
    std::size_t total = 0;
    std::vector<std::byte> buf(256 * KiB);
    for (int round = 0; round < 20; ++round) {
        const std::uint64_t s = rng();
        const auto delay = std::chrono::microseconds(rng() % 40000);
        BOOST_TEST_CONTEXT("round " << round << ", kill after " << delay.count() << " us") {
            auto [r, w] = Pipe(false, {.capacity = ring});
            // The delay counts from the moment the child runs its own code: a kill inside fork
            // itself is child_killed_right_after_fork_counts_as_gone's subject.
            shared_array<std::atomic<int>> started(1);
            scoped_child writer([&]() -> int {
                watchdog wd(30);
                r.close();
                started[0] = 1;
                for (std::uint32_t seq = 0;; ++seq)
                    w.send_bytes(make_tagged(0, seq, size_for(s, seq, 40 * KiB, 200 * KiB)));
            });
            w.close();
            std::jthread killer([&] {
                stopwatch sw;
                while (!started[0].load() && sw.seconds() < 5) std::this_thread::sleep_for(50us);
                std::this_thread::sleep_for(delay);
                writer.kill();
            });
            std::uint32_t expect = 0;
            bool bad = false, eof = false, stuck = false;
            try {
                for (;; ++expect) {
                    // Bounded: a missing EOF fails here instead of hanging the suite.
                    if (!r.poll(10s)) { stuck = true; break; }
                    const std::size_t size = size_for(s, expect, 40 * KiB, 200 * KiB);
                    if (expect % 2) {
                        const auto m = r.recv_bytes();
                        if (!intact(m, 0, expect, size)) { bad = true; break; }
                    } else {
                        const std::size_t n = r.recv_bytes_into(buf);
                        if (!intact(std::span(buf).first(n), 0, expect, size)) { bad = true; break; }
                    }
                }
            } catch (const shmq::eof_error&) {
                eof = true;
            }
            killer.join();
            BOOST_TEST(!bad, "message " << expect << " is torn, duplicated or out of order");
            BOOST_TEST(!stuck, "no message and no EOF 10 s after message " << expect);
            BOOST_TEST(eof);
            BOOST_TEST(writer.wait() == -SIGKILL);
            total += expect;
        }
    }
    BOOST_TEST_MESSAGE("writer_killed_at_random_points: " << total << " intact messages in 20 rounds");
    BOOST_TEST(total > 0u);
}

BOOST_AUTO_TEST_CASE(reader_killed_mid_stream_the_other_reader_carries_on, *utf::timeout(60))
{
    // Two reader processes share the read end; one is killed. To make "mid-stream" likely rather
    // than lucky, the writer (sending mostly messages larger than the ring) is frozen with
    // SIGSTOP first: one reader then sits in the middle of a message holding the reader lease
    // while the other waits for the lease. The victim is either of them.
    const auto seed = test_seed();
    BOOST_TEST_MESSAGE("reader_killed_mid_stream: SHMQ_TEST_SEED=" << seed);
    std::mt19937_64 rng(seed);
    constexpr std::uint32_t count = 1000;
    constexpr std::size_t ring = 16 * KiB;   // whole messages up to 8 KiB - 8
    auto size_of = [](std::uint64_t s, std::uint32_t seq) -> std::size_t {
        const std::uint64_t h = mix(s ^ mix(seq));
        return h % 4 == 0 ? 8 + (h >> 8) % 4000 : 20 * KiB + (h >> 8) % (100 * KiB);
    };
    int victims_killed = 0, lost = 0;
    for (int round = 0; round < 12; ++round) {
        const std::uint64_t s = rng();
        const auto delay = std::chrono::microseconds(1000 + rng() % 10000);
        BOOST_TEST_CONTEXT("round " << round << ", stop the writer after " << delay.count() << " us") {
            auto [r, w] = Pipe(false, {.capacity = ring});
            shared_array<std::atomic<std::uint32_t>> seen(count);
            auto read_all = [&]() -> int {
                watchdog wd(40);
                w.close();
                std::int64_t last = -1;
                for (;;) {
                    std::vector<std::byte> m;
                    try {
                        m = r.recv_bytes();
                    } catch (const shmq::eof_error&) {
                        return 0;
                    }
                    const auto t = read_tag(m);
                    SHMQ_CHILD_CHECK(t && t->id == 0 && t->seq < count, 3);
                    SHMQ_CHILD_CHECK(intact(m, 0, t->seq, size_of(s, t->seq)), 4);
                    SHMQ_CHILD_CHECK(static_cast<std::int64_t>(t->seq) > last, 5);   // FIFO, no repeats
                    last = t->seq;
                    seen[t->seq].fetch_add(1);
                }
            };
            scoped_child victim(read_all);
            scoped_child survivor(read_all);
            scoped_child writer([&]() -> int {
                watchdog wd(40);
                r.close();
                for (std::uint32_t seq = 0; seq < count; ++seq)
                    w.send_bytes(make_tagged(0, seq, size_of(s, seq)));
                return 0;
            });
            r.close();
            w.close();
            std::this_thread::sleep_for(delay);
            writer.kill(SIGSTOP);
            std::this_thread::sleep_for(30ms);   // the readers run dry: one mid-message, one waiting
            victim.kill();
            BOOST_TEST(wait_exited_no_reap(victim.pid(), 5s));
            std::this_thread::sleep_for(30ms);
            writer.kill(SIGCONT);
            BOOST_TEST(writer.wait(30s) == 0);
            BOOST_TEST(survivor.wait(30s) == 0);
            const int v = victim.wait();
            BOOST_TEST((v == -SIGKILL || v == 0));   // 0: it had already seen EOF
            if (v == -SIGKILL) ++victims_killed;
            std::uint32_t dup = 0, missing = 0;
            for (std::uint32_t i = 0; i < count; ++i) {
                if (seen[i].load() > 1) ++dup;
                if (seen[i].load() == 0) ++missing;
            }
            lost += missing;
            BOOST_TEST(dup == 0u);
            // The victim's in-flight message (mid-stream, or received but not yet recorded) may
            // be lost; nothing else.
            BOOST_TEST(missing <= (v == -SIGKILL ? 1u : 0u));
        }
    }
    BOOST_TEST_MESSAGE("reader_killed_mid_stream: " << victims_killed << " victims killed, "
                                                    << lost << " in-flight messages lost");
    BOOST_TEST(victims_killed > 0);
}

BOOST_AUTO_TEST_CASE(writers_killed_holding_the_lease_are_taken_over, *utf::timeout(40))
{
    // Below the facade, to see who holds the writer lease: three writers queue up for it, each
    // sending a message that cannot fit in the ring while nobody reads. Kill whoever holds it,
    // three times: the second and third holders took it over from a dead owner. Then a new
    // writer takes it over once more and its message reaches a reader intact.
    auto seg = anonymous_segment(4096);
    sd::channel ch(seg, 0, false);
    sd::channel_state& st = seg->channel(0);
    const auto big = make_pattern(64 * KiB, 1);
    std::vector<scoped_child> writers;
    std::set<pid_t> alive;
    for (int k = 0; k < 3; ++k) {
        writers.emplace_back([&]() -> int {
            watchdog wd(30);
            ch.write(big, sd::deadline());
            return 0;
        });
        alive.insert(writers.back().pid());
    }
    for (int round = 0; round < 3; ++round) {
        pid_t owner = 0;
        stopwatch sw;
        while (sw.seconds() < 5) {
            owner = static_cast<pid_t>(st.wlock.owner());
            if (alive.count(owner)) break;
            std::this_thread::sleep_for(1ms);
        }
        BOOST_TEST_REQUIRE(alive.count(owner) == 1u, "round " << round << ": no live writer holds the lease");
        ::kill(owner, SIGKILL);
        alive.erase(owner);
        BOOST_TEST(wait_exited_no_reap(owner, 5s));
    }
    BOOST_TEST(alive.empty());

    scoped_child reader([&]() -> int {
        watchdog wd(15);
        vec_sink sink;
        SHMQ_CHILD_CHECK(ch.read(sink, within(10s)) == sd::io_status::ok, 1);
        SHMQ_CHILD_CHECK(to_string(sink.v) == "after", 2);
        return 0;
    });
    BOOST_TEST((ch.write(to_bytes("after"), within(10s)) == sd::io_status::ok));
    BOOST_TEST(reader.wait() == 0);
    for (auto& c : writers) BOOST_TEST(c.wait() == -SIGKILL);
}

BOOST_AUTO_TEST_CASE(connection_writers_killed_mid_message_next_writer_delivers, *utf::timeout(40))
{
    // The same through the facade: writers block mid-message (bigger than the ring, nobody
    // reads) and are killed one by one; a new writer's message then arrives whole and first.
    auto [r, w] = Pipe(false, {.capacity = 4096});
    std::vector<scoped_child> writers;
    for (int k = 0; k < 3; ++k)
        writers.emplace_back([&, k]() -> int {
            watchdog wd(30);
            r.close();
            w.send_bytes(make_pattern(64 * KiB, k));
            return 0;
        });
    std::this_thread::sleep_for(100ms);
    for (auto& c : writers) {
        c.kill();
        BOOST_TEST(wait_exited_no_reap(c.pid(), 5s));
        std::this_thread::sleep_for(50ms);   // time for a waiting writer to take the lease over
    }
    scoped_child reader([&]() -> int {
        watchdog wd(15);
        w.close();
        const auto m = r.recv_bytes();
        SHMQ_CHILD_CHECK(m.size() == 1000 && matches_pattern(m, 99), 1);
        try {
            r.recv_bytes();
            return 2;
        } catch (const shmq::eof_error&) {
        }
        return 0;
    });
    r.close();
    w.send_bytes(make_pattern(1000, 99));
    w.close();
    BOOST_TEST(reader.wait() == 0);
    for (auto& c : writers) BOOST_TEST(c.wait() == -SIGKILL);
}

BOOST_AUTO_TEST_CASE(process_killed_inside_endpoint_bookkeeping_blocks_nobody, *utf::timeout(40))
{
    // Endpoint accounting takes the registry lock on every fork (atfork handlers), close and
    // liveness check. A child that forks in a tight loop is killed at random moments, sometimes
    // inside that lock or between a fork's attach and detach; afterwards the parent must still
    // close, fork and see EOF without waiting on the dead child.
    const auto seed = test_seed();
    BOOST_TEST_MESSAGE("process_killed_inside_endpoint_bookkeeping: SHMQ_TEST_SEED=" << seed);
    std::mt19937_64 rng(seed);
    for (int round = 0; round < 10; ++round) {
        const auto delay = std::chrono::microseconds(rng() % 20000);
        BOOST_TEST_CONTEXT("round " << round << ", kill after " << delay.count() << " us") {
            auto [r, w] = Pipe(false);
            shared_array<std::atomic<int>> started(1);
            scoped_child busy([&]() -> int {
                watchdog wd(30);
                r.close();
                started[0] = 1;
                for (;;) wait_child(fork_child([] { return 0; }), 5s);
            });
            stopwatch sw;
            while (!started[0].load() && sw.seconds() < 5) std::this_thread::sleep_for(50us);
            std::this_thread::sleep_for(delay);
            busy.kill();
            BOOST_TEST(wait_exited_no_reap(busy.pid(), 5s));
            // Bookkeeping still works: a fork and a close, then EOF once the child's copy is gone.
            scoped_child probe([&]() -> int { return 0; });
            BOOST_TEST(probe.wait() == 0);
            w.close();
            BOOST_TEST(r.poll(2s));
            BOOST_CHECK_THROW(r.recv_bytes(), shmq::eof_error);
            BOOST_TEST(busy.wait() == -SIGKILL);
        }
    }
}

// ================================================================================================
// Several processes on one end.

BOOST_AUTO_TEST_CASE(concurrent_writers_keep_messages_whole_and_fifo_per_writer, *utf::timeout(60))
{
    const auto seed = test_seed();
    BOOST_TEST_MESSAGE("concurrent_writers: SHMQ_TEST_SEED=" << seed);
    constexpr std::uint32_t writers_n = 4, per = 250;
    auto [r, w] = Pipe(false, {.capacity = 16 * KiB});
    std::vector<scoped_child> writers;
    for (std::uint32_t id = 0; id < writers_n; ++id)
        writers.emplace_back([&, id]() -> int {
            watchdog wd(50);
            r.close();
            for (std::uint32_t seq = 0; seq < per; ++seq)
                w.send_bytes(make_tagged(id, seq, size_for(seed ^ id, seq, 8 * KiB, 50 * KiB)));
            return 0;
        });
    w.close();
    std::vector<std::uint32_t> next(writers_n, 0);
    std::size_t bad = 0, total = 0;
    try {
        for (;;) {
            const auto m = r.recv_bytes();
            ++total;
            const auto t = read_tag(m);
            if (!t || t->id >= writers_n ||
                !intact(m, t->id, next[t->id], size_for(seed ^ t->id, next[t->id], 8 * KiB, 50 * KiB))) {
                ++bad;
                continue;
            }
            ++next[t->id];
        }
    } catch (const shmq::eof_error&) {
    }
    BOOST_TEST(bad == 0u);
    BOOST_TEST(total == std::size_t{writers_n} * per);
    for (std::uint32_t id = 0; id < writers_n; ++id) BOOST_TEST(next[id] == per);
    for (auto& c : writers) BOOST_TEST(c.wait() == 0);
}

BOOST_AUTO_TEST_CASE(concurrent_readers_get_each_message_exactly_once, *utf::timeout(60))
{
    const auto seed = test_seed();
    BOOST_TEST_MESSAGE("concurrent_readers: SHMQ_TEST_SEED=" << seed);
    constexpr std::uint32_t count = 2000;
    auto [r, w] = Pipe(false, {.capacity = 16 * KiB});
    shared_array<std::atomic<std::uint32_t>> seen(count);
    std::vector<scoped_child> readers;
    for (int k = 0; k < 3; ++k)
        readers.emplace_back([&]() -> int {
            watchdog wd(50);
            w.close();
            std::int64_t last = -1;
            for (;;) {
                std::vector<std::byte> m;
                try {
                    m = r.recv_bytes();
                } catch (const shmq::eof_error&) {
                    return 0;
                }
                const auto t = read_tag(m);
                SHMQ_CHILD_CHECK(t && t->seq < count, 3);
                SHMQ_CHILD_CHECK(intact(m, 0, t->seq, size_for(seed, t->seq, 8 * KiB, 40 * KiB)), 4);
                SHMQ_CHILD_CHECK(static_cast<std::int64_t>(t->seq) > last, 5);
                last = t->seq;
                seen[t->seq].fetch_add(1);
            }
        });
    r.close();
    for (std::uint32_t seq = 0; seq < count; ++seq)
        w.send_bytes(make_tagged(0, seq, size_for(seed, seq, 8 * KiB, 40 * KiB)));
    w.close();
    for (auto& c : readers) BOOST_TEST(c.wait(30s) == 0);
    std::uint32_t wrong = 0;
    for (std::uint32_t i = 0; i < count; ++i) wrong += seen[i].load() != 1;
    BOOST_TEST(wrong == 0u);
}

// ================================================================================================
// A corrupted ring: broken_error on read (and write), the lease released, never a crash.

namespace {

/// One channel over a fresh anonymous segment, with raw access to its ring and positions.
struct raw_channel {
    explicit raw_channel(std::uint64_t capacity = 4096)
        : seg(anonymous_segment(capacity)), ch(seg, 0, false) {}
    sd::channel_state& st() { return seg->channel(0); }
    std::byte* ring() { return seg->ring(0); }
    std::uint64_t cap() { return seg->capacity(); }
    /// Writes a record header (and payload bytes) at a ring offset.
    void forge(std::uint64_t off, std::uint32_t size, std::uint32_t kind,
               std::span<const std::byte> payload = {}) {
        sd::ring::record_header h{size, kind};
        std::memcpy(ring() + off, &h, sizeof h);
        if (!payload.empty()) std::memcpy(ring() + off + 8, payload.data(), payload.size());
    }
    void set_head(std::uint64_t bytes, std::uint64_t msgs) { st().head.store(sd::ring::advance(0, bytes, msgs)); }
    void set_tail(std::uint64_t bytes, std::uint64_t msgs) { st().tail.store(sd::ring::advance(0, bytes, msgs)); }
    sd::io_status read() {
        vec_sink sink;
        return ch.read(sink, within(200ms));
    }

    std::shared_ptr<sd::segment> seg;
    sd::channel ch;
};

/// Reading rc throws broken_error; a second read neither crashes, hangs nor delivers anything
/// (it may throw again, or skip what the first read left behind and time out); the reader lease
/// is free afterwards.
void check_read_broken(raw_channel& rc) {
    BOOST_CHECK_THROW(rc.read(), shmq::broken_error);
    try {
        BOOST_TEST((rc.read() != sd::io_status::ok));
    } catch (const shmq::broken_error&) {
    }
    BOOST_TEST(rc.st().rlock.owner() == 0u);
}

std::vector<std::byte> u64_bytes(std::uint64_t v) {
    std::vector<std::byte> b(8);
    std::memcpy(b.data(), &v, 8);
    return b;
}

constexpr std::uint32_t k_whole = 1, k_first = 2, k_middle = 3, k_last = 4, k_pad = 5;

} // namespace

BOOST_AUTO_TEST_CASE(corrupt_record_kind_is_broken_error)
{
    for (std::uint32_t kind : {0u, 6u, 99u, 0xFFFFFFFFu}) {
        BOOST_TEST_CONTEXT("kind " << kind) {
            raw_channel rc;
            BOOST_TEST_REQUIRE((rc.ch.write(to_bytes("hello"), within(1s)) == sd::io_status::ok));
            rc.forge(0, 5, kind);
            check_read_broken(rc);
        }
    }
}

BOOST_AUTO_TEST_CASE(corrupt_record_size_is_broken_error)
{
    for (std::uint32_t size : {100u, 4089u, 5000u, 1u << 20, 0xFFFFFFF8u, 0xFFFFFFFFu}) {
        BOOST_TEST_CONTEXT("size " << size) {
            raw_channel rc;   // one 5-byte message published: 16 bytes
            BOOST_TEST_REQUIRE((rc.ch.write(to_bytes("hello"), within(1s)) == sd::io_status::ok));
            rc.forge(0, size, k_whole);
            check_read_broken(rc);
        }
    }
}

BOOST_AUTO_TEST_CASE(head_ahead_of_tail_is_broken_error_for_reader_and_writer)
{
    {
        BOOST_TEST_CONTEXT("reader") {
            raw_channel rc;
            BOOST_TEST_REQUIRE((rc.ch.write(to_bytes("hello"), within(1s)) == sd::io_status::ok));
            rc.set_head(64, 1);   // tail is at 16
            check_read_broken(rc);
            // write_some always loads head.
            const std::vector<std::byte> one = to_bytes("x");
            const std::span<const std::byte> msgs[] = {one};
            BOOST_CHECK_THROW(rc.ch.write_some(msgs, within(1s)), shmq::broken_error);
            BOOST_TEST(rc.st().wlock.owner() == 0u);
        }
    }
    {
        // A writer reads head only when its cached copy says the ring is full (by design: the
        // cache can only underestimate room), so make the ring look full.
        BOOST_TEST_CONTEXT("writer") {
            raw_channel rc;
            rc.set_tail(rc.cap(), 1);
            rc.set_head(rc.cap() + 64, 1);
            BOOST_CHECK_THROW(rc.ch.write(to_bytes("more"), within(1s)), shmq::broken_error);
            BOOST_TEST(rc.st().wlock.owner() == 0u);
            BOOST_CHECK_THROW(rc.ch.write(make_pattern(10000, 1), within(1s)), shmq::broken_error);
            BOOST_TEST(rc.st().wlock.owner() == 0u);
        }
    }
}

BOOST_AUTO_TEST_CASE(tail_beyond_a_full_ring_is_broken_error)
{
    raw_channel rc;
    rc.set_tail(2 * rc.cap() + 16, 3);   // more published bytes than the ring holds
    check_read_broken(rc);
    BOOST_CHECK_THROW(rc.ch.write(to_bytes("more"), within(1s)), shmq::broken_error);
    BOOST_TEST(rc.st().wlock.owner() == 0u);
}

BOOST_AUTO_TEST_CASE(partial_or_overrunning_records_are_broken_error)
{
    {
        BOOST_TEST_CONTEXT("4 published bytes: less than a record header") {
            raw_channel rc;
            rc.forge(0, 0, k_whole);
            rc.set_tail(4, 1);
            check_read_broken(rc);
        }
    }
    {
        BOOST_TEST_CONTEXT("record of 100 bytes, 16 published") {
            raw_channel rc;
            rc.forge(0, 100, k_whole);
            rc.set_tail(16, 1);
            check_read_broken(rc);
        }
    }
    {
        BOOST_TEST_CONTEXT("record running past the end of the ring") {
            raw_channel rc;
            rc.set_head(rc.cap() - 16, 0);
            rc.forge(rc.cap() - 16, 64, k_whole);
            rc.set_tail(rc.cap() + 64, 1);
            check_read_broken(rc);
        }
    }
    {
        BOOST_TEST_CONTEXT("pad record with the wrong size") {
            raw_channel rc;
            rc.set_head(rc.cap() - 64, 0);
            rc.forge(rc.cap() - 64, 8, k_pad);   // a pad must fill the rest (56 bytes)
            rc.forge(0, 0, k_whole);
            rc.set_tail(rc.cap() + 8, 1);
            check_read_broken(rc);
        }
    }
}

BOOST_AUTO_TEST_CASE(corrupt_streamed_pieces_are_broken_error)
{
    std::vector<std::byte> body(16, std::byte{0x5A});
    auto first_payload = [&](std::uint64_t total) {
        auto p = u64_bytes(total);
        auto writer = u64_bytes(1);   // the writer's lease word (ring.hpp): here nobody's
        p.insert(p.end(), writer.begin(), writer.end());
        p.insert(p.end(), body.begin(), body.end());
        return p;   // 32 bytes: the length, the writer, then 16 bytes of the message
    };
    // Where records end: a first piece of 32 bytes, then a piece of 16 (ring.hpp, footprint).
    const std::uint64_t f1 = sd::ring::footprint(32), f2 = f1 + sd::ring::footprint(16);
    {
        BOOST_TEST_CONTEXT("first piece shorter than its length prefix") {
            raw_channel rc;
            rc.forge(0, 4, k_first, u64_bytes(100));
            rc.set_tail(sd::ring::footprint(4), 0);
            check_read_broken(rc);
        }
    }
    {
        BOOST_TEST_CONTEXT("total length not larger than the first piece") {
            raw_channel rc;
            rc.forge(0, 32, k_first, first_payload(10));
            rc.set_tail(f1, 0);
            check_read_broken(rc);
        }
    }
    {
        BOOST_TEST_CONTEXT("total length beyond any position") {
            raw_channel rc;
            rc.forge(0, 32, k_first, first_payload(std::uint64_t{1} << 62));
            rc.set_tail(f1, 0);
            check_read_broken(rc);
        }
    }
    {
        BOOST_TEST_CONTEXT("middle piece overshooting the total") {
            raw_channel rc;
            rc.forge(0, 32, k_first, first_payload(20));
            rc.forge(f1, 16, k_middle, body);   // 16 + 16 > 20
            rc.set_tail(f2, 0);
            check_read_broken(rc);
        }
    }
    {
        BOOST_TEST_CONTEXT("last piece short of the total") {
            raw_channel rc;
            rc.forge(0, 32, k_first, first_payload(40));
            rc.forge(f1, 16, k_last, body);     // 16 + 16 != 40
            rc.set_tail(f2, 1);
            check_read_broken(rc);
        }
    }
    {
        BOOST_TEST_CONTEXT("middle piece completing the total") {
            raw_channel rc;
            rc.forge(0, 32, k_first, first_payload(32));
            rc.forge(f1, 16, k_middle, body);   // 16 + 16 == 32 but not marked last
            rc.set_tail(f2, 0);
            check_read_broken(rc);
        }
    }
    {
        BOOST_TEST_CONTEXT("well-formed forgery is accepted (control)") {
            raw_channel rc;
            rc.forge(0, 32, k_first, first_payload(32));
            rc.forge(f1, 16, k_last, body);
            rc.set_tail(f2, 1);
            vec_sink sink;
            BOOST_TEST((rc.ch.read(sink, within(1s)) == sd::io_status::ok));
            BOOST_TEST(sink.v.size() == 32u);
        }
    }
}

// ================================================================================================
// Named segments.

namespace {

sd::segment_params named_params(sd::segment_kind kind = sd::segment_kind::pipe, std::uint64_t fp = 0) {
    sd::segment_params p;
    p.kind = kind;
    p.channels = 2;
    p.capacity = 4096;
    p.type_fingerprint = fp;
    return p;
}

/// Maps the named segment's header through a second, independent mapping and lets f scribble on it.
void scribble_header(const std::string& name, const std::function<void(sd::segment_header&)>& f) {
    const int fd = ::shm_open(("/shmq." + name).c_str(), O_RDWR, 0);
    BOOST_TEST_REQUIRE(fd >= 0);
    void* p = ::mmap(nullptr, sizeof(sd::segment_header), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    BOOST_TEST_REQUIRE(p != MAP_FAILED);
    f(*static_cast<sd::segment_header*>(p));
    ::munmap(p, sizeof(sd::segment_header));
}

void truncate_named(const std::string& name, off_t size) {
    const int fd = ::shm_open(("/shmq." + name).c_str(), O_RDWR, 0);
    BOOST_TEST_REQUIRE(fd >= 0);
    BOOST_TEST(::ftruncate(fd, size) == 0);
    ::close(fd);
}

} // namespace

BOOST_AUTO_TEST_CASE(named_segment_lifecycle)
{
    const auto name = unique_name();
    shm_remover cleanup(name);
    auto created = sd::segment::create_named(name, named_params(), 0600);
    struct stat sb {};
    BOOST_TEST(::stat(shm_path(name).c_str(), &sb) == 0);   // visible as /dev/shm/shmq.<name>

    auto opened = sd::segment::open_named(name, sd::segment_kind::pipe, 0);
    BOOST_TEST(opened->capacity() == 4096u);
    BOOST_TEST(opened->channels() == 2u);
    sd::channel tx(created, 1, false), rx(opened, 1, false);
    BOOST_TEST((tx.write(to_bytes("through two mappings"), within(1s)) == sd::io_status::ok));
    vec_sink sink;
    BOOST_TEST((rx.read(sink, within(1s)) == sd::io_status::ok));
    BOOST_TEST(to_string(sink.v) == "through two mappings");

    BOOST_CHECK_THROW(sd::segment::create_named(name, named_params(), 0600), shmq::exists_error);

    BOOST_TEST(sd::segment::remove(name));
    BOOST_TEST(shm_entries(name).empty());
    BOOST_TEST(::stat(shm_path(name).c_str(), &sb) != 0);
    BOOST_TEST(!sd::segment::remove(name));
    BOOST_CHECK_THROW(sd::segment::open_named(name, sd::segment_kind::pipe, 0), shmq::not_found_error);
    // Attached handles keep working after remove().
    BOOST_TEST((tx.write(to_bytes("still here"), within(1s)) == sd::io_status::ok));
    BOOST_TEST((rx.read(sink, within(1s)) == sd::io_status::ok));
    BOOST_TEST(to_string(sink.v) == "still here");
    // The name is free again.
    auto again = sd::segment::create_named(name, named_params(), 0600);
    BOOST_TEST(sd::segment::remove(name));
}

BOOST_AUTO_TEST_CASE(named_segment_missing_is_not_found)
{
    const auto name = unique_name();
    shm_remover cleanup(name);
    BOOST_CHECK_THROW(sd::segment::open_named(name, sd::segment_kind::pipe, 0), shmq::not_found_error);
    BOOST_TEST(!sd::segment::remove(name));
    BOOST_TEST(shm_entries(name).empty());   // open did not create it
}

BOOST_AUTO_TEST_CASE(named_segment_wrong_kind_or_type_is_type_error)
{
    const auto name = unique_name();
    shm_remover cleanup(name);
    sd::segment::create_named(name, named_params(sd::segment_kind::queue, 0x1234), 0600);
    BOOST_CHECK_THROW(sd::segment::open_named(name, sd::segment_kind::pipe, 0x1234), shmq::type_error);
    BOOST_CHECK_THROW(sd::segment::open_named(name, sd::segment_kind::simple_queue, 0x1234), shmq::type_error);
    BOOST_CHECK_THROW(sd::segment::open_named(name, sd::segment_kind::queue, 0x1235), shmq::type_error);
    BOOST_CHECK_THROW(sd::segment::open_named(name, sd::segment_kind::queue, 0), shmq::type_error);
    BOOST_CHECK_NO_THROW(sd::segment::open_named(name, sd::segment_kind::queue, 0x1234));
}

BOOST_AUTO_TEST_CASE(bad_names_are_value_error)
{
    const std::vector<std::string> bad{"", "a/b", "/lead", "trail/", std::string(201, 'n'),
                                       std::string("a\0b", 3)};
    for (const auto& n : bad) {
        BOOST_TEST_CONTEXT("name of " << n.size() << " chars: '" << n.substr(0, 20) << "'") {
            BOOST_CHECK_THROW(sd::segment::check_name(n), shmq::value_error);
            BOOST_CHECK_THROW(sd::segment::create_named(n, named_params(), 0600), shmq::value_error);
            BOOST_CHECK_THROW(sd::segment::open_named(n, sd::segment_kind::pipe, 0), shmq::value_error);
            BOOST_TEST(!sd::segment::remove(n));
        }
    }
    // 200 characters is still fine.
    std::string longest = unique_name();
    longest.resize(200, 'x');
    shm_remover cleanup(longest);
    BOOST_CHECK_NO_THROW(sd::segment::create_named(longest, named_params(), 0600));
    BOOST_TEST(shm_entries(longest).size() == 1u);
    BOOST_TEST(sd::segment::remove(longest));
    BOOST_TEST(shm_entries(longest).empty());
}

BOOST_AUTO_TEST_CASE(named_segment_mode_is_applied_exactly)
{
    struct umask_guard {
        mode_t old;
        explicit umask_guard(mode_t m) : old(::umask(m)) {}
        ~umask_guard() { ::umask(old); }
    };
    const std::pair<unsigned, mode_t> cases[] = {{0640, 077}, {0600, 077}, {0666, 022}, {0604, 0}, {0660, 007}};
    for (auto [mode, mask] : cases) {
        BOOST_TEST_CONTEXT("mode " << std::oct << mode << " umask " << mask) {
            const auto name = unique_name();
            shm_remover cleanup(name);
            umask_guard g(mask);
            sd::segment::create_named(name, named_params(), mode);
            struct stat sb {};
            BOOST_TEST_REQUIRE(::stat(shm_path(name).c_str(), &sb) == 0);
            BOOST_TEST((sb.st_mode & 07777) == mode);
        }
    }
}

BOOST_AUTO_TEST_CASE(corrupt_named_header_is_broken_error, *utf::timeout(30))
{
    struct corruption {
        const char* what;
        std::function<void(sd::segment_header&)> scribble;
    };
    const std::vector<corruption> cases{
        {"magic", [](sd::segment_header& h) { h.magic ^= 1; }},
        {"version", [](sd::segment_header& h) { h.version += 1; }},
        {"capacity not a power of two", [](sd::segment_header& h) { h.capacity = 12345; }},
        {"capacity zero", [](sd::segment_header& h) { h.capacity = 0; }},
        {"capacity huge", [](sd::segment_header& h) { h.capacity = std::uint64_t{1} << 40; }},
        {"capacity larger than the mapping", [](sd::segment_header& h) { h.capacity = 1u << 20; }},
        {"no channels", [](sd::segment_header& h) { h.channels = 0; }},
        {"three channels", [](sd::segment_header& h) { h.channels = 3; }},
        {"total size", [](sd::segment_header& h) { h.total_size += 64; }},
    };
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT(c.what) {
            const auto name = unique_name();
            shm_remover cleanup(name);
            sd::segment::create_named(name, named_params(), 0600);
            scribble_header(name, c.scribble);
            BOOST_CHECK_THROW(sd::segment::open_named(name, sd::segment_kind::pipe, 0), shmq::broken_error);
        }
    }
    {
        BOOST_TEST_CONTEXT("file shorter than the header says") {
            const auto name = unique_name();
            shm_remover cleanup(name);
            sd::segment::create_named(name, named_params(), 0600);
            truncate_named(name, 4096);
            BOOST_CHECK_THROW(sd::segment::open_named(name, sd::segment_kind::pipe, 0), shmq::broken_error);
        }
    }
    {
        BOOST_TEST_CONTEXT("never marked ready") {
            const auto name = unique_name();
            shm_remover cleanup(name);
            sd::segment::create_named(name, named_params(), 0600);
            scribble_header(name, [](sd::segment_header& h) { h.ready = 0; });
            stopwatch sw;
            BOOST_CHECK_THROW(sd::segment::open_named(name, sd::segment_kind::pipe, 0), shmq::broken_error);
            BOOST_TEST(sw.seconds() < 10.0);
        }
    }
    {
        BOOST_TEST_CONTEXT("file shorter than a header") {
            const auto name = unique_name();
            shm_remover cleanup(name);
            sd::segment::create_named(name, named_params(), 0600);
            truncate_named(name, 16);
            stopwatch sw;
            BOOST_CHECK_THROW(sd::segment::open_named(name, sd::segment_kind::pipe, 0), shmq::broken_error);
            BOOST_TEST(sw.seconds() < 10.0);
        }
    }
}

// Issue 7 A.11: the 8-byte length of a streamed message is a claim, not a fact. A first piece
// claiming 2 GiB (or 60 GiB) with a few bytes behind it must not make the reader allocate that:
// memory follows the bytes that really arrive. Its writer is nobody, so the stream is dropped as
// abandoned and the next message is delivered (no poison record).
BOOST_AUTO_TEST_CASE(claimed_stream_length_does_not_drive_allocation)
{
    for (std::uint64_t claim : {std::uint64_t{2} << 30, std::uint64_t{60} << 30}) {
        BOOST_TEST_CONTEXT("claimed " << (claim >> 30) << " GiB") {
            raw_channel rc;
            auto payload = u64_bytes(claim);
            auto writer = u64_bytes(1);   // a writer that holds no lease: the stream is abandoned
            payload.insert(payload.end(), writer.begin(), writer.end());
            payload.resize(payload.size() + 16, std::byte{0x5A});
            rc.forge(0, 32, k_first, payload);
            std::vector<std::byte> next(24, std::byte{0x11});
            const std::uint64_t second = sd::ring::footprint(32);
            rc.forge(second, 24, k_whole, next);
            rc.set_tail(second + sd::ring::footprint(24), 1);
            class max_sink final : public sd::message_sink {
            public:
                std::byte* reserve(std::size_t n) override {
                    largest = std::max(largest, n);
                    v.resize(n);
                    return v.data();
                }
                std::size_t largest = 0;
                std::vector<std::byte> v;
            } sink;
            BOOST_TEST((rc.ch.read(sink, within(2s)) == sd::io_status::ok));
            BOOST_TEST(sink.largest <= 4096u, "the reader reserved " << sink.largest << " bytes");
            BOOST_TEST(sink.v == next);
        }
    }
}

// channel::read's short path takes a whole record at head and hands everything else, with the
// lease it holds, to the general path. Each way out of it: a sink that cannot hold the message
// (error, that message dropped, the next one delivered), a message longer than maxlength (left
// unread, its length reported), a pad before the record (skipped). After each, the reader lease
// is free and nothing else was consumed.
BOOST_AUTO_TEST_CASE(whole_records_the_short_path_hands_on)
{
    raw_channel rc;
    const std::vector<std::byte> a(24, std::byte{0xA1}), b(40, std::byte{0xB2}), c(16, std::byte{0xC3});
    // [0, 32) a whole 24; [32, end_b) a whole 40 (padded to a line: ring.hpp, footprint); then a
    // pad to the ring's end, and c at 0 after a wrap is written below.
    const std::uint64_t end_b = 32 + sd::ring::footprint(40);
    rc.forge(0, 24, k_whole, a);
    rc.forge(32, 40, k_whole, b);
    rc.set_tail(end_b, 2);

    class refusing_sink final : public sd::message_sink {
    public:
        std::byte* reserve(std::size_t n) override {
            ++calls;
            if (n == 24) throw std::bad_alloc();
            v.resize(n);
            return v.data();
        }
        int calls = 0;
        std::vector<std::byte> v;
    } sink;
    BOOST_CHECK_THROW(rc.ch.read(sink, within(2s)), shmq::error);   // a: cannot be held
    BOOST_TEST(rc.st().rlock.owner() == 0u);
    BOOST_TEST(sd::ring::bytes_of(rc.st().head.load()) == 32u);    // a dropped, b still there

    std::size_t length = 0;
    vec_sink small;
    BOOST_TEST((rc.ch.read(small, within(2s), 39, &length) == sd::io_status::too_long));
    BOOST_TEST(length == 40u);
    BOOST_TEST(rc.st().rlock.owner() == 0u);
    BOOST_TEST(sd::ring::bytes_of(rc.st().head.load()) == 32u);    // b left unread
    BOOST_TEST((rc.ch.read(sink, within(2s), 40, &length) == sd::io_status::ok));
    BOOST_TEST(sink.v == b);

    // A pad from end_b to the ring's end, then c at 0: one read skips the pad and returns c.
    const std::uint64_t cap = rc.cap();
    rc.forge(end_b, static_cast<std::uint32_t>(cap - end_b - 8), k_pad);
    rc.forge(0, 16, k_whole, c);
    rc.set_tail(cap + sd::ring::footprint(16), 3);
    vec_sink third;
    BOOST_TEST((rc.ch.read(third, within(2s)) == sd::io_status::ok));
    BOOST_TEST(third.v == c);
    BOOST_TEST(rc.st().rlock.owner() == 0u);
    BOOST_TEST(sd::ring::bytes_of(rc.st().head.load()) == cap + sd::ring::footprint(16));
    BOOST_TEST((rc.read() == sd::io_status::timed_out));            // nothing else was there
}

// Found by fuzz_segment: a head that is not 8-aligned (records always are) made empty()'s walk
// read a header word at a misaligned address (undefined behaviour). It is a corrupt position:
// empty()/poll() answer without touching it, and a read reports broken_error.
BOOST_AUTO_TEST_CASE(misaligned_head_is_broken_not_undefined)
{
    raw_channel rc;
    rc.forge(0, 24, k_whole, std::vector<std::byte>(24, std::byte{1}));
    rc.set_head(3, 0);
    rc.set_tail(32, 1);
    BOOST_TEST(!rc.ch.empty());   // "something is there": a reader decides
    BOOST_CHECK_THROW(rc.read(), shmq::broken_error);
}

// The ring's layout (ring.hpp, footprint): a record of more than half a cache line takes whole
// lines, so that a writer never writes into a line its reader is copying from (doc/design.md §3);
// smaller records stay packed. Messages of one size, written from a line-aligned start, keep to
// their lines through every wrap of the ring, and come back intact; a small message in between
// only moves where the next ones start.
BOOST_AUTO_TEST_CASE(records_larger_than_half_a_line_keep_to_their_lines)
{
    BOOST_TEST(sd::ring::footprint(0) == 8u);
    BOOST_TEST(sd::ring::footprint(24) == 32u);      // 32: packed
    BOOST_TEST(sd::ring::footprint(25) == 64u);      // 40: one line
    BOOST_TEST(sd::ring::footprint(56) == 64u);
    BOOST_TEST(sd::ring::footprint(64) == 128u);     // 72: two lines
    BOOST_TEST(sd::ring::footprint(1024) == 1088u);

    raw_channel rc;   // 4 KiB: 100 messages of 64 B wrap it three times
    const std::uint64_t line = sd::cache_line;
    for (std::uint32_t i = 0; i < 100; ++i) {
        const std::vector<std::byte> msg = make_pattern(64, i);
        BOOST_TEST_REQUIRE((rc.ch.write(msg, within(1s)) == sd::io_status::ok));
        BOOST_TEST(sd::ring::bytes_of(rc.st().tail.load()) % line == 0u, "message " << i);
        vec_sink sink;
        BOOST_TEST_REQUIRE((rc.ch.read(sink, within(1s)) == sd::io_status::ok));
        BOOST_TEST(sink.v == msg, "message " << i);
    }
    // An 8-byte message takes 16 bytes: the 64-byte ones after it start 16 bytes into a line.
    BOOST_TEST_REQUIRE((rc.ch.write(make_pattern(8, 1000), within(1s)) == sd::io_status::ok));
    for (std::uint32_t i = 0; i < 100; ++i) {
        const std::vector<std::byte> msg = make_pattern(64, 2000 + i);
        BOOST_TEST_REQUIRE((rc.ch.write(msg, within(1s)) == sd::io_status::ok));
        vec_sink sink;
        BOOST_TEST_REQUIRE((rc.ch.read(sink, within(1s)) == sd::io_status::ok));
        if (i == 0) {
            BOOST_TEST(sink.v == make_pattern(8, 1000));
            BOOST_TEST_REQUIRE((rc.ch.read(sink, within(1s)) == sd::io_status::ok));
        }
        BOOST_TEST(sink.v == msg, "message " << i);
    }
    BOOST_TEST((rc.read() == sd::io_status::timed_out));   // nothing else was there
    BOOST_TEST(rc.st().rlock.owner() == 0u);
    BOOST_TEST(rc.st().wlock.owner() == 0u);
}
