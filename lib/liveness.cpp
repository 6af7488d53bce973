// SPDX-License-Identifier: BSL-1.0
#include "liveness.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

namespace shmq::detail {
namespace {

enum class stat_result { running, gone, unreadable };

// Parses /proc/<pid>/stat. `gone` only when the kernel says the process does not exist or is a
// zombie; every other failure (no fd left, no permission, /proc missing) is `unreadable`.
stat_result read_stat(std::uint32_t pid, std::uint64_t& start) noexcept {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%u/stat", pid);
    int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        // ENOENT is "no such process" only if the kernel agrees: with hidepid or without /proc
        // mounted, a live process has no entry either. kill(pid, 0) needs no file descriptor.
        if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return stat_result::gone;
        return stat_result::unreadable;
    }
    char buf[1024];
    ssize_t n;
    do { n = ::read(fd, buf, sizeof buf - 1); } while (n < 0 && errno == EINTR);
    const int read_errno = errno;
    ::close(fd);
    if (n <= 0) {
        // ESRCH: the process ended between open and read.
        return n < 0 && read_errno == ESRCH ? stat_result::gone : stat_result::unreadable;
    }
    buf[n] = '\0';
    // The command name (field 2) may contain spaces and parentheses: fields resume after the
    // last ')'.
    char* p = std::strrchr(buf, ')');
    if (!p || p[1] == '\0' || p[2] == '\0') return stat_result::unreadable;
    p += 2;
    const char state = *p;
    if (state == 'Z' || state == 'X' || state == 'x') return stat_result::gone;
    // Field 3 is the state; starttime is field 22, i.e. 19 fields further on.
    for (int field = 3; field < 22; ++field) {
        p = std::strchr(p, ' ');
        if (!p) return stat_result::unreadable;
        ++p;
    }
    start = std::strtoull(p, nullptr, 10);
    return stat_result::running;
}

std::uint64_t own_pidns() noexcept {
    struct stat st;
    if (::stat("/proc/self/ns/pid", &st) != 0) return 0;
    return static_cast<std::uint64_t>(st.st_ino);
}

process_identity load_self() noexcept {
    process_identity id;
    id.pid = static_cast<std::uint32_t>(::getpid());
    std::uint64_t start = 0;
    if (read_stat(id.pid, start) == stat_result::running) id.start = start;
    id.pidns = own_pidns();
    return id;
}

// cached_self (liveness.hpp) is written once under g_once (first use, from any thread) and again in
// a forked child, where only the forking thread exists; read everywhere else. cached_pid is
// published last, with release.
std::once_flag g_once;

void load_once() noexcept {
    std::call_once(g_once, [] {
        cached_self = load_self();
        cached_pid.store(cached_self.pid, std::memory_order_release);
    });
}

// A forked child must never act under its parent's identity (lease words hold the owner): the
// refresh is registered at load time, before any other shmq fork handler, so it runs first in
// the child whatever the program uses.
void refresh_in_child() noexcept { refresh_self(); }
const int g_atfork_registered = ::pthread_atfork(nullptr, nullptr, &refresh_in_child);

} // namespace

constinit std::atomic<std::uint32_t> cached_pid{0};
constinit process_identity cached_self{};

std::uint32_t load_self_pid() noexcept {
    load_once();
    return cached_pid.load(std::memory_order_acquire);
}

void refresh_self() noexcept {
    // In a forked child the once_flag is already set (inherited): overwrite directly.
    load_once();
    cached_self = load_self();
    cached_pid.store(cached_self.pid, std::memory_order_release);
}

bool identity_of(std::uint32_t pid, process_identity& out) noexcept {
    std::uint64_t start = 0;
    if (read_stat(pid, start) != stat_result::running) return false;
    out.pid = pid;
    out.start = start;
    out.pidns = self().pidns;
    return true;
}

liveness probe(const process_identity& who, unsigned start_bits) noexcept {
    if (who.pid == 0) return liveness::dead;
    // An identity no kernel can give names nobody, in any namespace: a pid at or above
    // PID_MAX_LIMIT (pid_max cannot be set higher), or a namespace id wider than the kernel's
    // 32-bit inode numbers. Only corrupt shared memory holds one; calling it unknown would let
    // that garbage keep a slot, a count or an abandoned feeder for ever.
    if (who.pid >= pid_max_limit || who.pidns > 0xffffffffu) return liveness::dead;
    const process_identity& me = self();
    // A pid of another namespace names some other process here, or none: we cannot tell.
    if (who.pidns != 0 && me.pidns != 0 && who.pidns != me.pidns) return liveness::unknown;
    const std::uint64_t mask = start_bits >= 64 ? ~std::uint64_t{0}
                                                : (std::uint64_t{1} << start_bits) - 1;
    if (who.pid == me.pid && (who.start == 0 || ((who.start ^ me.start) & mask) == 0))
        return liveness::alive;
    std::uint64_t actual = 0;
    switch (read_stat(who.pid, actual)) {
    case stat_result::gone: return liveness::dead;
    case stat_result::unreadable: return liveness::unknown;
    case stat_result::running: break;
    }
    if (who.start == 0) return liveness::alive;
    return ((actual ^ who.start) & mask) == 0 ? liveness::alive : liveness::dead;
}

} // namespace shmq::detail
