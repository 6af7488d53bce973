// SPDX-License-Identifier: BSL-1.0
// Named Queue, SimpleQueue and JoinableQueue: create/open/remove for unrelated processes (README:
// Named objects, Guarantees; issue #3 item 3). A process that only knows the name opens the queue;
// create is exclusive; open checks the name, the kind, the T fingerprint and the header (a
// corrupted header or ring gives broken_error, never a wild read); remove leaves nothing in
// /dev/shm while attached handles keep working; options.mode is applied exactly; maxsize and the
// capacity survive open.
//
// Every name is unique (test_fixtures' unique_name with this file's prefix) and removed by an
// shm_remover, and a global fixture removes whatever this process's names left behind even when a
// case is cut short. Children report by exit code under a watchdog; every get has a timeout.
#define BOOST_TEST_MODULE named_queue
#include <boost/test/unit_test.hpp>

#include "queue_fixtures.hpp"

#include <shmq/joinable_queue.hpp>
#include <shmq/queue.hpp>
#include <shmq/simple_queue.hpp>

#include "layout.hpp"    // private: the header fields the corruption tests overwrite
#include "segment.hpp"   // private: maps a segment to corrupt its ring

#include <chrono>
#include <cstddef>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace std::chrono_literals;
using namespace shmq::test;
using shmq::JoinableQueue;
using shmq::Queue;
using shmq::SimpleQueue;

namespace {

constexpr std::string_view prefix = "qnamed";

/// This process's name prefix ("qnamed-<pid>-"), so the global cleanup touches only our names.
std::string own_prefix() { return std::string(prefix) + "-" + std::to_string(::getpid()) + "-"; }

/// Removes every /dev/shm/shmq.<own_prefix>* entry when the module ends, even after a case was
/// cut short by a Boost.Test timeout (which skips the case's destructors).
struct remove_leftovers {
    remove_leftovers() = default;
    ~remove_leftovers() {
        const std::string start = "shmq." + own_prefix();
        std::vector<std::string> found;
        if (DIR* d = ::opendir("/dev/shm")) {
            while (dirent* e = ::readdir(d))
                if (std::string_view(e->d_name).substr(0, start.size()) == start) found.emplace_back(e->d_name);
            ::closedir(d);
        }
        for (const auto& n : found) ::shm_unlink(("/" + n).c_str());
    }
};

/// A fresh name, registered for removal.
std::string fresh(shm_remover& cleanup) { return cleanup.add(unique_name(prefix)); }

bool exists_in_dev_shm(const std::string& name) { return !shm_entries(name).empty(); }

/// Restores the umask on scope exit.
struct umask_guard {
    mode_t old;
    explicit umask_guard(mode_t m) : old(::umask(m)) {}
    ~umask_guard() { ::umask(old); }
};

/// The segment header of /dev/shm/shmq.<name>, mapped read-write, to corrupt it by hand.
class mapped_header {
public:
    explicit mapped_header(const std::string& name) {
        fd_ = ::shm_open(("/shmq." + name).c_str(), O_RDWR, 0);
        BOOST_REQUIRE_MESSAGE(fd_ >= 0, "shm_open: " << std::strerror(errno));
        void* p = ::mmap(nullptr, sizeof(shmq::detail::segment_header), PROT_READ | PROT_WRITE,
                         MAP_SHARED, fd_, 0);
        BOOST_REQUIRE(p != MAP_FAILED);
        h_ = static_cast<shmq::detail::segment_header*>(p);
    }
    ~mapped_header() {
        if (h_) ::munmap(h_, sizeof(shmq::detail::segment_header));
        if (fd_ >= 0) ::close(fd_);
    }
    shmq::detail::segment_header* operator->() const { return h_; }
    int fd() const { return fd_; }

private:
    int fd_ = -1;
    shmq::detail::segment_header* h_ = nullptr;
};

} // namespace

BOOST_TEST_GLOBAL_FIXTURE(remove_leftovers);

// ---- one process creates, another opens ------------------------------------------------------

BOOST_AUTO_TEST_CASE(created_in_one_process_opened_by_name_in_another) {
    // The child is forked before the queue exists, so it holds no handle: it knows only the name.
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
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
    BOOST_TEST(exists_in_dev_shm(name));
    for (int i = 0; i < 3; ++i) q.put("to child " + std::to_string(i));
    created.go();
    BOOST_TEST(child.wait(20s) == child_ok);
    BOOST_TEST(q.get(true, 5s) == "from child");
    BOOST_TEST(Queue<std::string>::remove(name));
}

BOOST_AUTO_TEST_CASE(created_by_a_child_used_after_it_exits) {
    // Named objects outlive their handles (and their creator) until remove().
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
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
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
    {
        auto q = Queue<std::string>::create(name);
        q.put("kept");
    }
    BOOST_TEST(exists_in_dev_shm(name));
    auto q = Queue<std::string>::open(name);
    BOOST_TEST(q.get(true, 5s) == "kept");
}

BOOST_AUTO_TEST_CASE(several_handles_in_one_process) {
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
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

// ---- create / open errors --------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(create_twice_is_exists_error) {
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
    auto q = Queue<int>::create(name);
    BOOST_CHECK_THROW(Queue<int>::create(name), shmq::exists_error);
    BOOST_CHECK_THROW(Queue<float>::create(name), shmq::exists_error);
    BOOST_CHECK_THROW(SimpleQueue<int>::create(name), shmq::exists_error);
    BOOST_CHECK_THROW(JoinableQueue<int>::create(name), shmq::exists_error);
    q.put(7);   // the failed creates did not disturb the existing queue
    BOOST_TEST(Queue<int>::open(name).get(true, 1s) == 7);
}

BOOST_AUTO_TEST_CASE(open_missing_is_not_found_error) {
    const std::string name = unique_name(prefix);
    BOOST_CHECK_THROW(Queue<int>::open(name), shmq::not_found_error);
    BOOST_CHECK_THROW(SimpleQueue<int>::open(name), shmq::not_found_error);
    BOOST_CHECK_THROW(JoinableQueue<int>::open(name), shmq::not_found_error);
    BOOST_TEST(!exists_in_dev_shm(name));   // open never creates
}

BOOST_AUTO_TEST_CASE(wrong_element_type_is_type_error) {
    // codec.hpp: the fingerprint tells apart types of the same size.
    shm_remover cleanup;
    const std::string n1 = fresh(cleanup), n2 = fresh(cleanup), n3 = fresh(cleanup);
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
    shm_remover cleanup;
    const std::string nq = fresh(cleanup), ns = fresh(cleanup), nj = fresh(cleanup);
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

BOOST_AUTO_TEST_CASE(bad_names_are_value_error) {
    const std::string too_long(201, 'n');
    const std::string with_nul("ab\0cd", 5);
    for (const std::string& bad : {std::string(), std::string("a/b"), std::string("/lead"),
                                   std::string("trail/"), too_long, with_nul}) {
        BOOST_TEST_CONTEXT("name '" << bad.substr(0, 20) << "' (" << bad.size() << " chars)") {
            BOOST_CHECK_THROW(Queue<int>::create(bad), shmq::value_error);
            BOOST_CHECK_THROW(Queue<int>::open(bad), shmq::value_error);
            BOOST_CHECK_THROW(SimpleQueue<int>::create(bad), shmq::value_error);
            BOOST_CHECK_THROW(SimpleQueue<int>::open(bad), shmq::value_error);
            BOOST_CHECK_THROW(JoinableQueue<int>::create(bad), shmq::value_error);
            BOOST_CHECK_THROW(JoinableQueue<int>::open(bad), shmq::value_error);
            bool removed = true;
            BOOST_CHECK_NO_THROW(removed = Queue<int>::remove(bad));
            BOOST_TEST(!removed);
        }
    }
}

BOOST_AUTO_TEST_CASE(a_name_of_200_characters_is_fine) {
    shm_remover cleanup;
    std::string name = unique_name(prefix);
    name.resize(200, 'x');
    cleanup.add(name);
    auto q = Queue<int>::create(name);
    q.put(200);
    BOOST_TEST(Queue<int>::open(name).get(true, 1s) == 200);
    BOOST_TEST(Queue<int>::remove(name));
}

// ---- remove ----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(remove_true_then_false_and_handles_keep_working) {
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
    auto q = Queue<int>::create(name);
    auto other = Queue<int>::open(name);
    BOOST_TEST(exists_in_dev_shm(name));
    BOOST_TEST(Queue<int>::remove(name));
    BOOST_TEST(!exists_in_dev_shm(name));
    BOOST_TEST(shm_entries(name).empty());
    BOOST_TEST(!Queue<int>::remove(name));
    BOOST_CHECK_THROW(Queue<int>::open(name), shmq::not_found_error);
    q.put(1);
    BOOST_TEST(other.get(true, 1s) == 1);
    // The name is free again: a new create makes a new, empty queue.
    auto fresh_q = Queue<int>::create(name);
    BOOST_TEST(fresh_q.empty());
    q.put(2);
    BOOST_TEST(fresh_q.empty());
    BOOST_TEST(other.get(true, 1s) == 2);
    BOOST_TEST(SimpleQueue<int>::remove(name));   // remove does not care about T or kind
}

BOOST_AUTO_TEST_CASE(handles_in_other_processes_keep_working_after_remove) {
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
    auto q = Queue<int>::create(name);
    go_signal removed;
    shared_array<std::atomic<int>> opened(1);
    auto child = queue_child([&]() -> int {
        auto mine = Queue<int>::open(name);
        opened[0].store(1);
        if (!removed.wait(20s)) return child_no_go;
        int v;
        try {
            v = mine.get(true, 10s);
        } catch (const shmq::empty_error&) {
            return child_timed_out_get;
        }
        mine.put(v + 1);
        return child_ok;
    });
    const auto give_up = clk::now() + 10s;   // let the child open before the name goes
    while (opened[0].load() == 0 && clk::now() < give_up) std::this_thread::sleep_for(1ms);
    BOOST_REQUIRE(opened[0].load() == 1);
    BOOST_TEST(Queue<int>::remove(name));
    q.put(41);
    removed.go();
    BOOST_TEST(child.wait(20s) == child_ok);
    BOOST_TEST(q.get(true, 5s) == 42);
    BOOST_TEST(!exists_in_dev_shm(name));
}

// ---- options survive -------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(mode_is_applied_exactly_regardless_of_umask) {
    shm_remover cleanup;
    umask_guard um(077);
    for (unsigned mode : {0640u, 0600u, 0666u, 0400u}) {
        const std::string name = fresh(cleanup);
        auto q = Queue<int>::create(name, 0, shmq::options{.mode = mode});
        struct stat st {};
        BOOST_REQUIRE(::stat(shm_path(name).c_str(), &st) == 0);
        BOOST_TEST((st.st_mode & 07777) == mode, std::oct << "mode 0" << mode << " gave 0" << (st.st_mode & 07777));
    }
    const std::string name = fresh(cleanup);
    auto q = SimpleQueue<int>::create(name);
    struct stat st {};
    BOOST_REQUIRE(::stat(shm_path(name).c_str(), &st) == 0);
    BOOST_TEST((st.st_mode & 07777) == 0600u);   // the default
}

BOOST_AUTO_TEST_CASE(maxsize_survives_open) {
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
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

BOOST_AUTO_TEST_CASE(capacity_survives_open_and_large_messages_cross) {
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
    auto q = Queue<std::string>::create(name, 0, shmq::options{.capacity = 4096});
    auto child = queue_child([&]() -> int {
        auto mine = Queue<std::string>::open(name);
        std::string s;
        try {
            s = mine.get(true, 10s);
        } catch (const shmq::empty_error&) {
            return child_timed_out_get;
        }
        SHMQ_CHILD_CHECK(s.size() == 3 * 4096 && matches_pattern(s, 3), child_bad_value);
        return child_ok;
    });
    q.put(pattern_string(3 * 4096, 3));   // streamed through the 4 KiB ring
    BOOST_TEST(child.wait(20s) == child_ok);
}

// ---- the other kinds, named ------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(named_simple_queue_needs_only_a_name) {
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
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
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
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

// ---- corrupted segments ----------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(corrupted_magic_is_broken_error) {
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
    { auto q = Queue<int>::create(name); }
    {
        mapped_header h(name);
        h->magic ^= 0x1;
    }
    BOOST_CHECK_THROW(Queue<int>::open(name), shmq::broken_error);
    BOOST_TEST(Queue<int>::remove(name));   // a broken segment can still be removed
}

BOOST_AUTO_TEST_CASE(corrupted_version_is_broken_error) {
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
    { auto q = Queue<int>::create(name); }
    {
        mapped_header h(name);
        h->version += 1;
    }
    BOOST_CHECK_THROW(Queue<int>::open(name), shmq::broken_error);
}

BOOST_AUTO_TEST_CASE(corrupted_capacity_is_broken_error) {
    shm_remover cleanup;
    for (std::uint64_t bad : {std::uint64_t{8192}, std::uint64_t{2048}, std::uint64_t{3000},
                              std::uint64_t{0}, std::uint64_t{1} << 40, ~std::uint64_t{0}}) {
        BOOST_TEST_CONTEXT("capacity " << bad) {
            const std::string name = fresh(cleanup);
            { auto q = Queue<int>::create(name, 0, shmq::options{.capacity = 4096}); }
            {
                mapped_header h(name);
                h->capacity = bad;
            }
            BOOST_CHECK_THROW(Queue<int>::open(name), shmq::broken_error);
        }
    }
}

BOOST_AUTO_TEST_CASE(other_corrupted_header_fields_are_broken_error) {
    shm_remover cleanup;
    auto corrupt = [&](auto&& poke) {
        const std::string name = fresh(cleanup);
        { auto q = Queue<int>::create(name, 3); }
        {
            mapped_header h(name);
            poke(h);
        }
        BOOST_CHECK_THROW(Queue<int>::open(name), shmq::broken_error);
    };
    corrupt([](mapped_header& h) { h->total_size += 4096; });
    corrupt([](mapped_header& h) { h->total_size = 1; });
    corrupt([](mapped_header& h) { h->channels = 0; });
    corrupt([](mapped_header& h) { h->channels = 1000; });
    corrupt([](mapped_header& h) { h->maxsize = -5; });
    corrupt([](mapped_header& h) { h->maxsize = INT64_MAX; });
}

BOOST_AUTO_TEST_CASE(truncated_segment_is_broken_error) {
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
    { auto q = Queue<int>::create(name); }
    {
        mapped_header h(name);
        BOOST_REQUIRE(::ftruncate(h.fd(), 4096) == 0);   // the header stays, the rings go
    }
    BOOST_CHECK_THROW(Queue<int>::open(name), shmq::broken_error);
}

BOOST_AUTO_TEST_CASE(segment_its_creator_never_initialized_is_broken_error) {
    // A creator that died between shm_open and writing the header leaves an empty object:
    // open waits a little for it, then refuses (rather than hanging or reading garbage).
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
    const int fd = ::shm_open(("/shmq." + name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    BOOST_REQUIRE(fd >= 0);
    ::close(fd);
    stopwatch sw;
    BOOST_CHECK_THROW(Queue<int>::open(name), shmq::broken_error);
    BOOST_TEST(sw.seconds() < 10.0);
}

BOOST_AUTO_TEST_CASE(corrupted_ring_positions_are_broken_error_on_get) {
    // doc/design.md §2-§3: every value read from shared memory is validated before it is used as a
    // size or an offset. A tail far ahead of head must give broken_error, not a read past the ring.
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
    auto q = Queue<int>::create(name, 0, shmq::options{.capacity = 4096});
    q.put(1);
    {
        auto seg = shmq::detail::segment::open_named(name, shmq::detail::segment_kind::queue,
                                                     shmq::detail::type_fingerprint<int>());
        auto& ch = seg->channel(0);
        ch.tail.store(ch.head.load() + (std::uint64_t{1} << 20));   // 1 MiB "published" in 4 KiB
    }
    BOOST_CHECK_THROW(q.get(true, 1s), shmq::broken_error);
}

BOOST_AUTO_TEST_CASE(corrupted_record_header_is_broken_error_on_get) {
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
    auto q = Queue<int>::create(name, 0, shmq::options{.capacity = 4096});
    q.put(1);
    {
        auto seg = shmq::detail::segment::open_named(name, shmq::detail::segment_kind::queue,
                                                     shmq::detail::type_fingerprint<int>());
        std::uint32_t huge = 1u << 30;   // the record's payload size: far beyond the ring
        std::memcpy(seg->ring(0), &huge, sizeof huge);
    }
    BOOST_CHECK_THROW(q.get(true, 1s), shmq::broken_error);
}
