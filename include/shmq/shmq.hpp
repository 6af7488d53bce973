// SPDX-License-Identifier: BSL-1.0
// shmq — Python's multiprocessing for C++ processes, over shared memory. The umbrella header.
#pragma once

#include <shmq/export.hpp>   // first: its C++20 check comes before anything that needs C++20

#include <shmq/codec.hpp>
#include <shmq/connection.hpp>
#include <shmq/errors.hpp>
#include <shmq/joinable_queue.hpp>
#include <shmq/listener.hpp>
#include <shmq/options.hpp>
#include <shmq/pool.hpp>
#include <shmq/portable.hpp>      // shmq::portable<T>: the text archive, for queues across hosts
#include <shmq/process.hpp>
#include <shmq/queue.hpp>
#include <shmq/serialization.hpp>   // the Boost path of the codec for every type that needs it
#include <shmq/shared_value.hpp>
#include <shmq/simple_queue.hpp>
#include <shmq/sync.hpp>
#include <shmq/wait.hpp>
