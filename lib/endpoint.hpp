// SPDX-License-Identifier: BSL-1.0
// This process's hold on some ends of a segment, kept correct across fork.
//
// An endpoint attaches its ends in the segment's registry when made and detaches them on
// release(). Every live endpoint is on a process-wide list; pthread_atfork handlers walk it so a
// forked child holds its own copy of each end (as a child holds inherited pipe fds):
//   prepare (parent, before fork): park the ends in the registry under a fork token, so the
//                                  parent closing right after fork cannot signal EOF;
//   parent (after fork):           find the new child (/proc/self/task/<tid>/children) and move
//                                  the parked ends to its slot, or drop them if it already died;
//   child:                         move the parked ends to its own slot.
// Whichever of parent and child settles the token first does the move; the other finds nothing.
// The parent's part is what makes a child killed before it ran any code count as gone.
#pragma once

#include "registry.hpp"
#include "segment.hpp"

#include <memory>

namespace shmq::detail {

class endpoint {
public:
    /// Attaches counts for this process. adopt: the creator's registration is already in the
    /// segment (segment_params::attach_creator), so only take it over. Throws as registry::attach.
    endpoint(std::shared_ptr<segment> seg, const end_counts& counts, bool adopt = false);
    ~endpoint() { release(); }
    endpoint(const endpoint&) = delete;
    endpoint& operator=(const endpoint&) = delete;

    /// Detaches this process's ends. Idempotent; never throws.
    void release() noexcept;
    bool released() const noexcept { return released_; }
    /// Throws error when this process could not be registered as a holder (a child forked while
    /// every registry slot was taken by a live process): its ends are not counted, so using them
    /// would break EOF accounting.
    void check_registered() const { if (!registered_) unregistered(); }
    const std::shared_ptr<segment>& seg() const noexcept { return seg_; }
    const end_counts& counts() const noexcept { return counts_; }
    /// Holds `to` instead of the present counts (the new ones attached first, so this process's
    /// slot stays its own throughout). False, and nothing changed, when released, unregistered,
    /// or the registry refused. Never throws.
    bool recount(const end_counts& to) noexcept;

private:
    friend struct endpoint_list;
    [[noreturn]] static void unregistered();
    std::shared_ptr<segment> seg_;
    end_counts counts_;
    bool released_ = false;
    bool parked_for_fork_ = false;   // set in the prepare handler, read in the child/parent handlers
    bool registered_ = true;         // false in a child that found the registry full
    endpoint* prev_ = nullptr;
    endpoint* next_ = nullptr;
};

/// Runs the registered fork hooks of the library in a fixed order; see fork_hooks in endpoint.cpp.
void install_fork_handlers() noexcept;

} // namespace shmq::detail
