// SPDX-License-Identifier: BSL-1.0
// shmq — unique_task: a move-only, type-erased `void()` callable, the target a Process stores.
//
// std::function needs a copyable target, so a lambda that captures a Connection (move-only) by
// move cannot become one; std::move_only_function is C++23 and g++ 12's libstdc++ does not have
// it. unique_task holds any move-constructible callable. The holder is a template instantiated
// in the caller's translation unit; libshmq only calls run() through the vtable.
#pragma once

#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

namespace shmq::detail {

template <class T> struct is_std_function : std::false_type {};
template <class Sig> struct is_std_function<std::function<Sig>> : std::true_type {};

class unique_task;

/// What a Process target may be: anything callable with no arguments (its result is ignored, as
/// Python ignores run()'s) that can be moved or copied into the Process. Not a Process, a
/// std::function<void()> (the pinned constructor takes those) or a unique_task itself.
template <class F>
concept task_callable =
    !std::is_same_v<std::remove_cvref_t<F>, unique_task> &&
    std::is_constructible_v<std::decay_t<F>, F> && std::is_move_constructible_v<std::decay_t<F>> &&
    std::is_invocable_v<std::decay_t<F>&>;

class unique_task {
public:
    /// Empty: run() does nothing.
    unique_task() noexcept = default;

    /// Stores f (moved or copied in). A null function pointer or an empty std::function makes
    /// an empty task, as an empty std::function<void()> does for Process.
    /// Throws std::bad_alloc, or whatever moving/copying f throws.
    template <task_callable F>
    explicit unique_task(F&& f) {
        using D = std::decay_t<F>;
        if constexpr (std::is_pointer_v<D> || is_std_function<D>::value) {
            if (!f) return;
        }
        impl_ = std::make_unique<holder<D>>(std::forward<F>(f));
    }

    unique_task(unique_task&&) noexcept = default;
    unique_task& operator=(unique_task&&) noexcept = default;
    unique_task(const unique_task&) = delete;
    unique_task& operator=(const unique_task&) = delete;
    ~unique_task() = default;

    explicit operator bool() const noexcept { return impl_ != nullptr; }

    /// Calls the callable (a mutable lambda may change its captures); nothing when empty.
    /// Throws whatever the callable throws.
    void run() {
        if (impl_) impl_->run();
    }

private:
    struct base {
        virtual ~base() = default;
        virtual void run() = 0;
    };
    template <class D> struct holder final : base {
        template <class G> explicit holder(G&& g) : fn(std::forward<G>(g)) {}
        void run() override { std::invoke(fn); }
        D fn;
    };
    std::unique_ptr<base> impl_;
};

} // namespace shmq::detail
