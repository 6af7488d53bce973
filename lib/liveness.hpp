// SPDX-License-Identifier: BSL-1.0
// Who is alive: the one identity of "a live process" that every shmq structure uses (registry
// slots, lease owners, fork tokens, stream writers).
//
// A process is its pid plus its start time (clock ticks since boot, /proc/<pid>/stat field 22),
// so a recycled pid is not mistaken for the old process, plus its pid namespace (the inode of
// /proc/self/ns/pid), because a pid means nothing in another namespace: two containers sharing
// /dev/shm see different processes behind the same number.
//
// Death must be detected without the dead process's help (a registry of holders checked by
// bounded waits), and a wrong "dead" is far worse than a late one: it makes two processes hold
// one lease (torn messages) or signals EOF to a live peer. So the answer is three-valued:
//   dead     the pid does not exist (ESRCH), is a zombie, or now belongs to a process that
//            started at another time;
//   alive    it runs, with the same start time;
//   unknown  anything else: /proc unreadable (EMFILE, ENFILE, EACCES, hidepid), or a process of
//            another pid namespace. Unknown never takes a lease over and never reaps.
// An identity no kernel can give (a pid >= pid_max_limit, a namespace id above 32 bits) is dead:
// only a corrupt segment holds one.
#pragma once

#include <atomic>
#include <cstdint>
#include <sys/types.h>

namespace shmq::detail {

struct process_identity {
    std::uint32_t pid = 0;
    std::uint64_t start = 0;   // start time in clock ticks since boot; 0 = unknown (no check)
    std::uint64_t pidns = 0;   // inode of the pid namespace; 0 = unknown (assumed ours)

    friend bool operator==(const process_identity&, const process_identity&) = default;
};

enum class liveness { alive, dead, unknown };

/// Linux's PID_MAX_LIMIT on 64-bit systems: /proc/sys/kernel/pid_max cannot exceed it, so every
/// pid of every namespace is below it.
inline constexpr std::uint32_t pid_max_limit = 4u * 1024 * 1024;

/// The cache behind self_pid(); 0 until first loaded.
extern constinit std::atomic<std::uint32_t> cached_pid;
/// The cache behind self(): written once (under a once_flag, before cached_pid is published with
/// release) and again in a forked child (only the forking thread exists there); read only after
/// cached_pid was seen non-zero (acquire).
extern constinit process_identity cached_self;
std::uint32_t load_self_pid() noexcept;
/// This process's identity. Loaded once (thread-safe) and refreshed in a forked child (atfork).
/// Inline: lease words hold it, and every message takes a lease.
inline const process_identity& self() noexcept {
    if (cached_pid.load(std::memory_order_acquire) == 0) [[unlikely]] load_self_pid();
    return cached_self;
}
/// This process's pid, cached (getpid() is a system call; hot paths ask for it).
inline std::uint32_t self_pid() noexcept {
    std::uint32_t pid = cached_pid.load(std::memory_order_acquire);
    return pid ? pid : load_self_pid();
}
/// Reloads the identity; called in the child right after fork (only one thread exists there).
void refresh_self() noexcept;

/// The identity of a running process of our pid namespace; false when it is gone, a zombie, or
/// /proc cannot say.
bool identity_of(std::uint32_t pid, process_identity& out) noexcept;

/// Whether `who` still runs. start == 0 skips the start-time check; `start_bits` compares only
/// that many low bits of the start time (lease words keep 32). Reads /proc (~10 µs): slow paths only.
liveness probe(const process_identity& who, unsigned start_bits = 64) noexcept;

} // namespace shmq::detail
