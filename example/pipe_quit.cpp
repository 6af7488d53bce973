// SPDX-License-Identifier: BSL-1.0
// pipe_quit — queue_quit.cpp again, through a Pipe instead of a Queue. From Python:
//
//     from multiprocessing import Process, Pipe
//
//     def reader(conn):
//         count = 0
//         while (msg := conn.recv()) != "quit":
//             print("child got:", msg)
//             count += 1
//         conn.send(count)             # the pipe is duplex: answer on the same connection
//
//     if __name__ == "__main__":
//         parent_end, child_end = Pipe()
//         p = Process(target=reader, args=(child_end,))
//         p.start()
//         child_end.close()            # the parent keeps only its own end
//         for msg in ["hello", "from", "the parent"]:
//             parent_end.send(msg)
//         parent_end.send("quit")
//         print("child counted", parent_end.recv())
//         p.join()
//
// A Pipe is two Connections joined back to back: what one end send()s, the other recv()s, one
// whole message at a time, in order. A Pipe is for two parties; a Queue (queue_quit.cpp) for any
// number of producers and consumers.
//
// Connection::recv() has no timeout of its own; poll(timeout) waits until a message is there (or
// the peer has closed its end), so poll-then-recv is the bounded receive used below.
//
// Exits 0 when the child saw every message and counted them right, 1 otherwise.
#include <shmq/shmq.hpp>

#include <chrono>
#include <cstddef>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

/// Receives one T, waiting at most `timeout`. Throws shmq::empty_error when nothing came, and
/// shmq::eof_error (from recv) when the peer closed its end without sending anything.
template <class T> T recv_within(shmq::Connection& conn, std::chrono::duration<double> timeout) {
    if (!conn.poll(timeout)) throw shmq::empty_error("pipe_quit: nothing arrived in time");
    return conn.recv<T>();
}

} // namespace

int main() {
    // Both ends live in one anonymous shared-memory segment, inherited by children forked later.
    auto [parent_end, child_end] = shmq::Pipe();

    // Connections are move-only, so the target captures the child's end by reference: after
    // fork() the child has its own copy of `child_end` and uses that. An exception escaping the
    // target ends the child with exit code 1 (and is printed to stderr).
    shmq::Process reader([&child_end] {
        std::size_t count = 0;
        for (;;) {
            auto msg = recv_within<std::string>(child_end, 5s);
            if (msg == "quit") break;
            std::cout << "child got: " << msg << '\n';
            ++count;
        }
        child_end.send(count);   // a size_t is trivially copyable: it travels as its raw bytes
    });
    reader.start();

    // Each end is counted per process. Closing the parent's copy of the child's end means that if
    // the child dies, the parent's recv sees eof_error and its send broken_pipe_error, instead of
    // waiting for a peer that the parent itself still holds open.
    child_end.close();

    const std::vector<std::string> messages{"hello", "from", "the parent"};
    int status = 0;
    try {
        for (const auto& msg : messages) parent_end.send(msg);
        parent_end.send(std::string("quit"));   // send<T> deduces T: say std::string, not char[5]
        const auto count = recv_within<std::size_t>(parent_end, 10s);
        std::cout << "parent: child counted " << count << " messages\n";
        if (count != messages.size()) status = 1;
    } catch (const shmq::error& e) {   // every shmq error derives from shmq::error
        std::cerr << "pipe_quit: " << e.what() << '\n';
        status = 1;
    }

    if (!reader.join(10s)) {
        std::cerr << "pipe_quit: the child did not finish in time\n";
        reader.kill();
        reader.join();
        return 1;
    }
    const std::optional<int> code = reader.exitcode();
    std::cout << "parent: child exited with code " << code.value_or(-1) << '\n';
    return code == 0 ? status : 1;
}
