// SPDX-License-Identifier: MIT
#pragma once
// core::Result<T>: a value or a std::error_code, for fallible APIs off the packet path
// (parsing config, building SAs, opening devices). C++20 has no std::expected yet.
#include <cassert>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

namespace mipsec::core {

/// Errors shared by every module; modules add their own enum + category for the rest.
enum class Errc {
    Truncated = 1,
    Malformed,
    InvalidArgument,
    Unsupported,
    NoBuffer,
    NotFound,
    AlreadyExists,
};
const std::error_category& core_category() noexcept;
inline std::error_code make_error_code(Errc e) noexcept { return {static_cast<int>(e), core_category()}; }

template <class T>
class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
    Result(std::error_code ec) : v_(std::in_place_index<1>, ec) { assert(ec); }  // NOLINT
    template <class E>
        requires std::is_error_code_enum_v<E>
    Result(E e) : Result(std::error_code(make_error_code(e))) {}  // NOLINT

    bool has_value() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return has_value(); }
    T& value() & { assert(has_value()); return std::get<0>(v_); }
    const T& value() const& { assert(has_value()); return std::get<0>(v_); }
    T&& value() && { assert(has_value()); return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T&& operator*() && { return std::move(*this).value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    std::error_code error() const noexcept { return has_value() ? std::error_code{} : std::get<1>(v_); }

private:
    std::variant<T, std::error_code> v_;
};

template <>
class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(std::error_code ec) : ec_(ec) {}  // NOLINT
    template <class E>
        requires std::is_error_code_enum_v<E>
    Result(E e) : ec_(make_error_code(e)) {}  // NOLINT
    bool has_value() const noexcept { return !ec_; }
    explicit operator bool() const noexcept { return has_value(); }
    std::error_code error() const noexcept { return ec_; }

private:
    std::error_code ec_;
};

}  // namespace mipsec::core

template <>
struct std::is_error_code_enum<mipsec::core::Errc> : std::true_type {};
