// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code with it

#include <string>
#include <system_error>

#include "tun/errc.hpp"

using namespace mipsec;

TEST_CASE("tun::Errc messages say what to do and compare with std::errc") {
    std::error_code perm = tun::Errc::NotPermitted;
    CHECK(perm.category().name() == std::string("mipsec.tun"));
    CHECK(perm.message().find("CAP_NET_ADMIN") != std::string::npos);
    CHECK(perm == std::errc::operation_not_permitted);
    CHECK(std::error_code(tun::Errc::DeviceBusy) == std::errc::device_or_resource_busy);
    CHECK(std::error_code(tun::Errc::Timeout) == std::errc::timed_out);
    CHECK(std::error_code(tun::Errc::InvalidName) != std::errc::operation_not_permitted);

    const tun::Errc all[] = {tun::Errc::NotPermitted, tun::Errc::DeviceBusy,   tun::Errc::NoTunDriver,
                             tun::Errc::InvalidName,  tun::Errc::NotTunDevice, tun::Errc::Protocol,
                             tun::Errc::Timeout};
    for (auto e : all) {
        std::error_code ec = e;
        CAPTURE(ec.value());
        CHECK(ec);
        CHECK(ec.message() != "unknown error");
    }
}
