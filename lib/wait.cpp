// SPDX-License-Identifier: BSL-1.0
// wait(): readiness of several connections with one sleep.
//
// Each connection's reader side has an event (the futex its readers sleep on). wait() arms all of
// them, re-checks, and sleeps on all at once with futex_waitv (Linux 5.16+); a publication or a
// close on any of them wakes it. Without futex_waitv (older kernels, or more connections than
// one call takes) it sleeps in short naps instead, a latency cost only. Like every shmq wait it
// wakes at least every liveness slice to notice dead peers.
#include <shmq/wait.hpp>

#include "connection_impl.hpp"
#include "deadline.hpp"
#include "sync/futex.hpp"
#include "sync/wait_loop.hpp"

#include <shmq/errors.hpp>
#include <shmq/process.hpp>

#include <algorithm>
#include <cstring>
#include <string>
#include <cerrno>
#include <ctime>
#include <climits>
#include <linux/futex.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace shmq {
namespace detail {

struct connection_access {
    static connection_impl* impl(Connection& c) noexcept { return c.impl_.get(); }
};

namespace {

#if defined(SYS_futex_waitv)
constexpr std::size_t waitv_max = 128;   // FUTEX_WAITV_MAX

/// Sleeps until one of the words changes from its ticket, or for `limit`. False if the kernel
/// has no futex_waitv.
bool futex_waitv_for(const std::vector<event*>& events, const std::vector<std::uint32_t>& tickets,
                     std::chrono::nanoseconds limit) noexcept {
    if (events.size() > waitv_max) return false;
    struct futex_waitv w[waitv_max] = {};
    for (std::size_t i = 0; i < events.size(); ++i) {
        w[i].val = tickets[i];
        w[i].uaddr = reinterpret_cast<std::uintptr_t>(events[i]->word());
        w[i].flags = FUTEX_32;   // shared (no FUTEX_PRIVATE_FLAG): the words live in shared memory
    }
    timespec at{};
    ::clock_gettime(CLOCK_MONOTONIC, &at);
    long long ns = at.tv_nsec + limit.count();
    at.tv_sec += static_cast<time_t>(ns / 1'000'000'000);
    at.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    long r = ::syscall(SYS_futex_waitv, w, static_cast<unsigned>(events.size()), 0u, &at,
                       CLOCK_MONOTONIC);
    return !(r < 0 && (errno == ENOSYS || errno == EINVAL));
}
#else
bool futex_waitv_for(const std::vector<event*>&, const std::vector<std::uint32_t>&,
                     std::chrono::nanoseconds) noexcept {
    return false;
}
#endif

} // namespace
} // namespace detail

std::vector<Connection*> wait(std::span<Connection* const> conns, timeout_t timeout) {
    std::vector<detail::channel*> chans;
    chans.reserve(conns.size());
    for (std::size_t i = 0; i < conns.size(); ++i) {
        Connection* c = conns[i];
        if (!c) throw value_error("shmq: wait: null connection");
        if (c->closed()) throw closed_error("shmq: wait: connection is closed");
        if (!c->readable()) throw value_error("shmq: wait: connection is write-only");
        if (std::find(conns.begin(), conns.begin() + static_cast<std::ptrdiff_t>(i), c) !=
            conns.begin() + static_cast<std::ptrdiff_t>(i))
            throw value_error("shmq: wait: connection listed twice");
        chans.push_back(&*detail::connection_access::impl(*c)->rx_);
    }

    const detail::deadline until(timeout);
    std::vector<Connection*> ready;
    auto collect = [&] {
        for (std::size_t i = 0; i < chans.size(); ++i)
            if (chans[i]->ready()) ready.push_back(conns[i]);
        return !ready.empty();
    };
    std::vector<detail::event*> events;
    for (auto* ch : chans) events.push_back(&ch->data_event());
    std::vector<std::uint32_t> tickets(events.size());

    detail::spinner spin;   // the same spin-then-sleep as a single wait
    for (;;) {
        if (collect()) return ready;
        if (until.expired()) return ready;
        if (spin.spin()) continue;
        for (std::size_t i = 0; i < events.size(); ++i) tickets[i] = events[i]->prepare();
        bool sealed = true;   // biased writers' unfenced notifies (bias.hpp)
        for (auto* ch : chans) sealed = ch->seal_writer() && sealed;
        const bool now_ready = collect();
        if (!now_ready) {
            const auto slice = sealed ? until.slice()
                                      : std::min<std::chrono::nanoseconds>(until.slice(),
                                                                           detail::bias_blind_sleep);
            if (!detail::futex_waitv_for(events, tickets, slice))
                ::usleep(static_cast<useconds_t>(std::min<long long>(
                    std::chrono::duration_cast<std::chrono::microseconds>(slice).count(), 1000)));
        }
        for (auto* e : events) e->finish();
        if (now_ready) return ready;
        for (auto* ch : chans) ch->check_writers();
    }
}

// ---- wait() on everything ----------------------------------------------------------------------
//
// One poll(2) over a descriptor per object: fileno() for connections and queues (level-triggered,
// possibly spuriously readable, never missing; poller.hpp), the sentinel for a Process, the
// descriptor itself otherwise. Whatever poll reports of a connection or queue is confirmed by
// asking it (which also re-arms its fileno()), so a spurious wake-up loops instead of returning.
std::vector<waitable> wait(std::span<const waitable> objects, timeout_t timeout) {
    std::vector<pollfd> fds(objects.size());
    for (std::size_t i = 0; i < objects.size(); ++i) {
        const waitable& w = objects[i];
        for (std::size_t j = 0; j < i; ++j)
            if (objects[j] == w) throw value_error("shmq: wait: the same object is listed twice");
        int fd = -1;
        switch (w.kind_) {
        case waitable::kind::connection: {
            auto* c = const_cast<Connection*>(static_cast<const Connection*>(w.object_));
            if (c->closed()) throw closed_error("shmq: wait: connection is closed");
            if (!c->readable()) throw value_error("shmq: wait: connection is write-only");
            fd = c->fileno();
            break;
        }
        case waitable::kind::queue: fd = w.core_->fileno(); break;
        case waitable::kind::process:
            fd = static_cast<const Process*>(w.object_)->sentinel();
            break;
        case waitable::kind::descriptor:
            if (w.fd_ < 0) throw value_error("shmq: wait: bad descriptor " + std::to_string(w.fd_));
            fd = w.fd_;
            break;
        }
        fds[i] = pollfd{fd, POLLIN, 0};
    }

    const detail::deadline until(timeout);
    std::vector<waitable> ready;
    for (bool first = true;; first = false) {
        int ms = 0;
        if (!first) {
            if (until.expired()) return ready;
            // Bounded steps, though nothing here needs them: every source is a descriptor the
            // kernel wakes us for, dead peers included (pidfds inside fileno()).
            auto left = until.forever() ? std::chrono::milliseconds(1000)
                                        : std::chrono::ceil<std::chrono::milliseconds>(
                                              until.at() - detail::clock::now());
            ms = static_cast<int>(std::clamp<long long>(left.count(), 0, 1000));
        }
        const int n = ::poll(fds.data(), fds.size(), ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw error(std::string("shmq: wait: poll: ") + std::strerror(errno));
        }
        for (std::size_t i = 0; n > 0 && i < objects.size(); ++i) {
            if (fds[i].revents == 0) continue;
            const waitable& w = objects[i];
            bool is_ready = true;
            if (w.kind_ == waitable::kind::connection)
                is_ready = const_cast<Connection*>(static_cast<const Connection*>(w.object_))->poll();
            else if (w.kind_ == waitable::kind::queue)
                is_ready = w.core_->poll_ready();
            if (is_ready) ready.push_back(w);
        }
        if (!ready.empty()) return ready;
    }
}

} // namespace shmq
