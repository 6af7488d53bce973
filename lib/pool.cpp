// SPDX-License-Identifier: BSL-1.0
// shmq::Pool: the compiled part (see include/shmq/pool.hpp for the contract).
//
// Pieces, all the library's own:
//  * one inbox per worker (an unbounded Queue of task messages, written by the parent only),
//    so the parent always knows which tasks a worker holds: a dead worker's unstarted tasks go
//    to others, nothing is lost or run twice;
//  * one result queue shared by the workers (bounded, so a worker's put returns only once the
//    answer is in shared memory: no backlog in the worker that would die with it);
//  * a table of worker slots in anonymous shared memory: before each item a worker writes
//    "running job J chunk C item I" there, so when the parent reaps a dead worker it knows
//    whether it died inside a task and in which item;
//  * shmq::Process for the workers (fork, waitpid), and a result thread in the parent that reads
//    answers, hands out tasks and watches the workers.
//
// The parent feeds each worker a few tasks ahead (`depth`): one when tasks are slow (so a long
// task never holds back short ones that another worker could run), up to 64 when they take
// microseconds (so a worker never waits for the parent). depth follows a moving average of the
// chunk run times the workers report.
#include <shmq/pool.hpp>

#include <shmq/detail/queue_core.hpp>
#include <shmq/process.hpp>

#include "liveness.hpp"
#include "type_name.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <typeinfo>
#include <unordered_map>

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>


namespace shmq::detail {

using clock = std::chrono::steady_clock;

// ---- pool_job ---------------------------------------------------------------------------------

struct pool_job::state {
    mutable std::mutex mu;
    std::condition_variable cv;
    std::vector<std::uint8_t> status;          // per item: 0 pending, 1 ok, 2 failed
    std::map<std::size_t, std::exception_ptr> errors;
    std::exception_ptr first_error;
    std::size_t done = 0;
    bool completion_order;
    std::vector<std::size_t> order;            // completion order (imap_unordered only)
    std::size_t ready_waiters = 0;   // threads in wait_ready
    std::size_t item_waiters = 0;    // threads in wait_position

    bool ready_locked(std::size_t items) const noexcept { return done == items || first_error; }
    void finish_locked(std::size_t item) {
        ++done;
        if (completion_order) order.push_back(item);
    }
};

pool_job::pool_job(std::size_t items, bool completion_order)
    : s_(std::make_unique<state>()), items_(items) {
    s_->status.assign(items, 0);
    s_->completion_order = completion_order;
    if (completion_order) s_->order.reserve(items);
}

pool_job::~pool_job() = default;

/// Settles one item with the job's lock held; returns whether the job just became ready.
bool pool_job::settle_locked(std::size_t item, std::span<const std::byte>* bytes, std::exception_ptr e) noexcept {
    if (item >= items_ || s_->status[item] != 0) return false;   // failed already (terminate)
    const bool was_ready = s_->ready_locked(items_);
    if (bytes) {
        try {
            store(item, *bytes);
            s_->status[item] = 1;
        } catch (...) {
            e = std::current_exception();
        }
    }
    if (s_->status[item] == 0) {
        s_->status[item] = 2;
        try {
            s_->errors.emplace(item, e);
        } catch (...) {}
        if (!s_->first_error) s_->first_error = e;
    }
    try { s_->finish_locked(item); } catch (...) {}
    return !was_ready && s_->ready_locked(items_);
}

void pool_job::notify(std::unique_lock<std::mutex>& lock, bool became_ready, bool any) noexcept {
    // Only who can use the news is woken: map() waits for the whole job, imap for items.
    const bool wake = (any && s_->item_waiters) || (became_ready && s_->ready_waiters);
    lock.unlock();
    if (wake) s_->cv.notify_all();
}

void pool_job::deliver(std::size_t item, std::span<const std::byte> bytes) noexcept {
    std::unique_lock lock(s_->mu);
    const bool r = settle_locked(item, &bytes, nullptr);
    notify(lock, r, true);
}

void pool_job::fail(std::size_t item, std::exception_ptr e) noexcept {
    std::unique_lock lock(s_->mu);
    const bool r = settle_locked(item, nullptr, e);
    notify(lock, r, true);
}

bool pool_job::deliver_chunk(std::size_t first, std::size_t count,
                             std::span<const std::byte> rest) noexcept {
    std::unique_lock lock(s_->mu);
    bool ready = false, ok = true;
    for (std::size_t i = 0; i < count; ++i) {
        std::uint32_t len = 0;
        if (rest.size() < 1 + sizeof len) { ok = false; break; }
        const auto status = rest[0];
        std::memcpy(&len, rest.data() + 1, sizeof len);
        if (rest.size() - 1 - sizeof len < len) { ok = false; break; }
        auto bytes = rest.subspan(1 + sizeof len, len);
        rest = rest.subspan(1 + sizeof len + len);
        if (status == std::byte{0}) {
            ready |= settle_locked(first + i, &bytes, nullptr);
        } else {
            std::exception_ptr e;
            try {
                e = std::make_exception_ptr(task_error(
                    "shmq::Pool: item " + std::to_string(first + i) + " raised " +
                    std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size())));
            } catch (...) {
                e = std::current_exception();   // std::bad_alloc
            }
            ready |= settle_locked(first + i, nullptr, e);
        }
    }
    notify(lock, ready, true);
    return ok;
}

namespace {

/// Waits on cv until pred() or the timeout (nullopt forever, <= 0 just checks). Returns pred().
template <class Pred>
bool wait_for_pred(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                   std::size_t& waiters, const timeout_t& timeout, Pred pred) {
    if (pred()) return true;
    if (timeout && !(timeout->count() > 0)) return false;
    ++waiters;
    struct undo { std::size_t& w; ~undo() { --w; } } u{waiters};
    if (!timeout || timeout->count() > 1e9) {
        cv.wait(lock, pred);
        return true;
    }
    const auto until = clock::now() + std::chrono::duration_cast<clock::duration>(*timeout);
    return cv.wait_until(lock, until, pred);
}

} // namespace

bool pool_job::wait_ready(const timeout_t& timeout) {
    std::unique_lock lock(s_->mu);
    return wait_for_pred(lock, s_->cv, s_->ready_waiters, timeout,
                         [&] { return s_->ready_locked(items_); });
}

bool pool_job::ready() const {
    std::lock_guard lock(s_->mu);
    return s_->ready_locked(items_);
}

std::exception_ptr pool_job::first_error() const {
    std::lock_guard lock(s_->mu);
    return s_->first_error;
}

std::size_t pool_job::wait_position(std::size_t k, const timeout_t& timeout) {
    if (k >= items_) throw value_error("shmq::IMapIterator: position past the end");
    std::unique_lock lock(s_->mu);
    const bool ok = s_->completion_order
                        ? wait_for_pred(lock, s_->cv, s_->item_waiters, timeout,
                                        [&] { return s_->order.size() > k; })
                        : wait_for_pred(lock, s_->cv, s_->item_waiters, timeout,
                                        [&] { return s_->status[k] != 0; });
    if (!ok) throw timeout_error("shmq::IMapIterator: timed out");
    return s_->completion_order ? s_->order[k] : k;
}

std::exception_ptr pool_job::item_error(std::size_t item) const {
    std::lock_guard lock(s_->mu);
    if (item >= items_ || s_->status[item] != 2) return nullptr;
    auto it = s_->errors.find(item);
    return it != s_->errors.end() ? it->second : s_->first_error;
}

// ---- pool_batch -------------------------------------------------------------------------------

void pool_bytes::reserve(std::size_t n) {
    if (n <= cap_) return;
    std::unique_ptr<std::byte[]> p(new std::byte[n]);   // default-initialised: not zeroed
    if (size_) std::memcpy(p.get(), p_.get(), size_);
    p_ = std::move(p);
    cap_ = n;
}

pool_batch::pool_batch(std::uintptr_t fn, pool_invoker invoker, std::size_t chunksize)
    : fn_(fn), invoker_(invoker), chunksize_(chunksize) {}

void pool_batch::reserve(std::size_t items, std::size_t item_bytes) {
    const std::size_t chunks = (items + chunksize_ - 1) / chunksize_;
    buf_.reserve(items * (sizeof(std::uint32_t) + item_bytes) + chunks * sizeof(pool_task_header));
    chunk_starts_.reserve(chunks);
}

std::size_t pool_batch::finish() { return items_; }

std::span<const std::byte> pool_batch::message(std::size_t c, std::uint64_t job) {
    const std::size_t begin = chunk_starts_[c];
    const std::size_t end = c + 1 < chunk_starts_.size() ? chunk_starts_[c + 1] : buf_.size();
    std::memcpy(buf_.data() + begin + offsetof(pool_task_header, job), &job, sizeof job);
    return {buf_.data() + begin, end - begin};
}

std::uint64_t pool_batch::first_item(std::size_t c) const noexcept {
    std::uint64_t first = 0;
    std::memcpy(&first, buf_.data() + chunk_starts_[c] + offsetof(pool_task_header, first), sizeof first);
    return first;
}

std::uint32_t pool_batch::chunk_items(std::size_t c) const noexcept {
    std::uint32_t count = 0;
    std::memcpy(&count, buf_.data() + chunk_starts_[c] + offsetof(pool_task_header, count), sizeof count);
    return count;
}

// ---- shared between the parent and the workers -------------------------------------------------

/// One per worker position, in anonymous shared memory. Written by the worker of that position
/// (plain stores: only the parent reads them, and only after it has reaped that worker, when
/// every store of the dead process is visible), reset by the parent before it forks the next.
struct alignas(64) worker_slot {
    static constexpr std::uint32_t initializing = 1, idle = 2, running = 3;
    std::atomic<std::uint32_t> state;
    std::atomic<std::uint32_t> chunk;
    std::atomic<std::uint64_t> job;
    std::atomic<std::uint64_t> item;
    char init_error[240];   // what the initializer threw (NUL-terminated), for the broken message
};

/// An answer: this header, then per item `u8 status` (0 value, 1 error text) + `u32 length` +
/// the bytes.
struct pool_result_header {
    std::uint64_t job;
    std::uint64_t run_ns;   // time the chunk took in the worker
    std::uint32_t chunk;
    std::uint32_t count;
    std::uint32_t worker;   // position
    std::uint32_t pid;      // the worker's pid: an answer from an earlier incarnation is ignored
};

namespace {

/// "std::runtime_error: boom" for the exception being handled. Call only in a catch block.
std::string describe_current_exception() {
    try {
        throw;
    } catch (const std::exception& e) {
        return type_name(&typeid(e)) + ": " + e.what();
    } catch (...) {
        return "exception of type " + type_name(current_exception_type());
    }
}

std::string describe_exit(std::optional<int> code) {
    if (!code) return "ended (exit status unknown)";
    if (*code < 0) {
        const char* name = ::sigabbrev_np(-*code);
        return "was killed by signal " + std::to_string(-*code) +
               (name ? std::string(" (SIG") + name + ")" : std::string());
    }
    return "exited with code " + std::to_string(*code);
}

constexpr std::int64_t result_queue_maxsize = (std::int64_t{1} << 27) - 1;
constexpr std::chrono::milliseconds watch_period{50};
constexpr std::chrono::milliseconds worker_poll{250};
constexpr std::size_t max_depth = 64;

struct job_rec {
    std::uint64_t id;
    std::shared_ptr<pool_job> result;
    pool_batch batch;
    std::size_t next_chunk = 0;    // next chunk never handed out
    std::size_t chunks_left;       // chunks not yet answered or failed
};

struct task_ref {
    std::shared_ptr<job_rec> job;
    std::uint32_t chunk;
};

/// Results to fail, collected under the pool's lock and failed after it (pool_job has its own).
struct failure {
    std::shared_ptr<pool_job> job;
    std::size_t first, count;
    std::exception_ptr e;
};

} // namespace

class pool_impl {
public:
    struct worker {
        std::unique_ptr<Process> proc;
        std::unique_ptr<queue_core> inbox;
        std::deque<task_ref> outstanding;   // handed to this incarnation, not answered, in order
        std::uint64_t assigned = 0;         // tasks handed to this incarnation
        bool alive = false;                 // started and not yet seen dead
        bool stop_sent = false;
        clock::time_point front_since;      // when the front task became this worker's current one
    };
    enum class run_state { running, closed, terminated };

    pool_impl(unsigned n, std::function<void()> init, std::optional<unsigned> maxtasks)
        : owner_(static_cast<pid_t>(self_pid())),
          nproc_(n),
          initializer_(std::move(init)),
          maxtasks_(maxtasks),
          results_(queue_flavor::queue, result_queue_maxsize, options{}, 0x506f6f6c52u),
          workers_(n) {
        void* p = ::mmap(nullptr, slots_bytes(), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                         -1, 0);
        if (p == MAP_FAILED)
            throw error(std::string("shmq::Pool: mmap: ") + std::strerror(errno));
        slots_ = static_cast<worker_slot*>(p);
        try {
            std::lock_guard lock(mu_);
            for (unsigned w = 0; w < n; ++w) spawn(w);
            handler_ = std::thread([this] { run_handler(); });
        } catch (...) {
            kill_all();
            for (auto& w : workers_)
                if (w.proc) try { w.proc->join(); } catch (...) {}
            ::munmap(slots_, slots_bytes());
            throw;
        }
    }

    ~pool_impl() {
        // Only reached in the owner after terminate() + join().
        for (auto& w : workers_)
            if (w.inbox) w.inbox->cancel_join_thread();
        ::munmap(slots_, slots_bytes());
    }

    std::size_t slots_bytes() const noexcept { return sizeof(worker_slot) * nproc_; }

    bool in_owner() const noexcept { return static_cast<pid_t>(self_pid()) == owner_; }
    void check_owner(const char* what) const {
        if (!in_owner())
            throw value_error(std::string("shmq::Pool::") + what +
                              ": a pool can only be used by the process that created it");
    }

    /// value_error unless the pool accepts tasks; worker_lost_error when it broke.
    void check_accepting() const {
        if (state_.load(std::memory_order_acquire) == run_state::running &&
            !broken_.load(std::memory_order_acquire))
            return;
        std::lock_guard lock(mu_);
        check_accepting_locked();
    }
    void check_accepting_locked() const {
        switch (state_.load(std::memory_order_acquire)) {
        case run_state::running: break;
        case run_state::closed: throw value_error("shmq::Pool: pool is closed (close() was called)");
        case run_state::terminated: throw value_error("shmq::Pool: pool is terminated");
        }
        if (broken_.load(std::memory_order_acquire)) throw worker_lost_error(broken_msg_);
    }

    void submit(std::shared_ptr<pool_job> job, pool_batch batch) {
        const std::size_t chunks = batch.chunks();
        std::lock_guard lock(mu_);
        check_accepting_locked();
        if (chunks == 0) return;   // an empty map: the job is complete already
        auto rec = std::make_shared<job_rec>(
            job_rec{next_job_++, std::move(job), std::move(batch), 0, chunks});
        active_.emplace(rec->id, rec);
        fresh_.push_back(std::move(rec));
        pump();
    }

    void close() {
        std::lock_guard lock(mu_);
        if (state_.load() == run_state::running) state_.store(run_state::closed);
    }

    void terminate() {
        std::vector<std::shared_ptr<job_rec>> jobs;
        {
            std::lock_guard lock(mu_);
            state_.store(run_state::terminated);
            kill_all();
            for (auto& [id, rec] : active_) jobs.push_back(rec);
            active_.clear();
            fresh_.clear();
            retry_.clear();
            for (auto& w : workers_) w.outstanding.clear();
        }
        stop_handler_.store(true);
        const auto e = std::make_exception_ptr(
            worker_lost_error("shmq::Pool: terminated before the result was ready"));
        for (auto& rec : jobs)
            for (std::size_t i = 0; i < rec->result->size(); ++i) rec->result->fail(i, e);
        join_all();
    }

    void join() {
        if (state_.load() == run_state::running)
            throw value_error("shmq::Pool::join: call close() or terminate() first");
        join_all();
    }

    std::vector<pid_t> pids() const {
        std::lock_guard lock(mu_);
        std::vector<pid_t> out;
        for (auto& w : workers_)
            if (w.alive && w.proc) out.push_back(w.proc->pid());
        return out;
    }

    unsigned nproc() const noexcept { return nproc_; }

private:
    // ---- the worker ----------------------------------------------------------------------------

    [[noreturn]] void worker_init_failed(worker_slot& s, const std::string& what) {
        std::snprintf(s.init_error, sizeof s.init_error, "%s", what.c_str());
        std::fprintf(stderr, "shmq::Pool worker %d: the initializer raised %s\n",
                     static_cast<int>(::getpid()), what.c_str());
        std::fflush(stderr);
        ::_exit(1);
    }

    /// Runs in the forked worker; returning ends it with exit code 0.
    void worker_main(unsigned w) {
        worker_slot& s = slots_[w];
        queue_core& inbox = *workers_[w].inbox;
        if (initializer_) {
            try {
                initializer_();
            } catch (...) {
                worker_init_failed(s, describe_current_exception());
            }
        }
        s.state.store(worker_slot::idle, std::memory_order_release);
        std::vector<std::byte> msg, out;
        container_sink<std::vector<std::byte>> sink(msg);
        std::uint64_t done = 0;
        const auto parent_gone = [&] { return ::getppid() != owner_; };
        for (;;) {
            try {
                inbox.get(sink, true, std::chrono::duration<double>(worker_poll));
            } catch (const empty_error&) {
                if (parent_gone()) return;
                continue;
            }
            // One message holds one or more chunks (the parent bundles what it hands out at
            // once); each chunk is answered on its own, so a death loses at most the running one.
            std::span<const std::byte> rest(msg.data(), msg.size());
            while (!rest.empty()) {
                pool_task_header h;
                if (rest.size() < sizeof h) return;   // not from the parent: give up
                std::memcpy(&h, rest.data(), sizeof h);
                rest = rest.subspan(sizeof h);
                if (h.job == 0) return;               // stop
                const auto invoke = reinterpret_cast<pool_invoker>(h.invoker);
                out.assign(sizeof(pool_result_header), std::byte{});
                const auto t0 = clock::now();
                for (std::uint32_t i = 0; i < h.count; ++i) {
                    std::uint32_t len = 0;
                    if (rest.size() < sizeof len) return;
                    std::memcpy(&len, rest.data(), sizeof len);
                    if (rest.size() - sizeof len < len) return;
                    const auto args = rest.subspan(sizeof len, len);
                    rest = rest.subspan(sizeof len + len);

                    s.job.store(h.job, std::memory_order_relaxed);
                    s.chunk.store(h.chunk, std::memory_order_relaxed);
                    s.item.store(h.first + i, std::memory_order_relaxed);
                    s.state.store(worker_slot::running, std::memory_order_release);

                    const std::size_t at = out.size();
                    out.resize(at + 1 + sizeof(std::uint32_t));
                    out[at] = std::byte{0};
                    try {
                        invoke(static_cast<std::uintptr_t>(h.fn), args, out);
                    } catch (...) {
                        const std::string text = describe_current_exception();
                        out.resize(at + 1 + sizeof(std::uint32_t));
                        out[at] = std::byte{1};
                        const auto* p = reinterpret_cast<const std::byte*>(text.data());
                        out.insert(out.end(), p, p + text.size());
                    }
                    const auto n = static_cast<std::uint32_t>(out.size() - at - 1 - sizeof(std::uint32_t));
                    std::memcpy(out.data() + at + 1, &n, sizeof n);
                }
                pool_result_header rh{};
                rh.job = h.job;
                rh.chunk = h.chunk;
                rh.count = h.count;
                rh.worker = w;
                rh.pid = static_cast<std::uint32_t>(self_pid());
                rh.run_ns = static_cast<std::uint64_t>(
                    std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - t0).count());
                std::memcpy(out.data(), &rh, sizeof rh);
                for (;;) {
                    try {
                        results_.put(out, true, std::chrono::duration<double>(worker_poll));
                        break;
                    } catch (const full_error&) {
                        if (parent_gone()) return;
                    }
                }
                s.state.store(worker_slot::idle, std::memory_order_release);
                if (maxtasks_ && ++done >= *maxtasks_) return;
            }
        }
    }

    // ---- the parent: workers -------------------------------------------------------------------

    /// Forks the worker of position w. Caller holds mu_ (so the child's copy of the pool's
    /// state is consistent; the child never touches mu_).
    void spawn(unsigned w) {
        worker& W = workers_[w];
        worker_slot& s = slots_[w];
        s.state.store(worker_slot::initializing, std::memory_order_relaxed);
        s.job.store(0, std::memory_order_relaxed);
        s.init_error[0] = '\0';
        if (W.inbox) W.inbox->cancel_join_thread();
        W.inbox = std::make_unique<queue_core>(queue_flavor::queue, 0, options{}, 0x506f6f6c54u);
        W.outstanding.clear();
        W.assigned = 0;
        W.stop_sent = false;
        W.proc = std::make_unique<Process>([this, w] { worker_main(w); });
        W.proc->start();
        W.alive = true;
    }

    void kill_all() noexcept {
        for (auto& w : workers_)
            if (w.alive && w.proc) try { w.proc->kill(); } catch (...) {}
    }

    /// Waits for the result thread (it ends by itself once a closed pool's work is done and its
    /// workers have exited; terminate() tells it to stop now), then reaps the workers.
    void join_all() {
        std::lock_guard jl(join_mu_);
        if (handler_.joinable()) handler_.join();
        for (auto& w : workers_)
            if (w.proc) w.proc->join();
        std::lock_guard lock(mu_);
        for (auto& w : workers_) w.alive = false;
    }

    /// How many tasks a worker may hold: enough to cover ~50 µs (a sleeping hand-off costs
    /// ~20 µs), so fast tasks never wait for the parent, and one when tasks take longer than
    /// that, so no task waits behind a long one that another worker could have started.
    std::size_t depth() const noexcept {
        if (ewma_ns_ < 0) return 1;
        const double d = 1 + 50e3 / std::max(ewma_ns_, 1.0);
        return static_cast<std::size_t>(std::min<double>(d, max_depth));
    }

    /// A worker whose current task has run much longer than tasks usually take is probably on a
    /// long one: queue nothing more behind it.
    bool stalled(const worker& w, clock::time_point now) const noexcept {
        if (w.outstanding.empty()) return false;
        const double ran = std::chrono::duration<double, std::nano>(now - w.front_since).count();
        return ran > 4 * std::max(ewma_ns_, 0.0) + 100e3;
    }

    /// Hands out tasks while some worker has room. Tasks for one worker go in one message (a
    /// bundle): one wake-up of the worker for many small tasks. Caller holds mu_.
    void pump() {
        if (state_.load() == run_state::terminated || broken_.load()) return;
        std::size_t pending = retry_.size();
        for (auto& rec : fresh_) pending += rec->batch.chunks() - rec->next_chunk;
        if (pending == 0) return;
        const std::size_t limit = depth();
        const auto now = clock::now();
        while (pending > 0) {
            worker* best = nullptr;
            std::size_t eligible = 0;
            for (auto& w : workers_) {
                if (!w.alive || w.stop_sent || w.outstanding.size() >= limit) continue;
                if (maxtasks_ && w.assigned >= *maxtasks_) continue;
                if (stalled(w, now)) continue;
                ++eligible;
                if (!best || w.outstanding.size() < best->outstanding.size()) best = &w;
            }
            if (!best) return;
            // Its room, but no more than its share of what is pending, so that a short map is
            // spread over the workers rather than bundled into one.
            std::size_t k = limit - best->outstanding.size();
            if (maxtasks_) k = std::min<std::size_t>(k, *maxtasks_ - best->assigned);
            k = std::min(k, std::max<std::size_t>(1, (pending + eligible - 1) / eligible));
            bundle_.clear();
            if (best->outstanding.empty()) best->front_since = now;
            std::size_t taken = 0;
            for (; taken < k && pending > 0; ++taken, --pending) {
                task_ref t;
                if (!retry_.empty()) {
                    t = std::move(retry_.front());
                    retry_.pop_front();
                } else {
                    auto& rec = fresh_.front();
                    t = task_ref{rec, static_cast<std::uint32_t>(rec->next_chunk++)};
                    if (rec->next_chunk == rec->batch.chunks()) fresh_.pop_front();
                }
                const auto m = t.job->batch.message(t.chunk, t.job->id);
                bundle_.insert(bundle_.end(), m.begin(), m.end());
                best->outstanding.push_back(std::move(t));
                ++best->assigned;
            }
            try {
                best->inbox->put(bundle_, true, std::nullopt);
            } catch (...) {
                // Not handed out after all (the inbox failed): back to the front, in order.
                for (std::size_t j = 0; j < taken; ++j) {
                    retry_.push_front(std::move(best->outstanding.back()));
                    best->outstanding.pop_back();
                    --best->assigned;
                }
                throw;
            }
        }
    }

    /// A chunk is over (answered or failed). Caller holds mu_.
    void chunk_over(job_rec& rec) {
        if (--rec.chunks_left == 0) active_.erase(rec.id);
    }

    /// Sends the stop message to idle workers once a closed pool has no work left.
    void maybe_stop_workers() {
        if (state_.load() != run_state::closed || !active_.empty()) return;
        pool_task_header h{};
        for (auto& w : workers_) {
            if (!w.alive || w.stop_sent) continue;
            w.inbox->put(std::span(reinterpret_cast<const std::byte*>(&h), sizeof h), true,
                         std::nullopt);
            w.stop_sent = true;
        }
    }

    bool should_respawn() const {
        if (broken_.load()) return false;
        switch (state_.load()) {
        case run_state::running: return true;
        case run_state::closed: return !active_.empty();
        case run_state::terminated: return false;
        }
        return false;
    }

    /// Worker w was found dead (reaped). Caller holds mu_.
    void on_death(unsigned w, std::vector<failure>& fails) {
        worker& W = workers_[w];
        W.alive = false;
        const worker_slot& s = slots_[w];
        const std::uint32_t st = s.state.load(std::memory_order_acquire);
        const pid_t pid = W.proc->pid();
        const std::string how = describe_exit(W.proc->exitcode());
        if (st == worker_slot::running && !W.outstanding.empty() &&
            W.outstanding.front().job->id == s.job.load(std::memory_order_relaxed) &&
            W.outstanding.front().chunk == s.chunk.load(std::memory_order_relaxed)) {
            task_ref t = std::move(W.outstanding.front());
            W.outstanding.pop_front();
            const std::uint64_t item = s.item.load(std::memory_order_relaxed);
            const std::uint64_t first = t.job->batch.first_item(t.chunk);
            const std::uint32_t count = t.job->batch.chunk_items(t.chunk);
            const std::string what = "shmq::Pool: worker " + std::to_string(pid) + " " + how +
                                     " while running item " + std::to_string(item);
            fails.push_back({t.job->result, item, 1, std::make_exception_ptr(worker_lost_error(what))});
            if (count > 1) {
                auto e = std::make_exception_ptr(worker_lost_error(
                    what + "; the items of its chunk [" + std::to_string(first) + ", " +
                    std::to_string(first + count) + ") were lost with it"));
                fails.push_back({t.job->result, first, count, e});   // item itself is failed already
            }
            chunk_over(*t.job);
        } else if (st == worker_slot::initializing) {
            ++init_failures_;
            last_init_error_ = s.init_error[0] ? std::string("raised ") + s.init_error
                                               : "worker " + std::to_string(pid) + " " + how;
        }
        // What it held but never started goes to the others first, in its order.
        for (auto it = W.outstanding.rbegin(); it != W.outstanding.rend(); ++it)
            retry_.push_front(std::move(*it));
        W.outstanding.clear();
        if (W.inbox) W.inbox->cancel_join_thread();

        if (init_failures_ >= 3 * nproc_) {
            break_pool(fails);
            return;
        }
        if (should_respawn()) {
            try {
                spawn(w);
            } catch (const std::exception& e) {
                ++init_failures_;
                last_init_error_ = std::string("could not start a worker: ") + e.what();
                respawn_due_ = true;
                if (init_failures_ >= 3 * nproc_) break_pool(fails);
            }
        }
    }

    /// The initializer keeps failing: stop for good. Caller holds mu_.
    void break_pool(std::vector<failure>& fails) {
        broken_msg_ = "shmq::Pool: broken: the worker initializer failed " +
                      std::to_string(init_failures_) +
                      " times in a row without a task completing (last: " + last_init_error_ + ")";
        broken_.store(true);
        kill_all();
        auto e = std::make_exception_ptr(worker_lost_error(broken_msg_));
        for (auto& [id, rec] : active_) fails.push_back({rec->result, 0, rec->result->size(), e});
        active_.clear();
        fresh_.clear();
        retry_.clear();
        for (auto& w : workers_) w.outstanding.clear();
    }

    static void apply_failures(std::vector<failure>& fails) {
        for (auto& f : fails)
            for (std::size_t i = 0; i < f.count; ++i) f.job->fail(f.first + i, f.e);
        fails.clear();
    }

    // ---- the parent: the result thread ---------------------------------------------------------

    /// Answers, in the order they were read. Called by the result thread only: one hold of the
    /// pool's lock for all of them (and one pump), then delivery under each job's own lock.
    void handle_results(std::vector<std::vector<std::byte>>& msgs, std::size_t n) {
        settled_.clear();
        {
            std::lock_guard lock(mu_);
            for (std::size_t m = 0; m < n; ++m) {
                const auto& msg = msgs[m];
                pool_result_header h;
                if (msg.size() < sizeof h) continue;
                std::memcpy(&h, msg.data(), sizeof h);
                if (h.worker >= nproc_) continue;
                worker& W = workers_[h.worker];
                if (!W.proc || static_cast<std::uint32_t>(W.proc->pid()) != h.pid) continue;   // stale
                if (W.outstanding.empty() || W.outstanding.front().job->id != h.job ||
                    W.outstanding.front().chunk != h.chunk)
                    continue;   // terminated meanwhile
                auto rec = std::move(W.outstanding.front().job);
                W.outstanding.pop_front();
                W.front_since = clock::now();
                init_failures_ = 0;
                const double ns = static_cast<double>(h.run_ns);
                ewma_ns_ = ewma_ns_ < 0 ? ns : 0.8 * ewma_ns_ + 0.2 * ns;
                chunk_over(*rec);
                settled_.push_back({std::move(rec), m, h.chunk});
            }
            try {
                pump();
                maybe_stop_workers();
            } catch (const std::exception& e) {
                // Deliver what arrived regardless; the next answer or watch retries the hand-out.
                std::fprintf(stderr, "shmq::Pool: handing out tasks failed: %s\n", e.what());
            }
        }
        // Deliver outside the pool's lock (each job has its own).
        for (auto& st : settled_) {
            const auto& msg = msgs[st.msg];
            const std::uint64_t first = st.rec->batch.first_item(st.chunk);
            const std::uint32_t count = st.rec->batch.chunk_items(st.chunk);
            std::span<const std::byte> answer(msg.data() + sizeof(pool_result_header),
                                              msg.size() - sizeof(pool_result_header));
            if (!st.rec->result->deliver_chunk(first, count, answer)) {
                // A malformed answer must not leave items waiting for ever.
                const auto e = std::make_exception_ptr(broken_error("shmq::Pool: malformed answer"));
                for (std::uint32_t j = 0; j < count; ++j) st.rec->result->fail(first + j, e);
            }
        }
        settled_.clear();
    }

    /// Reads what is in the result queue now (first waiting up to `wait` for one answer) and
    /// handles it. Returns whether there was anything.
    bool read_results(std::optional<std::chrono::duration<double>> wait, std::size_t max) {
        std::size_t n = 0;
        for (; n < max; ++n) {
            if (bufs_.size() <= n) bufs_.emplace_back();
            container_sink<std::vector<std::byte>> sink(bufs_[n]);
            try {
                if (n == 0 && wait) results_.get(sink, true, *wait);
                else results_.get(sink, false, std::nullopt);
            } catch (const empty_error&) {
                break;
            }
        }
        if (n) handle_results(bufs_, n);
        return n != 0;
    }

    /// Reaps dead workers, fails what they were running, hands out what they held, respawns.
    void watch_workers() {
        std::vector<unsigned> dead;
        {
            std::lock_guard lock(mu_);
            for (unsigned w = 0; w < nproc_; ++w)
                if (workers_[w].alive && !workers_[w].proc->is_alive()) dead.push_back(w);
            if (dead.empty() && respawn_due_ && should_respawn()) {
                respawn_due_ = false;
                std::vector<failure> fails;
                for (unsigned w = 0; w < nproc_; ++w)
                    if (!workers_[w].alive) {
                        try { spawn(w); } catch (...) { respawn_due_ = true; }
                    }
                pump();
            }
            if (dead.empty()) {
                maybe_stop_workers();   // close() may have come after the last answer
                return;
            }
        }
        // Whatever a dead worker answered is in the queue by now (a put is all or nothing);
        // take it first so that only what is really missing fails.
        for (std::size_t n = results_.qsize(); n > 0;) {
            const std::size_t step = std::min<std::size_t>(n, 256);
            if (!read_results(std::nullopt, step)) break;
            n -= step;
        }
        std::vector<failure> fails;
        {
            std::lock_guard lock(mu_);
            for (unsigned w : dead) on_death(w, fails);
            pump();
            maybe_stop_workers();
        }
        apply_failures(fails);
    }

    bool finished() {
        std::lock_guard lock(mu_);
        if (state_.load() == run_state::terminated) return true;
        const bool any_alive = std::any_of(workers_.begin(), workers_.end(),
                                           [](const worker& w) { return w.alive; });
        if (broken_.load()) return !any_alive;
        return state_.load() == run_state::closed && active_.empty() && !any_alive;
    }

    void run_handler() {
        auto last_watch = clock::now();
        while (!stop_handler_.load(std::memory_order_relaxed)) {
            bool got = false;
            try {
                got = read_results(std::chrono::duration<double>(watch_period), 256);
            } catch (const std::exception& e) {
                // The result queue cannot be trusted (broken_error): nothing more will arrive.
                std::fprintf(stderr, "shmq::Pool: result queue failed: %s\n", e.what());
                std::vector<failure> fails;
                {
                    std::lock_guard lock(mu_);
                    init_failures_ = 3 * nproc_;
                    last_init_error_ = e.what();
                    break_pool(fails);
                }
                apply_failures(fails);
            }
            try {
                const auto now = clock::now();
                if (!got || now - last_watch >= watch_period) {
                    last_watch = now;
                    watch_workers();
                    if (finished()) break;
                }
            } catch (const std::exception& e) {
                std::fprintf(stderr, "shmq::Pool: result thread: %s\n", e.what());
            }
        }
    }

    const pid_t owner_;
    const unsigned nproc_;
    const std::function<void()> initializer_;
    const std::optional<unsigned> maxtasks_;
    worker_slot* slots_ = nullptr;
    queue_core results_;

    mutable std::mutex mu_;   // everything below, but the atomics
    std::vector<worker> workers_;
    std::atomic<run_state> state_{run_state::running};
    std::atomic<bool> broken_{false};
    std::string broken_msg_;
    unsigned init_failures_ = 0;
    std::string last_init_error_;
    bool respawn_due_ = false;
    std::deque<std::shared_ptr<job_rec>> fresh_;   // jobs with chunks never handed out
    std::deque<task_ref> retry_;                   // chunks a dead worker held but never started
    std::unordered_map<std::uint64_t, std::shared_ptr<job_rec>> active_;
    std::uint64_t next_job_ = 1;                   // 0 is the stop message
    double ewma_ns_ = -1;

    // The result thread's own (no lock).
    struct settled_chunk {
        std::shared_ptr<job_rec> rec;
        std::size_t msg;
        std::uint32_t chunk;
    };
    std::vector<std::vector<std::byte>> bufs_;
    std::vector<settled_chunk> settled_;
    std::vector<std::byte> bundle_;   // pump's (under mu_)

    std::mutex join_mu_;
    std::atomic<bool> stop_handler_{false};
    std::thread handler_;
};

} // namespace shmq::detail

namespace shmq {

Pool::Pool(std::optional<unsigned> processes, std::function<void()> initializer,
           std::optional<unsigned> maxtasksperchild) {
    if (processes && *processes == 0)
        throw value_error("shmq::Pool: the number of processes must be at least 1");
    if (maxtasksperchild && *maxtasksperchild == 0)
        throw value_error("shmq::Pool: maxtasksperchild must be at least 1 (or nullopt)");
    impl_ = std::make_unique<detail::pool_impl>(processes.value_or(cpu_count()),
                                                std::move(initializer), maxtasksperchild);
}

Pool::Pool(Pool&&) noexcept = default;

Pool& Pool::operator=(Pool&& other) noexcept {
    if (this != &other) {
        Pool old(std::move(*this));
        impl_ = std::move(other.impl_);
    }
    return *this;
}

Pool::~Pool() {
    if (!impl_) return;
    if (!impl_->in_owner()) {
        // A forked copy: the workers and the result thread belong to the parent. Leave them be.
        (void)impl_.release();
        return;
    }
    try {
        impl_->terminate();
    } catch (...) {
    }
}

void Pool::check_usable() const {
    if (!impl_) throw value_error("shmq::Pool: moved-from pool");
    impl_->check_owner("submit");
    impl_->check_accepting();
}

void Pool::submit(std::shared_ptr<detail::pool_job> job, detail::pool_batch batch) {
    batch.finish();
    impl_->submit(std::move(job), std::move(batch));
}

void Pool::close() {
    if (!impl_) throw value_error("shmq::Pool: moved-from pool");
    impl_->check_owner("close");
    impl_->close();
}

void Pool::terminate() {
    if (!impl_) throw value_error("shmq::Pool: moved-from pool");
    impl_->check_owner("terminate");
    impl_->terminate();
}

void Pool::join() {
    if (!impl_) throw value_error("shmq::Pool: moved-from pool");
    impl_->check_owner("join");
    impl_->join();
}

std::vector<pid_t> Pool::worker_pids() const {
    if (!impl_) throw value_error("shmq::Pool: moved-from pool");
    impl_->check_owner("worker_pids");
    return impl_->pids();
}

unsigned Pool::processes() const noexcept { return impl_ ? impl_->nproc() : 0; }

} // namespace shmq
