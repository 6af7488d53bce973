// SPDX-License-Identifier: BSL-1.0
#define BOOST_TEST_MODULE sync
#include <boost/test/unit_test.hpp>

#include <shmq/shmq.hpp>

#include "test_fixtures.hpp"

using namespace std::chrono_literals;
using namespace shmq::test;

BOOST_AUTO_TEST_CASE(lock_basic) {
    shmq::Lock l;
    BOOST_TEST(l.acquire());
    BOOST_TEST(!l.acquire(false));
    l.release();
    BOOST_CHECK_THROW(l.release(), shmq::value_error);
}
