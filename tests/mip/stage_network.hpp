// SPDX-License-Identifier: MIT
#pragma once
// A little in-memory IPv4 "network" for the Mobile IP stage tests: nodes (a stage with its
// FakeStageContext and the addresses it owns) and NAT boxes. pump() carries every packet the
// stages sent (send_control) to the node owning its destination, rewriting addresses and
// ports through NATs on the way, and calls that node's decapsulate(); what passes inward is
// kept per node, as are drops. Packets and time are all the test's.
#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/buffer_pool.hpp"
#include "core/icmp.hpp"
#include "core/ipv4.hpp"
#include "core/udp.hpp"
#include "tests/support/fake_stage_context.hpp"
#include "tests/support/flat_status.hpp"
#include "tests/support/hex.hpp"
#include "tests/support/packets.hpp"

namespace mipsec::test {


/// An ICMP echo request src -> dst with `body` bytes of payload pattern, TTL `ttl`, DF set.
inline Bytes echo_packet(core::Ipv4Address src, core::Ipv4Address dst, std::uint16_t seq = 1, std::size_t body = 16,
                         std::uint8_t ttl = 64, std::uint8_t type = core::icmp_type::echo_request) {
    Bytes p(20 + 8 + body);
    core::Ipv4Header h;
    h.total_length = static_cast<std::uint16_t>(p.size());
    h.identification = seq;
    h.flags_fragment = core::Ipv4View::flag_df;
    h.ttl = ttl;
    h.protocol = core::ip_protocol::icmp;
    h.source = src;
    h.destination = dst;
    h.emit(p);
    for (std::size_t i = 0; i < body; ++i) p[28 + i] = static_cast<std::uint8_t>(i * 7 + seq);
    auto icmp = core::IcmpMutView::check(std::span(p).subspan(20));
    icmp->set_type(type);
    icmp->set_echo_identifier(0x1234);
    icmp->set_echo_sequence(seq);
    icmp->update_checksum();
    return p;
}

/// A whole IPv4/UDP packet with a computed checksum.
inline Bytes udp_packet(core::Endpoint src, core::Endpoint dst, std::span<const std::uint8_t> payload, std::uint8_t ttl = 64) {
    Bytes p(28 + payload.size());
    core::Ipv4Header h;
    h.total_length = static_cast<std::uint16_t>(p.size());
    h.ttl = ttl;
    h.protocol = core::ip_protocol::udp;
    h.source = src.address;
    h.destination = dst.address;
    h.emit(p);
    core::UdpHeader{src.port, dst.port, static_cast<std::uint16_t>(8 + payload.size()), 0}.emit(std::span(p).subspan(20));
    std::copy(payload.begin(), payload.end(), p.begin() + 28);
    core::UdpMutView::check(std::span(p).subspan(20))->update_checksum(src.address, dst.address);
    return p;
}

/// Rewrites source or destination address/port of a whole packet, fixing both checksums.
inline void rewrite(std::span<std::uint8_t> packet, std::optional<core::Endpoint> source, std::optional<core::Endpoint> destination) {
    auto ip = core::Ipv4MutView::check(packet);
    REQUIRE(ip);
    if (source) ip->set_source(source->address);
    if (destination) ip->set_destination(destination->address);
    ip->update_checksum();
    if (ip->protocol() != core::ip_protocol::udp) return;
    auto udp = core::UdpMutView::check(packet.subspan(ip->header_len(), ip->total_length() - ip->header_len()));
    REQUIRE(udp);
    if (source && source->port != 0) udp->set_source_port(source->port);
    if (destination && destination->port != 0) udp->set_destination_port(destination->port);
    if (udp->checksum() != 0) udp->update_checksum(ip->source(), ip->destination());
}

/// A NAPT in front of one private address: the first UDP source port seen is mapped to
/// `public_port` (or kept when 0); IP-in-IP only gets its address rewritten.
struct Nat {
    core::Ipv4Address private_address;
    core::Ipv4Address public_address;
    std::uint16_t public_port = 0;
    std::map<std::uint16_t, std::uint16_t> out_ports;  // private -> public
    std::uint16_t next_port = 0;

    /// Forgets every mapping: the next datagram gets a new public port (mapping loss).
    void rebind(std::uint16_t new_port) {
        out_ports.clear();
        public_port = new_port;
    }
    void outbound(std::span<std::uint8_t> packet) {
        auto ip = core::Ipv4View::check(packet);
        if (!ip || ip->source() != private_address) return;
        std::uint16_t port = 0;
        if (ip->protocol() == core::ip_protocol::udp) {
            auto udp = core::UdpView::check(ip->payload());
            const auto priv = udp->source_port();
            auto it = out_ports.find(priv);
            if (it == out_ports.end()) it = out_ports.emplace(priv, public_port != 0 ? public_port++ : priv).first;
            port = it->second;
        }
        rewrite(packet, core::Endpoint{public_address, port}, std::nullopt);
    }
    void inbound(std::span<std::uint8_t> packet) {
        auto ip = core::Ipv4View::check(packet);
        if (!ip || ip->destination() != public_address) return;
        std::uint16_t port = 0;
        if (ip->protocol() == core::ip_protocol::udp) {
            auto udp = core::UdpView::check(ip->payload());
            for (const auto& [priv, pub] : out_ports)
                if (pub == udp->destination_port()) port = priv;
            if (port == 0) return;  // no mapping: the NAT drops it (left unrewritten, so nobody owns it)
        }
        rewrite(packet, std::nullopt, core::Endpoint{private_address, port});
    }
};

struct Node {
    std::string name;
    core::Stage* stage = nullptr;
    FakeStageContext* ctx = nullptr;
    std::vector<core::Ipv4Address> addresses;
    std::vector<Bytes> inward;           // what decapsulate() passed
    std::vector<core::DropReason> drops;  // why decapsulate() dropped
    std::size_t consumed = 0;
    bool owns(core::Ipv4Address a) const { return std::find(addresses.begin(), addresses.end(), a) != addresses.end(); }
};

struct Network {
    std::vector<Node*> nodes;
    std::vector<Nat*> nats;
    std::size_t lost = 0;  // packets nobody owned
    std::function<void(const Node& from, Bytes& packet)> tap;  // sees (and may edit) every packet in flight

    void set_now(core::TimePoint t) {
        for (auto* n : nodes) n->ctx->set_now(t);
    }
    void deliver(const Node& from, core::PacketBuf packet) {
        auto bytes = packet.bytes();
        for (auto* nat : nats) nat->outbound(bytes);
        for (auto* nat : nats) nat->inbound(bytes);
        if (tap) {
            Bytes copy(bytes.begin(), bytes.end());
            tap(from, copy);
            packet = load(*pool_of(from), copy);
        }
        auto ip = core::Ipv4View::check(packet.bytes());
        REQUIRE(ip);
        const auto dst = ip->destination();
        for (auto* n : nodes) {
            if (n == &from || !(n->owns(dst) || dst.is_multicast())) continue;
            auto v = n->stage->decapsulate(packet, *n->ctx);
            if (v.action == core::Action::Pass) n->inward.push_back(bytes_of(packet));
            if (v.action == core::Action::Drop) n->drops.push_back(v.reason);
            if (v.action == core::Action::Consumed) ++n->consumed;
            return;
        }
        ++lost;
    }
    /// Sends `packet` outward through `from`'s stage and, if it passes, over the network.
    core::Verdict send(Node& from, core::PacketBuf packet) {
        auto v = from.stage->encapsulate(packet, *from.ctx);
        if (v.action == core::Action::Pass) deliver(from, std::move(packet));
        pump();
        return v;
    }
    void poll_all() {
        for (auto* n : nodes) (void)n->stage->poll(*n->ctx);
        pump();
    }
    void pump() {
        for (int round = 0; round < 64; ++round) {
            bool any = false;
            for (auto* n : nodes) {
                auto sent = std::move(n->ctx->sent);
                n->ctx->sent.clear();
                for (auto& p : sent) {
                    any = true;
                    deliver(*n, std::move(p));
                }
            }
            if (!any) return;
        }
        FAIL("the network did not go quiet");
    }

    core::BufferPool* pool = nullptr;  // for re-loading tapped packets
    core::BufferPool* pool_of(const Node&) { return pool; }
};

}  // namespace mipsec::test
