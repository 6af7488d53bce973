// SPDX-License-Identifier: BSL-1.0
// SHMQ_API marks what libshmq exports. The library is compiled with hidden visibility
// (-fvisibility=hidden, see the Jamroot), so libshmq.so exports only the declarations marked
// here: the public API and the detail entry points the header templates call. Everything else
// may change between releases without breaking a consumer's binary (see version.hpp for how the
// version moves). Marking a declaration costs nothing in the static library.
#pragma once

// shmq's headers are C++20 (concepts, std::span): say so in one line instead of letting an older
// standard fail somewhere inside them. #error would let the compiler go on to those errors; a
// missing include is fatal in gcc and clang and ends the compilation at once, so the include's
// "file name" is the message: "fatal error: shmq needs C++20, compile with -std=c++20 or later:
// No such file or directory".
#if __cplusplus < 202002L
#include <shmq needs C++20, compile with -std=c++20 or later>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define SHMQ_API __attribute__((visibility("default")))
#else
#define SHMQ_API
#endif
