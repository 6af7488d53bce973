// SPDX-License-Identifier: BSL-1.0
// SHMQ_API marks what libshmq exports. The library is compiled with hidden visibility
// (-fvisibility=hidden, see the Jamroot), so libshmq.so exports only the declarations marked
// here: the public API and the detail entry points the header templates call. Everything else
// may change between releases without breaking a consumer's binary (see version.hpp for how the
// version moves). Marking a declaration costs nothing in the static library.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define SHMQ_API __attribute__((visibility("default")))
#else
#define SHMQ_API
#endif
