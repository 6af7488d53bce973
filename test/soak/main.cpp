// SPDX-License-Identifier: BSL-1.0
// shmq-soak — chaos soak of shmq (issue 7, B.4).
//
//   shmq-soak                              60 s over every phase, then the verdict
//   shmq-soak --seconds 7200 --json soak.json    two hours (includes the 2^36-byte Pipe phase)
//   shmq-soak --seconds 60 --wrap --seed 42      a short run plus the 2^36-byte phase
//
// The runner forks every worker itself (anonymous objects must be inherited, so respawns come
// from the process that holds the object) and is the chaos controller. Phases rotate through
// Pipe, Queue, bounded Queue and JoinableQueue, anonymous and named; each phase lasts
// seconds / 7, at most --phase-max. Exit status: 0 OK, 1 violations, 2 bad command line,
// 3 overall deadline reached.
#include "cleanup.hpp"
#include "config.hpp"
#include "phase.hpp"
#include "report.hpp"
#include "wrap.hpp"
#include "worker.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

using namespace shmq_soak;

int main(int argc, char** argv)
{
    config cfg = parse_command_line(argc, argv);
    if (cfg.seed == 0)
        cfg.seed = static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) | 1;
    unsigned limit = static_cast<unsigned>(std::ceil(cfg.seconds)) + 60 + (cfg.wrap ? 240 : 0);
    cleanup::install(limit);
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::printf("shmq-soak: seed %llu, %.0f s, %u producers, %u consumers, ring %zu B%s; "
                "ends within %u s\n",
                static_cast<unsigned long long>(cfg.seed), cfg.seconds, cfg.producers,
                cfg.consumers, cfg.capacity, cfg.wrap ? ", with the 2^36-byte Pipe phase" : "",
                limit);

    run_report report;
    report.seed = cfg.seed;
    auto start = std::chrono::steady_clock::now();
    try {
        if (cfg.wrap) {
            std::printf("phase: Pipe 2^36 bytes (wrap)\n");
            report.wrap = run_wrap_phase(cfg);
        }
        std::vector<phase_spec> specs;
        for (phase_spec s : {phase_spec{kind::pipe, false}, {kind::queue, false}, {kind::queue, true},
                             {kind::bounded, false}, {kind::bounded, true},
                             {kind::joinable, false}, {kind::joinable, true}})
            if (s.label().find(cfg.only) != std::string::npos) specs.push_back(s);
        if (specs.empty()) {
            std::printf("shmq-soak: no phase matches --only %s\n", cfg.only.c_str());
            return 2;
        }
        double phase_s = std::min(cfg.phase_max_s, cfg.seconds / specs.size());
        std::mt19937_64 rng(cfg.seed);
        double left = cfg.seconds;
        for (std::size_t i = 0; left > 0.5; ++i) {
            const phase_spec& spec = specs[i % specs.size()];
            double s = std::min(phase_s, left);
            left -= s;
            std::string name = "soak-" + std::to_string(::getpid()) + "-" + std::to_string(i);
            std::printf("phase %zu: %s, %.1f s\n", i + 1, spec.label().c_str(), s);
            phase_result r = run_phase(spec, cfg, s, rng, name);
            std::printf("  moved %llu of %llu acknowledged, kills %llu, stops %llu, lost %llu, "
                        "lost_backlog %llu, dup %llu, torn %llu, hangs %llu%s\n",
                        (unsigned long long)r.received, (unsigned long long)r.acknowledged,
                        (unsigned long long)r.kills, (unsigned long long)r.stops,
                        (unsigned long long)r.lost, (unsigned long long)r.lost_backlog,
                        (unsigned long long)r.duplicated, (unsigned long long)r.torn,
                        (unsigned long long)r.hangs,
                        r.joined ? (*r.joined ? ", join returned" : ", join TIMED OUT") : "");
            report.phases.push_back(std::move(r));
        }
    } catch (const std::exception& e) {
        std::printf("soak: FAILED (runner: %s)\n", e.what());
        cleanup::kill_all_children();
        return 1;
    }
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::string violations = print_report(report);
    if (!cfg.json.empty()) write_json(report, cfg.json, violations);
    return violations.empty() ? 0 : 1;
}
