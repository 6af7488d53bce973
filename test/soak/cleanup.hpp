// SPDX-License-Identifier: BSL-1.0
// shmq-soak — the runner never leaves processes or /dev/shm entries behind, whatever happens:
// every child's pid and every name created is listed here, and a signal handler (SIGALRM from the
// overall deadline, SIGTERM, SIGINT, SIGHUP) SIGKILLs the children and unlinks the names with
// async-signal-safe calls only, then ends the runner. Children also die with the runner
// (PR_SET_PDEATHSIG), should the runner itself be SIGKILLed.
#pragma once

#include <string>

#include <sys/types.h>

namespace shmq_soak::cleanup {

/// Installs the handlers and arms the deadline: the runner is killed after `limit_s` seconds.
void install(unsigned limit_s);
/// Child, right after fork: default signal handling, die with the runner.
void in_child() noexcept;

void add_child(pid_t pid) noexcept;
void remove_child(pid_t pid) noexcept;
/// SIGKILLs and reaps every listed child (bounded: SIGKILL cannot be ignored).
void kill_all_children() noexcept;

/// A named object's name, unlinked by the handler if the run is cut short. The RAII owner
/// (subject) removes it in the normal flow and then calls forget_name.
void add_name(const std::string& name);
void forget_name(const std::string& name) noexcept;

} // namespace shmq_soak::cleanup
