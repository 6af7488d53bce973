// SPDX-License-Identifier: BSL-1.0
// Readable type names for error messages (codec errors, a Process's uncaught exception, a Pool
// task's task_error): one demangler for the whole library.
#pragma once

#include <string>
#include <typeinfo>

namespace shmq::detail {

/// "std::runtime_error" rather than "St13runtime_error" where the runtime can tell; the mangled
/// name otherwise, and "unknown type" for null. Throws std::bad_alloc only.
std::string type_name(const std::type_info* type);

/// The type of the exception being handled, or null when the runtime cannot tell. Call only in a
/// catch block. Never throws.
const std::type_info* current_exception_type() noexcept;

} // namespace shmq::detail
