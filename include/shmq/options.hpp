// SPDX-License-Identifier: BSL-1.0
// shmq — timeouts and construction options shared by every channel-owning object.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>

namespace shmq {

/// How long a call may wait. std::nullopt waits forever; a value <= 0 does not wait at all
/// (Python treats negative timeouts as zero, and so do we). Any std::chrono duration converts.
/// Timeouts are measured on std::chrono::steady_clock: a wall-clock jump changes nothing.
using timeout_t = std::optional<std::chrono::duration<double>>;

/// What create() does when the name exists (options::if_exists). Applies to Queue, SimpleQueue,
/// JoinableQueue and Listener; the synchronization objects and shared values keep no holders,
/// so they accept only `fail` (value_error otherwise).
enum class if_exists {
    /// exists_error, as always.
    fail,
    /// Open the existing object instead (Boost.Interprocess's open_or_create). Its creator's
    /// settings stand (maxsize, capacity, mode, redeliver); a different kind or T is type_error.
    open,
    /// Replace the existing object if no live process holds it (every holder dead, or none left:
    /// a restarted server's own queue after a SIGKILL). Decided under the old object's registry
    /// lock, so a process opening the old object at that moment either registered first (then
    /// it is a live holder and create() throws exists_error naming it) or is sent back to the
    /// name, where it finds the new object: the replacement is renamed over the name, which
    /// never goes missing. What the old object held is discarded. An object its creator never
    /// finished initializing (killed mid-create) is replaced once it is 2 s old.
    replace_stale,
};

/// Options for every object that owns channels (Pipe, Queue, SimpleQueue, JoinableQueue).
struct options {
    /// Ring bytes per direction, rounded up to a power of two (at least 4 KiB). Messages larger
    /// than the ring still work: they are streamed through it in pieces. A message takes its
    /// bytes and an 8-byte header, rounded up to 8 bytes when that is at most 32, else to whole
    /// 64-byte cache lines (so a 64-byte message takes 128 bytes of the ring).
    std::size_t capacity = std::size_t{1} << 20;
    /// Permission bits of a named segment, applied exactly (the umask does not narrow them).
    unsigned mode = 0600;
    /// For open() of a named object: accept a segment owned by another user, or writable by its
    /// group or by others. Off by default, because such a segment may have been planted (before
    /// the owner created the name) or rewritten by another user, who then reads what is put and
    /// injects work. A symbolic link at the name is refused even so. Ignored by create().
    bool trust_foreign = false;
    /// JoinableQueue only (value_error elsewhere): at-least-once delivery. An item stays in the
    /// ring until task_done() is called for it, and if the process that got it dies first, the
    /// item is delivered again to another consumer instead of being counted lost. Costs: items
    /// in progress keep their ring space (puts wait for room when the ring is full of them), and
    /// an item must fit in half the ring (larger ones are refused with value_error at put).
    /// Fixed at create (or construction); open() uses the creator's choice.
    bool redeliver = false;
    /// For create(): what to do when the name exists (see if_exists). Ignored by open().
    shmq::if_exists if_exists = shmq::if_exists::fail;
};

} // namespace shmq
