// SPDX-License-Identifier: BSL-1.0
// Test cases that the sanitizer runtime itself cannot run, and why. Each is a Boost.Test
// precondition, so the case is reported as skipped with its reason in the ASan + UBSan build and
// still runs in the debug (and, where it applies, tsan) build of the same suite.
#pragma once

#include <boost/test/unit_test.hpp>

namespace shmq::test {

/// Precondition: false under ASan, with `reason` as the message Boost.Test prints.
struct not_under_asan {
    const char* reason;
    boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
#if defined(__SANITIZE_ADDRESS__)
        boost::test_tools::assertion_result r(false);
        r.message() << "not under ASan: " << reason;
        return r;
#else
        return true;
#endif
    }
};

/// At the fd limit the runtime cannot probe memory (it tests readability through a pipe), so
/// UBSan's vptr check reports every virtual call as a bad object.
inline constexpr const char* asan_needs_descriptors =
    "the sanitizer runtime needs file descriptors of its own";

/// GCC 12's ASan runtime takes none of its allocator locks around fork(), unlike glibc's malloc:
/// a child forked while another thread of the parent refills or drains its allocator cache (a
/// thread starting, or a busy put()) inherits that lock taken, and the child's first allocation
/// of that size from an empty cache (any new thread's) waits for ever.
inline constexpr const char* asan_fork_unsafe_allocator =
    "its allocator is not fork-safe while another thread allocates";

} // namespace shmq::test
