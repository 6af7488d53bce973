// SPDX-License-Identifier: BSL-1.0
// shmq-bench --nats: what leaving the host costs. The same Queue<std::string>, once in shared
// memory and once in NATS JetStream on loopback (a nats-server of its own, started like the
// tests start theirs: test/nats_server.hpp), 64 B and 64 KiB items:
//   throughput  a forked producer puts n items, this process gets them; items/s from the first
//               put to the last get (NATS: every put waits for the server's ack, every get
//               fetches and acknowledges, so this is a round-trip-bound figure by design)
//   round trip  put on one queue, a forked child gets it and puts it on a second, back here;
//               p50 and p99
// Without nats-server the NATS rows are skipped with a note. Counts are small for NATS (the
// stream is stored on disk in a temporary directory, removed at the end).
#include "../test/nats_server.hpp"
#include "transport.hpp"

#include <shmq/detail/exit_flush.hpp>
#include <shmq/shmq.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

namespace shmq_bench {
namespace {

using bench_clock = std::chrono::steady_clock;
// Every call in these loops is bounded: a stuck run fails instead of hanging the benchmark.
const shmq::timeout_t patience = std::chrono::duration<double>(30);
using make_queue = std::function<shmq::Queue<std::string>(const char* role, std::size_t maxsize)>;

// Forks body into a child that _exits with 0, or 1 when body throws (reported on stderr).
pid_t spawn(const std::function<void()>& body) {
    std::fflush(nullptr);
    const pid_t p = ::fork();
    if (p != 0) return p;
    int rc = 0;
    try {
        body();
        shmq::detail::run_exit_flush();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "shmq-bench --nats: child: %s\n", e.what());
        rc = 1;
    }
    ::_exit(rc);
}

bool reap(pid_t p) {
    int st = 0;
    while (::waitpid(p, &st, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

void measure(const char* label, const make_queue& make, std::size_t size, int n, int trips) {
    const std::string item(size, 'x');
    auto q = make("tp", queue_maxsize(size));
    const auto t0 = bench_clock::now();
    const pid_t producer = spawn([&] {
        for (int i = 0; i < n; ++i) q.put(item, true, patience);
    });
    for (int i = 0; i < n; ++i) q.get(true, patience);
    const double s = std::chrono::duration<double>(bench_clock::now() - t0).count();
    const bool ok1 = reap(producer);

    auto ping = make("ping", 0), pong = make("pong", 0);
    const pid_t echo = spawn([&] {
        for (int i = 0; i < trips; ++i) pong.put(ping.get(true, patience), true, patience);
    });
    std::vector<double> us;
    us.reserve(static_cast<std::size_t>(trips));
    for (int i = 0; i < trips; ++i) {
        const auto a = bench_clock::now();
        ping.put(item, true, patience);
        pong.get(true, patience);
        us.push_back(std::chrono::duration<double, std::micro>(bench_clock::now() - a).count());
    }
    const bool ok2 = reap(echo);
    std::sort(us.begin(), us.end());
    std::printf("%-22s %8zu B %12.0f %10.1f %12.1f %10.1f%s\n", label, size, n / s, n * size / s / 1e6,
                us[us.size() / 2], us[us.size() * 99 / 100], ok1 && ok2 ? "" : "   (a child failed)");
}

} // namespace

int nats_bench(bool quick) {
    std::printf("NATS  (Queue<std::string>, 1 producer process -> 1 consumer; round trip through two queues)\n");
    std::printf("%-22s %10s %12s %10s %12s %10s\n", "backend", "item", "items/s", "MB/s", "rt p50 us", "rt p99 us");
    const int scale = quick ? 4 : 1;
    const make_queue shm = [](const char*, std::size_t maxsize) {
        return shmq::Queue<std::string>(maxsize);
    };
    std::unique_ptr<shmq::test::nats_server> srv;
    std::string why;
    try {
        srv = std::make_unique<shmq::test::nats_server>();
    } catch (const std::exception& e) {
        why = e.what();
    }
    int k = 0;
    const make_queue nats = [&](const char* role, std::size_t) {
        // Unbounded: a NATS producer (one round trip per put) never outruns its consumer enough
        // to matter in these counts.
        return shmq::Queue<std::string>::create(
            srv->url("bench-" + std::string(role) + "-" + std::to_string(::getpid()) + "-" + std::to_string(k++)));
    };
    try {
        for (const std::size_t size : {std::size_t{64}, std::size_t{65536}}) {
            const bool small = size == 64;
            measure("shared memory", shm, size, (small ? 400000 : 40000) / scale, 5000 / scale);
            if (srv) measure("NATS (loopback)", nats, size, (small ? 4000 : 600) / scale, 400 / scale);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "shmq-bench --nats: %s\n", e.what());
        return 1;
    }
    if (!srv) std::printf("NATS rows skipped: %s\n", why.c_str());
    return 0;
}

} // namespace shmq_bench
