// SPDX-License-Identifier: BSL-1.0
#include "endpoint.hpp"

#include "liveness.hpp"
#include "poller.hpp"
#include "test_hook.hpp"

#include <shmq/errors.hpp>

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>
#include <pthread.h>

namespace shmq::detail {

struct endpoint_list {
    static std::mutex& mutex() { static std::mutex m; return m; }
    static endpoint*& first() { static endpoint* head = nullptr; return head; }

    static void insert(endpoint* e) noexcept {
        e->next_ = first();
        if (first()) first()->prev_ = e;
        first() = e;
    }
    static void unlink(endpoint* e) noexcept {
        if (e->prev_) e->prev_->next_ = e->next_; else first() = e->next_;
        if (e->next_) e->next_->prev_ = e->prev_;
        e->prev_ = e->next_ = nullptr;
    }

    // The fork in progress (set in prepare, inherited by the child with the rest of memory):
    // a per-process counter, qualified by the parent's full identity, so that a process that
    // inherits a dead parent's pid can never settle that parent's pending forks.
    static std::uint64_t& token() { static std::uint64_t t = 0; return t; }
    static process_identity& parent() { static process_identity p; return p; }
    static std::vector<std::uint32_t>& children_before() { static std::vector<std::uint32_t> v; return v; }

    // Children of the calling thread; false when the kernel does not list them.
    static bool children(std::vector<std::uint32_t>& out) noexcept {
        out.clear();
        char path[96];
        std::snprintf(path, sizeof path, "/proc/self/task/%ld/children",
                      static_cast<long>(::syscall(SYS_gettid)));
        std::FILE* f = std::fopen(path, "re");
        if (!f) return false;
        unsigned pid;
        while (std::fscanf(f, "%u", &pid) == 1) {
            try { out.push_back(pid); } catch (...) { break; }
        }
        std::fclose(f);
        return true;
    }

    static void prepare() noexcept {
        mutex().lock();
        if (!first()) return;
        static std::uint64_t forks = 0;
        token() = ++forks;
        parent() = self();
        children(children_before());
        for (endpoint* e = first(); e; e = e->next_)
            e->parked_for_fork_ = registry::park_for_fork(*e->seg_, token(), parent(), e->counts_);
        SHMQ_TEST_HOOK("fork.parked");
    }
    static void in_parent() noexcept {
        if (first()) {
            std::vector<std::uint32_t> after;
            if (children(after)) {
                // The new child is the one listed now and not before fork.
                std::uint32_t child = 0;
                for (std::uint32_t pid : after)
                    if (std::find(children_before().begin(), children_before().end(), pid) ==
                        children_before().end())
                        child = pid;
                process_identity id;
                const bool alive = child != 0 && identity_of(child, id);
                for (endpoint* e = first(); e; e = e->next_)
                    if (e->parked_for_fork_)
                        registry::settle_fork(*e->seg_, token(), parent(), alive ? &id : nullptr,
                                              false, e->counts_);
            }
            // Without /proc the child settles on its own; only a child killed before that
            // is then counted as a holder until this process ends.
        }
        mutex().unlock();
    }
    static void in_child() noexcept {
        refresh_self();   // also done by liveness.cpp's own handler; cheap, keeps this self-contained
        // Parked endpoints first: a fallback attach below must not look like a settled fork.
        for (endpoint* e = first(); e; e = e->next_)
            if (e->parked_for_fork_)
                e->registered_ = registry::settle_fork(*e->seg_, token(), parent(), &self(), true,
                                                       e->counts_);
        for (endpoint* e = first(); e; e = e->next_) {
            if (!e->parked_for_fork_) {
                // The pending table was full: attach now (a parent closing in the meantime may
                // have signalled EOF early for this copy).
                try {
                    registry::attach(*e->seg_, self(), e->counts_);
                    e->registered_ = true;
                } catch (...) {
                    e->registered_ = false;
                }
            }
        }
        // A new holder: pollers of these segments must start watching this process (poller.hpp).
        for (endpoint* e = first(); e; e = e->next_) announce_holder(*e->seg_);
        mutex().unlock();
    }
};

void install_fork_handlers() noexcept {
    static std::once_flag once;
    std::call_once(once, [] {
        ::pthread_atfork(&endpoint_list::prepare, &endpoint_list::in_parent,
                         &endpoint_list::in_child);
    });
}

endpoint::endpoint(std::shared_ptr<segment> seg, const end_counts& counts, bool adopt)
    : seg_(std::move(seg)), counts_(counts) {
    install_fork_handlers();
    // Attach and list under one lock, so a concurrent fork sees either neither or both.
    std::lock_guard<std::mutex> lock(endpoint_list::mutex());
    if (!adopt) registry::attach(*seg_, self(), counts_);
    endpoint_list::insert(this);
    announce_holder(*seg_);   // pollers watch holders' deaths: make them look again (poller.hpp)
}

void endpoint::release() noexcept {
    std::lock_guard<std::mutex> lock(endpoint_list::mutex());
    if (released_) return;
    released_ = true;
    endpoint_list::unlink(this);
    if (registered_) registry::detach(*seg_, self(), counts_);
}

bool endpoint::recount(const end_counts& to) noexcept {
    std::lock_guard<std::mutex> lock(endpoint_list::mutex());   // a fork parks counts_
    if (released_ || !registered_) return false;
    try {
        registry::attach(*seg_, self(), to);
    } catch (...) {
        return false;
    }
    registry::detach(*seg_, self(), counts_);
    counts_ = to;
    return true;
}

void endpoint::unregistered() {
    throw error("shmq: more than " + std::to_string(max_holders) +
                    " live processes hold this object: this process was not registered as a "
                    "holder when it was forked, so it may not use it");
}

} // namespace shmq::detail
