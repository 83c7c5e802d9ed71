// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "tests/support/hex.hpp"
#include "tun/arp.hpp"

using namespace mipsec;

TEST_CASE("gratuitous ARP matches scapy's ARP(op=1, psrc=pdst=address) byte for byte") {
    // /usr/bin/python3 -c "from scapy.all import ARP, raw; print(raw(ARP(op=1,
    //   hwsrc='02:00:5e:10:00:01', psrc='10.1.0.77', hwdst='00:00:00:00:00:00', pdst='10.1.0.77')).hex())"
    const tun::MacAddress mac{0x02, 0x00, 0x5e, 0x10, 0x00, 0x01};
    const auto frame = tun::encode_gratuitous_arp(mac, *core::Ipv4Address::parse("10.1.0.77"));
    CHECK(test::to_hex(frame) == "000108000604000102005e1000010a01004d0000000000000a01004d");
}
