#include "endpoint.hpp"

#include "liveness.hpp"

#include <mutex>
#include <pthread.h>

namespace shmq::detail {

struct endpoint_list {
    static std::mutex& mutex() { static std::mutex m; return m; }
    static endpoint*& first() { static endpoint* head = nullptr; return head; }
    static process_identity& parent() { static process_identity id; return id; }

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

    static void prepare() noexcept {
        mutex().lock();
        parent() = self();
        for (endpoint* e = first(); e; e = e->next_) {
            try { registry::attach(*e->seg_, parent(), e->counts_); } catch (...) {}
        }
    }
    static void in_parent() noexcept { mutex().unlock(); }
    static void in_child() noexcept {
        refresh_self();   // also done by liveness.cpp's own handler; cheap, and keeps this self-contained
        for (endpoint* e = first(); e; e = e->next_) {
            // If attach fails (registry full) the child simply does not count as a holder.
            try { registry::attach(*e->seg_, self(), e->counts_); } catch (...) {}
            registry::detach(*e->seg_, parent(), e->counts_);
        }
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

endpoint::endpoint(std::shared_ptr<segment> seg, const end_counts& counts)
    : seg_(std::move(seg)), counts_(counts) {
    install_fork_handlers();
    // Attach and list under one lock, so a concurrent fork sees either neither or both.
    std::lock_guard<std::mutex> lock(endpoint_list::mutex());
    registry::attach(*seg_, self(), counts_);
    endpoint_list::insert(this);
}

void endpoint::release() noexcept {
    std::lock_guard<std::mutex> lock(endpoint_list::mutex());
    if (released_) return;
    released_ = true;
    endpoint_list::unlink(this);
    registry::detach(*seg_, self(), counts_);
}

} // namespace shmq::detail
