// SPDX-License-Identifier: MIT
#pragma once
// Errors of the tun module (TUN devices, rtnetlink). Kernel errors without a mapping here
// come back as std::error_code(errno, std::system_category()), so their message is the
// kernel's ("File exists", "No such device"). NotPermitted and DeviceBusy compare equal to
// std::errc::operation_not_permitted and std::errc::device_or_resource_busy.
#include <system_error>

namespace mipsec::tun {

enum class Errc {
    NotPermitted = 1,  // EPERM/EACCES from /dev/net/tun or rtnetlink
    DeviceBusy,        // TUNSETIFF: the single-queue device is already attached elsewhere
    NoTunDriver,       // /dev/net/tun missing
    InvalidName,       // interface name too long, "."/"..", or with '/', ':', whitespace
    NotTunDevice,      // the name belongs to an interface that is not a TUN device
    Protocol,          // rtnetlink reply we cannot make sense of
    Timeout,           // no rtnetlink reply in time
};
const std::error_category& tun_category() noexcept;
inline std::error_code make_error_code(Errc e) noexcept { return {static_cast<int>(e), tun_category()}; }

}  // namespace mipsec::tun

template <>
struct std::is_error_code_enum<mipsec::tun::Errc> : std::true_type {};
