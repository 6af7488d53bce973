// SPDX-License-Identifier: BSL-1.0
// Named-object lifecycle: create with options::if_exists, replacing a stale object, and the
// garbage collection behind `shmq gc`. All of it rests on one decision, registry::retire() (under
// the old object's registry lock: no live holder, so mark it retired and unlink or replace the
// name), and on one rule for openers: attach() to a retired segment throws retired_error and the
// opener goes back to the name (reopen() below).
//
// What "stale" means:
//   replace_stale (create): no live holder remains. Holders that closed normally count as none,
//     so a server restarted after a clean exit without remove() replaces its own queue.
//   gc: no live holder AND at least one holder that died holding it. An object whose holders all
//     closed normally is a persistent named object (the contract: named objects outlive their
//     handles until remove()) and is left alone; so are the synchronization objects and shared
//     values, which keep no holders at all. A segment whose creator never finished initializing
//     it (ready never set) counts as stale once it is older than the creators' grace (2 s).
// A holder whose liveness cannot be judged (another pid namespace, /proc unreadable) counts as
// alive: a wrong "dead" would destroy a live object.
#pragma once

#include "liveness.hpp"
#include "registry.hpp"
#include "segment.hpp"

#include <shmq/options.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace shmq::detail::lifecycle {

/// Runs make() (which opens a name and attaches to it) again while it throws retired_error: the
/// object was unlinked or replaced between our shm_open and our attach. The name then holds the
/// replacement (a replace_stale renames it over the old one, so it never goes missing) or
/// nothing (gc). After 50 rounds the last retired_error (a not_found_error) escapes.
template <class Make> auto reopen(Make&& make) {
    for (int round = 0;; ++round) {
        try {
            return make();
        } catch (const retired_error&) {
            if (round >= 50) throw;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }
}

/// A segment for create(name) under opts.if_exists: fresh (creator pre-attached with
/// p.creator_counts, so the handle's endpoint adopts it) or, with if_exists::open, the existing
/// one (fresh = false: the handle attaches as any opener, and must run inside reopen()).
/// Throws exists_error (fail; replace_stale with a live holder, naming it), value_error,
/// type_error and the rest of create_named/open_named.
struct created {
    std::shared_ptr<segment> seg;
    bool fresh = false;
};
created create(std::string_view name, segment_params p, const options& opts);

/// One holder as the registry shows it, judged now.
struct holder_info {
    process_identity who;
    liveness state = liveness::unknown;
    bool pending_fork = false;   // ends parked for a child being forked (who = the parent)
};

/// What a read-only look at a segment says (no lock taken, nothing written).
struct judgement {
    std::vector<holder_info> holders;
    unsigned alive = 0, dead = 0, unknown = 0;
    bool tracked = true;    // false for object kinds (no registry)
    bool retired = false;
    /// What gc would remove: tracked, no alive or unknown holder, and a dead one (or retired).
    bool orphan() const noexcept { return tracked && alive == 0 && unknown == 0 && (dead > 0 || retired); }
};
judgement judge(const segment& s) noexcept;

/// Age of the name's file (wall clock since its last status change), for objects their creator
/// never finished. Negative when it cannot be read.
double age_seconds(std::string_view name) noexcept;
/// The grace a creator has to initialize a segment (segment.cpp's creator_grace).
inline constexpr double creator_grace_seconds = 2.0;

enum class gc_result {
    removed,        // it was an orphan and its name is gone
    held,           // a live (or unjudgeable) holder: left alone
    unheld,         // no holder ever died holding it: a persistent object, left alone
    untracked,      // a synchronization object or shared value: keeps no holders, left alone
    young,          // not initialized yet, but younger than the grace: its creator may be at work
    gone,           // the name did not exist (any more)
    busy,           // its registry lock stayed held for 2 s
};
/// Removes `name` if it is an orphan, atomically with respect to openers (registry::retire).
/// Throws only what opening throws besides not_found (permission_error, broken_error, ...).
gc_result collect(std::string_view name, process_identity* live = nullptr);

const char* to_string(gc_result r) noexcept;

} // namespace shmq::detail::lifecycle
