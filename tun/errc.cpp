// SPDX-License-Identifier: MIT
#include "tun/errc.hpp"

#include <string>

namespace mipsec::tun {
namespace {
class TunCategory final : public std::error_category {
public:
    const char* name() const noexcept override { return "mipsec.tun"; }
    std::string message(int ev) const override {
        switch (static_cast<Errc>(ev)) {
            case Errc::NotPermitted: return "operation not permitted: needs root or CAP_NET_ADMIN";
            case Errc::DeviceBusy: return "TUN device busy: another process has it open";
            case Errc::NoTunDriver: return "/dev/net/tun not found: load the tun kernel module";
            case Errc::InvalidName:
                return "invalid interface name: at most 15 characters, no '/', ':' or whitespace";
            case Errc::NotTunDevice: return "interface exists and is not a TUN device";
            case Errc::Protocol: return "unexpected rtnetlink reply";
            case Errc::Timeout: return "no rtnetlink reply from the kernel";
        }
        return "unknown error";
    }
    std::error_condition default_error_condition(int ev) const noexcept override {
        switch (static_cast<Errc>(ev)) {
            case Errc::NotPermitted: return std::errc::operation_not_permitted;
            case Errc::DeviceBusy: return std::errc::device_or_resource_busy;
            case Errc::Timeout: return std::errc::timed_out;
            default: return {ev, *this};
        }
    }
};
}  // namespace

const std::error_category& tun_category() noexcept {
    static const TunCategory category;
    return category;
}
}  // namespace mipsec::tun
