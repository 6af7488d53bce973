// SPDX-License-Identifier: BSL-1.0
#include "lifecycle.hpp"

#include <shmq/errors.hpp>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace shmq::detail::lifecycle {
namespace {

std::string quoted(std::string_view name) { return "shmq: '" + std::string(name) + "'"; }

std::string path_of(std::string_view name) { return segment::file_path(segment::system_name(name)); }

// A name no other replacement uses: "/shmq.<name>.new-<pid>-<n>". Longer than a user name may
// be (up to 200 + 5 + ~25 characters, under NAME_MAX), so it never collides with one.
std::string temporary_system_path(std::string_view name) {
    static std::atomic<unsigned> counter{0};
    return "/" + segment::system_name(name) + ".new-" + std::to_string(self_pid()) + "-" +
           std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
}

// Device and inode of the name's file, and whether its creator published it (ready). False when
// the name does not exist.
struct file_state {
    std::uint64_t dev = 0, ino = 0;
    bool ready = false;
    double age = -1;
};
bool look(std::string_view name, file_state& out) noexcept {
    const int fd = ::open(path_of(name).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return false;
    struct stat st {};
    const bool ok = ::fstat(fd, &st) == 0;
    if (ok) {
        out.dev = static_cast<std::uint64_t>(st.st_dev);
        out.ino = static_cast<std::uint64_t>(st.st_ino);
        std::uint32_t ready = 0;
        if (static_cast<std::uint64_t>(st.st_size) >= sizeof(segment_header) &&
            ::pread(fd, &ready, sizeof ready, offsetof(segment_header, ready)) == sizeof ready)
            out.ready = ready == 1;
        timespec now {};
        ::clock_gettime(CLOCK_REALTIME, &now);
        out.age = static_cast<double>(now.tv_sec - st.st_ctim.tv_sec) +
                  static_cast<double>(now.tv_nsec - st.st_ctim.tv_nsec) * 1e-9;
    }
    ::close(fd);
    return ok;
}

bool same_file(std::string_view name, const file_state& was) noexcept {
    struct stat st {};
    return ::lstat(path_of(name).c_str(), &st) == 0 && static_cast<std::uint64_t>(st.st_dev) == was.dev &&
           static_cast<std::uint64_t>(st.st_ino) == was.ino;
}

// Replaces a segment whose creator never set `ready` (killed mid-create) and that is older than
// the grace. Nobody can hold such a segment (openers wait for ready and give up), so no lock is
// needed: only the name must still be that file. `then` does the unlink or the rename.
template <class Then> bool replace_uninitialized(std::string_view name, Then then) {
    file_state st;
    if (!look(name, st) || st.ready || st.age < creator_grace_seconds) return false;
    if (!same_file(name, st)) return false;
    return then();
}

// replace_stale: builds the replacement at a temporary name, then, under the old object's
// registry lock with no live holder, renames it over the name (rename(2) on /dev/shm, the file
// system behind shm_open): the name never goes missing, so an opener finds the old object (and is
// sent back by retired_error) or the new one. Returns null when the name changed meanwhile (the
// caller tries again). Crash windows: killed before the rename, the temporary entry stays: a
// whole segment "shmq.<name>.new-<pid>-<n>" held by a dead process, which `shmq gc` removes (for
// a name of more than ~185 characters the temporary's name is too long to be a user name, and
// only `rm /dev/shm/...` removes it); killed after retiring and before the rename, the old
// segment stays retired under the name, and the next replace_stale or gc removes it.
std::shared_ptr<segment> replace(std::string_view name, const segment_params& p, const options& opts) {
    std::shared_ptr<segment> old;
    bool uninitialized = false;
    try {
        old = segment::inspect(name, inspect_mode{.read_only = false, .wait = true});
    } catch (const not_found_error&) {
        return nullptr;
    } catch (const uninitialized_error&) {
        uninitialized = true;
    }
    if (!opts.trust_foreign) {
        // As open() would: another user's object is not ours to judge or replace.
        struct stat st {};
        if (::stat(path_of(name).c_str(), &st) == 0 && st.st_uid != ::geteuid())
            throw permission_error(quoted(name) + " exists and is owned by uid " + std::to_string(st.st_uid) +
                                   "; pass options::trust_foreign to replace it anyway");
    }
    if (old && is_object_kind(old->kind()))
        throw exists_error(quoted(name) + " exists and is a synchronization object or shared value, "
                           "which keeps no holders: remove() it first");
    const std::string tmp = temporary_system_path(name);
    auto fresh = segment::create_named_at(name, tmp, p, opts.mode);
    const std::string tmp_file = segment::file_path(tmp.substr(1));
    const auto rename_over = [&]() noexcept {
        return ::rename(tmp_file.c_str(), path_of(name).c_str()) == 0;
    };
    bool renamed = false;
    int rename_errno = 0;
    process_identity who;
    registry::verdict v = registry::verdict::retired;
    if (uninitialized) {
        renamed = replace_uninitialized(name, [&] {
            if (rename_over()) return true;
            rename_errno = errno;
            return false;
        });
    } else {
        v = registry::retire(*old, false, [&] {
            if (!old->named_here()) return false;   // removed, or replaced by someone else: look again
            if (rename_over()) return renamed = true;
            rename_errno = errno;
            return false;
        }, &who);
    }
    if (renamed) return fresh;
    ::shm_unlink(tmp.c_str());
    if (v == registry::verdict::held)
        throw exists_error(quoted(name) + " exists and is held by live process " + std::to_string(who.pid) +
                           " (if_exists::replace_stale replaces only an object no live process holds)");
    if (v == registry::verdict::busy)
        throw error(quoted(name) + ": its registry lock stayed held for 2 s; not replaced");
    if (rename_errno)
        throw error(quoted(name) + ": cannot replace it: rename: " + std::strerror(rename_errno));
    if (uninitialized) {
        file_state st;
        if (look(name, st) && !st.ready && st.age < creator_grace_seconds)
            throw exists_error(quoted(name) + " exists and its creator is still initializing it");
    }
    return nullptr;
}

} // namespace

created create(std::string_view name, segment_params p, const options& opts) {
    p.attach_creator = !is_object_kind(p.kind);
    // A handful of rounds: each one ends because the name changed under us (removed, replaced),
    // which a live system does not do without end.
    for (int round = 0;; ++round) {
        try {
            return {segment::create_named(name, p, opts.mode), true};
        } catch (const exists_error&) {
            if (opts.if_exists == if_exists::fail || round >= 20) throw;
        }
        if (opts.if_exists == if_exists::open) {
            try {
                return {segment::open_named(name, p.kind, p.type_fingerprint, opts.trust_foreign), false};
            } catch (const not_found_error&) {
                continue;   // removed between our create and our open
            }
        }
        if (auto s = replace(name, p, opts)) return {std::move(s), true};
    }
}

judgement judge(const segment& s) noexcept {
    judgement j;
    if (is_object_kind(s.kind())) {
        j.tracked = false;
        return j;
    }
    j.retired = s.header().retired.load(std::memory_order_acquire) != 0;
    auto add = [&](const process_identity& who, bool pending) {
        holder_info h;
        h.who = who;
        h.state = probe(who);
        h.pending_fork = pending;
        (h.state == liveness::alive ? j.alive : h.state == liveness::dead ? j.dead : j.unknown) += 1;
        try { j.holders.push_back(h); } catch (...) {}
    };
    const registry_state& r = s.registry();
    for (const auto& slot : r.slots) {
        const std::uint32_t pid = slot.pid.load(std::memory_order_acquire);
        if (pid) add({pid, slot.start.load(std::memory_order_relaxed), slot.pidns.load(std::memory_order_relaxed)}, false);
    }
    for (const auto& p : r.pending)
        if (p.token.load(std::memory_order_acquire) != 0)
            add({p.parent_pid.load(std::memory_order_relaxed), p.parent_start.load(std::memory_order_relaxed),
                 p.parent_pidns.load(std::memory_order_relaxed)}, true);
    return j;
}

double age_seconds(std::string_view name) noexcept {
    file_state st;
    return look(name, st) ? st.age : -1;
}

gc_result collect(std::string_view name, process_identity* live) {
    std::shared_ptr<segment> s;
    try {
        s = segment::inspect(name, inspect_mode{.read_only = false, .wait = false});
    } catch (const not_found_error&) {
        return gc_result::gone;
    } catch (const uninitialized_error&) {
        const bool removed = replace_uninitialized(name, [&] {
            return ::shm_unlink(("/" + segment::system_name(name)).c_str()) == 0;
        });
        return removed ? gc_result::removed : gc_result::young;
    }
    if (is_object_kind(s->kind())) return gc_result::untracked;
    bool removed = false;
    const registry::verdict v = registry::retire(*s, true, [&] {
        return removed = s->named_here() && ::shm_unlink(("/" + segment::system_name(name)).c_str()) == 0;
    }, live);
    switch (v) {
    case registry::verdict::held: return gc_result::held;
    case registry::verdict::unheld: return gc_result::unheld;
    case registry::verdict::busy: return gc_result::busy;
    case registry::verdict::retired: return gc_result::removed;
    case registry::verdict::kept: return gc_result::gone;   // the name names another file now
    }
    return gc_result::gone;
}

const char* to_string(gc_result r) noexcept {
    switch (r) {
    case gc_result::removed: return "removed";
    case gc_result::held: return "held";
    case gc_result::unheld: return "unheld";
    case gc_result::untracked: return "untracked";
    case gc_result::young: return "initializing";
    case gc_result::gone: return "gone";
    case gc_result::busy: return "busy";
    }
    return "?";
}

} // namespace shmq::detail::lifecycle
