// SPDX-License-Identifier: BSL-1.0
// worker_pool — a pre-fork worker pool: the parent forks N workers up front, hands them jobs
// through one JoinableQueue and gathers their answers from one Queue. From Python:
//
//     def worker(jobs, results):
//         while (job := jobs.get()) is not None:       # None is the "stop" sentinel
//             results.put((job.id, len(job.text.split()), os.getpid()))
//             jobs.task_done()
//         jobs.task_done()                             # for the sentinel
//
//     jobs, results = JoinableQueue(), Queue()
//     workers = [Process(target=worker, args=(jobs, results)) for _ in range(4)]
//     for w in workers: w.start()
//     for job in all_jobs: jobs.put(job)
//     jobs.join()                                      # every job has been marked done
//     for _ in workers: jobs.put(None)                 # one sentinel per worker
//     answers = [results.get() for _ in all_jobs]
//     for w in workers: w.join()
//
// It also shows the two ways a type travels through shmq:
//  * Job holds a std::string, so it is not trivially copyable: it says how to encode itself with
//    a Boost.Serialization `serialize` member, and shmq uses that.
//  * Result is a plain struct of numbers (trivially copyable): shmq copies its bytes as they are,
//    with no serialize needed and no encoding cost.
//
// Exits 0 only if every job's result arrived exactly once and is correct, 1 otherwise.
#include <shmq/shmq.hpp>

#include <chrono>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <sys/types.h>
#include <unistd.h>

using namespace std::chrono_literals;

namespace {

/// One unit of work: count the words of `text`. id < 0 is the sentinel that stops a worker.
struct Job {
    int id = 0;
    std::string text;

    // Boost.Serialization: the same function writes and reads, member by member.
    // <shmq/shmq.hpp> already includes <boost/serialization/string.hpp>; a Job with, say, a
    // std::vector member would also include <boost/serialization/vector.hpp>.
    template <class Archive> void serialize(Archive& ar, unsigned /*version*/) {
        ar & id;
        ar & text;
    }
};

/// One answer. Trivially copyable, so it is sent as its raw bytes (both ends are built from the
/// same source on the same machine, which is what makes that safe).
struct Result {
    int job_id;
    int words;
    pid_t worker;
};
static_assert(std::is_trivially_copyable_v<Result>);

constexpr int worker_count = 4;
constexpr int job_count = 40;

int count_words(const std::string& text) {
    std::istringstream in(text);
    int n = 0;
    for (std::string word; in >> word;) ++n;
    return n;
}

/// The job the parent sends as number `id`: id + 1 words.
Job make_job(int id) {
    Job job{id, {}};
    for (int i = 0; i <= id; ++i) job.text += "word ";
    return job;
}

/// A worker's whole life. Escaping exceptions (an empty_error after waiting 10 s for a job, say)
/// end the worker with exit code 1, which the parent checks.
void work(shmq::JoinableQueue<Job>& jobs, shmq::Queue<Result>& results) {
    for (;;) {
        const Job job = jobs.get(/*block=*/true, /*timeout=*/10s);
        if (job.id < 0) {        // the sentinel: no more work for this worker
            jobs.task_done();    // every get()ed item is marked done, the sentinel too
            return;
        }
        results.put(Result{job.id, count_words(job.text), ::getpid()});
        // Only after the result is put: once the parent's jobs.join() returns, every result
        // has been put (it may still be on its way, so the parent's get() waits for it).
        jobs.task_done();
    }
}

} // namespace

int main() {
    // Both queues are created before the workers are forked, so every worker shares them.
    shmq::JoinableQueue<Job> jobs;
    shmq::Queue<Result> results;

    // Pre-fork the pool. Process is move-only, so a vector of them is fine.
    std::vector<shmq::Process> workers;
    for (int i = 0; i < worker_count; ++i) {
        workers.emplace_back([&jobs, &results] { work(jobs, results); });
        workers.back().start();
    }

    int status = 0;
    auto fail = [&status](const std::string& why) {
        std::cerr << "worker_pool: " << why << '\n';
        status = 1;
    };

    try {
        for (int id = 0; id < job_count; ++id) jobs.put(make_job(id));

        // join() returns once task_done() has been called for every job put so far.
        if (!jobs.join(30s)) fail("the jobs were not all done in time");

        // One sentinel per worker: each worker takes exactly one and stops.
        for (int i = 0; i < worker_count; ++i) jobs.put(Job{-1, {}});

        // Collect one result per job and check it: right answer, and no job answered twice.
        std::vector<int> seen(job_count, 0);
        for (int i = 0; i < job_count && status == 0; ++i) {
            const Result r = results.get(true, 10s);   // empty_error if a result never comes
            if (r.job_id < 0 || r.job_id >= job_count) {
                fail("result for unknown job " + std::to_string(r.job_id));
            } else if (++seen[r.job_id] > 1) {
                fail("job " + std::to_string(r.job_id) + " answered twice");
            } else if (r.words != r.job_id + 1) {
                fail("wrong answer for job " + std::to_string(r.job_id));
            }
        }
    } catch (const shmq::error& e) {   // every shmq error derives from shmq::error
        fail(e.what());
    }

    // Wait for every worker, however the above went: all of them get 10 s in total, and one
    // that has not stopped by then is killed.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    for (auto& w : workers) {
        if (!w.join(deadline - std::chrono::steady_clock::now())) {
            fail("worker " + std::to_string(w.pid()) + " did not stop in time");
            w.kill();
            w.join();
        } else if (w.exitcode() != 0) {
            fail("worker " + std::to_string(w.pid()) + " exited with code " +
                 std::to_string(w.exitcode().value_or(-1)));
        }
    }

    // Every worker has exited, so nothing more can arrive: an extra result would be waiting now.
    if (status == 0 && !results.empty()) fail("more results than jobs");

    if (status == 0)
        std::cout << "worker_pool: " << job_count << " jobs, " << worker_count
                  << " workers: every result arrived exactly once\n";
    return status;
}
