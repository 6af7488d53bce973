// SPDX-License-Identifier: BSL-1.0
// Where the synchronization objects and shared values live: a segment of an object kind
// (layout.hpp), anonymous or named, made by the same segment machinery as the queues (names,
// /dev/shm/shmq.<name>, permission checks, header validation, kind and type checks).
#pragma once

#include "segment.hpp"

#include <shmq/options.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

namespace shmq::detail {

struct object_spec {
    segment_kind kind;
    std::uint64_t bytes;                      // size of the object area
    std::uint64_t type_fingerprint = 0;       // Value/Array: of T
    std::int64_t count = 0;                   // Array: elements (header maxsize)
    std::function<void(void*)> init = {};     // initial state, before the segment is published
};

/// Anonymous: shared with children forked later. Throws value_error, error.
std::shared_ptr<segment> make_object(const object_spec& spec);
/// Named. Throws exists_error, value_error, permission_error, error.
std::shared_ptr<segment> create_object(std::string_view name, const object_spec& spec,
                                       const options& opts);
/// Opens a named object of `kind` whose area holds at least `min_bytes`. Throws
/// not_found_error, type_error (another kind or T), permission_error, broken_error, error.
std::shared_ptr<segment> open_object(std::string_view name, segment_kind kind,
                                     std::uint64_t min_bytes, const options& opts,
                                     std::uint64_t type_fingerprint = 0);
/// The object area, typed.
template <class S> S* area(const std::shared_ptr<segment>& s) noexcept {
    return static_cast<S*>(s->object());
}

/// Throws broken_error when the segment behind a handle's keep-alive was truncated under this
/// process (segment.hpp: its view is then private memory, so nothing done on it counts).
inline void check_lost(const std::shared_ptr<void>& keep) {
    static_cast<const segment*>(keep.get())->check_lost();
}

/// For wait slices: the steady_clock now, in ticks (what waiter_slot::heartbeat holds).
std::int64_t now_ticks() noexcept;

} // namespace shmq::detail
