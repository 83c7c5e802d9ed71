// SPDX-License-Identifier: MIT
// rtnetlink readers (tun/netlink_message.hpp) on hostile datagrams: MessageReader,
// AttributeReader, parse_ack/link/address/route and NetlinkEventDecoder must never read out of
// bounds, throw or hang. Random bytes rarely form a netlink header, so each input is also run
// "repaired": message and attribute lengths rewritten to fit and types drawn from the ones
// the parsers handle, which drives them past their first length check.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <span>
#include <vector>

#include "tun/netlink_message.hpp"

namespace {

void store32(std::uint8_t* p, std::uint32_t v) { std::memcpy(p, &v, 4); }
void store16(std::uint8_t* p, std::uint16_t v) { std::memcpy(p, &v, 2); }

void exercise(std::span<const std::uint8_t> datagram) {
    using namespace mipsec::tun;
    MessageReader reader(datagram);
    while (auto msg = reader.next()) {
        if (msg->message().size() != msg->length()) __builtin_trap();
        (void)parse_ack(*msg);
        (void)parse_link(*msg);
        (void)parse_address(*msg);
        (void)parse_route(*msg);
        AttributeReader attrs(msg->payload());
        while (auto a = attrs.next()) {
            if (a->payload.data() < msg->payload().data() ||
                a->payload.data() + a->payload.size() > msg->payload().data() + msg->payload().size())
                __builtin_trap();
            (void)a->as_u32();
            (void)a->as_ipv4();
            (void)a->as_string();
        }
    }
    NetlinkEventDecoder decoder;
    std::vector<mipsec::core::ControlEvent> events;
    decoder.decode(datagram, events);
    decoder.decode(datagram, events);  // second pass exercises the link-state memory
}

std::vector<std::uint8_t> repair(const std::uint8_t* data, std::size_t size) {
    static constexpr std::uint16_t types[] = {NLMSG_ERROR, NLMSG_DONE,  RTM_NEWLINK,  RTM_DELLINK,
                                              RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE, RTM_DELROUTE};
    static constexpr std::size_t fixed_len[] = {20, 4, 16, 16, 8, 8, 12, 12};
    static constexpr std::size_t kinds = sizeof types / sizeof types[0];
    std::vector<std::uint8_t> b(data, data + size);
    std::size_t at = 0;
    while (b.size() - at >= 16) {
        std::size_t rest = b.size() - at;
        std::size_t len = std::min<std::size_t>(rest, 16 + b[at] * 4u + b[at + 1] % 4);
        std::size_t kind = b[at + 4] % kinds;
        store32(&b[at], static_cast<std::uint32_t>(len));
        store16(&b[at + 4], types[kind]);
        // Attributes after the fixed header, with lengths that mostly fit.
        std::size_t a = at + 16 + fixed_len[kind];
        while (a + 4 <= at + len) {
            std::size_t alen = std::min<std::size_t>(at + len - a, 4 + b[a] % 24);
            store16(&b[a], static_cast<std::uint16_t>(alen));
            store16(&b[a + 2], b[a + 2] % 40);
            a += (alen + 3) & ~std::size_t{3};
        }
        at += (len + 3) & ~std::size_t{3};
        if (at >= b.size()) break;
    }
    return b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    exercise({data, size});
    auto fixed = repair(data, size);
    exercise(fixed);
    return 0;
}
