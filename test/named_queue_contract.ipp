// SPDX-License-Identifier: BSL-1.0
// The named-queue contract every backend keeps (create/open/remove by name, across processes,
// exists/not_found/type errors, maxsize, the three kinds), written once and run by
// test_named_queue.cpp (shared memory) and test_nats.cpp (NATS JetStream).
//
// Include it inside a BOOST_FIXTURE_TEST_SUITE whose fixture has
//     std::string fresh();     a name nobody uses, removed when the case ends
//     std::string missing();   a name that is never created
// with queue_fixtures.hpp, <shmq/shmq.hpp>, and using-declarations for Queue, SimpleQueue and
// JoinableQueue in scope. Backend-specific checks (what /dev/shm shows, what the server counts)
// stay in the including file.

BOOST_AUTO_TEST_CASE(created_in_one_process_opened_by_name_in_another) {
    // The child is forked before the queue exists, so it holds no handle: it knows only the name.
    const std::string name = fresh();
    go_signal created;
    auto child = queue_child([&]() -> int {
        if (!created.wait(20s)) return child_no_go;
        auto q = Queue<std::string>::open(name);
        for (int i = 0; i < 3; ++i) {
            std::string s;
            try {
                s = q.get(true, 10s);
            } catch (const shmq::empty_error&) {
                return child_timed_out_get;
            }
            SHMQ_CHILD_CHECK(s == "to child " + std::to_string(i), child_bad_order);
        }
        q.put("from child");
        return child_ok;
    });
    auto q = Queue<std::string>::create(name);
    for (int i = 0; i < 3; ++i) q.put("to child " + std::to_string(i));
    created.go();
    BOOST_TEST(child.wait(20s) == child_ok);
    BOOST_TEST(q.get(true, 5s) == "from child");
    BOOST_TEST(Queue<std::string>::remove(name));
}

BOOST_AUTO_TEST_CASE(created_by_a_child_used_after_it_exits) {
    // Named objects outlive their handles (and their creator) until remove().
    const std::string name = fresh();
    auto child = queue_child([&]() -> int {
        auto q = Queue<int>::create(name, 0, shmq::options{.capacity = 8192});
        for (int i = 0; i < 5; ++i) q.put(i);
        return child_ok;
    });
    BOOST_REQUIRE(child.wait(20s) == child_ok);
    auto q = Queue<int>::open(name);
    BOOST_TEST(q.qsize() == 5u);
    for (int i = 0; i < 5; ++i) BOOST_TEST(q.get(true, 5s) == i);
    BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_CASE(named_queue_outlives_its_handles) {
    const std::string name = fresh();
    {
        auto q = Queue<std::string>::create(name);
        q.put("kept");
    }
    auto q = Queue<std::string>::open(name);
    BOOST_TEST(q.get(true, 5s) == "kept");
}

BOOST_AUTO_TEST_CASE(several_handles_in_one_process) {
    const std::string name = fresh();
    auto a = Queue<int>::create(name);
    auto b = Queue<int>::open(name);
    auto c = Queue<int>::open(name);
    a.put(1);
    b.put(2);
    BOOST_TEST(c.qsize() == 2u);
    BOOST_TEST(c.get(true, 1s) == 1);
    BOOST_TEST(a.get(true, 1s) == 2);
    b.close();   // per handle: the others keep working
    a.put(3);
    BOOST_TEST(c.get(true, 1s) == 3);
}

BOOST_AUTO_TEST_CASE(create_twice_is_exists_error) {
    const std::string name = fresh();
    auto q = Queue<int>::create(name);
    BOOST_CHECK_THROW(Queue<int>::create(name), shmq::exists_error);
    BOOST_CHECK_THROW(Queue<float>::create(name), shmq::exists_error);
    BOOST_CHECK_THROW(SimpleQueue<int>::create(name), shmq::exists_error);
    BOOST_CHECK_THROW(JoinableQueue<int>::create(name), shmq::exists_error);
    q.put(7);   // the failed creates did not disturb the existing queue
    BOOST_TEST(Queue<int>::open(name).get(true, 1s) == 7);
}

BOOST_AUTO_TEST_CASE(open_missing_is_not_found_error) {
    const std::string name = missing();
    BOOST_CHECK_THROW(Queue<int>::open(name), shmq::not_found_error);
    BOOST_CHECK_THROW(SimpleQueue<int>::open(name), shmq::not_found_error);
    BOOST_CHECK_THROW(JoinableQueue<int>::open(name), shmq::not_found_error);
    BOOST_CHECK_THROW(Queue<int>::open(name), shmq::not_found_error);   // open never creates
}

BOOST_AUTO_TEST_CASE(wrong_element_type_is_type_error) {
    // codec.hpp: the fingerprint tells apart types of the same size.
    const std::string n1 = fresh(), n2 = fresh(), n3 = fresh();
    auto qi = Queue<int>::create(n1);
    BOOST_CHECK_THROW(Queue<float>::open(n1), shmq::type_error);
    BOOST_CHECK_THROW(Queue<unsigned>::open(n1), shmq::type_error);
    BOOST_CHECK_THROW(Queue<long>::open(n1), shmq::type_error);
    auto qs = Queue<std::string>::create(n2);
    BOOST_CHECK_THROW(Queue<std::vector<char>>::open(n2), shmq::type_error);
    auto qt = Queue<tagged>::create(n3);
    BOOST_CHECK_THROW(Queue<std::uint64_t>::open(n3), shmq::type_error);   // same size as tagged
    BOOST_CHECK_NO_THROW(Queue<int>::open(n1));
    BOOST_CHECK_NO_THROW(Queue<tagged>::open(n3));
}

BOOST_AUTO_TEST_CASE(wrong_kind_is_type_error) {
    const std::string nq = fresh(), ns = fresh(), nj = fresh();
    auto q = Queue<int>::create(nq);
    auto s = SimpleQueue<int>::create(ns);
    auto j = JoinableQueue<int>::create(nj);
    BOOST_CHECK_THROW(SimpleQueue<int>::open(nq), shmq::type_error);
    BOOST_CHECK_THROW(JoinableQueue<int>::open(nq), shmq::type_error);
    BOOST_CHECK_THROW(Queue<int>::open(ns), shmq::type_error);
    BOOST_CHECK_THROW(JoinableQueue<int>::open(ns), shmq::type_error);
    BOOST_CHECK_THROW(Queue<int>::open(nj), shmq::type_error);
    BOOST_CHECK_THROW(SimpleQueue<int>::open(nj), shmq::type_error);
}

BOOST_AUTO_TEST_CASE(maxsize_survives_open) {
    const std::string name = fresh();
    auto created = Queue<int>::create(name, 2);
    auto q = Queue<int>::open(name);
    q.put(1);
    q.put(2);
    BOOST_TEST(q.full());
    BOOST_CHECK_THROW(q.put_nowait(3), shmq::full_error);
    BOOST_CHECK_THROW(q.put(3, true, 50ms), shmq::full_error);
    BOOST_TEST(created.full());
    BOOST_TEST(created.qsize() == 2u);
    BOOST_TEST(created.get(true, 1s) == 1);
    BOOST_TEST(!q.full());
    q.put_nowait(3);

    // In another process too.
    auto child = queue_child([&]() -> int {
        auto mine = Queue<int>::open(name);
        SHMQ_CHILD_CHECK(mine.full(), child_bad_count);
        try {
            mine.put_nowait(4);
            return child_bad_count;
        } catch (const shmq::full_error&) {
        }
        return child_ok;
    });
    BOOST_TEST(child.wait(20s) == child_ok);
}

BOOST_AUTO_TEST_CASE(named_simple_queue_needs_only_a_name) {
    const std::string name = fresh();
    auto q = SimpleQueue<std::string>::create(name);
    auto child = queue_child([&]() -> int {
        auto mine = SimpleQueue<std::string>::open(name);
        mine.put("hello");   // the watchdog bounds the child
        return child_ok;
    });
    BOOST_REQUIRE(child.wait(20s) == child_ok);
    BOOST_TEST(!q.empty());
    BOOST_TEST(q.get() == "hello");
    BOOST_TEST(SimpleQueue<std::string>::remove(name));
    BOOST_TEST(!SimpleQueue<std::string>::remove(name));
}

BOOST_AUTO_TEST_CASE(named_joinable_queue_counts_across_processes) {
    const std::string name = fresh();
    auto q = JoinableQueue<int>::create(name);
    auto child = queue_child([&]() -> int {
        auto mine = JoinableQueue<int>::open(name);
        for (int i = 0; i < 3; ++i) {
            try {
                (void)mine.get(true, 10s);
            } catch (const shmq::empty_error&) {
                return child_timed_out_get;
            }
            mine.task_done();
        }
        return child_ok;
    });
    for (int i = 0; i < 3; ++i) q.put(i);
    BOOST_TEST(q.join(20s));
    BOOST_TEST(child.wait(20s) == child_ok);
    BOOST_CHECK_THROW(q.task_done(), shmq::value_error);
    // A later opener sees the same count.
    q.put(9);
    BOOST_TEST(!JoinableQueue<int>::open(name).join(0s));
}
