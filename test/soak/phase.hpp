// SPDX-License-Identifier: BSL-1.0
// shmq-soak — one chaos phase: the runner creates the object under test, forks the producers and
// consumers, and acts as the controller (random SIGKILL, SIGSTOP for 1-200 ms then SIGCONT,
// respawns, heartbeat watch) until the phase's time is up; then it stops the producers, lets the
// consumers drain, drains what is left itself, and settles the accounts.
#pragma once

#include "config.hpp"
#include "subject.hpp"

#include <cstdint>
#include <optional>
#include <random>
#include <string>

namespace shmq_soak {

struct phase_result {
    std::string label;
    double seconds = 0;
    std::uint64_t acknowledged = 0;       // puts/sends that returned
    std::uint64_t received = 0, bytes = 0;
    std::uint64_t drained_by_runner = 0;  // of received: left over after the consumers ended
    std::uint64_t kills = 0, stops = 0, respawns = 0, retired = 0;
    std::uint64_t killed_in_put = 0;      // producers killed inside put/send (may lose that one)
    std::uint64_t killed_in_get = 0;      // consumers killed inside get/recv (may lose that one)
    std::uint64_t duplicated = 0, torn = 0, unsent = 0;
    std::uint64_t lost = 0;               // acknowledged, never received, not explained below
    std::uint64_t lost_backlog = 0;       // a killed producer's unpublished backlog (documented)
    std::uint64_t lost_in_dead_consumer = 0;   // at most one per consumer killed inside get
    std::uint64_t hangs = 0, crashes = 0, errors = 0;
    std::optional<bool> joined;           // JoinableQueue: join(timeout) returned true
    std::string first_problem;            // text of the first hang, crash or error
};

phase_result run_phase(const phase_spec& spec, const config& cfg, double seconds,
                       std::mt19937_64& rng, const std::string& name);

} // namespace shmq_soak
