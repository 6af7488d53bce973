// SPDX-License-Identifier: BSL-1.0
// shmq-soak — one chaos phase (see phase.hpp).
#include "phase.hpp"

#include "cleanup.hpp"
#include "ledger.hpp"
#include "worker.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

namespace shmq_soak {
namespace {

constexpr std::int64_t ms = 1'000'000;
constexpr std::int64_t hang_ns = 10'000 * ms;        // heartbeat silence that makes a hang
constexpr std::int64_t wind_down_ns = 30'000 * ms;   // producers' exit, consumers' drain: each

struct position {
    bool producer;
    std::uint32_t index;        // producer or consumer number
    std::uint32_t worker;       // ledger worker_record
    pid_t pid = 0;              // 0: not running
    std::uint32_t slot = 0;     // producer: current incarnation
    bool stopped = false;
    bool kill_sent = false;     // our SIGKILL (chaos or hang), so its death is expected
    bool hung = false;
    std::int64_t resume_at = 0, last_resumed = 0, respawn_at = -1;
};

class controller {
public:
    controller(const phase_spec& spec, const config& cfg, std::mt19937_64& rng,
               const std::string& name)
        : cfg_(cfg), rng_(rng), subject_(spec, cfg.capacity, name)
    {
        r_.label = spec.label();
        for (std::uint32_t i = 0; i < cfg.producers; ++i)
            pos_.push_back({.producer = true, .index = i, .worker = i});
        for (std::uint32_t j = 0; j < cfg.consumers; ++j)
            pos_.push_back({.producer = false, .index = j, .worker = cfg.producers + j});
    }

    ~controller()
    {
        // On any failure path: no child outlives the phase (the subject then removes the name).
        for (auto& p : pos_)
            if (p.pid > 0) {
                ::kill(p.pid, SIGKILL);
                ::waitpid(p.pid, nullptr, 0);
                cleanup::remove_child(p.pid);
            }
    }

    phase_result run(double seconds)
    {
        std::int64_t start = now_ns(), end = start + static_cast<std::int64_t>(seconds * 1e9);
        for (auto& p : pos_) spawn(p);
        std::int64_t next_action = start + next_interval();
        while (now_ns() < end) {
            tick(true, true);
            if (now_ns() >= next_action) {
                chaos();
                next_action = now_ns() + next_interval();
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        wind_down();
        settle();
        r_.seconds = (now_ns() - start) / 1e9;
        return r_;
    }

private:
    std::int64_t next_interval()
    {
        std::exponential_distribution<double> d(1.0 / cfg_.chaos_interval_ms);
        return static_cast<std::int64_t>(d(rng_) * ms);
    }

    void spawn(position& p)
    {
        p.respawn_at = -1;
        if (p.producer) {
            if (next_slot_ == ledger::max_slots) return;   // no fresh slot: stays down
            p.slot = next_slot_++;
            auto& s = ledger_.slot(p.slot);
            s.producer.store(p.index);
            s.used.store(1);
        }
        auto& w = ledger_.worker(p.worker);
        w.heartbeat_ns.store(now_ns());
        w.in_get.store(0);
        w.state.store(ws_start);
        std::fflush(stdout);
        std::fflush(stderr);
        pid_t pid = ::fork();
        if (pid < 0) { problem("fork failed"); return; }
        if (pid == 0) {
            cleanup::in_child();
            if (p.producer)
                producer_main(subject_, ledger_,
                              {.producer = p.index, .worker = p.worker, .slot = p.slot,
                               .seed = cfg_.seed, .capacity = cfg_.capacity});
            consumer_main(subject_, ledger_, p.worker);
        }
        cleanup::add_child(pid);
        p.pid = pid;
        p.stopped = p.kill_sent = p.hung = false;
        p.last_resumed = now_ns();
    }

    /// Reaps, resumes, respawns and watches heartbeats.
    void tick(bool respawn_producers, bool respawn_consumers)
    {
        std::int64_t now = now_ns();
        int status;
        pid_t pid;
        while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
            cleanup::remove_child(pid);
            auto it = std::find_if(pos_.begin(), pos_.end(), [&](auto& p) { return p.pid == pid; });
            if (it == pos_.end()) continue;
            position& p = *it;
            p.pid = 0;
            auto& w = ledger_.worker(p.worker);
            if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && p.kill_sent) {
                // The child is gone, so what it last wrote into the ledger is final.
                if (p.producer) {
                    ledger_.slot(p.slot).killed.store(1);
                    if (ledger_.slot(p.slot).in_put.load()) ++r_.killed_in_put;
                } else if (w.in_get.load()) {
                    ++r_.killed_in_get;
                }
            } else if (WIFSIGNALED(status)) {
                ++r_.crashes;
                problem(std::string(p.producer ? "producer" : "consumer") + " " +
                        std::to_string(p.index) + " died of signal " +
                        std::to_string(WTERMSIG(status)) + " while " + state_name(w.state.load()));
                if (p.producer) ledger_.slot(p.slot).killed.store(1);
            } else if (WEXITSTATUS(status) == exit_retired) {
                ++r_.retired;
            }
            bool again = p.producer ? respawn_producers : respawn_consumers;
            if (again) {
                std::uniform_int_distribution<int> delay(5, 50);
                p.respawn_at = now + delay(rng_) * ms;
            }
        }
        for (auto& p : pos_) {
            if (p.pid == 0 && p.respawn_at >= 0 && now >= p.respawn_at) {
                bool again = p.producer ? respawn_producers : respawn_consumers;
                if (again) { spawn(p); ++r_.respawns; }
                else p.respawn_at = -1;
            }
            if (p.pid > 0 && p.stopped && now >= p.resume_at) {
                ::kill(p.pid, SIGCONT);
                p.stopped = false;
                p.last_resumed = now;
            }
            if (p.pid > 0 && !p.stopped && !p.kill_sent && now - p.last_resumed > hang_ns) {
                auto& w = ledger_.worker(p.worker);
                std::int64_t silent = now - w.heartbeat_ns.load();
                if (silent > hang_ns) {
                    ++r_.hangs;
                    problem(std::string("hang: ") + (p.producer ? "producer " : "consumer ") +
                            std::to_string(p.index) + " (pid " + std::to_string(p.pid) +
                            ") silent for " + std::to_string(silent / ms) + " ms while " +
                            state_name(w.state.load()));
                    p.hung = p.kill_sent = true;
                    ::kill(p.pid, SIGKILL);
                }
            }
        }
    }

    void chaos()
    {
        std::vector<position*> live;
        for (auto& p : pos_)
            if (p.pid > 0 && !p.kill_sent) live.push_back(&p);
        if (live.empty()) return;
        position& p = *live[std::uniform_int_distribution<std::size_t>(0, live.size() - 1)(rng_)];
        unsigned roll = rng_() % 100;
        if (roll < 30) {
            p.kill_sent = true;
            ::kill(p.pid, SIGKILL);
            ++r_.kills;
        } else if (roll < 85 && !p.stopped) {
            ::kill(p.pid, SIGSTOP);
            p.stopped = true;
            p.resume_at = now_ns() + std::uniform_int_distribution<int>(1, 200)(rng_) * ms;
            ++r_.stops;
        }
    }

    bool any_running(bool producers)
    {
        for (auto& p : pos_)
            if (p.producer == producers && (p.pid > 0 || p.respawn_at >= 0)) return true;
        return false;
    }

    /// Bounded waits, heartbeats still watched: a stuck process is a hang, killed and counted.
    void wait_until_gone(bool producers, bool respawn_consumers, const char* what)
    {
        std::int64_t limit = now_ns() + wind_down_ns;
        while (any_running(producers)) {
            tick(false, respawn_consumers);
            if (now_ns() > limit) {
                for (auto& p : pos_)
                    if (p.producer == producers && p.pid > 0 && !p.kill_sent) {
                        ++r_.hangs;
                        problem(std::string("hang: ") + what + ": " +
                                (p.producer ? "producer " : "consumer ") +
                                std::to_string(p.index) + " still " +
                                state_name(ledger_.worker(p.worker).state.load()) + " after 30 s");
                        p.hung = p.kill_sent = true;
                        ::kill(p.pid, SIGKILL);
                    }
                limit = now_ns() + wind_down_ns;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }

    void wind_down()
    {
        for (auto& p : pos_)
            if (p.pid > 0 && p.stopped) {
                ::kill(p.pid, SIGCONT);
                p.stopped = false;
                p.last_resumed = now_ns();
            }
        auto& f = ledger_.flags();
        f.stop_producing.store(1);
        // Consumers keep being respawned meanwhile: a producer flushing its backlog (or blocked
        // in send on a full ring) needs someone to read.
        wait_until_gone(true, true, "producers' exit");
        subject_.close_writer();
        f.drain.store(1);
        wait_until_gone(false, false, "consumers' drain");

        // What the consumers left behind (say, the last item after a consumer was killed):
        // the runner reads it itself, with the same checks.
        try {
            subject_.attach(false);
            bytes msg;
            std::int64_t limit = now_ns() + wind_down_ns;
            while (now_ns() < limit) {
                bool got;
                try { got = subject_.get(msg, 0.2); }
                catch (const shmq::eof_error&) { break; }
                if (!got) break;
                record(ledger_, msg);
                ++r_.drained_by_runner;
                subject_.task_done();
            }
            if (subject_.spec().what == kind::joinable) r_.joined = subject_.join(5.0);
        } catch (const std::exception& e) {
            ledger_.note_error("runner drain", e.what());
        }
    }

    void settle()
    {
        auto& t = ledger_.totals();
        r_.received = t.received.load();
        r_.bytes = t.bytes.load();
        r_.duplicated = t.duplicated.load();
        r_.torn = t.torn.load();
        r_.unsent = t.unsent.load();
        r_.errors = t.errors.load();
        if (r_.errors && r_.first_problem.empty()) r_.first_problem = t.error_text;
        std::uint64_t missing_other = 0;
        for (std::uint32_t s = 0; s < next_slot_; ++s) {
            auto& slot = ledger_.slot(s);
            std::uint64_t acked = slot.acked.load();
            r_.acknowledged += acked;
            std::uint64_t missing = 0;
            for (std::uint64_t q = 0; q < acked; ++q) missing += !ledger_.received(s, q);
            if (slot.killed.load() && subject_.spec().has_backlog()) r_.lost_backlog += missing;
            else missing_other += missing;
        }
        r_.lost_in_dead_consumer = std::min(missing_other, r_.killed_in_get);
        r_.lost = missing_other - r_.lost_in_dead_consumer;
    }

    void problem(const std::string& text)
    {
        std::fprintf(stderr, "soak: %s: %s\n", r_.label.c_str(), text.c_str());
        if (r_.first_problem.empty()) r_.first_problem = text;
    }

    const config& cfg_;
    std::mt19937_64& rng_;
    ledger ledger_;      // before subject_: children forked from subject's phase inherit both
    subject subject_;
    std::vector<position> pos_;
    std::uint32_t next_slot_ = 0;
    phase_result r_;
};

} // namespace

phase_result run_phase(const phase_spec& spec, const config& cfg, double seconds,
                       std::mt19937_64& rng, const std::string& name)
{
    controller c(spec, cfg, rng, name);
    return c.run(seconds);
}

} // namespace shmq_soak
