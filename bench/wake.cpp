// SPDX-License-Identifier: BSL-1.0
// shmq-bench --wake: how long a message takes to wake a process asleep in epoll_wait on a shmq
// Connection's fileno() (issue 11), next to the same through an OS pipe, and through shmq's own
// blocking recv.
//
// A waiter in another process announces itself and blocks (epoll_wait, or recv); the sender
// waits 200 µs so the waiter is surely asleep, reads steady_clock and sends 8 bytes; the waiter
// reads steady_clock when epoll_wait returns (the wake-up; for the blocking recv, when recv
// returns), then takes the message (and checks it). One figure per iteration; a run reports the
// median and the 99th percentile, and every figure is the median of --repeat runs (min..max).
// Children are forked, watched by alarm(30) and reaped.
#include <shmq/shmq.hpp>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

namespace shmq_bench {
namespace {

using clk = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(clk::now().time_since_epoch()).count();
}

constexpr int iterations = 400;

struct shared_state {
    std::atomic<int> waiting{-1};          // the iteration the waiter is about to sleep for
    std::atomic<std::int64_t> sent_at{0};  // steady_clock ns of the send
    std::int64_t latency[iterations];      // written by the waiter
};

shared_state* make_shared_state() {
    void* p = ::mmap(nullptr, sizeof(shared_state), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap");
    return new (p) shared_state();
}

/// Waits in epoll_wait on one descriptor (an epoll set made once per process, as a loop has).
bool epoll_wait_in(int fd) {
    static int ep = -1, watched = -1;
    if (watched != fd) {
        if (ep >= 0) ::close(ep);
        ep = ::epoll_create1(EPOLL_CLOEXEC);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = fd;
        ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        watched = fd;
    }
    epoll_event out{};
    int n;
    do n = ::epoll_wait(ep, &out, 1, 5000);
    while (n < 0 && errno == EINTR);
    return n == 1;
}

struct run_figures {
    double median_us, p99_us;
};

/// One run: `wait_one()` blocks until a message is there, writes the wake-up time to *woke and
/// takes the message (false if it was wrong); `send_one()` sends.
run_figures run(const std::function<void()>& setup_child,
                const std::function<bool(std::int64_t* woke)>& wait_one,
                const std::function<void()>& send_one, const std::function<void()>& after_fork) {
    shared_state* st = make_shared_state();
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork");
    if (pid == 0) {
        ::alarm(30);
        setup_child();
        for (int i = 0; i < iterations; ++i) {
            st->waiting.store(i, std::memory_order_release);
            std::int64_t woke = 0;
            if (!wait_one(&woke)) ::_exit(2);
            st->latency[i] = woke - st->sent_at.load(std::memory_order_acquire);
        }
        ::_exit(0);
    }
    after_fork();
    for (int i = 0; i < iterations; ++i) {
        while (st->waiting.load(std::memory_order_acquire) != i) std::this_thread::sleep_for(20us);
        std::this_thread::sleep_for(200us);   // the waiter is asleep by now
        st->sent_at.store(now_ns(), std::memory_order_release);
        send_one();
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("waiter failed");
    std::vector<std::int64_t> l(st->latency, st->latency + iterations);
    std::sort(l.begin(), l.end());
    ::munmap(st, sizeof(shared_state));
    return {l[l.size() / 2] / 1000.0, l[l.size() * 99 / 100] / 1000.0};
}

run_figures shmq_epoll() {
    auto [rx, tx] = shmq::Pipe(false);
    const std::int64_t payload = 42;
    return run(
        [&] { tx.close(); (void)rx.fileno(); },
        [&](std::int64_t* woke) {
            if (!epoll_wait_in(rx.fileno())) return false;
            *woke = now_ns();
            return rx.recv<std::int64_t>() == payload;
        },
        [&] { tx.send(payload); }, [&] { rx.close(); });
}

run_figures shmq_recv() {
    auto [rx, tx] = shmq::Pipe(false);
    const std::int64_t payload = 42;
    return run([&] { tx.close(); },
               [&](std::int64_t* woke) {
                   const bool ok = rx.recv<std::int64_t>() == payload;
                   *woke = now_ns();
                   return ok;
               },
               [&] { tx.send(payload); }, [&] { rx.close(); });
}

run_figures os_pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    const std::int64_t payload = 42;
    auto r = run(
        [&] { ::close(fds[1]); },
        [&](std::int64_t* woke) {
            if (!epoll_wait_in(fds[0])) return false;
            *woke = now_ns();
            std::int64_t v = 0;
            return ::read(fds[0], &v, sizeof v) == sizeof v && v == payload;
        },
        [&] { [[maybe_unused]] auto n = ::write(fds[1], &payload, sizeof payload); },
        [&] { ::close(fds[0]); });
    ::close(fds[1]);
    return r;
}

} // namespace

int wake_check(int repeat) {
    struct line {
        const char* name;
        run_figures (*fn)();
    };
    const line lines[] = {
        {"shmq Pipe, epoll_wait on fileno()", shmq_epoll},
        {"OS pipe(2), epoll_wait on it", os_pipe},
        {"shmq Pipe, blocking recv (futex)", shmq_recv},
    };
    std::printf("Wake latency: send -> a waiter asleep for 200 us wakes (%d iterations a run, "
                "median of %d runs, min..max)\n",
                iterations, repeat);
    std::printf("  %-36s %22s %22s\n", "", "median us", "p99 us");
    for (const line& l : lines) {
        std::vector<double> med, p99;
        for (int r = 0; r < repeat; ++r) {
            const run_figures f = l.fn();
            med.push_back(f.median_us);
            p99.push_back(f.p99_us);
        }
        auto show = [](std::vector<double> v) {
            std::sort(v.begin(), v.end());
            char buf[64];
            std::snprintf(buf, sizeof buf, "%.1f (%.1f..%.1f)", v[v.size() / 2], v.front(), v.back());
            return std::string(buf);
        };
        std::printf("  %-36s %22s %22s\n", l.name, show(med).c_str(), show(p99).c_str());
    }
    return 0;
}

} // namespace shmq_bench
