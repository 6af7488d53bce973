// SPDX-License-Identifier: BSL-1.0
// pool_map — Python's multiprocessing.Pool in C++, and what it does when a worker dies. From
// Python:
//
//     def is_prime(n): ...
//     with Pool(2) as pool:
//         flags = pool.map(is_prime, range(10000), chunksize=100)
//         print(sum(flags), "primes below 10000")
//         for i, r in enumerate(pool.imap(risky, range(8))):   # in Python, the killed worker
//             ...                                                # makes this hang for ever
//
// shmq's Pool reports the item whose worker died (worker_lost_error), forks a replacement and
// delivers every other result.
//
// The task functions are plain functions (a capture-less lambda works too): the workers are
// forked from this process, so a function's address means the same in them.
//
// Exits 0 only if every result is right, 1 otherwise.
#include <shmq/shmq.hpp>

#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include <signal.h>
#include <unistd.h>

using namespace std::chrono_literals;

namespace {

bool is_prime(int n) {
    if (n < 2) return false;
    for (int d = 2; d * d <= n; ++d)
        if (n % d == 0) return false;
    return true;
}

/// Item 3 kills its own worker, as a crash or the OOM killer would.
std::string risky(int i) {
    if (i == 3) ::kill(::getpid(), SIGKILL);
    return "result " + std::to_string(i);
}

} // namespace

int main() {
    shmq::Pool pool(2);

    std::vector<int> numbers(10'000);
    for (int i = 0; i < 10'000; ++i) numbers[static_cast<std::size_t>(i)] = i;
    // map: in input order, 100 items per message.
    const std::vector<bool> flags = pool.map(is_prime, numbers, 100);
    int primes = 0;
    for (bool f : flags) primes += f;
    std::cout << "pool_map: " << primes << " primes below 10000\n";

    // apply_async + get with a timeout.
    shmq::AsyncResult<bool> r = pool.apply_async(is_prime, 7919);
    const bool big_prime = r.get(10s);

    // imap: results as they come, in order; the item whose worker died throws, the rest arrive.
    int delivered = 0, lost = 0;
    auto results = pool.imap(risky, std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7});
    for (int i = 0; i < 8; ++i) {
        try {
            if (results.next(10s) == "result " + std::to_string(i)) ++delivered;
        } catch (const shmq::worker_lost_error&) {
            std::cout << "pool_map: item " << i << " lost its worker\n";
            ++lost;
        }
    }
    std::cout << "pool_map: " << delivered << " other results arrived\n";

    pool.close();   // no more tasks; the workers exit once the queued ones are done
    pool.join();
    return primes == 1229 && big_prime && delivered == 7 && lost == 1 ? 0 : 1;
}
