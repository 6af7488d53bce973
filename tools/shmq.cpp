// SPDX-License-Identifier: BSL-1.0
// shmq — the operator's command-line tool for named shmq objects (`shmq --help`).
//
//   shmq ls                 every named object: kind, ring, items, bytes, holders alive/dead, state
//   shmq stat NAME...       one object in detail, with every holder (pid, start, alive/dead)
//   shmq top                a refreshing table: depth, bytes, put/get rates, holders, waiters
//   shmq gc [--yes]         orphans (a holder died, none lives); removes them only with --yes
//   shmq put NAME [VALUE]   puts strings or bytes into a Queue/SimpleQueue/JoinableQueue
//   shmq get NAME           gets them out (to stdout)
//   shmq rm NAME...         unlinks names (handles already open keep working)
//   --json                  on every command: machine-readable output, one document per run
//                           (top: one per refresh)
//
//   A NATS URL (lib/nats/url.hpp) in place of a name reaches queues in NATS JetStream instead:
//   shmq ls nats://host:port          the shmq queues of that engine, with their counts
//   shmq stat nats://host:port/name   depth, pending acknowledgements, consumers, limits
//   shmq rm nats://host:port/name     deletes the queue's stream (and its items)
//   shmq put/get nats://host:port/name   as for a name
//
// Inspection (ls, stat, top, gc without --yes) opens read-only (O_RDONLY, PROT_READ), so it works
// on objects the user may only read, never waits for an object its creator is still
// initializing (shown as "initializing", or "orphan" once older than the 2 s grace), takes no
// lock and writes nothing. Names are printed escaped (\xHH for control and non-ASCII bytes, a
// doubled backslash for a backslash; JSON escapes in --json), so a name cannot send escape sequences to a terminal.
//
// Exit status, as Unix tools have it: 0 success; 1 an error (named on stderr); 2 bad usage;
// 3 put/get timed out (queue full / empty); 4 gc found orphans and did not remove them
// (no --yes), like `diff` saying "there is a difference".
#include "lifecycle.hpp"
#include "nats/client.hpp"
#include "nats/stream.hpp"
#include "nats/url.hpp"
#include "queue_impl.hpp"
#include "liveness.hpp"
#include "ring.hpp"
#include "segment.hpp"
#include "sync/object_layout.hpp"

#include <shmq/codec.hpp>
#include <shmq/detail/queue_core.hpp>
#include <shmq/errors.hpp>
#include <shmq/listener.hpp>
#include <shmq/version.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace {

using namespace shmq::detail;

enum exit_code : int { ok = 0, failed = 1, usage_error = 2, timed_out = 3, orphans_left = 4 };

// ---- output helpers ----------------------------------------------------------------------------

/// A name as a terminal may show it: printable ASCII as is, everything else \xHH.
std::string escaped(std::string_view s) {
    std::string out;
    for (unsigned char c : s) {
        if (c == '\\') out += "\\\\";
        else if (c >= 0x20 && c < 0x7f) out += static_cast<char>(c);
        else {
            char buf[5];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        }
    }
    return out;
}

/// A JSON string literal. Bytes outside printable ASCII become \u00HH (one code point per byte:
/// lossless for any name, and never an escape sequence on a terminal).
std::string json_string(std::string_view s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"') out += "\\\"";
        else if (c == '\\') out += "\\\\";
        else if (c >= 0x20 && c < 0x7f) out += static_cast<char>(c);
        else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        }
    }
    return out + "\"";
}

/// A small JSON object builder: fields in insertion order.
class json_object {
public:
    json_object& raw(std::string_view key, std::string value) {
        fields_.emplace_back(std::string(key), std::move(value));
        return *this;
    }
    json_object& str(std::string_view key, std::string_view v) { return raw(key, json_string(v)); }
    json_object& num(std::string_view key, double v) {
        char buf[40];
        if (v == std::floor(v) && std::fabs(v) < 1e15) std::snprintf(buf, sizeof buf, "%.0f", v);
        else std::snprintf(buf, sizeof buf, "%.3f", v);
        return raw(key, buf);
    }
    json_object& boolean(std::string_view key, bool v) { return raw(key, v ? "true" : "false"); }
    std::string text() const {
        std::string out = "{";
        for (std::size_t i = 0; i < fields_.size(); ++i)
            out += (i ? "," : "") + json_string(fields_[i].first) + ":" + fields_[i].second;
        return out + "}";
    }

private:
    std::vector<std::pair<std::string, std::string>> fields_;
};

std::string json_array(const std::vector<std::string>& items) {
    std::string out = "[";
    for (std::size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + items[i];
    return out + "]";
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

const char* kind_name(const segment_header& h) {
    switch (static_cast<segment_kind>(h.kind)) {
    case segment_kind::pipe: return "Pipe";
    case segment_kind::queue: return h.type_fingerprint == listener_fingerprint() ? "Listener" : "Queue";
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

const char* state_name(liveness s) {
    return s == liveness::alive ? "alive" : s == liveness::dead ? "dead" : "unknown";
}

/// Every name in /dev/shm that is a shmq object's ("shmq.<name>"), sorted.
std::vector<std::string> names() {
    std::vector<std::string> out;
    if (DIR* d = ::opendir("/dev/shm")) {
        while (dirent* e = ::readdir(d))
            if (std::strncmp(e->d_name, "shmq.", 5) == 0 && e->d_name[5] != '\0') out.emplace_back(e->d_name + 5);
        ::closedir(d);
    }
    std::sort(out.begin(), out.end());
    return out;
}

/// Seconds since boot of a start time in clock ticks (what holder slots keep).
double start_seconds(std::uint64_t ticks) {
    static const long hz = ::sysconf(_SC_CLK_TCK);
    return hz > 0 ? static_cast<double>(ticks) / static_cast<double>(hz) : 0.0;
}

bool sleepers(const event& ev) {
    return const_cast<event&>(ev).word()->load() & 1;   // the sleeper bit (sync/event.hpp)
}

// ---- one object, as every inspecting command sees it --------------------------------------------

struct snapshot {
    std::string name;
    std::string kind = "?";
    std::string state = "ok";   // ok, initializing, orphan, error
    std::string error;
    std::uint64_t ring = 0, items = 0, bytes = 0;
    std::uint64_t put_total = 0, get_total = 0;   // message counts of tail and head (28 bits, wrap)
    bool readers_waiting = false, writers_waiting = false;
    lifecycle::judgement holders;
    std::shared_ptr<segment> seg;
};

snapshot look(const std::string& n) {
    snapshot s;
    s.name = n;
    try {
        s.seg = segment::inspect(n);   // read-only, no waiting
        const auto& h = s.seg->header();
        s.kind = kind_name(h);
        s.holders = lifecycle::judge(*s.seg);
        if (is_object_kind(h.kind)) {
            s.bytes = s.seg->object_bytes();
        } else {
            s.ring = s.seg->capacity();
            for (std::uint32_t c = 0; c < s.seg->channels(); ++c) {
                const auto& ch = s.seg->channel(c);
                const std::uint64_t head = ch.head.load(), tail = ch.tail.load();
                s.items += ring::messages(head, tail);
                s.bytes += ring::used(head, tail);
                s.put_total += tail >> position_byte_bits;
                s.get_total += head >> position_byte_bits;
                s.readers_waiting |= sleepers(ch.data);
                s.writers_waiting |= sleepers(ch.space);
            }
        }
        if (s.holders.orphan()) s.state = "orphan";
        else if (s.holders.retired) s.state = "retired";
    } catch (const uninitialized_error&) {
        const double age = lifecycle::age_seconds(n);
        s.state = age >= lifecycle::creator_grace_seconds ? "orphan" : "initializing";
        s.error = age >= lifecycle::creator_grace_seconds ? "never initialized by its creator" : "";
    } catch (const std::exception& e) {
        s.state = "error";
        s.error = e.what();
    }
    return s;
}

std::string holders_json(const lifecycle::judgement& j) {
    std::vector<std::string> hs;
    for (const auto& h : j.holders)
        hs.push_back(json_object()
                         .num("pid", h.who.pid)
                         .num("start_ticks", static_cast<double>(h.who.start))
                         .num("start_seconds_since_boot", start_seconds(h.who.start))
                         .str("state", state_name(h.state))
                         .boolean("pending_fork", h.pending_fork)
                         .text());
    return json_array(hs);
}

json_object summary_json(const snapshot& s) {
    json_object o;
    o.str("name", s.name).str("kind", s.kind).str("state", s.state);
    if (!s.error.empty()) o.str("error", s.error);
    o.num("ring", static_cast<double>(s.ring)).num("items", static_cast<double>(s.items))
        .num("bytes", static_cast<double>(s.bytes));
    o.num("holders_alive", s.holders.alive).num("holders_dead", s.holders.dead)
        .num("holders_unknown", s.holders.unknown).boolean("holders_tracked", s.holders.tracked);
    o.boolean("readers_waiting", s.readers_waiting).boolean("writers_waiting", s.writers_waiting);
    return o;
}

std::string holders_cell(const snapshot& s) {
    if (!s.seg) return "-";
    if (!s.holders.tracked) return "n/a";
    std::string out = std::to_string(s.holders.alive) + "/" + std::to_string(s.holders.dead);
    if (s.holders.unknown) out += "/" + std::to_string(s.holders.unknown) + "?";
    return out;
}

// ---- commands ------------------------------------------------------------------------------------

int cmd_ls(bool json) {
    std::vector<std::string> rows;
    if (!json)
        std::printf("%-32s %-14s %10s %8s %10s %9s %s\n", "NAME", "KIND", "RING", "ITEMS", "BYTES",
                    "ALIVE/DEAD", "STATE");
    for (const auto& n : names()) {
        const snapshot s = look(n);
        if (json) {
            rows.push_back(summary_json(s).text());
            continue;
        }
        std::printf("%-32s %-14s %10s %8s %10s %9s %s%s%s\n", escaped(n).c_str(), s.kind.c_str(),
                    s.ring ? human(s.ring).c_str() : "-",
                    s.seg && s.ring ? std::to_string(s.items).c_str() : "-",
                    s.seg ? human(s.bytes).c_str() : "-", holders_cell(s).c_str(), s.state.c_str(),
                    s.error.empty() ? "" : ": ", escaped(s.error).c_str());
    }
    if (json) std::printf("%s\n", json_array(rows).c_str());
    return ok;
}

void print_lock_holder(const char* label, const robust_mutex& m, json_object* j) {
    const std::uint64_t owner = m.owner();
    process_identity who;
    who.pid = owner ? robust_mutex::pid_of(owner) : 0;
    who.start = owner >> 32;
    const liveness st = owner ? probe(who, 32) : liveness::unknown;
    if (j) {
        j->num(std::string(label) + "_pid", who.pid);
        if (owner) j->str(std::string(label) + "_state", state_name(st));
        return;
    }
    std::string text = std::string(label) + ":";
    std::replace(text.begin(), text.end(), '_', ' ');
    if (!owner) std::printf("%-12s none%s\n", text.c_str(), m.has_waiters() ? " (waiters may be waking)" : "");
    else std::printf("%-12s pid %u (%s)%s\n", text.c_str(), who.pid, state_name(st),
                     m.has_waiters() ? ", waiters sleeping" : "");
}

// The waiting parties of a Condition or Barrier: every occupied slot with its liveness.
void print_waiters(std::span<const waiter_slot> slots, json_object* j) {
    std::vector<std::string> docs;
    unsigned n = 0;
    for (const auto& slot : slots) {
        const std::uint32_t st = slot.state.load();
        if (st == slot_free) continue;
        ++n;
        const process_identity who{slot.pid.load(), slot.start.load(), slot.pidns.load()};
        const liveness alive = probe(who);
        if (j) docs.push_back(json_object().num("pid", who.pid).str("state", state_name(alive))
                                  .boolean("notified", st == slot_notified).text());
        else std::printf("waiter:      pid %u (%s)%s\n", who.pid, state_name(alive),
                         st == slot_notified ? ", notified" : "");
    }
    if (j) j->raw("waiters", json_array(docs));
    else std::printf("waiting:     %u\n", n);
}

std::string hex(const std::byte* p, std::uint64_t n) {
    std::string out;
    const std::uint64_t shown = n < 32 ? n : 32;
    char b[4];
    for (std::uint64_t i = 0; i < shown; ++i) {
        std::snprintf(b, sizeof b, "%02x", static_cast<unsigned>(p[i]));
        out += b;
    }
    return shown < n ? out + "..." : out;
}

// Kind-specific state of a synchronization object or shared value (sync/object_layout.hpp).
void stat_object(const segment& s, json_object* j) {
    const auto& h = s.header();
    const void* area = s.object();
    switch (static_cast<segment_kind>(h.kind)) {
    case segment_kind::lock:
        print_lock_holder("holder", static_cast<const lock_state*>(area)->mutex, j);
        break;
    case segment_kind::rlock: {
        const auto& l = *static_cast<const rlock_state*>(area);
        print_lock_holder("holder", l.mutex, j);
        if (l.mutex.owner()) {
            if (j) j->num("depth", l.count.load()).num("thread", static_cast<double>(l.owner_tid.load()));
            else std::printf("depth:       %u (thread %llu)\n", l.count.load(),
                             static_cast<unsigned long long>(l.owner_tid.load()));
        }
        break;
    }
    case segment_kind::condition: {
        const auto& c = *static_cast<const condition_state*>(area);
        print_lock_holder("holder", c.lock.mutex, j);
        print_waiters(c.slots, j);
        break;
    }
    case segment_kind::semaphore:
    case segment_kind::bounded_semaphore: {
        const auto& sem = *static_cast<const semaphore_state*>(area);
        if (j) j->num("value", sem.value.load()).num("bound", sem.maxvalue).boolean("waiters", sleepers(sem.posted));
        else std::printf("value:       %u%s\nwaiters:     %s\nowner:       none (a semaphore has no owner)\n",
                         sem.value.load(), sem.maxvalue ? (" (bound " + std::to_string(sem.maxvalue) + ")").c_str() : "",
                         sleepers(sem.posted) ? "yes" : "none sleeping");
        break;
    }
    case segment_kind::event: {
        const auto& e = *static_cast<const event_state*>(area);
        if (j) j->boolean("set", e.word.load() & 1).boolean("waiters", sleepers(e.changed));
        else std::printf("value:       %s\nwaiters:     %s\n", (e.word.load() & 1) ? "set" : "clear",
                         sleepers(e.changed) ? "yes" : "none sleeping");
        break;
    }
    case segment_kind::barrier: {
        const auto& b = *static_cast<const barrier_state*>(area);
        static const char* phases[] = {"filling", "running the action", "draining", "resetting", "broken"};
        const std::uint32_t ph = b.phase.load();
        const char* phase = ph < 5 ? phases[ph] : "?";
        if (j) {
            j->num("parties", b.parties).str("phase", phase).num("generation", static_cast<double>(b.generation.load()));
            if (b.timeout_ns.load() >= 0) j->num("timeout_s", static_cast<double>(b.timeout_ns.load()) * 1e-9);
        } else {
            std::printf("parties:     %u\nphase:       %s\ngeneration:  %llu\n", b.parties, phase,
                        static_cast<unsigned long long>(b.generation.load()));
            if (b.timeout_ns.load() >= 0)
                std::printf("timeout:     %.3f s\n", static_cast<double>(b.timeout_ns.load()) * 1e-9);
        }
        print_lock_holder("mutex", b.mutex, j);
        print_waiters(b.slots, j);
        break;
    }
    case segment_kind::value:
    case segment_kind::array: {
        const auto& l = *static_cast<const lock_state*>(area);
        const std::uint64_t bytes = s.object_bytes() - value_data_offset;
        const std::string value = hex(static_cast<const std::byte*>(area) + value_data_offset, bytes);
        print_lock_holder("lock_holder", l.mutex, j);
        if (j) j->num("elements", static_cast<double>(h.maxsize)).num("value_bytes", static_cast<double>(bytes)).str("value_hex", value);
        else std::printf("elements:    %lld, %s\nvalue:       %s\n", static_cast<long long>(h.maxsize),
                         human(bytes).c_str(), value.c_str());
        break;
    }
    default: break;
    }
}

int cmd_stat(const std::vector<std::string>& args, bool json) {
    int rc = ok;
    std::vector<std::string> docs;
    for (const auto& n : args) {
        snapshot s = look(n);
        if (!s.seg && s.state == "error") {
            std::fprintf(stderr, "shmq: %s\n", escaped(s.error).c_str());
            rc = failed;
            continue;
        }
        json_object j = summary_json(s);
        if (!s.seg) {   // initializing / never initialized
            if (json) docs.push_back(j.text());
            else std::printf("name:        %s\nstate:       %s%s%s\n", escaped(n).c_str(), s.state.c_str(),
                             s.error.empty() ? "" : ": ", s.error.c_str());
            continue;
        }
        const auto& h = s.seg->header();
        if (json) {
            j.num("layout_version", h.version).num("total_bytes", static_cast<double>(h.total_size));
            j.raw("type_fingerprint", json_string([&] {
                char b[20];
                std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(h.type_fingerprint));
                return std::string(b);
            }()));
            if (!is_object_kind(h.kind)) {
                j.num("channels", h.channels).num("maxsize", static_cast<double>(h.maxsize));
                if (h.kind == static_cast<std::uint32_t>(segment_kind::joinable_queue))
                    j.num("unfinished", static_cast<double>(s.seg->queue().unfinished.load()))
                        .num("lost_to_dead_consumers", static_cast<double>(s.seg->queue().lost_to_dead_consumers.load()));
                j.raw("holders", holders_json(s.holders));
            } else {
                stat_object(*s.seg, &j);
            }
            docs.push_back(j.text());
            continue;
        }
        std::printf("name:        %s (/dev/shm/shmq.%s)\n", escaped(n).c_str(), escaped(n).c_str());
        std::printf("kind:        %s\n", s.kind.c_str());
        std::printf("state:       %s\n", s.state.c_str());
        std::printf("layout:      version %u, %llu bytes\n", h.version, static_cast<unsigned long long>(h.total_size));
        std::printf("type:        %016llx\n", static_cast<unsigned long long>(h.type_fingerprint));
        if (is_object_kind(h.kind)) {
            stat_object(*s.seg, nullptr);
            std::printf("holders:     not tracked (synchronization objects and shared values keep none)\n");
            continue;
        }
        std::printf("ring:        %s per channel, %u channel(s)\n", human(h.capacity).c_str(), h.channels);
        if (h.kind != static_cast<std::uint32_t>(segment_kind::pipe))
            std::printf("maxsize:     %lld%s\n", static_cast<long long>(h.maxsize), h.maxsize <= 0 ? " (unbounded)" : "");
        for (std::uint32_t c = 0; c < s.seg->channels(); ++c) {
            const auto& ch = s.seg->channel(c);
            const std::uint64_t head = ch.head.load(), tail = ch.tail.load();
            // A biased writer lease (lib/bias.hpp) is its writer's between messages too.
            const std::uint64_t w = ch.wlock.owner();
            std::printf("channel %u:   %llu items, %s waiting; writer lease: %u%s, reader lease: %u%s%s\n", c,
                        static_cast<unsigned long long>(ring::messages(head, tail)), human(ring::used(head, tail)).c_str(),
                        robust_mutex::pid_of(w), (w & robust_mutex::biased_bit) ? " (biased)" : "",
                        robust_mutex::pid_of(ch.rlock.owner()),
                        sleepers(ch.data) ? ", readers sleeping" : "", sleepers(ch.space) ? ", writers sleeping" : "");
        }
        if (h.kind == static_cast<std::uint32_t>(segment_kind::joinable_queue)) {
            std::printf("unfinished:  %lld\n", static_cast<long long>(s.seg->queue().unfinished.load()));
            std::printf("lost to dead consumers: %llu\n",
                        static_cast<unsigned long long>(s.seg->queue().lost_to_dead_consumers.load()));
        }
        std::printf("holders:     %u alive, %u dead%s\n", s.holders.alive, s.holders.dead,
                    s.holders.unknown ? (", " + std::to_string(s.holders.unknown) + " unknown").c_str() : "");
        for (const auto& hd : s.holders.holders)
            std::printf("holder:      pid %u, started %.2f s after boot (%s)%s\n", hd.who.pid,
                        start_seconds(hd.who.start), state_name(hd.state),
                        hd.pending_fork ? ", ends parked for a child being forked" : "");
    }
    if (json) std::printf("%s\n", json_array(docs).c_str());
    return rc;
}

// ---- NATS JetStream queues (lib/nats/) -------------------------------------------------------

// The queue_flavor stored in a NATS queue's stream (include/shmq/detail/queue_core.hpp).
const char* nats_kind_name(const nats_queue_counts& n) {
    static const char* const kinds[] = {"?", "?", "queue", "simple_queue", "joinable_queue"};
    const std::uint32_t k = n.tag ? n.tag->flavor : 0;
    return k < 5 ? kinds[k] : "?";
}

json_object nats_json(const std::string& name, const nats_queue_counts& n) {
    json_object o;
    o.str("name", name).str("kind", nats_kind_name(n)).str("backend", "nats")
        .num("maxsize", static_cast<double>(n.max_msgs > 0 ? n.max_msgs : 0))
        .num("replicas", static_cast<double>(n.replicas))
        .num("items", static_cast<double>(n.messages))
        .num("undelivered", static_cast<double>(n.undelivered))
        .num("ack_pending", static_cast<double>(n.ack_pending))
        .num("redelivered", static_cast<double>(n.redelivered))
        .num("ack_wait_s", static_cast<double>(n.ack_wait_ns) * 1e-9)
        .num("consumers", static_cast<double>(n.consumers));
    return o;
}

int cmd_nats_ls(const std::string& text, bool json) {
    const nats_url url = parse_nats_servers(text);
    nats_client c(url, url.timeout);
    const std::int64_t wait = to_ms(url.timeout);
    std::vector<std::string> docs;
    if (!json) std::printf("%-40s %-15s %10s %10s %10s\n", "NAME", "KIND", "ITEMS", "ACKPEND", "MAXSIZE");
    for (const std::string& name : nats_queue_names(c, url, wait)) {
        nats_url one = url;
        one.name = name;
        const nats_queue_counts n = nats_counts(c, one, wait);
        if (json) docs.push_back(nats_json(name, n).text());
        else
            std::printf("%-40s %-15s %10llu %10lld %10lld\n", escaped(name).c_str(), nats_kind_name(n),
                        static_cast<unsigned long long>(n.messages), static_cast<long long>(n.ack_pending),
                        static_cast<long long>(n.max_msgs > 0 ? n.max_msgs : 0));
    }
    if (json) std::printf("%s\n", json_array(docs).c_str());
    return ok;
}

int cmd_nats_stat(const std::vector<std::string>& args, bool json) {
    std::vector<std::string> docs;
    for (const auto& text : args) {
        const nats_url url = parse_nats_url(text);
        nats_client c(url, url.timeout);
        const nats_queue_counts n = nats_counts(c, url, to_ms(url.timeout));
        if (json) {
            docs.push_back(nats_json(url.display(), n).text());
            continue;
        }
        std::printf("name:        %s\n", escaped(url.display()).c_str());
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
    if (json) std::printf("%s\n", json_array(docs).c_str());
    return ok;
}

int cmd_rm(const std::vector<std::string>& args, bool json) {
    int rc = ok;
    std::vector<std::string> docs;
    for (const auto& n : args) {
        const bool removed = is_nats_url(n) ? nats_queue_remove(n) : segment::remove(n);
        if (!removed) {
            std::fprintf(stderr, "shmq: cannot remove '%s': no such object\n", escaped(n).c_str());
            rc = failed;
        }
        if (json) docs.push_back(json_object().str("name", n).boolean("removed", removed).text());
    }
    if (json) std::printf("%s\n", json_array(docs).c_str());
    return rc;
}

int cmd_gc(bool yes, bool json) {
    int rc = ok;
    bool left = false;
    std::vector<std::string> docs;
    for (const auto& n : names()) {
        const snapshot s = look(n);
        if (s.state != "orphan") continue;
        std::string outcome = "orphan";
        if (yes) {
            // Decided again, under the registry lock: what the read-only look saw may be stale.
            try {
                outcome = lifecycle::to_string(lifecycle::collect(n));
            } catch (const std::exception& e) {
                std::fprintf(stderr, "shmq: %s\n", escaped(e.what()).c_str());
                outcome = "error";
                rc = failed;
            }
        } else {
            left = true;
        }
        if (json) {
            docs.push_back(summary_json(s).str("gc", outcome).raw("holders", holders_json(s.holders)).text());
        } else {
            std::printf("%-32s %-14s %8s %s%s\n", escaped(n).c_str(), s.kind.c_str(),
                        s.seg && s.ring ? (std::to_string(s.items) + " items").c_str() : "",
                        yes ? outcome.c_str() : "orphan (shmq gc --yes removes it)",
                        s.seg ? (", dead holders " + std::to_string(s.holders.dead)).c_str() : "");
        }
    }
    if (json) std::printf("%s\n", json_array(docs).c_str());
    return rc != ok ? rc : left ? orphans_left : ok;
}

int cmd_top(double interval, std::optional<long> count, bool json) {
    struct prev { std::uint64_t put, get; };
    std::map<std::string, prev> last;
    auto t_last = std::chrono::steady_clock::now();
    const bool tty = ::isatty(STDOUT_FILENO) && !json;
    for (long round = 0; !count || round < *count; ++round) {
        if (round) std::this_thread::sleep_for(std::chrono::duration<double>(interval));
        const auto now = std::chrono::steady_clock::now();
        const double dt = std::chrono::duration<double>(now - t_last).count();
        t_last = now;
        std::map<std::string, prev> seen;
        std::vector<std::string> rows;
        if (tty) std::printf("\033[H\033[2J");   // our own escape sequences only
        if (!json)
            std::printf("%-28s %-13s %8s %10s %10s %10s %9s %s\n", "NAME", "KIND", "DEPTH", "BYTES",
                        "PUT/s", "GET/s", "ALIVE/DEAD", "WAITERS");
        for (const auto& n : names()) {
            const snapshot s = look(n);
            // Rates from the ring positions' message counts (28 bits, wrapping), so counting costs
            // the put/get path nothing; the first round has no rate.
            std::optional<double> put_rate, get_rate;
            if (s.seg && s.ring) {
                seen[n] = {s.put_total, s.get_total};
                if (auto it = last.find(n); it != last.end() && dt > 0) {
                    put_rate = static_cast<double>((s.put_total - it->second.put) & position_msg_mask) / dt;
                    get_rate = static_cast<double>((s.get_total - it->second.get) & position_msg_mask) / dt;
                }
            }
            std::string waiters = s.readers_waiting && s.writers_waiting ? "readers,writers"
                                  : s.readers_waiting                   ? "readers"
                                  : s.writers_waiting                   ? "writers"
                                                                        : "-";
            if (json) {
                json_object o = summary_json(s);
                if (put_rate) o.num("put_per_s", *put_rate).num("get_per_s", *get_rate);
                rows.push_back(o.text());
                continue;
            }
            auto rate = [](const std::optional<double>& r) {
                char b[24];
                if (r) std::snprintf(b, sizeof b, "%.0f", *r);
                else std::snprintf(b, sizeof b, "-");
                return std::string(b);
            };
            std::printf("%-28s %-13s %8s %10s %10s %10s %9s %s\n", escaped(n).c_str(), s.kind.c_str(),
                        s.seg && s.ring ? std::to_string(s.items).c_str() : "-", s.seg ? human(s.bytes).c_str() : "-",
                        rate(put_rate).c_str(), rate(get_rate).c_str(), holders_cell(s).c_str(),
                        s.state == "ok" ? waiters.c_str() : s.state.c_str());
        }
        if (json) std::printf("%s\n", json_array(rows).c_str());
        std::fflush(stdout);
        last = std::move(seen);
    }
    return ok;
}

// put/get: the queue's own flavor and element type, decided by its header; strings and byte
// vectors only (what a shell has). The tool is a registered holder while it runs, like any user.
struct opened_queue {
    std::optional<queue_core> core;
    bool is_string = false;
    bool joinable = false;
};

opened_queue open_queue(const std::string& n) {
    auto s = segment::inspect(n);   // read-only: kind and type only
    const auto& h = s->header();
    const auto k = static_cast<segment_kind>(h.kind);
    if (k != segment_kind::queue && k != segment_kind::simple_queue && k != segment_kind::joinable_queue)
        throw shmq::type_error("shmq: '" + escaped(n) + "' is a " + kind_name(h) + ", not a queue");
    opened_queue q;
    if (h.type_fingerprint == type_fingerprint<std::string>()) q.is_string = true;
    else if (h.type_fingerprint != type_fingerprint<std::vector<std::byte>>())
        throw shmq::type_error("shmq: '" + escaped(n) + "' holds another element type than std::string or "
                               "std::vector<std::byte>; the tool puts and gets only those");
    q.joinable = k == segment_kind::joinable_queue;
    q.core.emplace(queue_core::open(static_cast<queue_flavor>(h.kind), n, h.type_fingerprint));
    return q;
}

int cmd_put(const std::string& n, std::vector<std::string> values, shmq::timeout_t timeout, bool json) {
    opened_queue q = open_queue(n);
    if (values.empty())   // no VALUE: all of stdin is one item
        values.emplace_back(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    std::size_t put = 0;
    try {
        for (const auto& v : values) {
            auto& scratch = encode_scratch();
            if (q.is_string) q.core->put(shmq::codec<std::string>::encode(v, scratch), true, timeout);
            else {
                std::vector<std::byte> b(reinterpret_cast<const std::byte*>(v.data()),
                                         reinterpret_cast<const std::byte*>(v.data()) + v.size());
                q.core->put(shmq::codec<std::vector<std::byte>>::encode(b, scratch), true, timeout);
            }
            ++put;
        }
    } catch (const shmq::full_error&) {
        std::fprintf(stderr, "shmq: '%s' stayed full: %zu of %zu items put\n", escaped(n).c_str(), put, values.size());
        if (json) std::printf("%s\n", json_object().str("name", n).num("put", static_cast<double>(put)).boolean("timed_out", true).text().c_str());
        return timed_out;
    }
    q.core->close();
    q.core->join_thread();   // the backlog reaches shared memory before we exit
    if (json) std::printf("%s\n", json_object().str("name", n).num("put", static_cast<double>(put)).boolean("timed_out", false).text().c_str());
    return ok;
}

int cmd_get(const std::string& n, long count, shmq::timeout_t timeout, bool json) {
    opened_queue q = open_queue(n);
    std::vector<std::string> docs;
    int rc = ok;
    for (long i = 0; i < count; ++i) {
        std::vector<std::byte> buf;
        container_sink<std::vector<std::byte>> sink(buf);
        try {
            q.core->get(sink, true, timeout);
        } catch (const shmq::empty_error&) {
            if (!json) std::fprintf(stderr, "shmq: '%s' stayed empty\n", escaped(n).c_str());
            rc = timed_out;
            break;
        }
        const std::string item = q.is_string ? shmq::codec<std::string>::decode(buf)
                                             : std::string(reinterpret_cast<const char*>(buf.data()), buf.size());
        // Delivered to the operator: done, so join() does not wait for the tool (JoinableQueue).
        if (q.joinable) q.core->task_done();
        if (json) docs.push_back(json_string(item));
        else if (q.is_string) std::printf("%s\n", item.c_str());
        else std::fwrite(item.data(), 1, item.size(), stdout);
    }
    if (json) std::printf("%s\n", json_object().str("name", n).raw("items", json_array(docs)).boolean("timed_out", rc == timed_out).text().c_str());
    return rc;
}

// ---- command line ----------------------------------------------------------------------------------

const char* const help_text =
    "usage: shmq [--json] COMMAND [ARGS]\n"
    "\n"
    "Inspect and manage named shmq objects (/dev/shm/shmq.<name>).\n"
    "\n"
    "commands:\n"
    "  ls                      list every named object: kind, ring, items, bytes, holders alive/dead,\n"
    "                          state (ok, initializing, orphan, retired, error)\n"
    "  stat NAME...            one object in detail, with every holder (pid, start time, alive/dead)\n"
    "  top [--interval S] [--count N]\n"
    "                          refreshing table: depth, bytes, put/get rates, holders, waiters\n"
    "  gc [--yes]              list orphans: objects a holder died holding and no live process holds\n"
    "                          (what they hold is lost); remove them only with --yes, each one under\n"
    "                          its registry lock, so a process opening it at that moment is never\n"
    "                          left with a removed object. Objects whose holders all closed normally,\n"
    "                          and locks, events and shared values (no holders kept), are left alone\n"
    "  put [--timeout S] NAME [VALUE...]\n"
    "                          put each VALUE (or all of stdin, as one item) into a queue of\n"
    "                          std::string or std::vector<std::byte>\n"
    "  get [--timeout S] [-n N] NAME\n"
    "                          get N items (default 1) to stdout: strings one per line, bytes raw;\n"
    "                          a JoinableQueue item is marked done once printed\n"
    "  rm NAME...              unlink names (handles already open keep working)\n"
    "\n"
    "A NATS URL in place of a name reaches queues in NATS JetStream (README, Beyond one host):\n"
    "  ls nats://HOST:PORT     the shmq queues of that engine: kind, items, pending acks, maxsize\n"
    "  stat URL...             depth, pending acknowledgements, redeliveries, consumers, limits\n"
    "  rm URL...               delete the queue's stream and its items\n"
    "  put/get URL             as for a name\n"
    "\n"
    "options:\n"
    "  --json                  machine-readable output (any position)\n"
    "  --timeout S             put/get wait at most S seconds (default: wait as long as it takes)\n"
    "  -h, --help              this text;  --version: the shmq version\n"
    "\n"
    "exit status: 0 success, 1 error, 2 usage, 3 put/get timed out, 4 gc found orphans without --yes\n";

int usage(const char* why) {
    std::fprintf(stderr, "shmq: %s\n(try 'shmq --help')\n", why);
    return usage_error;
}

} // namespace

int main(int argc, char** argv) {
    bool json = false, yes = false;
    shmq::timeout_t timeout;
    double interval = 1.0;
    std::optional<long> count;
    std::vector<std::string> words;
    auto number = [&](int& i, const char* opt) -> std::optional<double> {
        const std::string a = argv[i];
        std::string v;
        if (a.size() > std::strlen(opt) && a[std::strlen(opt)] == '=') v = a.substr(std::strlen(opt) + 1);
        else if (i + 1 < argc) v = argv[++i];
        else return std::nullopt;
        char* end = nullptr;
        const double d = std::strtod(v.c_str(), &end);
        if (v.empty() || *end || !(d >= 0)) return std::nullopt;
        return d;
    };
    bool options_done = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (options_done || a.empty() || a[0] != '-' || a == "-") { words.push_back(a); continue; }
        if (a == "--") options_done = true;
        else if (a == "-h" || a == "--help") { std::fputs(help_text, stdout); return ok; }
        else if (a == "--version") { std::printf("shmq %s\n", SHMQ_VERSION_STRING); return ok; }
        else if (a == "--json") json = true;
        else if (a == "--yes" || a == "-y") yes = true;
        else if (a.rfind("--timeout", 0) == 0) {
            auto d = number(i, "--timeout");
            if (!d) return usage("--timeout wants a number of seconds");
            timeout = std::chrono::duration<double>(*d);
        } else if (a.rfind("--interval", 0) == 0) {
            auto d = number(i, "--interval");
            if (!d || *d <= 0) return usage("--interval wants a positive number of seconds");
            interval = *d;
        } else if (a.rfind("--count", 0) == 0 || a == "-n") {
            auto d = number(i, a == "-n" ? "-n" : "--count");
            if (!d || *d < 1 || *d != std::floor(*d)) return usage("--count/-n wants a positive integer");
            count = static_cast<long>(*d);
        } else {
            return usage(("unknown option " + escaped(a)).c_str());
        }
    }
    if (words.empty()) return usage("no command given");
    const std::string cmd = words[0];
    const std::vector<std::string> args(words.begin() + 1, words.end());
    try {
        if (cmd == "help") { std::fputs(help_text, stdout); return ok; }
        if (cmd == "ls") {
            if (args.empty()) return cmd_ls(json);
            if (args.size() == 1 && is_nats_url(args[0])) return cmd_nats_ls(args[0], json);
            return usage("ls takes no arguments, or one nats://host:port");
        }
        if (cmd == "stat") {
            if (args.empty()) return usage("stat wants a NAME");
            const auto urls = std::count_if(args.begin(), args.end(), [](const std::string& a) { return is_nats_url(a); });
            if (urls == 0) return cmd_stat(args, json);
            if (static_cast<std::size_t>(urls) == args.size()) return cmd_nats_stat(args, json);
            return usage("stat takes names or nats:// URLs, not both at once");
        }
        if (cmd == "rm") return args.empty() ? usage("rm wants a NAME") : cmd_rm(args, json);
        if (cmd == "gc") return args.empty() ? cmd_gc(yes, json) : usage("gc takes no arguments");
        if (cmd == "top") return args.empty() ? cmd_top(interval, count, json) : usage("top takes no arguments");
        if (cmd == "put") {
            if (args.empty()) return usage("put wants a NAME");
            return cmd_put(args[0], std::vector<std::string>(args.begin() + 1, args.end()), timeout, json);
        }
        if (cmd == "get") {
            if (args.size() != 1) return usage("get wants one NAME");
            return cmd_get(args[0], count.value_or(1), timeout, json);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", escaped(e.what()).c_str());
        return failed;
    }
    return usage(("unknown command " + escaped(cmd)).c_str());
}
