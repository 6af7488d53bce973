// This process's hold on some ends of a segment, kept correct across fork.
//
// An endpoint attaches its ends in the segment's registry when made and detaches them on
// release(). Every live endpoint is on a process-wide list; pthread_atfork handlers walk it so a
// forked child holds its own copy of each end (as a child holds inherited pipe fds):
//   prepare (parent, before fork): attach the ends once more, on behalf of the child-to-be, so
//                                  that the parent closing right after fork cannot signal EOF;
//   child:                         attach the ends as the child, drop the parent's extra copy.
// (If fork fails, the parent keeps the extra copy until it exits; fork failure is rare and the
// cost is a late EOF, never a lost message.)
#pragma once

#include "registry.hpp"
#include "segment.hpp"

#include <memory>

namespace shmq::detail {

class endpoint {
public:
    endpoint(std::shared_ptr<segment> seg, const end_counts& counts);
    ~endpoint() { release(); }
    endpoint(const endpoint&) = delete;
    endpoint& operator=(const endpoint&) = delete;

    /// Detaches this process's ends. Idempotent; never throws.
    void release() noexcept;
    bool released() const noexcept { return released_; }
    const std::shared_ptr<segment>& seg() const noexcept { return seg_; }
    const end_counts& counts() const noexcept { return counts_; }

private:
    friend struct endpoint_list;
    std::shared_ptr<segment> seg_;
    end_counts counts_;
    bool released_ = false;
    endpoint* prev_ = nullptr;
    endpoint* next_ = nullptr;
};

/// Runs the registered fork hooks of the library in a fixed order; see fork_hooks in endpoint.cpp.
void install_fork_handlers() noexcept;

} // namespace shmq::detail
