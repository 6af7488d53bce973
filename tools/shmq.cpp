// SPDX-License-Identifier: BSL-1.0
// shmq — the command-line tool: see and clean up named shmq objects.
//
//   shmq ls             every named object in /dev/shm: kind, ring size, items and bytes waiting
//   shmq stat NAME...   one object in detail, with the processes that hold it
//   shmq rm NAME...     unlink names (handles already open keep working)
//   shmq --version      the shmq version it was built from (include/shmq/version.hpp)
//
// It reads the shared header exactly as the library does (validated first), and never writes.
#include "liveness.hpp"
#include "ring.hpp"
#include "segment.hpp"

#include <shmq/errors.hpp>
#include <shmq/version.hpp>

#include <cstdio>
#include <cstring>
#include <dirent.h>
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
    std::printf("%-32s %-14s %10s %10s %12s\n", "NAME", "KIND", "RING", "ITEMS", "BYTES");
    for (const auto& n : names()) {
        try {
            auto s = segment::inspect(n);
            const auto& c = s->channel(0);
            std::uint64_t head = c.head.load(), tail = c.tail.load();
            std::printf("%-32s %-14s %10s %10llu %12s\n", n.c_str(), kind_name(s->header().kind),
                        human(s->capacity()).c_str(),
                        static_cast<unsigned long long>(ring::messages(head, tail)),
                        human(ring::used(head, tail)).c_str());
        } catch (const shmq::error& e) {
            std::printf("%-32s %s\n", n.c_str(), e.what());
        }
    }
    return 0;
}

int stat(const std::string& n) {
    try {
        auto s = segment::inspect(n);
        const auto& h = s->header();
        std::printf("name:        %s (/dev/shm/%s)\n", n.c_str(), segment::system_name(n).c_str());
        std::printf("kind:        %s\n", kind_name(h.kind));
        std::printf("layout:      version %u, %llu bytes\n", h.version,
                    static_cast<unsigned long long>(h.total_size));
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

int usage(FILE* to) {
    std::fputs("usage: shmq ls | shmq stat NAME... | shmq rm NAME... | shmq --version\n", to);
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
    if (cmd == "ls") return ls();
    int rc = 0;
    if (cmd == "stat" && argc > 2) {
        for (int i = 2; i < argc; ++i) rc |= stat(argv[i]);
        return rc;
    }
    if (cmd == "rm" && argc > 2) {
        for (int i = 2; i < argc; ++i)
            if (!segment::remove(argv[i])) {
                std::fprintf(stderr, "shmq: cannot remove '%s': no such object\n", argv[i]);
                rc = 1;
            }
        return rc;
    }
    return usage(stderr);
}
