// SPDX-License-Identifier: BSL-1.0
// A program that uses an installed shmq the way an outside project would (test/consumer/run
// builds it with pkg-config, CMake and b2, against libshmq.a and libshmq.so). It crosses the
// library boundary everywhere visibility could break it: every facade type, an exception thrown
// in the library and caught here, and a Boost.Serialization type whose serializers live in this
// binary while the checked archive lives in the library.
#include <shmq/shmq.hpp>
#include <shmq/version.hpp>

#include <boost/serialization/vector.hpp>

#include <cstdio>
#include <string>
#include <vector>

namespace {

struct job {
    std::string name;
    std::vector<int> values;

    template <class Archive> void serialize(Archive& ar, unsigned) { ar & name & values; }
};

int fail(const char* what) {
    std::fprintf(stderr, "consumer: FAILED: %s\n", what);
    return 1;
}

} // namespace

int main() {
    try {
        shmq::Queue<int> numbers;
        shmq::Queue<job> jobs;
        auto [parent_end, child_end] = shmq::Pipe();

        shmq::Process worker([&] {   // captures a structured binding: C++20, clang >= 16
            auto n = child_end.recv<int>();
            numbers.put(n * n);
            jobs.put(job{"squared", {n, n * n}});
        });
        worker.start();
        parent_end.send(12);

        if (numbers.get() != 144) return fail("Queue<int>");
        job j = jobs.get();
        if (j.name != "squared" || j.values != std::vector<int>{12, 144}) return fail("Queue<job>");
        worker.join();
        if (worker.exitcode() != 0) return fail("Process exit code");

        try {
            numbers.get_nowait();
            return fail("get_nowait on an empty queue did not throw");
        } catch (const shmq::empty_error&) {
            // thrown inside libshmq, caught here by its exact type
        }
    } catch (const shmq::error& e) {
        std::fprintf(stderr, "consumer: shmq::error: %s\n", e.what());
        return 1;
    }
    std::printf("consumer OK, shmq %s\n", SHMQ_VERSION_STRING);
    return 0;
}
