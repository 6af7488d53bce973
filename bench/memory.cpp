// SPDX-License-Identifier: BSL-1.0
// shmq-bench --memory: does memory grow with traffic, and what does one queue cost?
//
// A child process puts 64 B strings through an unbounded Queue<std::string> (and sends them
// through a Pipe) as fast as it can; the parent gets them. Resident memory (VmRSS) of both
// processes is read after the first million messages, when every buffer has reached its working
// size, and again at the end: the difference is the growth. The cost of one queue is the size of
// a named queue's shared memory object (header plus ring).
#include <shmq/shmq.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace shmq_bench {
namespace {

long rss_kib(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return -1;
}

struct growth {
    long parent_before, parent_after, child_before, child_after;
};

// Runs `total` messages from a child into the parent; samples RSS at `warm` and at the end.
template <class Send, class Recv, class Close>
growth measure(std::size_t total, std::size_t warm, Send send, Recv recv, Close close_child_side) {
    int ready[2], done[2];
    if (::pipe(ready) != 0 || ::pipe(done) != 0) throw std::runtime_error("pipe");
    pid_t child = ::fork();
    if (child == 0) {
        close_child_side();
        for (std::size_t i = 0; i < total; ++i) send();
        char c = 0;
        // Tell the parent everything is sent, then stay alive until it has sampled our RSS.
        (void)!::write(ready[1], &c, 1);
        (void)!::read(done[0], &c, 1);
        ::_exit(0);
    }
    growth g{};
    for (std::size_t i = 0; i < total; ++i) {
        recv();
        if (i + 1 == warm) {
            g.parent_before = rss_kib(::getpid());
            g.child_before = rss_kib(child);
        }
    }
    char c = 0;
    (void)!::read(ready[0], &c, 1);
    g.parent_after = rss_kib(::getpid());
    g.child_after = rss_kib(child);
    (void)!::write(done[1], &c, 1);
    int status = 0;
    ::waitpid(child, &status, 0);
    for (int fd : {ready[0], ready[1], done[0], done[1]}) ::close(fd);
    return g;
}

void print(const char* what, std::size_t total, const growth& g) {
    std::printf("%-28s %5zu M msgs   parent RSS %7ld -> %7ld KiB (%+ld)   child RSS %7ld -> %7ld KiB (%+ld)\n",
                what, total / 1'000'000, g.parent_before, g.parent_after, g.parent_after - g.parent_before,
                g.child_before, g.child_after, g.child_after - g.child_before);
}

} // namespace

int memory_check() {
    constexpr std::size_t total = 10'000'000, warm = 1'000'000;
    const std::string msg(64, 'x');
    int rc = 0;
    std::printf("MEMORY  (RSS after %zu M messages vs after %zu M; 64 B each)\n", total / 1'000'000,
                warm / 1'000'000);
    {
        // Bounded, so the producer cannot run ahead into its backlog: an unbounded queue whose
        // producer outpaces its consumer holds the difference in the producer's memory, by design
        // (put never blocks), and that is the application's backlog, not the library's growth.
        shmq::Queue<std::string> q(1024);
        auto g = measure(total, warm, [&] { q.put(msg); }, [&] { (void)q.get(); }, [] {});
        print("Queue<std::string>(1024)", total, g);
        if (g.parent_after - g.parent_before > 1024 || g.child_after - g.child_before > 1024) rc = 1;
    }
    {
        shmq::JoinableQueue<std::string> q(1024);
        auto g = measure(total, warm, [&] { q.put(msg); }, [&] { (void)q.get(); q.task_done(); }, [] {});
        print("JoinableQueue<std::string>", total, g);
        if (g.parent_after - g.parent_before > 1024 || g.child_after - g.child_before > 1024) rc = 1;
    }
    {
        auto [r, w] = shmq::Pipe(false);
        std::vector<std::byte> bytes(64, std::byte{'x'}), buf(64);
        auto g = measure(total, warm, [&] { w.send_bytes(bytes); }, [&] { (void)r.recv_bytes_into(buf); },
                         [&] { r.close(); });
        print("Pipe send_bytes", total, g);
        if (g.parent_after - g.parent_before > 1024 || g.child_after - g.child_before > 1024) rc = 1;
    }
    // The footprint of one queue: a named one's shared memory object is all of it.
    const std::string name = "shmq-bench-footprint-" + std::to_string(::getpid());
    for (std::size_t cap : {std::size_t{64} << 10, std::size_t{1} << 20}) {
        auto q = shmq::Queue<std::string>::create(name, 0, {.capacity = cap});
        struct stat st {};
        ::stat(("/dev/shm/shmq." + name).c_str(), &st);
        std::printf("one Queue, ring of %5zu KiB: %lld bytes of shared memory (ring + %lld bytes)\n",
                    cap >> 10, static_cast<long long>(st.st_size),
                    static_cast<long long>(st.st_size) - static_cast<long long>(cap));
        shmq::Queue<std::string>::remove(name);
    }
    std::printf(rc ? "memory: GREW by more than 1 MiB\n" : "memory: no growth (within 1 MiB)\n");
    return rc;
}

} // namespace shmq_bench
