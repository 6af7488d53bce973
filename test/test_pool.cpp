// SPDX-License-Identifier: BSL-1.0
#define BOOST_TEST_MODULE pool
#include <boost/test/unit_test.hpp>
#include <shmq/shmq.hpp>
#include "test_fixtures.hpp"

namespace {
int square(int x) { return x * x; }
}

BOOST_AUTO_TEST_CASE(smoke) {
    shmq::Pool pool(2);
    BOOST_TEST(pool.apply(square, 7) == 49);
    std::vector<int> items(1000);
    for (int i = 0; i < 1000; ++i) items[i] = i;
    auto v = pool.map(square, items);
    BOOST_TEST(v.size() == 1000u);
    BOOST_TEST(v[999] == 999 * 999);
}
