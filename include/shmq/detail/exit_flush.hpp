// SPDX-License-Identifier: BSL-1.0
// shmq — work a shmq::Process child must finish before it _exit()s.
//
// A Process child ends with _exit(), which skips atexit handlers and static destructors (they
// belong to the parent's program). Anything that holds data only in this process's memory — a
// queue's per-process backlog waiting for room in the ring — would be lost. Such components
// register a hook once; the child runs every hook just before _exit (Python runs its finalizers,
// including the queue feeder join, at the same point: util._exit_function in process._bootstrap).
//
// The registry is a fixed array of function pointers: no allocation, no lock, safe to use from
// any thread, and inherited unchanged by forked children (a hook is process-wide code, not state).
#pragma once

#include <shmq/export.hpp>

namespace shmq::detail {

/// A flush hook: runs in the exiting process; may block (e.g. until a backlog drains) but should
/// honour its own cancellation (cancel_join_thread). Exceptions it throws are swallowed.
using exit_flush_hook = void (*)();

/// Registers h; adding a hook that is already registered does nothing, so callers may add it on
/// every construction. Thread-safe, lock-free. Never throws. The registry holds a few dozen
/// distinct hooks; shmq itself registers a handful, so running out is a bug in shmq: the process
/// is told so on stderr and aborted rather than silently losing a flush.
SHMQ_API void add_exit_flush_hook(exit_flush_hook h) noexcept;

/// Calls every registered hook once, in registration order, catching everything each one
/// throws. Called by a shmq::Process child after its target ends; anyone may call it. Never throws.
SHMQ_API void run_exit_flush() noexcept;

} // namespace shmq::detail
