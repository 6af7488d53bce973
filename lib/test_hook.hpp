// SPDX-License-Identifier: BSL-1.0
// Test hooks: named points in the shared-memory protocol where a test can stop, kill or delay the
// calling thread, a start position for new channels, and a membarrier that fails on demand, so
// tests reach on purpose the states that short friendly tests never reach (a writer killed between
// two stores, a ring just below a wrap, a reader or revoker that cannot fence a biased writer).
//
// Compiled out of release builds (NDEBUG): SHMQ_TEST_HOOK(name) is then nothing, and
// start_position() and refuse_membarrier() have no effect. In debug, sanitize and tsan builds a
// hook point costs one relaxed load when no hook is installed.
//
// Hook points (each at the place in lib/ that names it):
//   "channel.write.copied"        writer lease held, record copied, tail not yet stored
//   "channel.write.uncounted"     a JoinableQueue item taken off its putter's `unpublished`, tail
//                                 not yet stored (queue_shm.cpp's crash windows)
//   "channel.write.published"     tail stored, writer lease still held
//   "channel.stream.piece"        a streamed message: a piece published, more to come
//   "channel.read.copied"         reader lease held, record copied out, head not yet stored
//   "channel.read.consumed"       head stored, the item not yet counted in the getter's `taken`
//   "channel.read.piece"          a streamed message: a piece consumed, more to come
//   "channel.bias.checked"        a biased writer found its bias, before its mark (bias.hpp)
//   "channel.bias.inside"         a biased writer marked, checked again, and is inside a message
//   "channel.bias.granted"        a writer's plain hold of the lease just became a bias
//   "channel.bias.given_up"       a biased writer turned its bias into a plain hold
//   "channel.bias.multi"          a second thread wrote through a handle: never biased again
//   "bias.revoking"               a revoker raised the revoke bit, before its membarrier
//   "bias.revoked"                a revoker saw the holder outside its message (or dead)
//   "bias.membarrier"             a revoker or a reader going to sleep calls membarrier
//   "mutex.acquired"              a robust_mutex was just taken (any lease, the registry lock)
//   "mutex.takeover"              a waiter decided the owner is dead, before it takes the lock over
//   "event.prepared"              a waiter announced itself and is about to re-check its condition
//   "event.notify"                a notifier made its condition true and is about to look for waiters
//   "registry.attach"             registry lock held, slot chosen, counts not yet added
//   "fork.parked"                 atfork prepare: ends parked under the fork token
//   "process.daemon.forked"       a daemon Process child, right after fork: its parent-death
//                                 signal not set yet
#pragma once

#include <cstdint>

namespace shmq::detail::test_hook {

/// The hook: called with the hook point's name, in the thread that reached it.
using function = void (*)(const char* point);

#ifndef NDEBUG
/// Installs f process-wide (nullptr removes it). Inherited by forked children.
void install(function f) noexcept;
/// Calls the installed hook, if any.
void reach(const char* point) noexcept;
/// Every channel created after this call starts with head = tail = `packed` (a ring position as in
/// layout.hpp: low 36 bits bytes, high 28 bits messages); 0 restores the default.
void start_position(std::uint64_t packed) noexcept;
std::uint64_t start_position() noexcept;
/// While on, membarrier_all() (lib/bias.hpp) fails in this process, as where a seccomp filter
/// refuses the call: its revokers cannot fence a biased writer and its readers sleep in blind
/// slices. membarrier_ready() is not affected, so a writer is biased first. Process-wide,
/// inherited by forked children.
void refuse_membarrier(bool on) noexcept;
bool membarrier_refused() noexcept;
#define SHMQ_TEST_HOOK(point) ::shmq::detail::test_hook::reach(point)
#else
inline void install(function) noexcept {}
inline void start_position(std::uint64_t) noexcept {}
inline std::uint64_t start_position() noexcept { return 0; }
inline void refuse_membarrier(bool) noexcept {}
inline bool membarrier_refused() noexcept { return false; }
#define SHMQ_TEST_HOOK(point) ((void)0)
#endif

} // namespace shmq::detail::test_hook
