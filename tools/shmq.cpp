// SPDX-License-Identifier: BSL-1.0
// shmq — the command-line tool: see and clean up named shmq objects.
//
//   shmq ls             every named object in /dev/shm: kind, ring size, items and bytes waiting
//   shmq stat NAME...   one object in detail, with the processes that hold it; for locks,
//                       semaphores, events, conditions, barriers and shared values: the holder
//                       and whether it is alive, the waiters, the value
//   shmq rm NAME...     unlink names (handles already open keep working)
//   shmq --version      the shmq version it was built from (include/shmq/version.hpp)
//
//   A NATS URL (lib/nats/url.hpp) in place of a name reaches queues in NATS JetStream instead:
//   shmq ls nats://host:port          the shmq queues of that engine, with their counts
//   shmq stat nats://host:port/name   depth, pending acknowledgements, consumers, limits
//   shmq rm nats://host:port/name     deletes the queue's stream (and its items)
//
// It reads the shared header exactly as the library does (validated first), and never writes.
#include "liveness.hpp"
#include "nats/client.hpp"
#include "nats/stream.hpp"
#include "nats/url.hpp"
#include "queue_impl.hpp"
#include "ring.hpp"
#include "segment.hpp"
#include "sync/object_layout.hpp"

#include <shmq/errors.hpp>
#include <shmq/version.hpp>

#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <span>
#include <string>
#include <vector>

namespace {

using namespace shmq::detail;

const char* kind_name(std::uint32_t k) {
    switch (static_cast<segment_kind>(k)) {
    case segment_kind::pipe: return "Pipe";
    case segment_kind::queue: return "Queue";
    case segment_kind::simple_queue: return "SimpleQueue";
    case segment_kind::joinable_queue: return "JoinableQueue";
    case segment_kind::lock: return "Lock";
    case segment_kind::rlock: return "RLock";
    case segment_kind::semaphore: return "Semaphore";
    case segment_kind::bounded_semaphore: return "BoundedSemaphore";
    case segment_kind::event: return "Event";
    case segment_kind::condition: return "Condition";
    case segment_kind::barrier: return "Barrier";
    case segment_kind::value: return "Value";
    case segment_kind::array: return "Array";
    }
    return "?";
}

std::vector<std::string> names() {
    std::vector<std::string> out;
    if (DIR* d = ::opendir("/dev/shm")) {
        while (dirent* e = ::readdir(d))
            if (std::strncmp(e->d_name, "shmq.", 5) == 0) out.emplace_back(e->d_name + 5);
        ::closedir(d);
    }
    return out;
}

std::string human(std::uint64_t bytes) {
    const char* unit[] = {"B", "KiB", "MiB", "GiB"};
    int u = 0;
    double v = static_cast<double>(bytes);
    while (v >= 1024 && u < 3) { v /= 1024; ++u; }
    char buf[32];
    std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
    return buf;
}

int ls() {
    std::printf("%-32s %-16s %10s %10s %12s\n", "NAME", "KIND", "RING", "ITEMS", "BYTES");
    for (const auto& n : names()) {
        try {
            auto s = segment::inspect(n);
            if (is_object_kind(s->header().kind)) {
                std::printf("%-32s %-16s %10s %10s %12s\n", n.c_str(), kind_name(s->header().kind), "-",
                            "-", human(s->object_bytes()).c_str());
                continue;
            }
            const auto& c = s->channel(0);
            std::uint64_t head = c.head.load(), tail = c.tail.load();
            std::printf("%-32s %-16s %10s %10llu %12s\n", n.c_str(), kind_name(s->header().kind),
                        human(s->capacity()).c_str(),
                        static_cast<unsigned long long>(ring::messages(head, tail)),
                        human(ring::used(head, tail)).c_str());
        } catch (const shmq::error& e) {
            std::printf("%-32s %s\n", n.c_str(), e.what());
        }
    }
    return 0;
}

const char* liveness_note(liveness state) {
    return state == liveness::dead      ? " (dead)"
           : state == liveness::unknown ? " (unknown: another pid namespace or /proc unreadable)"
                                        : " (alive)";
}

// "holder: pid N (alive)" for a robust_mutex owner word (32 bits of start time kept).
void print_holder(const char* label, const robust_mutex& m) {
    const std::uint64_t owner = m.owner();
    if (!owner) {
        std::printf("%-12s none%s\n", label, m.has_waiters() ? " (waiters may be waking)" : "");
        return;
    }
    process_identity who;
    who.pid = robust_mutex::pid_of(owner);
    who.start = owner >> 32;
    std::printf("%-12s pid %u%s%s\n", label, who.pid, liveness_note(probe(who, 32)),
                m.has_waiters() ? ", waiters sleeping" : "");
}

bool sleepers(const event& ev) {
    return const_cast<event&>(ev).word()->load() & 1;   // the sleeper bit (sync/event.hpp)
}

// The waiting parties of a Condition or Barrier: every occupied slot with its liveness.
void print_waiters(std::span<const waiter_slot> slots) {
    unsigned n = 0;
    for (const auto& slot : slots) {
        const std::uint32_t st = slot.state.load();
        if (st == slot_free) continue;
        ++n;
        const process_identity who{slot.pid.load(), slot.start.load(), slot.pidns.load()};
        std::printf("waiter:      pid %u%s%s\n", who.pid, liveness_note(probe(who)),
                    st == slot_notified ? ", notified" : "");
    }
    std::printf("waiting:     %u\n", n);
}

void print_hex(const std::byte* p, std::uint64_t n) {
    const std::uint64_t shown = n < 32 ? n : 32;
    for (std::uint64_t i = 0; i < shown; ++i) std::printf("%02x", static_cast<unsigned>(p[i]));
    std::printf("%s\n", shown < n ? "..." : "");
}

// A synchronization object or shared value: kind-specific state (sync/object_layout.hpp).
void stat_object(const segment& s) {
    const auto& h = s.header();
    const void* area = s.object();
    switch (static_cast<segment_kind>(h.kind)) {
    case segment_kind::lock: {
        const auto& l = *static_cast<const lock_state*>(area);
        print_holder("holder:", l.mutex);
        break;
    }
    case segment_kind::rlock: {
        const auto& l = *static_cast<const rlock_state*>(area);
        print_holder("holder:", l.mutex);
        if (l.mutex.owner())
            std::printf("depth:       %u (thread %llu)\n", l.count.load(),
                        static_cast<unsigned long long>(l.owner_tid.load()));
        break;
    }
    case segment_kind::semaphore:
    case segment_kind::bounded_semaphore: {
        const auto& sem = *static_cast<const semaphore_state*>(area);
        std::printf("value:       %u", sem.value.load());
        if (sem.maxvalue) std::printf(" (bound %u)", sem.maxvalue);
        std::printf("\nwaiters:     %s\n", sleepers(sem.posted) ? "yes" : "none sleeping");
        std::printf("owner:       none (a semaphore has no owner)\n");
        break;
    }
    case segment_kind::event: {
        const auto& e = *static_cast<const event_state*>(area);
        std::printf("value:       %s\n", (e.word.load() & 1) ? "set" : "clear");
        std::printf("waiters:     %s\n", sleepers(e.changed) ? "yes" : "none sleeping");
        break;
    }
    case segment_kind::condition: {
        const auto& c = *static_cast<const condition_state*>(area);
        print_holder("holder:", c.lock.mutex);
        print_waiters(c.slots);
        break;
    }
    case segment_kind::barrier: {
        const auto& b = *static_cast<const barrier_state*>(area);
        static const char* phases[] = {"filling", "running the action", "draining", "resetting", "broken"};
        const std::uint32_t ph = b.phase.load();
        std::printf("parties:     %u\n", b.parties);
        std::printf("phase:       %s\n", ph < 5 ? phases[ph] : "?");
        std::printf("generation:  %llu\n", static_cast<unsigned long long>(b.generation.load()));
        if (b.timeout_ns.load() >= 0)
            std::printf("timeout:     %.3f s\n", static_cast<double>(b.timeout_ns.load()) * 1e-9);
        print_holder("mutex:", b.mutex);
        print_waiters(b.slots);
        break;
    }
    case segment_kind::value:
    case segment_kind::array: {
        const auto& l = *static_cast<const lock_state*>(area);
        const std::uint64_t bytes = s.object_bytes() - value_data_offset;
        std::printf("type:        %016llx\n", static_cast<unsigned long long>(h.type_fingerprint));
        std::printf("elements:    %lld, %s\n", static_cast<long long>(h.maxsize), human(bytes).c_str());
        print_holder("lock holder:", l.mutex);
        std::printf("value:       ");
        print_hex(static_cast<const std::byte*>(area) + value_data_offset, bytes);
        break;
    }
    default: break;
    }
}

int stat(const std::string& n) {
    try {
        auto s = segment::inspect(n);
        const auto& h = s->header();
        std::printf("name:        %s (/dev/shm/%s)\n", n.c_str(), segment::system_name(n).c_str());
        std::printf("kind:        %s\n", kind_name(h.kind));
        std::printf("layout:      version %u, %llu bytes\n", h.version,
                    static_cast<unsigned long long>(h.total_size));
        if (is_object_kind(h.kind)) {
            stat_object(*s);
            return 0;
        }
        std::printf("ring:        %s per channel, %u channel(s)\n", human(h.capacity).c_str(), h.channels);
        if (h.kind != static_cast<std::uint32_t>(segment_kind::pipe))
            std::printf("maxsize:     %lld%s\n", static_cast<long long>(h.maxsize),
                        h.maxsize <= 0 ? " (unbounded)" : "");
        std::printf("type:        %016llx\n", static_cast<unsigned long long>(h.type_fingerprint));
        for (std::uint32_t c = 0; c < s->channels(); ++c) {
            const auto& ch = s->channel(c);
            std::uint64_t head = ch.head.load(), tail = ch.tail.load();
            std::printf("channel %u:   %llu items, %s waiting; writer lease: %u, reader lease: %u\n", c,
                        static_cast<unsigned long long>(ring::messages(head, tail)),
                        human(ring::used(head, tail)).c_str(),
                        robust_mutex::pid_of(ch.wlock.owner()), robust_mutex::pid_of(ch.rlock.owner()));
        }
        const bool joinable = h.kind == static_cast<std::uint32_t>(segment_kind::joinable_queue);
        if (joinable) {
            std::printf("unfinished:  %lld\n", static_cast<long long>(s->queue().unfinished.load()));
            std::printf("lost to dead consumers: %llu\n",
                        static_cast<unsigned long long>(s->queue().lost_to_dead_consumers.load()));
        }
        for (const auto& slot : s->registry().slots) {
            std::uint32_t pid = slot.pid.load();
            if (!pid) continue;
            const process_identity who{pid, slot.start.load(), slot.pidns.load()};
            const liveness state = probe(who);
            std::printf("holder:      pid %u%s", pid,
                        state == liveness::dead      ? " (dead)"
                        : state == liveness::unknown ? " (unknown: another pid namespace or /proc unreadable)"
                                                     : "");
            // What a JoinableQueue holder answers for: uncounted from `unfinished` when it dies.
            if (joinable)
                std::printf(", %llu unpublished, %llu taken",
                            static_cast<unsigned long long>(slot.unpublished.load()),
                            static_cast<unsigned long long>(slot.taken.load()));
            std::printf("\n");
        }
        return 0;
    } catch (const shmq::error& e) {
        std::fprintf(stderr, "shmq: %s\n", e.what());
        return 1;
    }
}

// The queue_flavor stored in a NATS queue's stream (include/shmq/detail/queue_core.hpp).
const char* nats_kind_name(const nats_queue_counts& n) {
    static const char* const kinds[] = {"?", "?", "queue", "simple_queue", "joinable_queue"};
    const std::uint32_t k = n.tag ? n.tag->flavor : 0;
    return k < 5 ? kinds[k] : "?";
}

// One NATS queue's counts, as the server has them (lib/nats/stream.hpp).
void print_nats_counts(const nats_queue_counts& n) {
    std::printf("kind:        %s (NATS JetStream)\n", nats_kind_name(n));
    std::printf("maxsize:     %lld%s\n", static_cast<long long>(n.max_msgs > 0 ? n.max_msgs : 0),
                n.max_msgs <= 0 ? " (unbounded)" : "");
    if (n.tag) std::printf("type:        %016llx\n", static_cast<unsigned long long>(n.tag->fingerprint));
    std::printf("replicas:    %lld\n", static_cast<long long>(n.replicas));
    std::printf("items:       %llu in the stream, %llu not yet delivered\n",
                static_cast<unsigned long long>(n.messages), static_cast<unsigned long long>(n.undelivered));
    std::printf("ack pending: %lld (got, not yet acknowledged; %lld redelivered)\n",
                static_cast<long long>(n.ack_pending), static_cast<long long>(n.redelivered));
    std::printf("ack wait:    %.3f s\n", static_cast<double>(n.ack_wait_ns) * 1e-9);
    std::printf("consumers:   %lld\n", static_cast<long long>(n.consumers));
}

int nats_ls(const std::string& text) {
    try {
        const nats_url url = parse_nats_servers(text);
        nats_client c(url, url.timeout);
        const std::int64_t wait = to_ms(url.timeout);
        std::printf("%-40s %-15s %10s %10s %10s\n", "NAME", "KIND", "ITEMS", "ACKPEND", "MAXSIZE");
        for (const std::string& name : nats_queue_names(c, url, wait)) {
            nats_url one = url;
            one.name = name;
            const nats_queue_counts n = nats_counts(c, one, wait);
            std::printf("%-40s %-15s %10llu %10lld %10lld\n", name.c_str(), nats_kind_name(n),
                        static_cast<unsigned long long>(n.messages), static_cast<long long>(n.ack_pending),
                        static_cast<long long>(n.max_msgs > 0 ? n.max_msgs : 0));
        }
        return 0;
    } catch (const shmq::error& e) {
        std::fprintf(stderr, "shmq: %s\n", e.what());
        return 1;
    }
}

int nats_stat(const std::string& text) {
    try {
        const nats_url url = parse_nats_url(text);
        nats_client c(url, url.timeout);
        const nats_queue_counts n = nats_counts(c, url, to_ms(url.timeout));
        std::printf("name:        %s\n", url.display().c_str());
        print_nats_counts(n);
        return 0;
    } catch (const shmq::error& e) {
        std::fprintf(stderr, "shmq: %s\n", e.what());
        return 1;
    }
}

int usage(FILE* to) {
    std::fputs("usage: shmq ls [nats://host:port] | shmq stat NAME|URL... | shmq rm NAME|URL... | "
               "shmq --version\n", to);
    return to == stdout ? 0 : 2;
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 2) return usage(stderr);
    std::string cmd = argv[1];
    if (cmd == "-h" || cmd == "--help") return usage(stdout);
    if (cmd == "--version") {
        std::printf("shmq %s\n", SHMQ_VERSION_STRING);
        return 0;
    }
    if (cmd == "ls" && argc == 2) return ls();
    if (cmd == "ls" && argc == 3 && is_nats_url(argv[2])) return nats_ls(argv[2]);
    int rc = 0;
    if (cmd == "stat" && argc > 2) {
        for (int i = 2; i < argc; ++i) rc |= is_nats_url(argv[i]) ? nats_stat(argv[i]) : stat(argv[i]);
        return rc;
    }
    if (cmd == "rm" && argc > 2) {
        for (int i = 2; i < argc; ++i)
            if (!(is_nats_url(argv[i]) ? nats_queue_remove(argv[i]) : segment::remove(argv[i]))) {
                std::fprintf(stderr, "shmq: cannot remove '%s': no such object\n", argv[i]);
                rc = 1;
            }
        return rc;
    }
    return usage(stderr);
}
