// SPDX-License-Identifier: BSL-1.0
// Pollable handles: see poller.hpp and doc/design.md ("Pollable handles").
#include "poller.hpp"

#include "bias.hpp"
#include "registry.hpp"

#include <shmq/errors.hpp>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <pthread.h>
#include <unistd.h>

namespace shmq::detail {
namespace {

// Where pidfds are unavailable (a peer in another pid namespace, an old kernel, seccomp), a
// periodic timer stands in: the fd turns readable this often, and rearm() looks for the dead.
// The same bound as the liveness checks of blocking reads (README: a peer's death shows within
// 100 ms).
constexpr long fallback_period_ns = 50'000'000;
// Where a biased writer's publications cannot be fenced (seal() failed: membarrier refused to
// this process), the fd turns readable this often instead, as a blocking read sleeps in slices
// of bias_blind_sleep: its wake-up may be missed, a look this often is not.
constexpr long blind_period_ns = std::chrono::nanoseconds(bias_blind_sleep).count();

[[noreturn]] void fail(const char* call) {
    const int e = errno;
    throw error(std::string("shmq: fileno: ") + call + ": " + std::strerror(e));
}

socklen_t address_of(std::uint64_t key, sockaddr_un& a) noexcept {
    a = sockaddr_un{};
    a.sun_family = AF_UNIX;
    char name[32];
    const int n = std::snprintf(name, sizeof name, "shmq.poll.%016llx",
                                static_cast<unsigned long long>(key));
    // Abstract namespace: a leading NUL, no file, gone with the last descriptor of the socket.
    std::memcpy(a.sun_path + 1, name, static_cast<std::size_t>(n));
    return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + static_cast<std::size_t>(n));
}

// The process's unbound socket that notifiers send from; made on the first poke (so a process
// that never meets a poller never has it). Shared by threads and inherited by forked children
// (sending through one socket from several processes is fine).
std::atomic<int> sender_fd{-1};

int sender() noexcept {
    int fd = sender_fd.load(std::memory_order_acquire);
    if (fd >= 0) return fd;
    const int s = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0) return -1;
    if (!sender_fd.compare_exchange_strong(fd, s, std::memory_order_acq_rel)) {
        ::close(s);
        return fd;
    }
    return s;
}

// What a poke says: something was published or closed (look at the ring), or a process started
// holding the object (also look at who may write: poller::track_peers).
constexpr char poke_data = 1, poke_holder = 2;

// False when nobody is bound at key any more (its process closed the socket or died).
bool poke(std::uint64_t key, char byte) noexcept {
    sockaddr_un a;
    const socklen_t len = address_of(key, a);
    for (int attempt = 0; attempt < 2; ++attempt) {
        const int fd = sender();
        if (fd < 0) return true;   // no descriptor left here: cannot tell; keep the key
        if (::sendto(fd, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL,
                     reinterpret_cast<const sockaddr*>(&a), len) >= 0)
            return true;
        if (errno == ECONNREFUSED || errno == ENOENT) return false;
        if (errno == ENOTSOCK || errno == EBADF) {
            // The program closed our descriptor (closefrom, a daemon's cleanup): make another.
            int stale = fd;
            sender_fd.compare_exchange_strong(stale, -1, std::memory_order_acq_rel);
            continue;
        }
        return true;   // EAGAIN: its queue is full, so it is readable already
    }
    return true;
}

std::uint64_t random_key() {
    static thread_local std::mt19937_64 gen{std::random_device{}() ^
                                            (std::uint64_t{static_cast<std::uint32_t>(::getpid())} << 32)};
    std::uint64_t k = 0;
    while (k == 0) k = gen();
    return k;
}

int open_pidfd(std::uint32_t pid) noexcept {
#ifdef SYS_pidfd_open
    return static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0));   // cloexec
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

} // namespace

namespace {
void poke_all(poller_table& t, char byte) noexcept {
    // Pairs with the release fence a poller issues between storing its key and setting the
    // sleeper bit that our caller has just cleared.
    std::atomic_thread_fence(std::memory_order_acquire);
    if (t.count.load(std::memory_order_relaxed) == 0) return;
    for (auto& k : t.keys) {
        std::uint64_t key = k.load(std::memory_order_relaxed);
        if (key && !poke(key, byte) && k.compare_exchange_strong(key, 0, std::memory_order_acq_rel))
            t.count.fetch_sub(1, std::memory_order_acq_rel);
    }
}
// Every poller of this process, so that a forked child closes its copies of their descriptors at
// once: else a worker forked after fileno() would keep the parent's socket bound (and its key
// in the table, poked for nothing) for as long as it lives, even after the parent has died.
std::mutex& live_mutex() {
    static std::mutex m;
    return m;
}
std::vector<poller*>& live_pollers() {
    static std::vector<poller*> v;
    return v;
}
void install_fork_handler() {
    static std::once_flag once;
    std::call_once(once, [] {
        ::pthread_atfork([] { live_mutex().lock(); }, [] { live_mutex().unlock(); },
                         [] {
                             for (poller* p : live_pollers()) p->forget_in_child();
                             live_pollers().clear();
                             live_mutex().unlock();
                         });
    });
}
} // namespace

void poke_pollers(poller_table& t) noexcept { poke_all(t, poke_data); }

void announce_holder(const segment& seg) noexcept {
    for (std::uint32_t c = 0; c < seg.channels(); ++c) {
        poller_table& t = seg.channel(c).pollers;
        if (t.count.load(std::memory_order_acquire) != 0) poke_all(t, poke_holder);
    }
}

poller::poller(std::shared_ptr<segment> seg, channel& ch, std::uint32_t watch_end)
    : seg_(std::move(seg)), ch_(ch), table_(ch.pollers()), watch_end_(watch_end),
      pid_(self_pid()) {
    struct fds_guard {   // closes what was made if the constructor throws
        poller& p;
        bool armed = true;
        ~fds_guard() {
            if (!armed) return;
            for (int* fd : {&p.sock_, &p.epfd_, &p.timer_})
                if (*fd >= 0) ::close(*fd), *fd = -1;
        }
    } guard{*this};

    sock_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (sock_ < 0) fail("socket");
    // A small receive buffer: one queued byte is all it takes to be readable.
    const int small = 4096;
    ::setsockopt(sock_, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    for (int attempt = 0;; ++attempt) {
        key_ = random_key();
        sockaddr_un a;
        const socklen_t len = address_of(key_, a);
        if (::bind(sock_, reinterpret_cast<const sockaddr*>(&a), len) == 0) break;
        if (errno != EADDRINUSE || attempt == 16) fail("bind");
    }
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) fail("epoll_create1");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = sock_;
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, sock_, &ev) != 0) fail("epoll_ctl");

    // Register: count first, then the key (poller_table: count never below the keys).
    table_.count.fetch_add(1, std::memory_order_acq_rel);
    auto take_free = [&] {
        for (auto& k : table_.keys) {
            std::uint64_t zero = 0;
            if (k.compare_exchange_strong(zero, key_, std::memory_order_acq_rel)) return &k;
        }
        return static_cast<std::atomic<std::uint64_t>*>(nullptr);
    };
    slot_ = take_free();
    if (!slot_) {
        // Every slot taken: free those whose socket is gone (their processes died), then retry.
        poke_pollers(table_);
        slot_ = take_free();
    }
    if (!slot_) {
        table_.count.fetch_sub(1, std::memory_order_acq_rel);
        errno = EBUSY;
        fail("every poller slot of this channel is taken (7 handles poll it already)");
    }
    guard.armed = false;
    install_fork_handler();
    {
        std::lock_guard<std::mutex> lock(live_mutex());
        live_pollers().push_back(this);
    }
    rearm();
}

void poller::forget_in_child() noexcept {
    for (auto& p : peers_) ::close(p.pidfd);
    peers_.clear();
    for (int* fd : {&sock_, &epfd_, &timer_})
        if (*fd >= 0) ::close(*fd), *fd = -1;
    timer_ns_ = 0;
    watch_blind_ = false;
}

poller::~poller() {
    {
        std::lock_guard<std::mutex> lock(live_mutex());
        auto& v = live_pollers();
        v.erase(std::remove(v.begin(), v.end(), this), v.end());
    }
    if (pid_ != self_pid()) {
        // A forked child's copy: the registration and the socket belong to the parent. Only
        // this process's copies of the descriptors go.
    } else if (slot_) {
        std::uint64_t k = key_;
        if (slot_->compare_exchange_strong(k, 0, std::memory_order_acq_rel))
            table_.count.fetch_sub(1, std::memory_order_acq_rel);
    }
    for (auto& p : peers_) ::close(p.pidfd);
    for (int fd : {sock_, epfd_, timer_})
        if (fd >= 0) ::close(fd);
}

bool poller::drain() noexcept {
    // Up to 16 pokes per system call (one is usual); the loop ends at the first short batch.
    constexpr unsigned batch = 16;
    char bytes[batch];
    iovec iov[batch];
    mmsghdr msgs[batch] = {};
    for (unsigned i = 0; i < batch; ++i) {
        iov[i] = {&bytes[i], 1};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    bool holder = false;
    for (;;) {
        const int n = ::recvmmsg(sock_, msgs, batch, MSG_DONTWAIT, nullptr);
        for (int i = 0; i < n; ++i) holder |= msgs[i].msg_len == 1 && bytes[i] == poke_holder;
        if (n < static_cast<int>(batch)) break;
    }
    if (timer_ns_) {
        std::uint64_t ticks;
        [[maybe_unused]] auto r = ::read(timer_, &ticks, sizeof ticks);
    }
    return holder;
}

bool poller::reap_fired() noexcept {
    // One look at the epoll set (the socket was drained just before, or is not our concern
    // here): whatever else is ready is a pidfd of a peer that ended (or the fallback timer).
    bool fired = false;
    epoll_event ev[8];
    for (;;) {
        const int n = ::epoll_wait(epfd_, ev, 8, 0);
        bool removed = false;
        for (int i = 0; i < n; ++i) {
            const int fd = ev[i].data.fd;
            if (fd == sock_ || fd == timer_) continue;
            auto it = std::find_if(peers_.begin(), peers_.end(),
                                   [&](const peer& p) { return p.pidfd == fd; });
            ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
            if (it != peers_.end()) {
                ::close(it->pidfd);
                peers_.erase(it);
            }
            fired = removed = true;
        }
        if (n < 8 || !removed) break;
    }
    if (fired || watch_blind_) {
        registry::reap(*seg_, watch_end_);   // not throttled: we know someone ended
        seen_holders_ = ~0u;                     // look at the holders again
    }
    return fired;
}

void poller::track_peers(bool force) noexcept {
    // Each process holding the watched end (other than this one) gets a pidfd in the epoll set,
    // checked against the identity the registry recorded for it (pid + start time), so a
    // recycled pid is never watched in the dead process's place. Looked at again only when
    // something happened: the number of holders changed, a watched peer ended (its pidfd), or
    // a newcomer announced itself (announce_holder: an attach, a forked child), which it does
    // before it can write anything. A holder that leaves by a close changes the count.
    const std::uint32_t holders = registry::holders(*seg_, watch_end_);
    if (!force && holders == seen_holders_) return;
    seen_holders_ = holders;
    const process_identity& me = self();
    bool blind = false;   // a holder we cannot watch with a pidfd
    std::vector<peer> next;
    for (const holder_slot& s : seg_->registry().slots) {
        const std::uint32_t pid = s.pid.load(std::memory_order_acquire);
        if (!pid || s.count[watch_end_].load(std::memory_order_relaxed) == 0) continue;
        process_identity who{pid, s.start.load(std::memory_order_relaxed),
                             s.pidns.load(std::memory_order_relaxed)};
        if (who.pid == me.pid && (who.pidns == me.pidns || !who.pidns || !me.pidns)) continue;
        auto known = std::find_if(peers_.begin(), peers_.end(),
                                  [&](const peer& p) { return p.who == who; });
        if (known != peers_.end()) {
            next.push_back(*known);
            known->pidfd = -1;
            continue;
        }
        if (who.pidns && me.pidns && who.pidns != me.pidns) {
            blind = true;   // its pid means nothing here
            continue;
        }
        // A holder still registered but dead (ESRCH, a zombie, another start time) was not
        // reaped yet (the registry lock was busy): the fallback timer brings us back to reap it.
        const int fd = open_pidfd(pid);
        if (fd < 0) {
            blind = true;
            seen_holders_ = ~0u;
            continue;
        }
        // The pidfd names whoever had that pid when it was opened; it is our peer only if the
        // pid still names a process with the recorded start time (then it did at the open too).
        if (probe(who) != liveness::alive) {
            ::close(fd);
            blind = true;
            seen_holders_ = ~0u;
            continue;
        }
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = fd;
        if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
            ::close(fd);
            blind = true;
            continue;
        }
        next.push_back(peer{who, fd});
    }
    for (auto& p : peers_)
        if (p.pidfd >= 0) {   // holders no more
            ::epoll_ctl(epfd_, EPOLL_CTL_DEL, p.pidfd, nullptr);
            ::close(p.pidfd);
        }
    peers_ = std::move(next);
    watch_blind_ = blind;
}

void poller::set_timer(long period_ns) noexcept {
    if (period_ns == timer_ns_) return;
    if (period_ns && timer_ < 0) {
        timer_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (timer_ < 0) return;   // nothing better to do: dead peers then show at the next wake
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = timer_;
        if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, timer_, &ev) != 0) {
            ::close(timer_);
            timer_ = -1;
            return;
        }
    }
    itimerspec spec{};
    spec.it_interval.tv_nsec = spec.it_value.tv_nsec = period_ns;
    ::timerfd_settime(timer_, 0, &spec, nullptr);
    timer_ns_ = period_ns;
}

void poller::poke_self() noexcept {
    sockaddr_un a;
    const socklen_t len = address_of(key_, a);
    const char byte = 1;
    ::sendto(sock_, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&a), len);
}

void poller::settle() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    reap_fired();
}

bool poller::rearm() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    const bool newcomer = drain();
    const bool ended = reap_fired();
    track_peers(newcomer || ended);
    // Our key is in the table (stored before the first rearm); the fence publishes it to the
    // notifier that will clear the sleeper bit we set now (poke_pollers' acquire fence).
    std::atomic_thread_fence(std::memory_order_release);
    ch_.data_event().prepare();   // sleeper bit + seq_cst fence, then the check (event.hpp)
    // A biased writer notifies without a fence (bias.hpp): make its publications visible to the
    // check. Where membarrier fails, the timer looks again soon (blind_period_ns). Saying
    // "readable" instead spun an event loop at full speed for as long as an idle holder kept
    // its bias: every look re-armed, failed to seal, and said readable again.
    const bool sealed = ch_.seal_writer();
    set_timer(!sealed ? blind_period_ns : watch_blind_ ? fallback_period_ns : 0);
    // No timer (no descriptor left for one): a spurious wake-up is then the only safe answer.
    bool ready = !sealed && timer_ns_ != blind_period_ns;
    try {
        ready = ch_.readable_now() || ready;
    } catch (...) {
        ready = true;   // a corrupt ring: let the read report it
    }
    if (ready) poke_self();
    return ready;
}

} // namespace shmq::detail
