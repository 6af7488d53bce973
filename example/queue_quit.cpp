// SPDX-License-Identifier: BSL-1.0
// queue_quit — the first program of every multiprocessing tutorial, ported from Python:
//
//     from multiprocessing import Process, Queue
//
//     def reader(q):
//         while (msg := q.get()) != "quit":
//             print("child got:", msg)
//
//     if __name__ == "__main__":
//         q = Queue()
//         p = Process(target=reader, args=(q,))
//         p.start()
//         for msg in ["hello", "from", "the parent"]:
//             q.put(msg)
//         q.put("quit")
//         p.join()
//
// The C++ version has the same shape. What differs:
//  * The queue is typed: shmq::Queue<std::string> carries std::string and nothing else.
//  * There is no `args=`: the child is a fork() of the parent, so the target simply uses the queue
//    created before start() (capture it by reference; the child has its own copy of everything).
//  * Every wait here has a deadline, so a bug ends the program with an error instead of hanging
//    it. A real program may well wait forever; the defaults (timeout = std::nullopt) do that.
//
// Exits 0 when the child printed every message and ended cleanly, 1 otherwise.
#include <shmq/shmq.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;

int main() {
    // An anonymous queue lives in shared memory that every child forked from now on inherits.
    // It is unbounded (maxsize 0), so put() never blocks, as in Python.
    shmq::Queue<std::string> q;

    // The child's whole life is this lambda. Anything that escapes it — here the
    // shmq::empty_error thrown by a get() that waited 5 s in vain — is printed to stderr and ends
    // the child with exit code 1, as an uncaught exception does in Python.
    shmq::Process reader([&q] {
        for (;;) {
            std::string msg = q.get(/*block=*/true, /*timeout=*/5s);
            if (msg == "quit") return;   // returning from the target means exit code 0
            std::cout << "child got: " << msg << '\n';
        }
    });
    reader.start();   // fork(): from here on two processes share `q`

    const std::vector<std::string> messages{"hello", "from", "the parent"};
    for (const auto& msg : messages) q.put(msg);   // encoded here, copied into shared memory
    q.put("quit");

    // join(timeout) returns false if the child is still running when the timeout expires.
    if (!reader.join(10s)) {
        std::cerr << "queue_quit: the child did not finish in time\n";
        reader.kill();
        reader.join();
        return 1;
    }
    // exitcode() follows Python: the child's exit status, or -N if signal N killed it.
    const std::optional<int> code = reader.exitcode();
    std::cout << "parent: child exited with code " << code.value_or(-1) << '\n';
    return code == 0 ? 0 : 1;
}
