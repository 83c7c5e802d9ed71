// SPDX-License-Identifier: MIT
// ipsec.vpn_client and ipsec.vpn_gateway with a live tunnel (IKE Main Mode + Mode Config +
// Quick Mode through a NAT, so IKE and ESP run in UDP 4500, RFC 3947/3948): hostile outer
// packets to either side must be dropped or answered, never crash, and never disturb the
// tunnel — after every input the same client is still the gateway's only client, its IKE SA
// is established with the same children, and a data packet still goes through both ways.
// Byte 0 picks the receiver (bit 0: gateway / client) and how the rest is used (bits 1-2):
//   0: the whole outer packet as is;
//   1: the rest as the UDP payload from the peer's real address to port 500;
//   2: the same to port 4500 (so: non-ESP marker + IKE, keepalive, or ESP by SPI);
//   3: a recorded genuine packet of the tunnel (IKE or ESP) with input bytes XORed in.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <memory>
#include <vector>

#include "core/endian.hpp"
#include "core/ipv4.hpp"
#include "core/pipeline.hpp"
#include "core/udp.hpp"
#include "ipsec/vpn_client_stage.hpp"
#include "ipsec/vpn_gateway_stage.hpp"
#include "nat/udp_encap_stage.hpp"

using namespace mipsec;

namespace {

using Bytes = std::vector<std::uint8_t>;

void require(bool ok) {
    if (!ok) std::abort();
}

class SplitMix final : public crypto::Random {
public:
    explicit SplitMix(std::uint64_t s) : s_(s) {}
    void fill(std::span<std::uint8_t> out) noexcept override {
        for (auto& b : out) {
            std::uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            b = static_cast<std::uint8_t>(z ^ (z >> 31));
        }
    }

private:
    std::uint64_t s_;
};

const auto client_addr = core::Ipv4Address::from_octets(10, 0, 0, 2);
const auto nat_addr = core::Ipv4Address::from_octets(198, 51, 100, 1);
const auto gw_addr = core::Ipv4Address::from_octets(198, 51, 100, 2);
const auto lan_host = core::Ipv4Address::from_octets(10, 99, 1, 2);
constexpr std::uint16_t nat_offset = 30000;

struct Wire final : core::PipelineIo {
    std::deque<Bytes> outer, inner;
    void send_outer(core::PacketBuf&& p) override {
        if (outer.size() < 64) outer.emplace_back(p.bytes().begin(), p.bytes().end());
    }
    void deliver_inner(core::PacketBuf&& p) override {
        if (inner.size() < 64) inner.emplace_back(p.bytes().begin(), p.bytes().end());
    }
};

// The client's source 10.0.0.2:p appears as 198.51.100.1:(p + 30000), and back.
void nat_rewrite(Bytes& p, bool outbound) {
    auto ip = core::Ipv4MutView::check(std::span(p));
    if (!ip || ip->protocol() != core::ip_protocol::udp) return;
    auto udp = core::UdpMutView::check(ip->payload());
    if (!udp) return;
    if (outbound) {
        ip->set_source(nat_addr);
        udp->set_source_port(static_cast<std::uint16_t>(udp->source_port() + nat_offset));
    } else {
        ip->set_destination(client_addr);
        udp->set_destination_port(static_cast<std::uint16_t>(udp->destination_port() - nat_offset));
    }
    udp->set_checksum(0);
    ip->update_checksum();
}

Bytes udp_packet(core::Ipv4Address src, std::uint16_t sport, core::Ipv4Address dst, std::uint16_t dport,
                 std::span<const std::uint8_t> payload) {
    Bytes p(28 + payload.size());
    core::Ipv4Header h;
    h.total_length = static_cast<std::uint16_t>(p.size());
    h.protocol = core::ip_protocol::udp;
    h.source = src;
    h.destination = dst;
    h.emit(p);
    core::UdpHeader{sport, dport, static_cast<std::uint16_t>(8 + payload.size()), 0}.emit(std::span(p).subspan(20));
    std::copy(payload.begin(), payload.end(), p.begin() + 28);
    return p;
}

struct Lab {
    SplitMix random{0x76706e};
    core::BufferPool pool{256, 2048};
    Wire client_wire, gw_wire;
    std::unique_ptr<core::Pipeline> client, gw;
    core::TimePoint now = core::TimePoint{} + std::chrono::hours(1);
    std::vector<Bytes> recorded_to_gw, recorded_to_client;
    core::Ipv4Address vip{};

    Lab() {
        const std::uint8_t psk[] = {'f', 'u', 'z', 'z', '-', 'v', 'p', 'n'};
        ipsec::VpnClientStage::Config cc;
        cc.local = client_addr;
        cc.gateway = gw_addr;
        cc.session.local_id = ipsec::ike::IdPayload::fqdn("cli.fuzz.example");
        cc.session.psks.push_back({core::Ipv4Prefix{gw_addr, 32}, crypto::SecretBytes(psk)});
        cc.session.request_virtual_ip = true;
        cc.session.remote_ts = core::Ipv4Prefix{core::Ipv4Address::from_octets(10, 99, 1, 0), 24};
        cc.session.ike_proposals = {{128, ipsec::ike::IkeHash::Sha1, crypto::ModpGroup::Modp1024}};
        cc.session.esp_proposals = {{ipsec::ike::EspAlgorithm::AesGcm128}};
        std::vector<std::unique_ptr<core::Stage>> cs;
        cs.push_back(std::make_unique<ipsec::VpnClientStage>(std::move(cc), random));
        cs.push_back(std::make_unique<nat::UdpEncapStage>(nat::UdpEncapStage::Config{}));
        client = std::make_unique<core::Pipeline>(std::move(cs), pool, core::null_logger());
        client->attach(&client_wire);

        ipsec::ike::SessionConfig gs;
        gs.local_id = ipsec::ike::IdPayload::fqdn("gw.fuzz.example");
        gs.psks.push_back({std::nullopt, crypto::SecretBytes(psk)});
        gs.local_ts = {core::Ipv4Prefix{core::Ipv4Address::from_octets(10, 99, 1, 0), 24}};
        gs.ike_proposals = {{128, ipsec::ike::IkeHash::Sha1, crypto::ModpGroup::Modp1024}};
        gs.esp_proposals = {{ipsec::ike::EspAlgorithm::AesGcm128}};
        gs.child_rekey_time = core::Duration::zero();
        ipsec::VpnGatewayStage::Config gc;
        gc.local = gw_addr;
        gc.responder.session = std::make_shared<const ipsec::ike::SessionConfig>(std::move(gs));
        gc.responder.pool = core::Ipv4Prefix{core::Ipv4Address::from_octets(10, 99, 100, 0), 24};
        std::vector<std::unique_ptr<core::Stage>> gst;
        gst.push_back(std::make_unique<ipsec::VpnGatewayStage>(std::move(gc), random));
        gst.push_back(std::make_unique<nat::UdpEncapStage>(nat::UdpEncapStage::Config{}));
        gw = std::make_unique<core::Pipeline>(std::move(gst), pool, core::null_logger());
        gw->attach(&gw_wire);

        client->set_now(now);
        gw->set_now(now);
        (void)client->poll();
        exchange(true);
        require(established());
        vip = client_stage().inner_address()->address;
        require(carries_data(true));
    }

    const ipsec::VpnClientStage& client_stage() const { return static_cast<const ipsec::VpnClientStage&>(client->stage(0)); }
    const ipsec::VpnGatewayStage& gw_stage() const { return static_cast<const ipsec::VpnGatewayStage&>(gw->stage(0)); }

    bool established() const {
        const auto* s = client_stage().session();
        return s && s->state() == ipsec::ike::SessionState::Established && s->children().size() == 1 &&
               client_stage().inner_address() && gw_stage().client_count() == 1;
    }

    core::Verdict feed(core::Pipeline& p, const Bytes& bytes) {
        auto buf = pool.acquire(64);
        require(buf.valid());
        if (!buf.resize(bytes.size())) return core::Verdict::drop(core::DropReason::None);
        std::copy(bytes.begin(), bytes.end(), buf.data());
        auto v = p.decapsulate(buf);
        if (v.passed()) {
            auto& wire = &p == client.get() ? client_wire : gw_wire;
            if (wire.inner.size() < 64) wire.inner.emplace_back(buf.bytes().begin(), buf.bytes().end());
        }
        return v;
    }

    // Moves queued outer packets across the NAT until both sides are quiet.
    void exchange(bool record) {
        for (int rounds = 0; rounds < 20 && (!client_wire.outer.empty() || !gw_wire.outer.empty()); ++rounds) {
            while (!client_wire.outer.empty()) {
                auto p = std::move(client_wire.outer.front());
                client_wire.outer.pop_front();
                nat_rewrite(p, true);
                if (record) recorded_to_gw.push_back(p);
                (void)feed(*gw, p);
            }
            while (!gw_wire.outer.empty()) {
                auto p = std::move(gw_wire.outer.front());
                gw_wire.outer.pop_front();
                nat_rewrite(p, false);
                if (record) recorded_to_client.push_back(p);
                (void)feed(*client, p);
            }
        }
    }

    bool carries_data(bool record) {
        const std::uint8_t payload[16] = {'p', 'r', 'o', 'b', 'e'};
        client_wire.inner.clear();
        gw_wire.inner.clear();
        for (bool up : {true, false}) {
            auto& p = up ? *client : *gw;
            Bytes inner = up ? udp_packet(vip, 1234, lan_host, 53, payload) : udp_packet(lan_host, 53, vip, 1234, payload);
            auto buf = pool.acquire(p.headroom());
            require(buf.valid() && buf.resize(inner.size()));
            std::copy(inner.begin(), inner.end(), buf.data());
            if (!p.encapsulate(buf).passed()) return false;
            (up ? client_wire : gw_wire).outer.emplace_back(buf.bytes().begin(), buf.bytes().end());
            exchange(record);
            const auto& got = (up ? gw_wire : client_wire).inner;
            if (got.size() != 1 || got.front() != inner) return false;
            client_wire.inner.clear();
            gw_wire.inner.clear();
        }
        return true;
    }
};

Lab& lab() {
    static Lab l;
    return l;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    Lab& l = lab();
    const bool to_gateway = (data[0] & 1) != 0;
    const unsigned mode = (data[0] >> 1) & 3;
    std::span<const std::uint8_t> in(data + 1, size - 1);
    if (in.size() > 1500) in = in.first(1500);

    Bytes packet;
    const core::Endpoint from = to_gateway ? core::Endpoint{nat_addr, std::uint16_t(4500 + nat_offset)} : core::Endpoint{gw_addr, 4500};
    const core::Ipv4Address to = to_gateway ? gw_addr : client_addr;
    if (mode == 0) {
        packet.assign(in.begin(), in.end());
    } else if (mode == 1 || mode == 2) {
        const std::uint16_t port = mode == 1 ? 500 : 4500;
        const std::uint16_t sport = to_gateway ? static_cast<std::uint16_t>(port + nat_offset) : port;
        packet = udp_packet(from.address, sport, to, port, in);
    } else {
        const auto& recorded = to_gateway ? l.recorded_to_gw : l.recorded_to_client;
        if (in.empty() || recorded.empty()) return 0;
        packet = recorded[in[0] % recorded.size()];
        // (position, xor) pairs after the outer IPv4/UDP headers keep the packet deliverable.
        for (std::size_t k = 1; k + 1 < in.size() && k < 17; k += 2) {
            if (packet.size() <= 28) break;
            packet[28 + (std::size_t{in[k]} * (packet.size() - 28)) / 256] ^= in[k + 1];
        }
    }
    l.client_wire.outer.clear();
    l.gw_wire.outer.clear();
    (void)l.feed(to_gateway ? *l.gw : *l.client, packet);
    // Whatever the packet made a side send (an answer, a notify) goes to the other side.
    l.exchange(false);
    require(l.established());
    require(l.client_stage().inner_address()->address == l.vip);
    require(l.carries_data(false));
    return 0;
}
