#include "liveness.hpp"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

namespace shmq::detail {
namespace {

// Parses /proc/<pid>/stat. Returns false when the process is gone or a zombie.
bool read_stat(std::uint32_t pid, std::uint64_t& start) noexcept {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%u/stat", pid);
    int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    char buf[1024];
    ssize_t n;
    do { n = ::read(fd, buf, sizeof buf - 1); } while (n < 0 && errno == EINTR);
    ::close(fd);
    if (n <= 0) return false;
    buf[n] = '\0';
    // The command name (field 2) may contain spaces and parentheses: fields resume after the
    // last ')'.
    char* p = std::strrchr(buf, ')');
    if (!p || p[1] == '\0') return false;
    p += 2;
    char state = *p;
    if (state == 'Z' || state == 'X' || state == 'x') return false;
    // Field 3 is the state; starttime is field 22, i.e. 19 fields further on.
    for (int field = 3; field < 22; ++field) {
        p = std::strchr(p, ' ');
        if (!p) return false;
        ++p;
    }
    start = std::strtoull(p, nullptr, 10);
    return true;
}

process_identity load_self() noexcept {
    process_identity id;
    id.pid = static_cast<std::uint32_t>(::getpid());
    std::uint64_t start = 0;
    if (read_stat(id.pid, start)) id.start = start;
    return id;
}

// Constant-initialized so that objects built during static initialization see a valid value:
// the first use loads it.
constinit process_identity g_self{};

// A forked child must never act under its parent's pid (lock words hold the owner's pid): the
// refresh is registered at load time, before any other shmq fork handler, so it runs first in
// the child whatever the program uses.
void refresh_in_child() noexcept { refresh_self(); }
const int g_atfork_registered = ::pthread_atfork(nullptr, nullptr, &refresh_in_child);

} // namespace

constinit std::atomic<std::uint32_t> cached_pid{0};

const process_identity& self() noexcept {
    if (cached_pid.load(std::memory_order_acquire) == 0) refresh_self();
    return g_self;
}

std::uint32_t load_self_pid() noexcept {
    refresh_self();
    return cached_pid.load(std::memory_order_relaxed);
}

void refresh_self() noexcept {
    g_self = load_self();
    cached_pid.store(g_self.pid, std::memory_order_release);
}

bool identity_of(std::uint32_t pid, process_identity& out) noexcept {
    std::uint64_t start = 0;
    if (!read_stat(pid, start)) return false;
    out.pid = pid;
    out.start = start;
    return true;
}

bool is_alive(std::uint32_t pid, std::uint64_t start) noexcept {
    if (pid == 0) return false;
    if (pid == self_pid()) return true;
    std::uint64_t actual = 0;
    if (!read_stat(pid, actual)) {
        // /proc may be unavailable (a container without it): fall back to kill(pid, 0), which
        // cannot see zombies but never reports a live process as dead.
        if (::access("/proc/self/stat", R_OK) != 0)
            return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
        return false;
    }
    return start == 0 || actual == start;
}

} // namespace shmq::detail
