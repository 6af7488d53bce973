// SPDX-License-Identifier: BSL-1.0
// shmq-soak — last-resort cleanup (see cleanup.hpp).
#include "cleanup.hpp"

#include <atomic>
#include <csignal>
#include <cstring>

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace shmq_soak::cleanup {
namespace {

// Fixed-size tables: the handler may neither allocate nor lock. Written by the runner's main
// flow only; the handler runs in the same thread, so it sees whatever was last stored.
constexpr int max_children = 256, max_names = 8;
volatile pid_t children[max_children];
char names[max_names][256];   // "/dev/shm/shmq.<name>", "" when free
volatile sig_atomic_t handling = 0;

void write_err(const char* s) noexcept { (void)!::write(2, s, std::strlen(s)); }

void on_signal(int sig) noexcept
{
    if (handling) return;
    handling = 1;
    write_err(sig == SIGALRM ? "\nsoak: FAILED (overall deadline reached: killing every child)\n"
                             : "\nsoak: interrupted: killing every child\n");
    kill_all_children();
    for (auto& n : names)
        if (n[0]) ::unlink(n);
    ::_exit(sig == SIGALRM ? 3 : 128 + sig);
}

} // namespace

void install(unsigned limit_s)
{
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (int s : {SIGALRM, SIGTERM, SIGINT, SIGHUP}) ::sigaction(s, &sa, nullptr);
    ::alarm(limit_s);
}

void in_child() noexcept
{
    for (int s : {SIGALRM, SIGTERM, SIGINT, SIGHUP}) ::signal(s, SIG_DFL);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
}

void add_child(pid_t pid) noexcept
{
    for (auto& c : children)
        if (c == 0) { c = pid; return; }
}

void remove_child(pid_t pid) noexcept
{
    for (auto& c : children)
        if (c == pid) { c = 0; return; }
}

void kill_all_children() noexcept
{
    for (auto& c : children)
        if (c > 0) ::kill(c, SIGKILL);
    for (auto& c : children)
        if (c > 0) { ::waitpid(c, nullptr, 0); c = 0; }
}

void add_name(const std::string& name)
{
    for (auto& n : names)
        if (!n[0]) {
            std::string path = "/dev/shm/shmq." + name;
            std::strncpy(n, path.c_str(), sizeof n - 1);
            return;
        }
}

void forget_name(const std::string& name) noexcept
{
    std::string path = "/dev/shm/shmq." + name;
    for (auto& n : names)
        if (path == n) n[0] = 0;
}

} // namespace shmq_soak::cleanup
