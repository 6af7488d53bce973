// SPDX-License-Identifier: BSL-1.0
// asio_loop — a dispatcher whose one thread runs a Boost.Asio event loop and serves shmq
// objects in it, beside whatever sockets and timers it has: no extra thread to collect results,
// no polling of is_alive().
//
//   * a Queue<int> of results from every worker:  posix::stream_descriptor on results.fileno()
//   * a Pipe from each worker (its goodbye, then EOF when it ends): on conn.fileno()
//   * each worker's Process sentinel (readable when it has ended):   on p.sentinel()
//   * a steady_timer as a watchdog.
//
// What to know when putting fileno() into an event loop:
//   * Wait for readability only (async_wait(wait_read)); never read the descriptor itself.
//   * It is level-triggered: after a wake-up, take what is there (get until empty(), or
//     poll()-then-recv until poll() is false), then wait again. Taking re-arms the descriptor;
//     Asio's async_wait then completes at once if something is still there, or when more comes.
//   * The descriptor belongs to the shmq object: release() it from the stream_descriptor before
//     that goes (its destructor would close it), and close the object only after.
//
// Exits 0 when every result, goodbye, end-of-stream and exit was seen; 1 otherwise.
#include <shmq/shmq.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;

int main() {
    constexpr int workers = 3, jobs_each = 5;

    shmq::Queue<int> results;
    std::vector<std::pair<shmq::Connection, shmq::Connection>> pipes;   // (parent reads, worker writes)
    for (int w = 0; w < workers; ++w) pipes.push_back(shmq::Pipe(/*duplex=*/false));

    std::vector<std::unique_ptr<shmq::Process>> procs;
    for (int w = 0; w < workers; ++w) {
        procs.push_back(std::make_unique<shmq::Process>([&, w] {
            // Only this worker's end stays open here, so each pipe's EOF means its worker ended.
            for (int o = 0; o < workers; ++o)
                if (o != w) pipes[o].second.close();
            for (int j = 0; j < jobs_each; ++j) {
                const int n = w * jobs_each + j;
                results.put(n * n);
            }
            pipes[w].second.send(std::string("goodbye from worker ") + std::to_string(w));
        }));
        procs.back()->start();
    }
    for (auto& p : pipes) p.second.close();   // the parent keeps only the reading ends

    asio::io_context io;
    int got = 0, goodbyes = 0, eofs = 0, exits = 0;
    long long sum = 0;
    bool failed = false;
    auto done = [&] {
        return got == workers * jobs_each && goodbyes == workers && eofs == workers && exits == workers;
    };

    asio::steady_timer watchdog(io, 30s);
    watchdog.async_wait([&](const boost::system::error_code& ec) {
        if (ec) return;   // cancelled: everything arrived
        std::fprintf(stderr, "asio_loop: timed out (%d results, %d goodbyes, %d EOFs, %d exits)\n",
                     got, goodbyes, eofs, exits);
        failed = true;
        io.stop();
    });
    auto check_done = [&] {
        if (done()) watchdog.cancel();   // nothing else is pending then: run() returns
    };

    // The results queue: take everything there is, then wait again.
    asio::posix::stream_descriptor queue_fd(io, results.fileno());
    std::function<void()> wait_results = [&] {
        queue_fd.async_wait(asio::posix::stream_descriptor::wait_read,
                            [&](const boost::system::error_code& ec) {
                                if (ec) return;
                                while (!results.empty()) {
                                    sum += results.get_nowait();
                                    ++got;
                                }
                                check_done();
                                if (got < workers * jobs_each) wait_results();
                            });
    };
    wait_results();

    // Each worker's pipe: its goodbye, then EOF.
    std::vector<std::unique_ptr<asio::posix::stream_descriptor>> pipe_fds;
    std::vector<std::function<void()>> wait_pipe(workers);
    for (int w = 0; w < workers; ++w) {
        pipe_fds.push_back(std::make_unique<asio::posix::stream_descriptor>(io, pipes[w].first.fileno()));
        wait_pipe[w] = [&, w] {
            pipe_fds[w]->async_wait(asio::posix::stream_descriptor::wait_read,
                                    [&, w](const boost::system::error_code& ec) {
                                        if (ec) return;
                                        auto& conn = pipes[w].first;
                                        try {
                                            while (conn.poll()) {
                                                const auto msg = conn.recv<std::string>();
                                                if (msg == "goodbye from worker " + std::to_string(w)) ++goodbyes;
                                            }
                                        } catch (const shmq::eof_error&) {
                                            ++eofs;   // the worker has ended: stop watching
                                            check_done();
                                            return;
                                        }
                                        wait_pipe[w]();
                                    });
        };
        wait_pipe[w]();
    }

    // Each worker's sentinel: readable once it has ended.
    std::vector<std::unique_ptr<asio::posix::stream_descriptor>> sentinels;
    for (int w = 0; w < workers; ++w) {
        sentinels.push_back(std::make_unique<asio::posix::stream_descriptor>(io, procs[w]->sentinel()));
        sentinels.back()->async_wait(asio::posix::stream_descriptor::wait_read,
                                     [&, w](const boost::system::error_code& ec) {
                                         if (ec) return;
                                         procs[w]->join();
                                         if (procs[w]->exitcode() == 0) ++exits;
                                         check_done();
                                     });
    }

    io.run();

    // The descriptors belong to the shmq objects: hand them back before the wrappers go.
    queue_fd.release();
    for (auto& d : pipe_fds) d->release();
    for (auto& d : sentinels) d->release();
    for (auto& p : procs) p->join();

    long long expected = 0;
    for (int n = 0; n < workers * jobs_each; ++n) expected += static_cast<long long>(n) * n;
    if (failed || !done() || sum != expected) {
        std::fprintf(stderr, "asio_loop: sum %lld, expected %lld\n", sum, expected);
        return 1;
    }
    std::printf("asio_loop: %d results (sum %lld), %d goodbyes, %d end-of-streams, %d exits\n",
                got, sum, goodbyes, eofs, exits);
    return 0;
}
