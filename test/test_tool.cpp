// SPDX-License-Identifier: BSL-1.0
// The `shmq` command-line tool (tools/shmq.cpp), run as a program: b2 passes the built binary's
// path as an argument (test/Jamfile). Covers --help and usage errors, exit codes, ls (escaped
// names, --json, no waiting on a half-created object, read-only opening), stat (holders with
// liveness), gc (lists orphans, removes them only with --yes, leaves live and persistent objects),
// put/get (strings, bytes, stdin, --timeout), top (--count, rates) and rm.
#define BOOST_TEST_MODULE tool
#include <boost/test/unit_test.hpp>

#include <shmq/shmq.hpp>

#include "test_fixtures.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/mman.h>

using namespace std::chrono_literals;
using namespace shmq::test;

namespace {

std::string tool_path() {
    const auto& suite = boost::unit_test::framework::master_test_suite();
    for (int i = 1; i < suite.argc; ++i) {
        const std::string_view arg = suite.argv[i];
        const auto slash = arg.rfind('/');
        if (arg.substr(slash == std::string_view::npos ? 0 : slash + 1) == "shmq") return std::string(arg);
    }
    BOOST_FAIL("the shmq tool is not among the arguments (test/Jamfile passes it)");
    return {};
}

struct result {
    int code = -1;
    std::string out, err;
    double seconds = 0;
};

std::string slurp(int fd) {
    std::string s;
    ::lseek(fd, 0, SEEK_SET);
    char buf[4096];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) s.append(buf, static_cast<std::size_t>(n));
    return s;
}

/// Runs the tool with `args`, stdin from `in`, at most 20 s (then it is killed: code
/// child_timed_out). run_as: a uid to drop to first (only when we are root).
result run(std::vector<std::string> args, const std::string& in = "", std::optional<uid_t> run_as = {}) {
    const std::string path = tool_path();
    const int fin = ::memfd_create("in", 0), fout = ::memfd_create("out", 0), ferr = ::memfd_create("err", 0);
    BOOST_REQUIRE(fin >= 0 && fout >= 0 && ferr >= 0);
    BOOST_REQUIRE(::write(fin, in.data(), in.size()) == static_cast<ssize_t>(in.size()));
    ::lseek(fin, 0, SEEK_SET);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(path.c_str()));
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const auto t0 = clk::now();
    pid_t pid = -1;
    if (run_as) {
        pid = fork_child([&] {
            if (::dup2(fin, 0) < 0 || ::dup2(fout, 1) < 0 || ::dup2(ferr, 2) < 0) return 126;
            if (::setgid(65534) != 0 || ::setuid(*run_as) != 0) return 125;
            ::execv(path.c_str(), argv.data());
            return 127;
        });
    } else {
        // posix_spawn runs no fork handlers: the tool does not inherit this process's holder
        // registrations (a fork + exec would keep them under the same pid and start time, and
        // `stat` would list the tool as a holder).
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, fin, 0);
        posix_spawn_file_actions_adddup2(&fa, fout, 1);
        posix_spawn_file_actions_adddup2(&fa, ferr, 2);
        const int err = ::posix_spawn(&pid, path.c_str(), &fa, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        BOOST_REQUIRE_MESSAGE(err == 0, "posix_spawn: " << std::strerror(err));
    }
    result r;
    r.code = wait_child(pid, 20s);
    r.seconds = seconds_since(t0);
    r.out = slurp(fout);
    r.err = slurp(ferr);
    ::close(fin); ::close(fout); ::close(ferr);
    return r;
}

bool contains(const std::string& s, std::string_view what) { return s.find(what) != std::string::npos; }

} // namespace

BOOST_AUTO_TEST_CASE(help_usage_and_exit_codes, *boost::unit_test::timeout(60))
{
    auto r = run({"--help"});
    BOOST_TEST(r.code == 0);
    BOOST_TEST(contains(r.out, "usage: shmq"));
    BOOST_TEST(contains(r.out, "exit status"));
    BOOST_TEST(run({"help"}).code == 0);
    BOOST_TEST(run({"--version"}).code == 0);
    r = run({});
    BOOST_TEST(r.code == 2);
    BOOST_TEST(contains(r.err, "--help"));
    BOOST_TEST(run({"frobnicate"}).code == 2);
    BOOST_TEST(run({"ls", "--bogus"}).code == 2);
    BOOST_TEST(run({"stat"}).code == 2);
    BOOST_TEST(run({"get", "--timeout", "-1", "x"}).code == 2);
    r = run({"stat", unique_name("toolmissing")});
    BOOST_TEST(r.code == 1);
    BOOST_TEST(contains(r.err, "does not exist"));
    BOOST_TEST(run({"rm", unique_name("toolmissing")}).code == 1);
}

BOOST_AUTO_TEST_CASE(ls_escapes_names_and_never_waits, *boost::unit_test::timeout(60))
{
    const std::string evil = unique_name("tool\x1b[31mred\x07");
    const auto half = unique_name("toolhalf");
    shm_remover cleanup;
    cleanup.add(evil); cleanup.add(half);
    auto q = shmq::Queue<int>::create(evil);
    q.put(1);
    // A creator killed before initializing: a zero-filled file that never becomes ready.
    const int fd = ::shm_open(("/shmq." + half).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    BOOST_REQUIRE(fd >= 0);
    BOOST_REQUIRE_EQUAL(::ftruncate(fd, 4096), 0);
    ::close(fd);

    auto r = run({"ls"});
    BOOST_TEST(r.code == 0);
    BOOST_TEST(!contains(r.out, "\x1b"));   // no raw escape sequence reaches the terminal
    BOOST_TEST(!contains(r.out, "\x07"));
    BOOST_TEST(contains(r.out, "tool\\x1b[31mred\\x07"));
    BOOST_TEST(contains(r.out, half + " "));
    BOOST_TEST(contains(r.out, "initializing"));
    BOOST_TEST(r.seconds < 1.5);   // it used to wait 2 s on the half-created object

    r = run({"--json", "ls"});
    BOOST_TEST(r.code == 0);
    BOOST_TEST(!contains(r.out, "\x1b"));
    BOOST_TEST(contains(r.out, "\"name\":\"tool\\u001b[31mred\\u0007"));
    BOOST_TEST(r.out.front() == '[');
    BOOST_TEST(contains(r.out, "\"holders_alive\":1"));
}

BOOST_AUTO_TEST_CASE(inspection_opens_read_only, *boost::unit_test::timeout(60))
{
    const auto name = unique_name("toolro");
    shm_remover cleanup(name);
    // Readable by everyone, writable by nobody but its owner.
    auto q = shmq::Queue<int>::create(name, 0, shmq::options{.mode = 0644});
    q.put(1);
    q.put(2);
    std::optional<uid_t> nobody;
    if (::geteuid() == 0) nobody = 65534;   // as root, look as another user who may only read
    auto r = run({"ls"}, "", nobody);
    BOOST_TEST(r.code == 0);
    BOOST_TEST(contains(r.out, name));
    const auto line = r.out.substr(r.out.find(name), r.out.find('\n', r.out.find(name)) - r.out.find(name));
    BOOST_TEST(contains(line, " ok"), line);
    r = run({"--json", "stat", name}, "", nobody);
    BOOST_TEST(r.code == 0, r.err);
    BOOST_TEST(contains(r.out, "\"items\":2"));
    // Nothing was written: the queue still holds both items.
    BOOST_TEST(q.qsize() == 2u);
}

BOOST_AUTO_TEST_CASE(stat_lists_holders_with_liveness, *boost::unit_test::timeout(60))
{
    const auto name = unique_name("toolstat");
    shm_remover cleanup(name);
    auto q = shmq::JoinableQueue<std::string>::create(name);
    int fds[2];
    BOOST_REQUIRE_EQUAL(::pipe(fds), 0);
    scoped_child holder([&] {
        auto h = shmq::JoinableQueue<std::string>::open(name);
        char x = 1;
        if (::write(fds[1], &x, 1) != 1) return 3;
        ::pause();
        return 0;
    });
    ::close(fds[1]);
    char x = 0;
    BOOST_REQUIRE_EQUAL(::read(fds[0], &x, 1), 1);
    ::close(fds[0]);
    const std::string child = std::to_string(holder.pid()), me = std::to_string(::getpid());
    auto r = run({"stat", name});
    BOOST_TEST(r.code == 0);
    BOOST_TEST(contains(r.out, "holders:     2 alive, 0 dead"), r.out);
    BOOST_TEST(contains(r.out, "pid " + child + ", started"));
    BOOST_TEST(contains(r.out, "pid " + me + ", started"));
    holder.kill();
    BOOST_TEST(holder.wait(10s) == -SIGKILL);
    r = run({"stat", name});
    BOOST_TEST(contains(r.out, "holders:     1 alive, 1 dead"), r.out);
    r = run({"--json", "stat", name});
    BOOST_TEST(contains(r.out, "{\"pid\":" + child + ","));
    BOOST_TEST(contains(r.out, "\"state\":\"dead\""));
    BOOST_TEST(contains(r.out, "\"state\":\"alive\""));
    BOOST_TEST(contains(r.out, "\"kind\":\"JoinableQueue\""));
}

BOOST_AUTO_TEST_CASE(gc_lists_then_removes_only_orphans, *boost::unit_test::timeout(60))
{
    const auto dead = unique_name("toolgcd"), live = unique_name("toolgcl"), idle = unique_name("toolgci");
    shm_remover cleanup;
    cleanup.add(dead); cleanup.add(live); cleanup.add(idle);
    BOOST_REQUIRE_EQUAL(die_holding([&] { auto q = shmq::Queue<int>::create(dead); q.put(1); return q; }), -SIGKILL);
    auto q = shmq::Queue<int>::create(live);
    { auto i = shmq::Queue<int>::create(idle); i.put(5); }   // closed normally: persistent

    auto r = run({"gc"});
    BOOST_TEST(r.code == 4);   // orphans found, none removed
    BOOST_TEST(contains(r.out, dead));
    BOOST_TEST(!contains(r.out, live));
    BOOST_TEST(!contains(r.out, idle));
    BOOST_TEST(shm_entries(dead).size() == 1u);

    r = run({"--json", "gc", "--yes"});
    BOOST_TEST(r.code == 0, r.err);
    BOOST_TEST(contains(r.out, "\"gc\":\"removed\""));
    BOOST_TEST(shm_entries(dead).empty());
    BOOST_TEST(shm_entries(live).size() == 1u);
    BOOST_TEST(shm_entries(idle).size() == 1u);
    q.put(2);
    BOOST_TEST(q.get(true, 1s) == 2);
    BOOST_TEST(shmq::Queue<int>::open(idle).get(true, 1s) == 5);
}

BOOST_AUTO_TEST_CASE(put_and_get_strings_and_bytes, *boost::unit_test::timeout(60))
{
    const auto s = unique_name("toolputs"), b = unique_name("toolputb"), i = unique_name("toolputi"),
               bounded = unique_name("toolputf");
    shm_remover cleanup;
    for (const auto& n : {s, b, i, bounded}) cleanup.add(n);
    auto qs = shmq::Queue<std::string>::create(s);
    auto qb = shmq::SimpleQueue<std::vector<std::byte>>::create(b);
    auto qi = shmq::Queue<int>::create(i);
    auto qf = shmq::JoinableQueue<std::string>::create(bounded, 1);

    BOOST_TEST(run({"put", s, "one", "two words"}).code == 0);
    BOOST_TEST(qs.get(true, 1s) == "one");
    BOOST_TEST(qs.get(true, 1s) == "two words");
    BOOST_TEST(run({"put", s}, "from stdin\n").code == 0);   // stdin: one item
    BOOST_TEST(qs.get(true, 1s) == "from stdin\n");

    qs.put("a");
    qs.put("b");
    auto r = run({"get", "-n", "2", s});
    BOOST_TEST(r.code == 0);
    BOOST_TEST(r.out == "a\nb\n");
    r = run({"get", "--timeout", "0.2", s});
    BOOST_TEST(r.code == 3);   // empty until the timeout
    qs.put("quote\"d");
    r = run({"--json", "get", s});
    BOOST_TEST(r.code == 0);
    BOOST_TEST(contains(r.out, "\"items\":[\"quote\\\"d\"]"), r.out);

    BOOST_TEST(run({"put", b, std::string("raw\x01")}).code == 0);
    BOOST_TEST(to_string(qb.get()) == std::string("raw\x01"));
    qb.put(to_bytes("xyz"));
    r = run({"get", b});
    BOOST_TEST(r.code == 0);
    BOOST_TEST(r.out == "xyz");
    r = run({"get", "--timeout", "0.2", b});   // a SimpleQueue too is bounded by --timeout
    BOOST_TEST(r.code == 3);

    r = run({"put", i, "1"});
    BOOST_TEST(r.code == 1);   // Queue<int>: not a type the shell can give
    BOOST_TEST(contains(r.err, "element type"));

    // Bounded and full: put gives up after --timeout with exit 3. A JoinableQueue item got by the
    // tool is marked done, so join() does not wait for it.
    qf.put("x");
    BOOST_TEST(run({"put", "--timeout=0.2", bounded, "y"}).code == 3);
    BOOST_TEST(run({"get", bounded}).out == "x\n");
    BOOST_TEST(qf.join(5s));
}

BOOST_AUTO_TEST_CASE(top_shows_depth_and_rates, *boost::unit_test::timeout(60))
{
    const auto name = unique_name("tooltop");
    shm_remover cleanup(name);
    auto q = shmq::Queue<int>::create(name);
    for (int k = 0; k < 10; ++k) q.put(k);
    std::atomic<bool> stop{false};
    std::thread producer([&] {
        while (!stop) {
            q.put(1);
            (void)q.get(true, 1s);
            std::this_thread::sleep_for(1ms);
        }
    });
    auto r = run({"--json", "top", "--count", "2", "--interval", "0.3"});
    stop = true;
    producer.join();
    BOOST_TEST(r.code == 0);
    // Two refreshes, one JSON document each; the second has rates.
    const auto first_end = r.out.find('\n');
    BOOST_REQUIRE(first_end != std::string::npos);
    const std::string second = r.out.substr(first_end + 1);
    BOOST_TEST(std::count(r.out.begin(), r.out.end(), '\n') == 2);
    BOOST_TEST(contains(second, "\"name\":\"" + name + "\""));
    BOOST_TEST(contains(second, "\"put_per_s\":"));
    const auto at = second.find("\"name\":\"" + name + "\"");
    const auto rate = second.find("\"put_per_s\":", at);
    BOOST_REQUIRE(rate != std::string::npos);
    BOOST_TEST(std::stod(second.substr(rate + 12)) > 0.0);
    BOOST_TEST(run({"top", "--count", "1"}).code == 0);
}

BOOST_AUTO_TEST_CASE(rm_removes_names)
{
    const auto name = unique_name("toolrm");
    shm_remover cleanup(name);
    { auto q = shmq::Queue<int>::create(name); }
    auto r = run({"--json", "rm", name});
    BOOST_TEST(r.code == 0);
    BOOST_TEST(contains(r.out, "\"removed\":true"));
    BOOST_TEST(shm_entries(name).empty());
}

BOOST_AUTO_TEST_CASE(stat_of_synchronization_objects, *boost::unit_test::timeout(60))
{
    const auto lock = unique_name("toollock"), value = unique_name("toolvalue");
    shm_remover cleanup;
    cleanup.add(lock); cleanup.add(value);
    auto l = shmq::Lock::create(lock);
    auto v = shmq::Value<std::uint32_t>::create(value, 0x01020304u);
    // A holder that died inside its critical section.
    scoped_child holder([&] {
        if (!l.acquire(true, 5s)) return 2;
        ::raise(SIGKILL);
        return 3;
    });
    const pid_t holder_pid = holder.pid();
    BOOST_TEST(holder.wait(10s) == -SIGKILL);
    auto r = run({"stat", lock});
    BOOST_TEST(r.code == 0);
    BOOST_TEST(contains(r.out, "kind:        Lock"));
    BOOST_TEST(contains(r.out, "holder:      pid " + std::to_string(holder_pid) + " (dead)"), r.out);
    BOOST_TEST(contains(r.out, "holders:     not tracked"));
    r = run({"--json", "stat", value});
    BOOST_TEST(r.code == 0);
    BOOST_TEST(contains(r.out, "\"value_hex\":\"04030201\""), r.out);
    BOOST_TEST(contains(r.out, "\"holders_tracked\":false"));
    // gc never takes them: they keep no holders.
    r = run({"gc"});
    BOOST_TEST(!contains(r.out, lock));
}
