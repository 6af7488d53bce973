// SPDX-License-Identifier: BSL-1.0
// Queue, SimpleQueue and JoinableQueue over NATS JetStream (lib/nats/, issue 13): the URL
// grammar, the queue contract where it applies to a network engine, processes, and faults
// (a consumer killed before task_done, the server killed with kill -9, a cluster node killed).
//
// Every case starts its own nats-server(s) on free loopback ports with a temporary store
// (nats_server.hpp), removed at the end even on failure. Forked children report by exit code
// and never call Boost.Test. Every blocking call has a timeout.
#define BOOST_TEST_MODULE test_nats
#include <boost/test/unit_test.hpp>

#include "nats_server.hpp"
#include "queue_fixtures.hpp"

#include "nats/url.hpp"

#include <shmq/shmq.hpp>

#include <atomic>
#include <set>

using namespace shmq;
using namespace shmq::test;
using shmq::detail::parse_nats_url;

namespace {

/// One server for the cases that do not kill it.
struct shared_server {
    shared_server() : srv() {}
    nats_server srv;
};

std::string qname() { return unique_name("nq"); }

template <class E, class F> bool throws_naming(F&& f, const std::string& part) {
    try {
        f();
    } catch (const E& e) {
        if (std::string(e.what()).find(part) != std::string::npos) return true;
        BOOST_TEST_MESSAGE("message without '" << part << "': " << e.what());
        return false;
    }
    return false;
}

} // namespace

BOOST_AUTO_TEST_SUITE(url_grammar)

BOOST_AUTO_TEST_CASE(parses_servers_name_and_options) {
    auto u = parse_nats_url("nats://127.0.0.1:4222,host-b:5000,[::1]:7/jobs_1?replicas=3&ack_wait=2.5&timeout=4");
    BOOST_TEST(u.servers.size() == 3u);
    BOOST_TEST(u.servers[0] == "nats://127.0.0.1:4222");
    BOOST_TEST(u.servers[1] == "nats://host-b:5000");
    BOOST_TEST(u.servers[2] == "nats://[::1]:7");
    BOOST_TEST(u.name == "jobs_1");
    BOOST_TEST(u.replicas == 3);
    BOOST_TEST(u.ack_wait.count() == 2.5);
    BOOST_TEST(u.timeout.count() == 4.0);
    auto d = parse_nats_url("nats://h/q");
    BOOST_TEST(d.servers[0] == "nats://h:4222");
    BOOST_TEST(d.replicas == 1);
    BOOST_TEST(d.ack_wait.count() == 30.0);
    auto c = parse_nats_url("nats://alice:secret@h:1/q");
    BOOST_TEST(c.servers[0] == "nats://alice:secret@h:1");
    BOOST_TEST(c.display() == "nats://h:1/q");   // no credentials in messages
}

BOOST_AUTO_TEST_CASE(errors_name_the_bad_part) {
    const std::pair<const char*, const char*> bad[] = {
        {"nats://", "no server"},
        {"nats://h:0/q", "bad port '0'"},
        {"nats://h:70000/q", "bad port '70000'"},
        {"nats://h:12x/q", "bad port '12x'"},
        {"nats://h:/q", "empty port"},
        {"nats://h,,k/q", "empty server"},
        {"nats://h$x:1/q", "bad character in host"},
        {"nats://h:1", "no queue name"},
        {"nats://h:1/", "no queue name"},
        {"nats://h:1/a.b", "queue name 'a.b'"},
        {"nats://h:1/q?replicas=0", "replicas='0'"},
        {"nats://h:1/q?replicas=x", "replicas='x'"},
        {"nats://h:1/q?ack_wait=-1", "ack_wait='-1'"},
        {"nats://h:1/q?timeout=", "'timeout='"},
        {"nats://h:1/q?colour=red", "unknown option 'colour'"},
        {"nats://h:1/q?", "empty query"},
        {"nats://[::1/q", "unclosed '['"},
        {"nats://@h/q", "empty user"},
    };
    for (const auto& [url, part] : bad)
        BOOST_TEST(throws_naming<value_error>([&] { parse_nats_url(url); }, part), url);
    BOOST_TEST(throws_naming<value_error>([] { parse_nats_url("nats://bob:pw@h:1/a.b"); }, "***@h:1"));
    BOOST_TEST(!throws_naming<value_error>([] { parse_nats_url("nats://bob:pw@h:1/a.b"); }, "pw"));
    // Through the public API too, and a name with a bad character is never taken for shm.
    BOOST_CHECK_THROW(Queue<int>::create("nats://h:1/a b"), value_error);
    BOOST_CHECK_THROW(Queue<int>::open("nats://h:99999/q"), value_error);
    BOOST_TEST(!Queue<int>::remove("nats://h:1/a*b"));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(engine_missing)

BOOST_AUTO_TEST_CASE(no_server_is_an_error_naming_the_url_within_the_timeout) {
    const int port = free_loopback_port();   // nobody listens there
    const std::string url = "nats://127.0.0.1:" + std::to_string(port) + "/q?timeout=1";
    const auto t0 = clk::now();
    BOOST_TEST(throws_naming<error>([&] { Queue<int>::create(url); }, "127.0.0.1:" + std::to_string(port)));
    BOOST_TEST(throws_naming<error>([&] { JoinableQueue<int>::open(url); }, "127.0.0.1:" + std::to_string(port)));
    BOOST_TEST(!Queue<int>::remove(url));
    BOOST_TEST(seconds_since(t0) < 6.0);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_FIXTURE_TEST_SUITE(contract, shared_server)

BOOST_AUTO_TEST_CASE(put_get_in_order_and_counts) {
    const std::string url = srv.url(qname());
    auto q = Queue<std::string>::create(url);
    BOOST_TEST(q.empty());
    BOOST_TEST(q.qsize() == 0u);
    for (int i = 0; i < 20; ++i) q.put("item " + std::to_string(i));
    BOOST_TEST(!q.empty());
    BOOST_TEST(q.qsize() == 20u);
    BOOST_TEST(!q.full());
    auto r = Queue<std::string>::open(url);   // another handle, same queue
    for (int i = 0; i < 20; ++i) BOOST_TEST(r.get(true, 5s) == "item " + std::to_string(i));
    BOOST_TEST(q.empty());
    BOOST_TEST(Queue<std::string>::remove(url));
    BOOST_TEST(!Queue<std::string>::remove(url));
}

BOOST_AUTO_TEST_CASE(empty_get_honours_block_and_timeout) {
    auto q = Queue<int>::create(srv.url(qname()));
    auto t0 = clk::now();
    BOOST_CHECK_THROW(q.get_nowait(), empty_error);
    BOOST_TEST(seconds_since(t0) < at_once.count() + 0.5);
    t0 = clk::now();
    BOOST_CHECK_THROW(q.get(true, 0.4s), empty_error);
    const double waited = seconds_since(t0);
    BOOST_TEST(waited >= 0.4 - clock_res.count());
    BOOST_TEST(waited < 0.4 + late.count());
    q.put(7);
    BOOST_TEST(q.get(true, 5s) == 7);
}

BOOST_AUTO_TEST_CASE(bounded_queue_is_full_at_maxsize) {
    const std::string url = srv.url(qname());
    auto q = Queue<int>::create(url, 2);
    q.put(1);
    q.put(2, true, 1s);
    BOOST_TEST(q.full());
    BOOST_TEST(q.qsize() == 2u);
    auto t0 = clk::now();
    BOOST_CHECK_THROW(q.put_nowait(3), full_error);
    BOOST_TEST(seconds_since(t0) < 1.0);
    t0 = clk::now();
    BOOST_CHECK_THROW(q.put(3, true, 0.4s), full_error);
    BOOST_TEST(seconds_since(t0) >= 0.4 - clock_res.count());
    BOOST_TEST(Queue<int>::open(url).get(true, 5s) == 1);
    q.put(3, true, 2s);   // room again
    BOOST_TEST(q.get(true, 5s) == 2);
    BOOST_TEST(q.get(true, 5s) == 3);
}

BOOST_AUTO_TEST_CASE(a_blocked_put_waits_for_room) {
    const std::string url = srv.url(qname());
    auto q = Queue<int>::create(url, 1);
    q.put(1);
    auto c = queue_child([url] {
        auto r = Queue<int>::open(url);
        std::this_thread::sleep_for(300ms);
        return r.get(true, 5s) == 1 ? child_ok : child_bad_value;
    });
    const auto t0 = clk::now();
    q.put(2, true, 10s);
    BOOST_TEST(seconds_since(t0) >= 0.2);
    BOOST_TEST(c.wait(15s) == child_ok);
    BOOST_TEST(q.get(true, 5s) == 2);
}

// Unlike shared memory, remove() deletes the stream and its items: handles still open then
// fail (error), within their timeout, instead of working on.
BOOST_AUTO_TEST_CASE(remove_deletes_the_queue_under_open_handles) {
    const std::string url = srv.url(qname(), "timeout=1");
    auto q = Queue<int>::create(url);
    q.put(1);
    BOOST_TEST(Queue<int>::remove(url));
    const auto t0 = clk::now();
    // error itself: not full_error or empty_error, which would say the queue still exists.
    auto thrown = [](auto f) -> std::string {
        try {
            f();
            return "nothing";
        } catch (const empty_error&) {
            return "empty_error";
        } catch (const full_error&) {
            return "full_error";
        } catch (const error&) {
            return "error";
        }
    };
    BOOST_TEST(thrown([&] { q.put(2, true, 1s); }) == "error");
    BOOST_TEST(thrown([&] { q.get(true, 1s); }) == "error");
    BOOST_TEST(seconds_since(t0) < 8.0);
    BOOST_CHECK_THROW(Queue<int>::open(url), not_found_error);
}
BOOST_AUTO_TEST_CASE(closed_handles_and_shutdown_calls) {
    auto q = Queue<int>::create(srv.url(qname()));
    BOOST_CHECK_THROW(q.join_thread(), value_error);
    q.put(1);
    q.close();
    BOOST_CHECK_THROW(q.put(2), closed_error);
    BOOST_CHECK_THROW(q.get_nowait(), closed_error);
    BOOST_CHECK_NO_THROW(q.join_thread());
    BOOST_TEST(q.qsize() == 1u);   // like shared memory: counts keep working after close
}

BOOST_AUTO_TEST_CASE(oversize_items_are_refused_at_put) {
    auto q = Queue<std::string>::create(srv.url(qname()));
    const std::string big(2u << 20, 'x');   // over the default max_payload of 1 MiB
    BOOST_TEST(throws_naming<value_error>([&] { q.put(big); }, "max_payload"));
    const std::string fits(900u << 10, 'y');
    q.put(fits);
    BOOST_TEST(q.get(true, 5s) == fits);
    BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_CASE(a_failing_decode_consumes_one_item) {
    auto q = Queue<fragile>::create(srv.url(qname()));
    q.put(fragile{fragile::decode_bomb, "bad"});
    q.put(fragile{5, "good"});
    BOOST_CHECK_THROW(q.get(true, 5s), codec_error);
    const fragile f = q.get(true, 5s);
    BOOST_TEST(f.value == 5);
    BOOST_TEST(f.text == "good");
    BOOST_CHECK_THROW(q.put(fragile{fragile::encode_bomb, ""}), codec_error);
    BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_CASE(simple_queue_put_get_empty) {
    auto q = SimpleQueue<std::string>::create(srv.url(qname()));
    BOOST_TEST(q.empty());
    q.put("a");
    q.put("b");
    BOOST_TEST(!q.empty());
    BOOST_TEST(q.get() == "a");
    BOOST_TEST(q.get() == "b");
    BOOST_TEST(q.empty());
    q.close();
    BOOST_CHECK_THROW(q.put("c"), closed_error);
}

BOOST_AUTO_TEST_CASE(joinable_task_done_and_join) {
    auto q = JoinableQueue<int>::create(srv.url(qname()));
    BOOST_TEST(q.join(0.2s));
    BOOST_CHECK_THROW(q.task_done(), value_error);
    q.put(1);
    q.put(2);
    BOOST_TEST(!q.join(0.3s));
    BOOST_TEST(q.get(true, 5s) == 1);
    BOOST_TEST(q.get(true, 5s) == 2);
    BOOST_TEST(q.qsize() == 0u);   // got but not done: not in the queue any more
    BOOST_TEST(!q.join(0.2s));
    q.task_done();
    BOOST_TEST(!q.join(0.2s));
    q.task_done();
    BOOST_TEST(q.join(5s));
    BOOST_CHECK_THROW(q.task_done(), value_error);
}

BOOST_AUTO_TEST_SUITE_END()

// The named-queue contract shared with test_named_queue.cpp, run against URLs (each case on a
// server of its own).
// Not in an anonymous namespace: the contract cases (an included file) derive from it.
struct nats_names {
    nats_server srv;
    std::string fresh() { return srv.url(qname()); }   // removed with the server's store
    std::string missing() { return srv.url(qname()); }
};

BOOST_FIXTURE_TEST_SUITE(named_contract, nats_names)
#include "named_queue_contract.ipp"
BOOST_AUTO_TEST_SUITE_END()

BOOST_FIXTURE_TEST_SUITE(processes, shared_server)

// 4 producers x 4 consumers, each a forked child using the handle it inherited (so each must
// reconnect with reply subjects of its own): every item exactly once, each producer's items in
// order as each consumer sees them, and join() returns.
BOOST_AUTO_TEST_CASE(four_producers_four_consumers_exactly_once) {
    constexpr std::uint32_t producers = 4, consumers = 4, per_producer = 150;
    constexpr std::uint32_t total = producers * per_producer;
    auto q = JoinableQueue<tagged>::create(srv.url(qname()));
    shared_array<std::atomic<std::uint32_t>> seen(total);
    shared_array<std::atomic<std::uint32_t>> received(1);
    std::vector<scoped_child> kids;
    for (std::uint32_t p = 0; p < producers; ++p)
        kids.push_back(queue_child([&q, p] {
            for (std::uint32_t i = 0; i < per_producer; ++i) q.put(tagged{p, i}, true, 10s);
            return child_ok;
        }, 60));
    for (std::uint32_t c = 0; c < consumers; ++c)
        kids.push_back(queue_child([&] {
            std::vector<std::int64_t> last(producers, -1);
            while (received[0].load() < total) {
                tagged t{};
                try {
                    t = q.get(true, 1s);
                } catch (const empty_error&) {
                    continue;
                }
                if (t.producer >= producers || t.seq >= per_producer) return child_bad_value;
                if (static_cast<std::int64_t>(t.seq) <= last[t.producer]) return child_bad_order;
                last[t.producer] = t.seq;
                seen[t.producer * per_producer + t.seq].fetch_add(1);
                received[0].fetch_add(1);
                q.task_done();
            }
            return child_ok;
        }, 60));
    for (auto& k : kids) BOOST_TEST(k.wait(90s) == child_ok);
    std::uint32_t once = 0, twice = 0;
    for (std::uint32_t i = 0; i < total; ++i) {
        once += seen[i].load() == 1;
        twice += seen[i].load() > 1;
    }
    BOOST_TEST(once == total);
    BOOST_TEST(twice == 0u);
    BOOST_TEST(q.join(10s));
    BOOST_TEST(q.empty());
}

// A consumer SIGKILLed between get and task_done: its item comes back after the ack wait, and
// join() returns once another consumer finishes it (in Python join() would wait for ever).
BOOST_AUTO_TEST_CASE(consumer_killed_before_task_done_is_redelivered) {
    const std::string url = srv.url(qname(), "ack_wait=1");
    auto q = JoinableQueue<int>::create(url);
    q.put(42);
    go_signal got;
    shared_array<std::atomic<int>> flag(1);
    auto c = queue_child([&] {
        auto r = JoinableQueue<int>::open(url);
        if (r.get(true, 5s) != 42) return child_bad_value;
        flag[0].store(1);
        std::this_thread::sleep_for(30s);   // killed here, before task_done
        return child_ok;
    });
    const auto t0 = clk::now();
    while (flag[0].load() == 0 && seconds_since(t0) < 10) std::this_thread::sleep_for(5ms);
    BOOST_REQUIRE(flag[0].load() == 1);
    c.kill();
    BOOST_TEST(c.wait(5s) == -SIGKILL);
    BOOST_TEST(!q.join(0.2s));
    BOOST_TEST(q.get(true, 10s) == 42);   // redelivered after ack_wait (1 s)
    q.task_done();
    BOOST_TEST(q.join(10s));
    BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(faults)

// kill -9 of a single server with file storage, restarted on the same store: every put that
// returned is still there (and nothing appears twice).
BOOST_AUTO_TEST_CASE(server_kill9_keeps_every_acknowledged_put) {
    nats_server srv;
    const std::string url = srv.url(qname(), "timeout=2");
    auto q = Queue<tagged>::create(url);
    constexpr std::uint32_t max_items = 100000;
    shared_array<std::atomic<std::uint32_t>> acked(1);   // puts that returned: items 0..acked-1
    auto producer = queue_child([&] {
        for (std::uint32_t i = 0; i < max_items; ++i) {
            try {
                q.put(tagged{0, i}, true, 1s);
            } catch (const error&) {
                return child_ok;   // the server is gone: stop; every earlier put returned
            }
            acked[0].store(i + 1);
        }
        return child_ok;
    }, 60);
    const auto t0 = clk::now();
    while (acked[0].load() < 300 && seconds_since(t0) < 20) std::this_thread::sleep_for(2ms);
    srv.kill9();
    BOOST_TEST(producer.wait(30s) == child_ok);
    const std::uint32_t n = acked[0].load();
    BOOST_TEST(n >= 300u);
    srv.start();
    auto r = Queue<tagged>::open(url);
    std::vector<std::uint32_t> count(n + 1, 0);
    std::uint32_t extra = 0;
    for (;;) {
        tagged t{};
        try {
            t = r.get(true, 2s);
        } catch (const empty_error&) {
            break;
        }
        if (t.seq < n) ++count[t.seq];
        else ++extra;   // the put in flight at the kill: stored, not acknowledged
    }
    std::uint32_t present = 0, dup = 0;
    for (std::uint32_t i = 0; i < n; ++i) {
        present += count[i] >= 1;
        dup += count[i] > 1;
    }
    BOOST_TEST_MESSAGE("server kill -9: " << n << " puts acknowledged, " << present
                                          << " recovered after restart, " << extra
                                          << " unacknowledged extra, " << dup << " duplicated");
    BOOST_TEST(present == n);
    BOOST_TEST(dup == 0u);
    BOOST_TEST(extra <= 1u);
}

// A 3-node cluster, replicas=3; one node is killed while a producer puts: every put that
// returned is delivered, and the producer and consumer carry on through the other nodes.
BOOST_AUTO_TEST_CASE(cluster_node_kill_loses_no_acknowledged_put) {
    nats_cluster cl;
    const std::string url = cl.url(qname(), "replicas=3&timeout=10");
    // The cluster needs a moment to elect its JetStream leader: create retries for a while.
    std::optional<Queue<tagged>> q;
    const auto t0 = clk::now();
    while (!q) {
        try {
            q.emplace(Queue<tagged>::create(url));
        } catch (const exists_error&) {
            q.emplace(Queue<tagged>::open(url));
        } catch (const error& e) {
            if (seconds_since(t0) > 30) BOOST_FAIL("cluster not ready: " << e.what());
            std::this_thread::sleep_for(200ms);
        }
    }
    constexpr std::uint32_t items = 600;
    shared_array<std::atomic<std::uint32_t>> acked(1);
    shared_array<std::atomic<std::uint32_t>> failed(1);
    shared_array<std::atomic<std::uint32_t>> longest_ms(1);   // the longest put: the failover
    auto producer = queue_child([&] {
        for (std::uint32_t i = 0; i < items; ++i) {
            const auto p0 = clk::now();
            try {
                // A failover is the cluster's leader elections (nats-server draws each election
                // timeout from several seconds): 4-7 s on an idle machine, over 15 s once under
                // .ci/run's parallel jobs. A put retries for its whole timeout.
                q->put(tagged{1, i}, true, 40s);
                const auto ms = static_cast<std::uint32_t>(seconds_since(p0) * 1000);
                if (ms > longest_ms[0].load()) longest_ms[0].store(ms);
            } catch (const error& e) {
                if (failed[0].fetch_add(1) < 3) std::fprintf(stderr, "first failed put: %s\n", e.what());
                continue;
            }
            acked[0].fetch_add(1);
        }
        return child_ok;
    }, 90);
    const auto t1 = clk::now();
    while (acked[0].load() < items / 3 && seconds_since(t1) < 30) std::this_thread::sleep_for(2ms);
    cl.node(1).kill9();
    BOOST_TEST(producer.wait(90s) == child_ok);
    const std::uint32_t n = acked[0].load();
    std::vector<std::uint32_t> count(items, 0);
    std::uint32_t got = 0;
    // The consumer may need a new leader after the kill (a few seconds): wait generously for
    // each item, and stop as soon as all are in.
    while (got < items) {
        tagged t{};
        try {
            t = q->get(true, 15s);
        } catch (const empty_error&) {
            break;
        }
        if (t.seq < items) ++count[t.seq];
        ++got;
    }
    try {   // and nothing more (a duplicate) arrives
        const tagged t = q->get(true, 1s);
        if (t.seq < items) ++count[t.seq];
    } catch (const empty_error&) {
    }
    std::uint32_t present = 0, dup = 0;
    for (std::uint32_t i = 0; i < items; ++i) {
        present += count[i] >= 1;
        dup += count[i] > 1;
    }
    BOOST_TEST_MESSAGE("cluster node kill: " << n << " puts acknowledged (" << failed[0].load()
                       << " failed; the longest that succeeded took " << longest_ms[0].load()
                       << " ms), " << present << " distinct items recovered, " << dup << " duplicated");
    BOOST_TEST(failed[0].load() == 0u);   // the producer failed over within its timeout
    BOOST_TEST(n == items);
    BOOST_TEST(present == items);
    BOOST_TEST(dup == 0u);
    q->close();
    q.reset();
    BOOST_TEST(Queue<tagged>::remove(url));
}

BOOST_AUTO_TEST_SUITE_END()
