// SPDX-License-Identifier: BSL-1.0
// libFuzzer harness: a named queue whose shared memory was rewritten by a hostile or broken
// process (issue 7, B.5). Build and run it with test/fuzz/run (see there).
//
// Each input creates a valid named queue (Queue, SimpleQueue or JoinableQueue of std::string,
// 4 KiB ring), puts a few messages, then overwrites parts of its segment with the input's bytes
// and uses it the way a second process would: open, get_nowait/put_nowait/qsize/empty/full,
// bounded get and put (10 ms), task_done/join(10 ms), close, and the inspection `shmq stat`
// does. What must hold: only shmq::error escapes, no crash, no sanitizer report, no hang (every
// call is bounded: a lease word that names a live process costs a timeout, not a hang), nothing
// left in /dev/shm.
//
// Input layout (structure-aware, so most inputs get past header validation and reach the rings):
//   byte 0   setup: bits 0-1 kind (queue, simple, joinable), bit 2 maxsize 2 (else unbounded),
//            bits 3-4 messages put before the corruption (0-3), bit 5 one of them is as large
//            as 3/4 of the ring (positions move far), bit 6 one get before the corruption
//            (head moves), bit 7 keep the creator's handle open while the corruption is used
//   byte 1   operations: bit 0 blocking get (10 ms), bit 1 blocking put (10 ms), bit 2 a put
//            larger than the ring (streamed), bit 3 close the opened handle early
//   then patches until the input ends, each
//            op (1 byte), offset (2 bytes, little endian), length (2 bytes), then the bytes:
//     op % 8 = 0 header, 1 registry, 2 queue_state, 3 channel_state, 4 ring, 5 whole segment:
//                copy the bytes at offset % region size (clipped to the region)
//              6 add the bytes, as a signed 64-bit delta, to the 8-byte word at offset / 8 of
//                channel_state (positions, lease words and generations move by small steps)
//              7 add them, as a signed 32-bit delta, to the 4-byte word at offset / 4 of the
//                ring (record sizes and kinds move by small steps)
//
// SHMQ_FUZZ_MAKE_SEEDS=<dir> writes the seed corpus instead of fuzzing: inputs with no patches
// and snapshots of valid channel states and rings after various traffic (test/fuzz/run seeds).
#include <shmq/joinable_queue.hpp>
#include <shmq/queue.hpp>
#include <shmq/simple_queue.hpp>

#include "ring.hpp"
#include "segment.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

namespace {

using namespace std::chrono_literals;
using shmq::detail::segment;

constexpr auto bounded = 10ms;
volatile std::uint64_t sink = 0;

std::string queue_name() { return "fuzz-" + std::to_string(::getpid()); }

/// Removes the name when the input is done, whatever happened.
struct name_remover {
    std::string name;
    ~name_remover() { shmq::Queue<std::string>::remove(name); }
};

struct setup {
    unsigned kind = 0;       // 0 Queue, 1 SimpleQueue, 2 JoinableQueue
    bool bounded_queue = false;
    unsigned puts = 0;
    bool large_put = false;
    bool get_before = false;
    bool keep_creator = false;
    bool blocking_get = false, blocking_put = false, streamed_put = false, close_early = false;
};

setup read_setup(std::span<const std::uint8_t> in) {
    setup s;
    const std::uint8_t a = in.size() > 0 ? in[0] : 0, b = in.size() > 1 ? in[1] : 0;
    s.kind = (a & 3) % 3;
    s.bounded_queue = a & 4;
    s.puts = (a >> 3) & 3;
    s.large_put = a & 0x20;
    s.get_before = a & 0x40;
    s.keep_creator = a & 0x80;
    s.blocking_get = b & 1;
    s.blocking_put = b & 2;
    s.streamed_put = b & 4;
    s.close_early = b & 8;
    return s;
}

/// Runs f, swallowing shmq::error (the documented outcome of a corrupt segment); anything else
/// escapes to libFuzzer, which reports it.
template <class F> void guarded(F&& f) {
    try {
        f();
    } catch (const shmq::error&) {
    }
}

/// The facade types differ only in which calls they have: one visitor over all three.
using any_queue = std::variant<shmq::Queue<std::string>, shmq::SimpleQueue<std::string>,
                               shmq::JoinableQueue<std::string>>;

any_queue create_queue(const setup& s, const std::string& name) {
    const shmq::options opts{.capacity = 4096};
    const std::size_t maxsize = s.bounded_queue ? 2 : 0;
    switch (s.kind) {
    case 0: return shmq::Queue<std::string>::create(name, maxsize, opts);
    case 1: return shmq::SimpleQueue<std::string>::create(name, opts);
    default: return shmq::JoinableQueue<std::string>::create(name, maxsize, opts);
    }
}

any_queue open_queue(const setup& s, const std::string& name) {
    switch (s.kind) {
    case 0: return shmq::Queue<std::string>::open(name);
    case 1: return shmq::SimpleQueue<std::string>::open(name);
    default: return shmq::JoinableQueue<std::string>::open(name);
    }
}

std::string message(std::size_t n, char c) { return std::string(n, c); }

/// Puts before the corruption: bounded, so a bounded queue that is full costs nothing.
void fill(any_queue& q, const setup& s) {
    for (unsigned i = 0; i < s.puts; ++i) {
        const std::size_t n = (s.large_put && i == 0) ? 3000 : 5 + 40 * i;
        std::visit(
            [&](auto& x) {
                if constexpr (requires { x.put_nowait(std::string()); }) {
                    try {
                        x.put_nowait(message(n, 'a' + i));
                    } catch (const shmq::full_error&) {
                        // a bounded queue (maxsize 2) holds no more
                    }
                } else {
                    x.put(message(n, 'a' + i));
                }
            },
            q);
    }
    if (s.get_before) {
        std::visit(
            [](auto& x) {
                // A put may still be in the feeder's backlog (ring full): then there is nothing
                // to get yet, which is fine.
                if constexpr (requires { x.get_nowait(); }) {
                    try {
                        (void)x.get(true, bounded);
                    } catch (const shmq::empty_error&) {
                    }
                } else if (!x.empty()) {
                    (void)x.get();
                }
            },
            q);
    }
}

/// The corruption: patches as described at the top of the file.
void apply_patches(const segment& seg, std::span<const std::uint8_t> in) {
    struct region {
        std::byte* base;
        std::size_t size;
    };
    auto* ch = reinterpret_cast<std::byte*>(&seg.channel(0));
    const region regions[6] = {
        {reinterpret_cast<std::byte*>(&seg.header()), sizeof(shmq::detail::segment_header)},
        {reinterpret_cast<std::byte*>(&seg.registry()), sizeof(shmq::detail::registry_state)},
        {reinterpret_cast<std::byte*>(&seg.queue()), sizeof(shmq::detail::queue_state)},
        {ch, sizeof(shmq::detail::channel_state)},
        {seg.ring(0), static_cast<std::size_t>(seg.capacity())},
        {reinterpret_cast<std::byte*>(&seg.header()),
         static_cast<std::size_t>(seg.header().total_size)},
    };
    std::size_t at = 0;
    while (at + 5 <= in.size()) {
        const unsigned op = in[at] % 8;
        const std::size_t offset = in[at + 1] | std::size_t{in[at + 2]} << 8;
        std::size_t len = in[at + 3] | std::size_t{in[at + 4]} << 8;
        at += 5;
        len = std::min(len, in.size() - at);
        const std::uint8_t* bytes = in.data() + at;
        at += len;
        if (op < 6) {
            const region& r = regions[op];
            const std::size_t off = offset % r.size;
            std::memcpy(r.base + off, bytes, std::min(len, r.size - off));
        } else if (op == 6) {
            std::int64_t delta = 0;
            std::memcpy(&delta, bytes, std::min(len, sizeof delta));
            const std::size_t words = sizeof(shmq::detail::channel_state) / 8;
            auto* word = ch + (offset % words) * 8;
            std::uint64_t v;
            std::memcpy(&v, word, 8);
            v += static_cast<std::uint64_t>(delta);
            std::memcpy(word, &v, 8);
        } else {
            std::int32_t delta = 0;
            std::memcpy(&delta, bytes, std::min(len, sizeof delta));
            const std::size_t words = static_cast<std::size_t>(seg.capacity()) / 4;
            auto* word = seg.ring(0) + (offset % words) * 4;
            std::uint32_t v;
            std::memcpy(&v, word, 4);
            v += static_cast<std::uint32_t>(delta);
            std::memcpy(word, &v, 4);
        }
    }
}

/// What `shmq stat` reads (tools/shmq.cpp): everything through segment::inspect. Only the
/// segment's own accessors, which every version of the tool uses.
void inspect(const std::string& name) {
    guarded([&] {
        const auto s = segment::inspect(name);
        const auto& h = s->header();
        std::uint64_t sum = h.total_size + h.capacity + h.type_fingerprint;
        for (std::uint32_t c = 0; c < s->channels(); ++c) {
            const auto& ch = s->channel(c);
            const std::uint64_t head = ch.head.load(), tail = ch.tail.load();
            sum += shmq::detail::ring::messages(head, tail) + shmq::detail::ring::used(head, tail) +
                   ch.wlock.owner() + ch.rlock.owner();
        }
        if (h.kind == static_cast<std::uint32_t>(shmq::detail::segment_kind::joinable_queue))
            sum += static_cast<std::uint64_t>(s->queue().unfinished.load());
        // An object kind (a lock, a Value...) has no registry: the tool reads its object area.
        if (!shmq::detail::is_object_kind(h.kind))
            for (const auto& slot : s->registry().slots) sum += slot.pid.load() + slot.start.load();
        else
            sum += s->object_bytes();
        sink = sink + sum; // keeps the reads
    });
}

/// What a second process does with the queue. Every call is bounded.
void use(any_queue& q, const setup& s) {
    std::visit(
        [&](auto& x) {
            guarded([&] { (void)x.empty(); });
            if constexpr (requires { x.qsize(); }) {
                guarded([&] { (void)x.qsize(); });
                guarded([&] { (void)x.full(); });
                guarded([&] { (void)x.get_nowait(); });
                guarded([&] { (void)x.get_nowait(); });
                guarded([&] { x.put_nowait("fuzz"); });
                if (s.blocking_get) guarded([&] { (void)x.get(true, bounded); });
                if (s.blocking_put) guarded([&] { x.put(message(100, 'p'), true, bounded); });
                if (s.streamed_put) guarded([&] { x.put(message(6000, 's'), true, bounded); });
                guarded([&] { (void)x.get(true, 0ms); });
                if constexpr (requires { x.task_done(); }) {
                    guarded([&] { x.task_done(); });
                    guarded([&] { (void)x.join(bounded); });
                }
                if (s.close_early) guarded([&] { x.close(); });
                guarded([&] { (void)x.qsize(); });
                // Never wait for a backlog that a corrupt ring may never take.
                x.cancel_join_thread();
            } else {
                // SimpleQueue: get and put have no timeout, so get only when it reports data
                // (a lying empty() may still make get wait: that is what -timeout would catch).
                if (s.blocking_get) guarded([&] {
                    if (!x.empty()) (void)x.get();
                });
                if (s.close_early) guarded([&] { x.close(); });
            }
        },
        q);
}

void run_one(std::span<const std::uint8_t> in) {
    const setup s = read_setup(in);
    const std::string name = queue_name();
    shmq::Queue<std::string>::remove(name); // left by an input that crashed the previous run
    name_remover remover{name};

    std::optional<any_queue> creator;
    try {
        creator.emplace(create_queue(s, name));
        fill(*creator, s);
    } catch (const shmq::error& e) {
        std::fprintf(stderr, "fuzz_segment: cannot set up a valid queue: %s\n", e.what());
        std::abort(); // the harness's own precondition, not a finding about the input
    }
    if (!s.keep_creator) creator.reset();

    if (in.size() > 2) {
        // The view stays mapped while its shared_ptr lives: corrupt, then let go before open.
        const auto seg = segment::inspect(name, shmq::detail::inspect_mode{.read_only = false, .wait = true});
        apply_patches(*seg, in.subspan(2));
        // A segment whose `ready` flag is not set looks like one still being initialized, and
        // open waits seconds (by design) for its creator: every input that touched the flag
        // would cost that wait, and the fuzzer would crawl. The flag itself is not fuzzed.
        seg->header().ready.store(1);
    }
    guarded([&] {
        any_queue q = open_queue(s, name);
        use(q, s);
    });
    inspect(name);
    if (creator) {
        // The creator meets the corruption too, and its destructor must cope.
        guarded([&] {
            std::visit(
                [&](auto& x) {
                    guarded([&] { (void)x.empty(); });
                    if constexpr (requires { x.cancel_join_thread(); }) x.cancel_join_thread();
                },
                *creator);
        });
        creator.reset();
    }
}

// ---- seeds ----------------------------------------------------------------------------------

void put_patch(std::vector<std::uint8_t>& out, unsigned op, std::size_t offset, const void* data,
               std::size_t len) {
    out.push_back(static_cast<std::uint8_t>(op));
    out.push_back(static_cast<std::uint8_t>(offset));
    out.push_back(static_cast<std::uint8_t>(offset >> 8));
    out.push_back(static_cast<std::uint8_t>(len));
    out.push_back(static_cast<std::uint8_t>(len >> 8));
    const auto* p = static_cast<const std::uint8_t*>(data);
    out.insert(out.end(), p, p + len);
}

void write_seed(const char* dir, const std::string& file, const std::vector<std::uint8_t>& in) {
    const std::string path = std::string(dir) + "/" + file;
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(in.data()), static_cast<std::streamsize>(in.size()));
    if (!out) {
        std::fprintf(stderr, "fuzz_segment: cannot write %s\n", path.c_str());
        std::exit(1);
    }
}

/// An input whose patches restore the channel state and ring of a queue after `traffic`:
/// a snapshot of a valid segment, replayed onto a fresh one. Lease words inside name this
/// (seed-making) process, which is dead when the seed runs: the takeover paths.
template <class Traffic>
std::vector<std::uint8_t> snapshot(std::uint8_t setup_byte, std::uint8_t ops_byte, Traffic traffic) {
    const std::string name = queue_name() + "-seed";
    shmq::Queue<std::string>::remove(name);
    name_remover remover{name};
    std::vector<std::uint8_t> in{setup_byte, ops_byte};
    {
        auto q = shmq::Queue<std::string>::create(name, 0, shmq::options{.capacity = 4096});
        traffic(q);
        const auto seg = segment::inspect(name, shmq::detail::inspect_mode{.read_only = false, .wait = true});
        put_patch(in, 3, 0, &seg->channel(0), sizeof(shmq::detail::channel_state));
        put_patch(in, 4, 0, seg->ring(0), static_cast<std::size_t>(seg->capacity()));
        q.cancel_join_thread();
    }
    return in;
}

void make_seeds(const char* dir) {
    // No patches: every setup path once.
    for (unsigned a : {0x00u, 0x19u, 0x2au, 0x5cu, 0xf8u, 0x9eu})
        write_seed(dir, "plain-" + std::to_string(a), {static_cast<std::uint8_t>(a), 0x0f});
    // Header, registry and positions, one word each: the fuzzer learns where they are.
    {
        std::vector<std::uint8_t> in{0x18, 0x01};
        const std::uint64_t one = 1;
        put_patch(in, 6, 4 * 8 * 8, &one, 8); // somewhere in channel_state
        const std::uint32_t big = 5000;
        put_patch(in, 7, 0, &big, 4); // the first record's size
        put_patch(in, 0, 0, "SHMQSEG1", 8);
        write_seed(dir, "patches", in);
    }
    auto puts = [](std::size_t count, std::size_t size) {
        return [=](shmq::Queue<std::string>& q) {
            for (std::size_t i = 0; i < count; ++i) q.put_nowait(std::string(size, 'x'));
        };
    };
    write_seed(dir, "snapshot-three", snapshot(0x00, 0x01, puts(3, 20)));
    // Wrapped: the ring's end passed once, so a pad record and records at offset 0.
    write_seed(dir, "snapshot-wrapped", snapshot(0x00, 0x03, [](shmq::Queue<std::string>& q) {
                   for (int i = 0; i < 30; ++i) {
                       q.put_nowait(std::string(300, 'w'));
                       (void)q.get_nowait();
                   }
                   q.put_nowait(std::string(700, 'z'));
                   q.put_nowait(std::string(10, 'y'));
               }));
    // Full ring.
    write_seed(dir, "snapshot-full", snapshot(0x00, 0x02, puts(13, 300)));
    // A streamed message abandoned half-way: its first piece (total length + writer's lease word)
    // is in the ring, the rest never came.
    write_seed(dir, "snapshot-streamed", snapshot(0x00, 0x05, [](shmq::Queue<std::string>& q) {
                   try {
                       q.put(std::string(9000, 'b'), true, bounded);
                   } catch (const shmq::error&) {
                   }
               }));
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    if (const char* dir = std::getenv("SHMQ_FUZZ_MAKE_SEEDS")) {
        make_seeds(dir);
        std::exit(0);
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    run_one(std::span<const std::uint8_t>(data, size));
    return 0;
}
