// SPDX-License-Identifier: BSL-1.0
// A process SIGKILLed exactly between two steps of the protocol (issue 7, B.2): a writer or a
// reader installs a test hook (lib/test_hook.hpp) that kills its own process at the k-th time it
// reaches a named point, and the survivors check the promise: no message torn or duplicated, at
// most the killed process's in-flight message lost, and nobody hangs (a new writer or reader takes
// the dead one's lease over and the queue goes on).
//
// Items are strings "<seq>:" followed by a pattern derived from seq; sizes cycle through small
// records and messages larger than half the 4 KiB ring, so streamed pieces are among the points.
#define BOOST_TEST_MODULE kill_points
#include <boost/test/unit_test.hpp>

#include "test_fixtures.hpp"
#include "test_hook.hpp"

#include <shmq/shmq.hpp>

#include <atomic>
#include <csignal>
#include <cstring>
#include <set>
#include <string>
#include <thread>

using namespace shmq::test;
namespace hook = shmq::detail::test_hook;

namespace {

constexpr std::size_t ring = 4096;
constexpr int items = 40;

std::size_t size_of(int seq) {
    static const std::size_t sizes[] = {8, 100, 1500, 3000, 9000, 64, 2100, 20};
    return sizes[seq % 8];
}

std::string item(int seq) {
    std::string s = std::to_string(seq) + ":";
    const auto body = make_pattern(size_of(seq), static_cast<std::uint64_t>(seq) + 1);
    s.append(reinterpret_cast<const char*>(body.data()), body.size());
    return s;
}

/// The seq of an intact item, or -1 if it is torn.
int check(const std::string& s) {
    const auto colon = s.find(':');
    if (colon == std::string::npos || colon == 0 || colon > 6) return -1;
    const int seq = std::stoi(s.substr(0, colon));
    if (seq < 0 || s.size() != colon + 1 + size_of(seq)) return -1;
    const std::span<const std::byte> body(reinterpret_cast<const std::byte*>(s.data()) + colon + 1,
                                          s.size() - colon - 1);
    return matches_pattern(body, static_cast<std::uint64_t>(seq) + 1) ? seq : -1;
}

// The hook of a doomed child: SIGKILL itself at the k-th arrival at `target`.
const char* g_target = nullptr;
std::atomic<int> g_countdown{0};
void kill_at(const char* point) {
    if (g_target && std::strcmp(point, g_target) == 0 && g_countdown.fetch_sub(1) == 1)
        ::kill(::getpid(), SIGKILL);
}
void arm(const char* target, int k) {
    g_target = target;
    g_countdown = k;
    hook::install(&kill_at);
}

/// Shared memory the doomed reader records its items in (it cannot report after SIGKILL).
struct ledger {
    std::atomic<int> count;
    std::atomic<int> seqs[items];
};

struct shared_ledger {
    shared_ledger() {
        void* p = ::mmap(nullptr, sizeof(ledger), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        BOOST_REQUIRE(p != MAP_FAILED);
        l = new (p) ledger{};
    }
    ~shared_ledger() { ::munmap(l, sizeof(ledger)); }
    ledger* l;
};

const char* const writer_points[] = {"channel.write.copied", "channel.write.published",
                                     "channel.stream.piece", "mutex.acquired"};
const char* const reader_points[] = {"channel.read.copied", "channel.read.piece", "mutex.acquired"};

// Items of an unbounded queue large enough to wait for room (64 KiB or more) and to be streamed
// through the 16 KiB ring below: "<seq>:" and a pattern.
std::string big_item(int seq) {
    std::string s = std::to_string(seq) + ":";
    const auto body = make_pattern(70'000 + 1000 * static_cast<std::size_t>(seq), static_cast<std::uint64_t>(seq) + 1);
    s.append(reinterpret_cast<const char*>(body.data()), body.size());
    return s;
}
int check_big(const std::string& s) {
    const auto colon = s.find(':');
    if (colon == std::string::npos || colon == 0 || colon > 6) return -1;
    const int seq = std::stoi(s.substr(0, colon));
    if (seq < 0 || s.size() != colon + 1 + 70'000 + 1000 * static_cast<std::size_t>(seq)) return -1;
    const std::span<const std::byte> body(reinterpret_cast<const std::byte*>(s.data()) + colon + 1,
                                          s.size() - colon - 1);
    return matches_pattern(body, static_cast<std::uint64_t>(seq) + 1) ? seq : -1;
}

// Reads while a doomed writer writes (its puts would block on the small ring, or pile up), then
// checks the promise: nothing torn, the writer's items once and in order (0, 1, ...: a prefix,
// all n of them if it was not killed), and the item (seq n - 1) that `put_last` puts from a
// new writer comes through: the dead writer's lease was taken over.
void check_after_killed_writer(shmq::Queue<std::string>& q, scoped_child& doomed, int n,
                               int (*check_item)(const std::string&),
                               const std::function<void()>& put_last) {
    std::vector<int> got;
    bool torn = false;
    const auto t0 = clk::now();
    while (seconds_since(t0) < 20) {
        try {
            const int seq = check_item(q.get(true, 300ms));
            if (seq < 0) torn = true; else got.push_back(seq);
        } catch (const shmq::empty_error&) {
            if (has_exited(doomed.pid())) break;
        }
    }
    const int code = doomed.wait(5s);
    BOOST_TEST((code == -SIGKILL || code == 0), "writer exit " << code);
    BOOST_TEST(!torn);
    bool prefix = true;
    for (std::size_t i = 0; i < got.size(); ++i) prefix = prefix && got[i] == static_cast<int>(i);
    BOOST_TEST(prefix, "items out of order or duplicated");
    if (code == 0) BOOST_TEST(got.size() == static_cast<std::size_t>(n));
    scoped_child next([&] {
        put_last();
        return 0;
    });
    int last = -2;
    try {
        last = check_item(q.get(true, 5s));
    } catch (const shmq::empty_error&) {
    }
    BOOST_TEST(last == n - 1, "the next writer's item did not arrive (lease not taken over?)");
    BOOST_TEST(next.wait(5s) == 0);
}

} // namespace

// A writer killed at each point: the items before it arrive whole and once, the one it was
// writing may be lost, and a second writer's items then arrive (its lease taken over).
BOOST_AUTO_TEST_CASE(writer_killed_at_each_point, *boost::unit_test::timeout(240)) {
    for (const char* point : writer_points) {
        for (int k : {1, 3, 6}) {
            BOOST_TEST_CONTEXT(point << " hit " << k) {
                shmq::Queue<std::string> q(1000, shmq::options{.capacity = ring});
                scoped_child doomed([&] {
                    arm(point, k);
                    for (int seq = 0; seq < items; ++seq) q.put(item(seq), true, 10s);
                    return 0;   // did not reach the point k times (possible for streamed pieces)
                });
                check_after_killed_writer(q, doomed, items, check, [&] { q.put(item(items - 1), true, 5s); });
            }
        }
    }
}

// An unbounded queue's writer killed with a stream of its put parked (the rest waiting for its
// feeder thread, which writes the rest under the lease the put kept), or while the feeder writes
// that rest (a later piece, from that thread): the items before arrive whole and once, the one
// being written is lost, and the next writer's item comes through (the kept lease is taken over).
BOOST_AUTO_TEST_CASE(unbounded_writer_killed_with_a_parked_stream, *boost::unit_test::timeout(240)) {
    constexpr int big_items = 8;
    for (const char* point : {"channel.stream.parked", "channel.stream.piece"}) {
        for (int k : {1, 2, 9}) {
            BOOST_TEST_CONTEXT(point << " hit " << k) {
                shmq::Queue<std::string> q(0, shmq::options{.capacity = 16384});
                scoped_child doomed([&] {
                    arm(point, k);
                    for (int seq = 0; seq < big_items; ++seq) q.put(big_item(seq));
                    q.close();
                    q.join_thread();
                    return 0;   // did not reach the point k times
                });
                check_after_killed_writer(q, doomed, big_items, check_big, [&] {
                    q.put(big_item(big_items - 1));
                    q.close();
                    q.join_thread();
                });
            }
        }
    }
}

// A reader killed at each point: whatever it had not finished reading is read by the next reader,
// except a streamed message it was half-way through (lost with it). Nothing twice, nothing torn.
BOOST_AUTO_TEST_CASE(reader_killed_at_each_point, *boost::unit_test::timeout(240)) {
    for (const char* point : reader_points) {
        for (int k : {1, 3, 6}) {
            BOOST_TEST_CONTEXT(point << " hit " << k) {
                shmq::Queue<std::string> q(1000, shmq::options{.capacity = ring});
                shared_ledger led;
                scoped_child writer([&] {
                    for (int seq = 0; seq < items; ++seq) q.put(item(seq), true, 20s);
                    return 0;
                });
                scoped_child doomed([&] {
                    arm(point, k);
                    for (;;) {
                        const int seq = check(q.get(true, 10s));
                        if (seq < 0) return 3;
                        led.l->seqs[led.l->count.fetch_add(1)] = seq;
                        if (seq == items - 1) return 0;
                    }
                });
                const int code = doomed.wait(20s);
                BOOST_TEST((code == -SIGKILL || code == 0), "reader exit " << code);
                std::multiset<int> all;
                for (int i = 0; i < led.l->count.load(); ++i) all.insert(led.l->seqs[i].load());
                bool torn = false;
                try {
                    for (;;) {
                        const int seq = check(q.get(true, 1s));
                        if (seq < 0) torn = true; else all.insert(seq);
                    }
                } catch (const shmq::empty_error&) {
                }
                BOOST_TEST(writer.wait(10s) == 0, "the writer could not finish (a dead reader's lease?)");
                BOOST_TEST(!torn);
                int dups = 0, missing = 0;
                for (int seq = 0; seq < items; ++seq) {
                    const auto n = all.count(seq);
                    if (n > 1) ++dups;
                    if (n == 0) ++missing;
                }
                BOOST_TEST(dups == 0);
                // Lost: at most the message the reader was in the middle of, and only if it was
                // killed inside a stream; a reader killed before storing head loses nothing.
                const int allowed = std::strcmp(point, "channel.read.piece") == 0 ? 1 : 0;
                BOOST_TEST(missing <= allowed, missing << " items lost");
            }
        }
    }
}

// A JoinableQueue consumer killed half-way through a streamed item: the item is lost with it, and
// must be accounted to it (counted in lost_to_dead_consumers, no longer awaited by join()),
// whether it died at its first piece, a later one, or after its get timed out mid-stream.
BOOST_AUTO_TEST_CASE(joinable_consumer_killed_mid_stream_does_not_hang_join, *boost::unit_test::timeout(60)) {
    for (int k : {1, 2}) {
        BOOST_TEST_CONTEXT("killed at piece " << k) {
            shmq::JoinableQueue<std::string> q(0, shmq::options{.capacity = ring});
            q.put(item(4));   // 9000 bytes: streamed through the 4 KiB ring
            q.put(item(0));
            scoped_child doomed([&] {
                arm("channel.read.piece", k);
                (void)q.get(true, 10s);
                return 0;
            });
            const int code = doomed.wait(10s);
            BOOST_TEST(code == -SIGKILL, "consumer exit " << code);
            std::string s;
            BOOST_CHECK_NO_THROW(s = q.get(true, 5s));   // the rest of the stream is skipped
            BOOST_TEST(check(s) == 0);
            q.task_done();
            BOOST_TEST(q.join(3s), "join() waits for the item lost with the dead consumer");
            BOOST_TEST(q.lost_to_dead_consumers() == 1u);
        }
    }
}

// A producer killed between taking its item off its slot's `unpublished` and the tail store, and a
// consumer killed between the head store and counting the item in its `taken`: the item is in
// `unfinished` and in no slot, no ring and no live lease. join() must still return (it finds the
// queue quiet twice and repairs the count), and the queue must go on counting correctly after.
BOOST_AUTO_TEST_CASE(joinable_killed_between_two_accounting_steps_does_not_hang_join, *boost::unit_test::timeout(60)) {
    // Producers with a whole record and a streamed message (killed before its last piece's tail
    // store); a consumer of a streamed message counts it at its first piece, so its window is the
    // whole record's only.
    const std::pair<const char*, int> cases[] = {{"channel.write.uncounted", 1},
                                                 {"channel.write.uncounted", 4},
                                                 {"channel.read.consumed", 1}};
    for (const auto& [point, seq] : cases) {
        BOOST_TEST_CONTEXT("killed at " << point << ", item " << seq) {
            const bool producer = std::strcmp(point, "channel.write.uncounted") == 0;
            // Bounded: the put writes into the ring itself (no feeder thread).
            shmq::JoinableQueue<std::string> q(8, shmq::options{.capacity = ring});
            if (!producer) q.put(item(seq));
            scoped_child doomed([&] {
                arm(point, 1);
                if (producer) q.put(item(seq), true, 5s);
                else (void)q.get(true, 5s);
                return 0;
            });
            // The producer's item never arrives (a streamed one needs this reader to drain its
            // first pieces; the rest are then dropped with the dead writer).
            if (producer) BOOST_CHECK_THROW((void)q.get(true, 3s), shmq::empty_error);
            const int code = doomed.wait(10s);
            BOOST_TEST(code == -SIGKILL, "exit " << code);
            BOOST_TEST(q.qsize() == 0u);
            BOOST_TEST(q.join(3s), "join() waits for an item that nobody has");
            // Counting goes on exactly: one more item keeps join() waiting until its task_done.
            q.put(item(2));
            BOOST_TEST(!q.join(0.1s));
            BOOST_TEST(check(q.get(true, 5s)) == 2);
            BOOST_TEST(!q.join(0.1s));
            q.task_done();
            BOOST_TEST(q.join(3s));
            BOOST_CHECK_THROW(q.task_done(), shmq::value_error);
        }
    }
}

// join()'s repair must never take a live item: a producer stopped (SIGSTOP) in the same window
// still holds the writer lease, so join() keeps waiting; resumed, it publishes and the count is
// exact.
BOOST_AUTO_TEST_CASE(joinable_stopped_between_two_accounting_steps_keeps_its_item, *boost::unit_test::timeout(60)) {
    shmq::JoinableQueue<std::string> q(8, shmq::options{.capacity = ring});
    scoped_child stopped([&] {
        hook::install([](const char* p) {
            if (std::strcmp(p, "channel.write.uncounted") == 0) ::raise(SIGSTOP);
        });
        q.put(item(5), true, 5s);
        return 0;
    });
    // Wait (bounded) until it is stopped in the window.
    bool is_stopped = false;
    for (int i = 0; i < 500 && !is_stopped; ++i) {
        siginfo_t info{};
        if (::waitid(P_PID, static_cast<id_t>(stopped.pid()), &info, WSTOPPED | WNOHANG | WNOWAIT) == 0 &&
            info.si_pid == stopped.pid())
            is_stopped = true;
        else
            std::this_thread::sleep_for(10ms);
    }
    BOOST_REQUIRE(is_stopped);
    BOOST_TEST(!q.join(0.3s), "join() returned while the item's producer is only stopped");
    ::kill(stopped.pid(), SIGCONT);
    BOOST_TEST(stopped.wait(10s) == 0);
    BOOST_TEST(check(q.get(true, 5s)) == 5);
    BOOST_TEST(!q.join(0.1s));
    q.task_done();
    BOOST_TEST(q.join(3s));
}

// A process stopped (SIGSTOP, a debugger) while it holds a segment's registry lock must not make
// others' bounded calls unbounded, nor hang their fork(): the fork handlers and the reaping that
// waits do only bounded or opportunistic work on that lock (found by the soak: its controller
// forked while a child it had stopped held the lock, and so never resumed it).
namespace {
void stop_at_attach(const char* point) {
    // The first lock the child takes after installing this is open()'s registry lock.
    static bool once = false;
    if (!once && std::strcmp(point, "mutex.acquired") == 0) {
        once = true;
        ::raise(SIGSTOP);
    }
}
} // namespace

BOOST_AUTO_TEST_CASE(stopped_registry_holder_blocks_no_fork_and_no_timeout, *boost::unit_test::timeout(60)) {
    const std::string name = unique_name("stopped");
    shm_remover remove_it(name);
    auto q = shmq::JoinableQueue<int>::create(name);
    q.put(1);   // unfinished, so join() waits (and reaps) until its timeout
    // The child stops inside open(), holding the registry lock.
    scoped_child stopped([&] {
        hook::install(&stop_at_attach);
        auto mine = shmq::JoinableQueue<int>::open(name);
        return 0;
    });
    bool seen_stopped = false;
    for (int i = 0; i < 300 && !seen_stopped; ++i) {
        std::this_thread::sleep_for(10ms);
        char path[64];
        std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(stopped.pid()));
        if (FILE* f = std::fopen(path, "r")) {
            char buf[512] = {};
            (void)std::fread(buf, 1, sizeof buf - 1, f);
            std::fclose(f);
            const char* rp = std::strrchr(buf, ')');
            seen_stopped = rp && rp[1] && rp[2] == 'T';
        }
    }
    BOOST_REQUIRE_MESSAGE(seen_stopped, "the child never stopped in open()");
    // join() reaps while it waits: that must not turn its 0.2 s into for ever.
    stopwatch sw;
    BOOST_TEST(!q.join(0.2s));
    BOOST_TEST(sw.seconds() < 2.0, "join(0.2 s) took " << sw.seconds() << " s");
    // fork() from a process that holds the same segment completes.
    stopwatch fw;
    scoped_child other([] { return 0; });
    BOOST_TEST(fw.seconds() < 2.0, "fork took " << fw.seconds() << " s");
    // open() by another process gives up after the registry's bound (2 s) with an error that
    // says why, instead of waiting for ever (fuzz_segment found the same wait on a corrupt owner
    // word).
    scoped_child opener([&] {
        try {
            auto mine = shmq::JoinableQueue<int>::open(name);
            return 1;
        } catch (const shmq::error& e) {
            return std::string(e.what()).find("registry lock") != std::string::npos ? 0 : 2;
        }
    });
    BOOST_TEST(opener.wait(10s) == 0, "open() next to a stopped registry holder");
    // Resume the stopped one, and every child finishes.
    ::kill(stopped.pid(), SIGCONT);
    BOOST_TEST(stopped.wait(10s) == 0);
    BOOST_TEST(other.wait(10s) == 0);
    q.get(true, 1s);
    q.task_done();
}
