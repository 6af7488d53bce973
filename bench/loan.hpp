// SPDX-License-Identifier: BSL-1.0
// shmq-bench --loan (loan.cpp): the zero-copy API against the copying one. The figures come back
// in a small struct as well as printed, so the default run can judge issue 12's loan target.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace shmq_bench {

/// One size of one API: medians over the repetitions, messages per second.
struct loan_row {
    std::string api;              ///< "Pipe" (Connection::loan / recv_view), "Queue" (Queue::loan /
                                  ///< get_view), "ring" (the bare ring: the limit)
    std::size_t size = 0;         ///< message bytes
    double copying = 0;           ///< send_bytes / recv_bytes_into
    double loaned = 0;            ///< loan + commit / recv_view + release
};

struct loan_figures {
    std::vector<loan_row> rows;   ///< only sizes whose every run succeeded
};

/// Measures and prints the table on stdout; fills *out when given. Returns 1 if a run failed.
int loan_bench(int repeat, bool quick, loan_figures* out = nullptr);

} // namespace shmq_bench
