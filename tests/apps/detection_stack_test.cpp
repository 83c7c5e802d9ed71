// SPDX-License-Identifier: MIT
// RFC 5265 inside/outside detection in the whole mobile node stack, in process: the pipeline
// i-MIP (detection) > ipsec.vpn_client > nat.udp_encap > x-MIP against a real internal home
// agent (trusted networks, TNC) and a real external one. The "network" between them is this
// test: a firewall keeps the internal home agent unreachable from outside (RFC 5265 §4), and
// everything sent to the VPN gateway's address is recorded (there is no gateway: IKE that
// starts is the observable). Only bytes cross the network, never packet metadata.
#include <doctest/doctest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <set>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "apps/shell/node_config.hpp"
#include "core/icmp.hpp"
#include "core/mtu_guard.hpp"
#include "core/pipeline.hpp"
#include "crypto/random.hpp"
#include "ipsec/vpn_client_stage.hpp"
#include "ipsec/vpn_gateway_stage.hpp"
#include "mip/foreign_agent_stage.hpp"
#include "mip/home_agent_stage.hpp"
#include "mip/mobile_node_stage.hpp"
#include "mip/tunnel_encap.hpp"
#include "nat/udp_encap_stage.hpp"
#include "tests/mip/mobile_ip_world.hpp"
#include "tests/support/flat_status.hpp"

using namespace mipsec;
using namespace std::chrono_literals;
using test::Bytes;
using test::ip;
using Access = core::AccessModeChanged::Mode;
using ND = mip::NetworkDetection;

namespace {

const Bytes internal_key = test::from_hex("00112233445566778899aabbccddeeff");
const Bytes external_key = test::from_hex("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf");
const Bytes wrong_key = test::from_hex("ffeeddccbbaa99887766554433221100");
const auto internal_home = ip("10.1.0.77");
const auto internal_ha = ip("10.1.0.1");
const auto correspondent = ip("10.1.0.9");
const auto external_home = ip("198.51.100.77");
const auto external_ha = ip("198.51.100.1");
const auto gateway = ip("203.0.113.1");
const auto office = ip("10.2.0.50");   // intranet DHCP address (trusted by the i-HA)
const auto office2 = ip("10.2.0.51");
const auto cafe = ip("192.0.2.50");    // outside
const auto cafe2 = ip("192.0.2.51");
const auto vpn_pool = *core::Ipv4Prefix::parse("10.99.100.0/24");  // the gateway's Mode Config addresses
const Bytes psk = test::from_hex("6c61622d70736b2d3031");
const auto office_agent = ip("10.2.0.1");  // an intranet foreign agent: its care-of address is trusted by the i-HA
const auto cafe_agent = ip("192.0.2.1");   // a foreign agent in a cafe
constexpr std::uint32_t eth = 2;
constexpr std::uint32_t wifi = 3;  // a second interface, for the two-interface lab
const auto office_net = *core::Ipv4Prefix::parse("10.2.0.0/24");

core::Ipv4Address destination_of(const Bytes& p) { return core::Ipv4View::check(p)->destination(); }
core::Ipv4Address source_of(const Bytes& p) { return core::Ipv4View::check(p)->source(); }

bool is_registration(const Bytes& p) {
    auto v = core::Ipv4View::check(p);
    if (!v || v->protocol() != core::ip_protocol::udp) return false;
    auto udp = core::UdpView::check(v->payload());
    return udp && (udp->destination_port() == mip::registration_port || udp->source_port() == mip::registration_port);
}

std::span<const std::uint8_t> udp_payload(const Bytes& p) {
    auto v = core::Ipv4View::check(p);
    REQUIRE(v);
    auto udp = core::UdpView::check(v->payload());
    REQUIRE(udp);
    return udp->payload();
}

Bytes ip_in_ip(core::Ipv4Address from, core::Ipv4Address to, const Bytes& inner) {
    Bytes p(20);
    core::Ipv4Header h;
    h.total_length = static_cast<std::uint16_t>(20 + inner.size());
    h.protocol = core::ip_protocol::ipip;
    h.source = from;
    h.destination = to;
    h.emit(p);
    p.insert(p.end(), inner.begin(), inner.end());
    return p;
}

struct Wire final : core::PipelineIo {
    std::deque<Bytes> outer;
    std::vector<Bytes> inner;
    // The interface each packet was told to leave by (0: the routing table decides), by source.
    std::map<core::Ipv4Address, std::set<std::uint32_t>> egress_by_source;
    void send_outer(core::PacketBuf&& p) override {
        if (auto ip = core::Ipv4View::check(p.bytes())) egress_by_source[ip->source()].insert(p.meta().egress_ifindex);
        outer.push_back(test::bytes_of(p));
    }
    void deliver_inner(core::PacketBuf&& p) override { inner.push_back(test::bytes_of(p)); }
};

// A foreign agent on an access link (its address there is also its care-of address).
struct Agent {
    core::Ipv4Address address;
    bool intranet;
    test::FakeStageContext ctx;
    mip::ForeignAgentStage stage;
    static mip::ForeignAgentStage::Config config(core::Ipv4Address a) {
        mip::ForeignAgentStage::Config c;
        c.agent.link_address = a;
        c.agent.registration_lifetime = 600;
        c.agent.advertisement_interval = 1s;
        c.agent.advertisement_lifetime = 9;
        c.agent.advertisement_jitter = 0;
        return c;
    }
    Agent(core::BufferPool& pool, crypto::Random& random, core::Ipv4Address a, bool in_intranet)
        : address(a), intranet(in_intranet), ctx(pool), stage(config(a), random) {}
};

struct Lab {
    crypto::KeystreamRandom random;
    core::BufferPool pool{512, 2048};
    core::TimePoint now = core::TimePoint{} + 1h;
    Wire wire;
    std::unique_ptr<core::Pipeline> mn;
    mip::MobileNodeStage* imip = nullptr;
    ipsec::VpnClientStage* vpn = nullptr;
    nat::UdpEncapStage* encap = nullptr;
    mip::MobileNodeStage* xmip = nullptr;
    test::FakeStageContext iha_ctx{pool}, xha_ctx{pool};
    std::unique_ptr<mip::HomeAgentStage> iha, xha;

    bool inside = true;         // the firewall lets the node reach the i-HA (it is in the intranet)
    bool iha_up = true;         // the i-HA answers at all
    bool xha_reachable = true;  // some intranets block the x-HA too (RFC 5265 §3.3)
    bool hold_iha_replies = false;  // a slow i-HA: its replies wait in `held`
    std::vector<Bytes> held;
    // The intranet path from the gateway to the i-HA is slow: registrations that left the VPN
    // wait in `held_tunnelled` (released by hand, in order, to the i-HA).
    bool hold_tunnelled_requests = false;
    std::vector<Bytes> held_tunnelled;
    // The Internet path to the gateway is slow: what the x-HA forwards to it waits in
    // `held_at_gateway` (IKE included), released by hand in order with to_gateway().
    bool hold_at_gateway = false;
    std::vector<Bytes> held_at_gateway;
    std::vector<Bytes> direct_requests;  // every request the node sent to the i-HA, as sent
    std::vector<Bytes> firewalled;       // those the firewall stopped
    std::vector<Bytes> iha_replies;      // every reply of the i-HA, as sent
    std::vector<Bytes> at_gateway;       // whatever reached the VPN gateway (after x-HA decapsulation)
    std::vector<Bytes> from_iha_tunnel;  // user packets the i-HA took out of the node's reverse tunnel
    std::unique_ptr<Agent> office_fa, cafe_fa;
    Agent* on_link = nullptr;            // the foreign agent on the node's link, if any
    std::vector<Bytes> to_agent;         // what the node sent on an agent's link
    std::vector<Bytes> agent_delivered;  // what an agent put on the node's link
    // An attacker in the cafe answering, for the i-HA's address, the direct requests the cafe
    // agent relays (it sees them: they are in the clear).
    enum class Forger { None, WrongKey, NoTnc } forger = Forger::None;
    std::size_t forged = 0;

    struct Options {
        bool keep_sas = true;
        ND::Profile profile = ND::Profile::Rfc5265;
        bool iha_rfc5265 = true;  // the i-HA has trusted networks (and so sends TNC)
        bool gateway = false;     // a real VPN gateway behind the x-HA, in front of the i-HA
        // Two interfaces under detection (eth first, then wifi); the firewall then judges each
        // packet by its address (the office subnet is inside), not by `inside`, and a packet
        // from or to an unplugged interface's address is lost.
        bool two_links = false;
        bool home_link_trusted = false;  // the i-HA trusts its own home link too
        core::Duration ike_delay{};      // detection's ike_delay_ms
    };
    bool by_source = false;
    std::map<std::uint32_t, core::Ipv4Address> link_address;  // two_links: each interface's address
    std::set<std::uint32_t> unplugged;
    std::size_t lost_unplugged = 0;
    std::unique_ptr<core::Pipeline> gw;
    Wire gw_wire;
    explicit Lab(bool keep_sas = true) : Lab(Options{.keep_sas = keep_sas}) {}
    explicit Lab(Options o) {
        mip::MobileNodeStage::Config i;
        i.node.home_address = internal_home;
        i.node.home_agent = internal_ha;
        i.node.sa = test::make_sa(256, internal_key);
        i.node.lifetime = 600;
        i.node.ntp_offset = test::world_ntp_offset;
        i.node.udp_tunnelling = mip::MobileNode::UdpTunnelling::Off;
        i.care_of_source = mip::MobileNodeStage::CareOfSource::InnerAddress;
        mip::MobileNodeStage::Config::Detection d;
        d.interfaces = {{eth, "eth0"}};
        if (o.two_links) d.interfaces.push_back({wifi, "wlan0"});
        by_source = o.two_links;
        d.external_home_agent = external_ha;
        d.t_monitor = 60s;
        d.monitor_margin = 10s;
        d.internal_retry_window = 10s;
        d.keep_vpn_sas = o.keep_sas;
        d.ike_delay = o.ike_delay;
        d.profile = o.profile;
        i.detection = d;

        ipsec::VpnClientStage::Config v;
        v.local = external_home;
        v.gateway = gateway;
        v.session.local_id = ipsec::ike::IdPayload::fqdn("mn.lab.example");
        v.session.psks.push_back({core::Ipv4Prefix{gateway, 32}, crypto::SecretBytes(psk)});
        v.session.request_virtual_ip = true;
        v.session.remote_ts = *core::Ipv4Prefix::parse("10.1.0.0/24");
        v.session.esp_proposals = {ipsec::ike::EspProposal{.algorithm = ipsec::ike::EspAlgorithm::AesGcm128}};
        v.wait_for_access_mode = true;

        mip::MobileNodeStage::Config x;
        x.node.home_address = external_home;
        x.node.home_agent = external_ha;
        x.node.sa = test::make_sa(256, external_key);
        x.node.lifetime = 600;
        x.node.ntp_offset = test::world_ntp_offset;
        x.node.udp_tunnelling = mip::MobileNode::UdpTunnelling::Off;
        x.care_of_source = mip::MobileNodeStage::CareOfSource::Interface;
        x.care_of_ifindex = eth;
        x.node.foreign_agents_when_no_address = true;  // fvc: x-MIP through an external agent

        std::vector<std::unique_ptr<core::Stage>> stages;
        auto i_stage = std::make_unique<mip::MobileNodeStage>(std::move(i), random);
        auto v_stage = std::make_unique<ipsec::VpnClientStage>(std::move(v), random);
        auto e_stage = std::make_unique<nat::UdpEncapStage>(nat::UdpEncapStage::Config{.keepalive = core::Duration::zero()});
        auto x_stage = std::make_unique<mip::MobileNodeStage>(std::move(x), random);
        imip = i_stage.get();
        vpn = v_stage.get();
        encap = e_stage.get();
        xmip = x_stage.get();
        stages.push_back(std::move(i_stage));
        stages.push_back(std::move(v_stage));
        stages.push_back(std::move(e_stage));
        stages.push_back(std::move(x_stage));
        mn = std::make_unique<core::Pipeline>(std::move(stages), pool, core::null_logger());
        mn->attach(&wire);

        auto ic = test::ha_stage_config(internal_ha, *core::Ipv4Prefix::parse("10.1.0.0/24"), {{internal_home, &internal_key}});
        // RFC 5265 §5: the intranet's client subnet, and the VPN's inner addresses (cvc
        // registrations come from them, through the tunnel).
        if (o.iha_rfc5265) ic.agent.trusted_networks = {*core::Ipv4Prefix::parse("10.2.0.0/24"), vpn_pool};
        if (o.home_link_trusted) ic.agent.trusted_networks.push_back(*core::Ipv4Prefix::parse("10.1.0.0/24"));
        if (o.gateway) start_gateway();
        iha = std::make_unique<mip::HomeAgentStage>(std::move(ic), random);
        xha = std::make_unique<mip::HomeAgentStage>(
            test::ha_stage_config(external_ha, *core::Ipv4Prefix::parse("198.51.100.0/24"), {{external_home, &external_key}}), random);
        office_fa = std::make_unique<Agent>(pool, random, office_agent, true);
        cafe_fa = std::make_unique<Agent>(pool, random, cafe_agent, false);
        set_now();
        mn->poll();
    }

    void set_now() {
        office_fa->ctx.set_now(now);
        cafe_fa->ctx.set_now(now);
        if (gw) gw->set_now(now);
        mn->set_now(now);
        iha_ctx.set_now(now);
        xha_ctx.set_now(now);
    }

    // The node's packets onto its link: through the foreign agent there, if any.
    // A gateway that knows no client yet (at start, or restarted).
    void start_gateway() {
        ipsec::ike::SessionConfig gs;
        gs.local_id = ipsec::ike::IdPayload::fqdn("gw.lab.example");
        gs.psks.push_back({std::nullopt, crypto::SecretBytes(psk)});
        gs.local_ts = {*core::Ipv4Prefix::parse("10.1.0.0/24")};
        gs.esp_proposals = {ipsec::ike::EspProposal{.algorithm = ipsec::ike::EspAlgorithm::AesGcm128}};
        gs.child_rekey_time = core::Duration::zero();
        ipsec::VpnGatewayStage::Config gc;
        gc.local = gateway;
        gc.responder.session = std::make_shared<const ipsec::ike::SessionConfig>(std::move(gs));
        gc.responder.pool = vpn_pool;
        std::vector<std::unique_ptr<core::Stage>> gst;
        gst.push_back(std::make_unique<ipsec::VpnGatewayStage>(std::move(gc), random));
        gw = std::make_unique<core::Pipeline>(std::move(gst), pool, core::null_logger());
        gw->attach(&gw_wire);
    }

    // The office agent handles the node's registrations at once and holds everything else it
    // would reverse-tunnel until released: two sockets, read in either order.
    bool defer_office_agent_tunnel = false;
    std::vector<Bytes> deferred_at_office_agent;
    void release_office_agent_tunnel() {
        defer_office_agent_tunnel = false;
        for (auto& p : std::exchange(deferred_at_office_agent, {})) from_node(p);
    }

    void from_node(const Bytes& p) {
        if (on_link == nullptr) return route(p);
        if (defer_office_agent_tunnel && on_link == office_fa.get() && !is_registration(p)) {
            deferred_at_office_agent.push_back(p);
            return;
        }
        to_agent.push_back(p);
        auto buf = test::load(pool, p, 128);
        const auto v = on_link->stage.encapsulate(buf, on_link->ctx);
        if (v.continues()) route(test::bytes_of(buf));  // reverse-tunnelled by the agent, or routed by it
        flush(*on_link);
    }

    // What an agent sent: relayed requests to the network, replies and advertisements to its link.
    void flush(Agent& a) {
        auto sent = std::move(a.ctx.sent);
        a.ctx.sent.clear();
        for (auto& buf : sent) route(test::bytes_of(buf));
        auto delivered = std::move(a.ctx.delivered);
        a.ctx.delivered.clear();
        a.ctx.events.clear();
        for (auto& buf : delivered) {
            if (on_link != &a) continue;
            agent_delivered.push_back(test::bytes_of(buf));
            to_node(test::bytes_of(buf));
        }
    }

    // Toward the node: a packet for an agent's care-of address goes through that agent.
    void toward_node(const Bytes& p) {
        for (Agent* a : {office_fa.get(), cafe_fa.get()}) {
            if (destination_of(p) != a->address) continue;
            auto buf = test::load(pool, p, 128);
            if (a->stage.decapsulate(buf, a->ctx).passed()) a->ctx.delivered.push_back(std::move(buf));  // detunnelled onto the link
            flush(*a);
            return;
        }
        to_node(p);
    }

    // A packet on the network, routed by destination.
    bool on_unplugged(core::Ipv4Address a) const {
        for (auto i : unplugged)
            if (auto it = link_address.find(i); it != link_address.end() && it->second == a) return true;
        return false;
    }
    bool in_intranet(core::Ipv4Address a) const { return by_source ? office_net.contains(a) : inside; }

    void route(const Bytes& p) {
        const auto dst = destination_of(p);
        if (on_unplugged(source_of(p))) {
            ++lost_unplugged;  // sent by a link whose cable is out
            return;
        }
        if (dst == internal_ha) {
            const bool from_inside = in_intranet(source_of(p));
            if (is_registration(p)) direct_requests.push_back(p);
            if (!from_inside && forger != Forger::None && is_registration(p)) return forge(p);
            if (!from_inside || !iha_up) {
                firewalled.push_back(p);
                return;
            }
            auto buf = test::load(pool, p);
            if (iha->decapsulate(buf, iha_ctx).passed()) from_iha_tunnel.push_back(test::bytes_of(buf));
        } else if (dst == external_ha) {
            if (!xha_reachable) return;
            auto buf = test::load(pool, p);
            // What the x-HA takes out of the node's reverse tunnel goes on to the Internet.
            if (xha->decapsulate(buf, xha_ctx).passed() && destination_of(test::bytes_of(buf)) == gateway) {
                at_gateway.push_back(test::bytes_of(buf));
                to_gateway(test::bytes_of(buf));
            }
        } else if (dst == gateway) {
            at_gateway.push_back(p);  // straight from the node: not through x-MIP
        }
    }

    // The gateway unwraps ESP; what comes out goes to the intranet (the i-HA).
    void to_gateway(const Bytes& p) {
        if (!gw) return;
        if (hold_at_gateway) {
            held_at_gateway.push_back(p);
            return;
        }
        auto buf = test::load(pool, p);
        if (!gw->decapsulate(buf).passed()) return;
        auto inner = test::bytes_of(buf);
        if (destination_of(inner) != internal_ha) return;
        if (hold_tunnelled_requests && is_registration(inner)) {
            held_tunnelled.push_back(inner);
            return;
        }
        auto in = test::load(pool, inner);
        if (iha->decapsulate(in, iha_ctx).passed()) from_iha_tunnel.push_back(test::bytes_of(in));
    }

    // Toward the x-HoA: the x-HA tunnels it to the node's care-of address.
    void via_xha(const Bytes& p) {
        if (destination_of(p) != external_home || !xha_reachable) return;
        auto buf = test::load(pool, p, 128);
        if (xha->encapsulate(buf, xha_ctx).passed()) toward_node(test::bytes_of(buf));
    }

    void forge(const Bytes& request) {
        ++forged;
        const bool bad_key = forger == Forger::WrongKey;
        const auto from = source_of(request);  // the relaying agent's care-of address
        auto r = mip::RegistrationRequestView::check(udp_payload(request));
        REQUIRE(r);
        mip::ReplyExtensions ext;
        ext.trusted_networks = bad_key;  // TNC under a wrong key, or the right key without TNC
        auto m = mip::build_reply({mip::reply_code::accepted, 600, internal_home, internal_ha, r->identification()}, ext,
                                  {256, bad_key ? wrong_key : internal_key});
        REQUIRE(m);
        toward_node(test::udp_packet({internal_ha, mip::registration_port}, {from, mip::registration_port}, m->bytes()));
    }

    // `ingress`: the interface it arrives on as the shell would say (IP_PKTINFO); by default,
    // with two interfaces, the one holding the destination address.
    core::Verdict to_node(const Bytes& p, std::optional<std::uint32_t> ingress = std::nullopt) {
        auto buf = test::load(pool, p);
        if (!ingress && by_source) {
            for (const auto& [i, a] : link_address)
                if (a == destination_of(p)) ingress = i;
        }
        if (ingress && unplugged.contains(*ingress)) {
            ++lost_unplugged;
            return core::Verdict::drop(core::DropReason::None);
        }
        buf.meta().ingress_ifindex = ingress.value_or(0);
        auto v = mn->decapsulate(buf);
        if (v.passed()) wire.inner.push_back(test::bytes_of(buf));
        return v;
    }

    void exchange() {
        for (int round = 0; round < 50; ++round) {
            bool moved = false;
            while (!wire.outer.empty()) {
                auto p = std::move(wire.outer.front());
                wire.outer.pop_front();
                from_node(p);
                moved = true;
            }
            for (auto* ctx : {&iha_ctx, &xha_ctx}) {
                auto sent = std::move(ctx->sent);
                ctx->sent.clear();
                for (auto& buf : sent) {
                    auto p = test::bytes_of(buf);
                    moved = true;
                    if (ctx == &iha_ctx && gw && vpn_pool.contains(destination_of(p))) {
                        // To a VPN inner address: into the tunnel at the gateway.
                        auto g = test::load(pool, p, 128);
                        if (gw->encapsulate(g).passed()) via_xha(test::bytes_of(g));
                        continue;
                    }
                    if (ctx == &iha_ctx) {
                        if (is_registration(p)) iha_replies.push_back(p);
                        if (!in_intranet(destination_of(p))) continue;  // the firewall again
                        if (hold_iha_replies) {
                            held.push_back(p);
                            continue;
                        }
                    } else if (!xha_reachable) {
                        continue;
                    }
                    toward_node(p);
                }
            }
            while (!gw_wire.outer.empty()) {
                auto p = std::move(gw_wire.outer.front());
                gw_wire.outer.pop_front();
                via_xha(p);
                moved = true;
            }
            mn->poll();
            if (gw) gw->poll();
            if (!moved && wire.outer.empty() && gw_wire.outer.empty()) break;
        }
    }

    void advance(core::Duration d) {
        // In steps, so every timer runs about when it is due.
        const auto end = now + d;
        while (now < end) {
            now = std::min(end, now + 1s);
            set_now();
            mn->poll();
            iha->poll(iha_ctx);
            xha->poll(xha_ctx);
            for (Agent* a : {office_fa.get(), cafe_fa.get()}) {
                a->stage.poll(a->ctx);
                flush(*a);
            }
            exchange();
        }
    }

    void address(core::Ipv4Address a, bool added) {
        mn->dispatch(core::AddressChanged{eth, {a, 24}, added});
    }
    void move_to(core::Ipv4Address from, core::Ipv4Address to, bool into_intranet) {
        address(from, false);
        inside = into_intranet;
        address(to, true);
    }
    // To another link, as rtnetlink tells it: the old address (if any) goes, the link goes down
    // and up on the new network, which has a foreign agent (`agent`) or gives `to` by DHCP.
    void relink(std::optional<core::Ipv4Address> from, Agent* agent, std::optional<core::Ipv4Address> to = {},
                bool into_intranet = false) {
        if (from) address(*from, false);
        mn->dispatch(core::LinkChanged{eth, "eth0", false});
        on_link = agent;
        inside = agent ? agent->intranet : into_intranet;
        mn->dispatch(core::LinkChanged{eth, "eth0", true});
        if (to) address(*to, true);
    }
    // Two interfaces: one gets an address (DHCP), a cable is pulled (the kernel keeps the
    // address across link down and up), or plugged in again.
    void plug(std::uint32_t ifindex, core::Ipv4Address a) {
        link_address[ifindex] = a;
        mn->dispatch(core::AddressChanged{ifindex, {a, 24}, true});
    }
    void unplug(std::uint32_t ifindex) {
        unplugged.insert(ifindex);
        mn->dispatch(core::LinkChanged{ifindex, ifindex == eth ? "eth0" : "wlan0", false});
    }
    void replug(std::uint32_t ifindex) {
        unplugged.erase(ifindex);
        mn->dispatch(core::LinkChanged{ifindex, ifindex == eth ? "eth0" : "wlan0", true});
    }
    // A packet from the correspondent to the home address: the i-HA tunnels it to the binding's
    // care-of address, into the VPN (through the gateway and the x-HA) when that is an inner address.
    void send_down(std::uint16_t seq) {
        auto buf = test::load(pool, test::echo_packet(correspondent, internal_home, seq), 256);
        if (!iha->encapsulate(buf, iha_ctx).passed()) return;
        const auto p = test::bytes_of(buf);
        if (gw && vpn_pool.contains(destination_of(p))) {
            auto g = test::load(pool, p, 128);
            if (gw->encapsulate(g).passed()) via_xha(test::bytes_of(g));
        } else {
            toward_node(p);
        }
    }
    bool received_down(std::uint16_t seq) const {
        return std::find(wire.inner.begin(), wire.inner.end(), test::echo_packet(correspondent, internal_home, seq)) != wire.inner.end();
    }

    // Requests the i-MIP layer sent with the VPN inner address (not the direct ones).
    std::uint64_t inner_requests() const {
        return imip->counters().requests_sent - imip->counters().direct_requests_sent;
    }

    core::Verdict send_user(core::Ipv4Address to = correspondent, std::uint16_t seq = 1) {
        auto buf = test::load(pool, test::echo_packet(internal_home, to, seq), mn->headroom());
        auto v = mn->encapsulate(buf);
        if (v.passed()) {
            last_user_outer = test::bytes_of(buf);
            last_user_egress = buf.meta().egress_ifindex;
            from_node(last_user_outer);
        }
        return v;
    }
    Bytes last_user_outer;  // as it left the node
    std::uint32_t last_user_egress = 0;
    bool arrived_up(std::uint16_t seq) const {
        return !from_iha_tunnel.empty() && from_iha_tunnel.back() == test::echo_packet(internal_home, correspondent, seq);
    }

    ND::InterfaceStatus status(std::uint32_t ifindex = eth) const {
        auto st = imip->detection()->status(ifindex, now);
        REQUIRE(st);
        return *st;
    }
    std::uint64_t count(ND::ReplyResult r) const { return imip->detection()->count(r); }
    std::size_t ike_at_gateway() const {
        std::size_t n = 0;
        for (const auto& p : at_gateway) {
            auto v = core::Ipv4View::check(p);
            if (v && v->protocol() == core::ip_protocol::udp) ++n;
        }
        return n;
    }

    // A reply of the internal HA answering `request`, as an attacker (or the i-HA) would build it.
    static Bytes reply_to(const Bytes& request, core::Ipv4Address to, const Bytes& key, bool tnc) {
        auto r = mip::RegistrationRequestView::check(udp_payload(request));
        REQUIRE(r);
        mip::ReplyExtensions ext;
        ext.trusted_networks = tnc;
        auto m = mip::build_reply({mip::reply_code::accepted, 600, internal_home, internal_ha, r->identification()}, ext,
                                  {256, key});
        REQUIRE(m);
        return test::udp_packet({internal_ha, mip::registration_port}, {to, mip::registration_port}, m->bytes());
    }
};

}  // namespace

TEST_CASE("RFC 5265: starting in the intranet gives mode c, data in the clear to the i-HA, and no IKE at all") {
    Lab lab;
    CHECK(lab.imip->access_mode() == Access::NoService);
    // No attachment yet: user data is stopped, not sent unprotected.
    CHECK(lab.send_user().reason == core::DropReason::Blocked);

    lab.address(office, true);
    // Attachment changed: data stops at once (RFC 5265 §6) while both HAs are asked.
    CHECK(lab.send_user().reason == core::DropReason::Blocked);
    lab.exchange();

    const auto st = lab.status();
    CHECK(st.mode == ND::Mode::InsideCoLocated);
    CHECK(st.decided_by.cause == ND::Decision::Cause::InternalTnc);
    CHECK(lab.imip->access_mode() == Access::Inside);
    REQUIRE(!lab.direct_requests.empty());
    CHECK(source_of(lab.direct_requests.front()) == office);  // co-located intranet CoA, sent around the VPN
    CHECK(lab.iha->agent().bindings().find(internal_home) != nullptr);
    CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == office);

    // The layers below are dormant; x-MIP registered in parallel, then deregistered.
    CHECK(lab.vpn->dormant());
    CHECK(lab.encap->dormant());
    CHECK(lab.xmip->dormant());
    lab.advance(1s);  // x-MIP deregisters once what the layers above sent has gone ahead
    CHECK(lab.xha->agent().bindings().find(external_home) == nullptr);
    // The i-HA's reply crossed the awake layers below in the clear: neither took it.
    CHECK(lab.xmip->counters().passed_other_reply >= 1);
    test::FlatStatus vpn_status;
    lab.vpn->report(vpn_status);
    CHECK(vpn_status.values["passed_registration_replies"] != "0");
    CHECK(vpn_status.values["access"] == "dormant");

    // User data: reverse-tunnelled straight to the i-HA, which takes the original packet out.
    REQUIRE(lab.send_user(correspondent, 7).passed());
    REQUIRE(lab.from_iha_tunnel.size() == 1);
    CHECK(lab.from_iha_tunnel[0] == test::echo_packet(internal_home, correspondent, 7));
    // And back: the i-HA tunnels to the intranet CoA; the node unwraps it.
    const auto down = test::echo_packet(correspondent, internal_home, 8);
    auto buf = test::load(lab.pool, down, lab.iha->headroom());
    REQUIRE(lab.iha->encapsulate(buf, lab.iha_ctx).passed());
    CHECK(destination_of(test::bytes_of(buf)) == office);
    REQUIRE(lab.to_node(test::bytes_of(buf)).passed());
    CHECK(lab.wire.inner.back() == down);

    // Minutes later, re-registering every T_MONITOR - N: still inside, and never any IKE.
    const auto requests = lab.direct_requests.size();
    lab.advance(150s);
    CHECK(lab.direct_requests.size() >= requests + 3);
    CHECK(lab.imip->access_mode() == Access::Inside);
    CHECK(lab.send_user(correspondent, 9).passed());
    CHECK(lab.vpn->sessions_started() == 0);
    CHECK(lab.at_gateway.empty());

    test::FlatStatus status;
    lab.imip->report(status);
    CHECK(status.values["detection.mode"] == "c");
    CHECK(status.values["detection.cause"] == "internal_ha_tnc_reply");
    CHECK(status.values["detection.replies.made_inside"] == "1");
    // The top-level registration fields show the registration in effect: the direct one.
    CHECK(status.values["state"] == "registered");
    CHECK(status.values["care_of_source"] == "interface");
    CHECK(status.values["care_of_address"] == status.values["detection.interface_address"]);
    CHECK(status.values["care_of_address"] != "0.0.0.0");
    CHECK(std::stoi(status.values["detection.replies.refreshed"]) >= 3);
}

TEST_CASE("RFC 5265: out of the office to a cafe (cvc), x-MIP and IKE start; back inside (c) x-MIP deregisters") {
    Lab lab;
    lab.address(office, true);
    lab.exchange();
    REQUIRE(lab.imip->access_mode() == Access::Inside);

    lab.move_to(office, cafe, false);
    CHECK(lab.send_user().reason == core::DropReason::Blocked);
    lab.exchange();
    // The i-HA was asked directly from the cafe (and the firewall dropped it); the x-HA answered.
    REQUIRE(!lab.firewalled.empty());
    CHECK(source_of(lab.firewalled.back()) == cafe);
    CHECK(lab.status().mode == ND::Mode::OutsideCoLocated);
    CHECK(lab.status().decided_by.cause == ND::Decision::Cause::ExternalReply);
    CHECK(lab.imip->access_mode() == Access::Outside);
    CHECK_FALSE(lab.vpn->dormant());
    CHECK_FALSE(lab.xmip->dormant());
    REQUIRE(lab.xha->agent().bindings().find(external_home) != nullptr);
    CHECK(lab.xha->agent().bindings().find(external_home)->care_of_address == cafe);
    // IKE starts, from the x-HoA, through the x-MIP tunnel (nothing reached the gateway in the clear).
    lab.advance(1s);
    CHECK(lab.vpn->sessions_started() == 1);
    CHECK(lab.ike_at_gateway() >= 1);
    for (const auto& p : lab.at_gateway) CHECK(source_of(p) == external_home);
    // Without a VPN inner address yet, no user packet leaves at all (never in the clear).
    CHECK_FALSE(lab.send_user().passed());

    // Back to the office: the i-HA answers directly with TNC again.
    const auto ike_before = lab.at_gateway.size();
    lab.move_to(cafe, office2, true);
    lab.exchange();
    CHECK(lab.status().mode == ND::Mode::InsideCoLocated);
    CHECK(lab.imip->access_mode() == Access::Inside);
    CHECK(lab.vpn->dormant());
    CHECK(lab.xmip->dormant());
    lab.advance(1s);
    CHECK(lab.xha->agent().bindings().find(external_home) == nullptr);  // x-MIP deregistered
    CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == office2);
    REQUIRE(lab.send_user(correspondent, 3).passed());
    CHECK(lab.from_iha_tunnel.back() == test::echo_packet(internal_home, correspondent, 3));
    lab.advance(30s);
    CHECK(lab.at_gateway.size() == ike_before);  // the dormant VPN sends nothing
}

TEST_CASE("RFC 5265 §3.3: an i-HA answer after the x-HA's, even after IKE began, still makes the node inside") {
    Lab lab;
    lab.hold_iha_replies = true;
    lab.address(office, true);
    lab.exchange();
    // The x-HA answered first: tentatively outside, the VPN wakes and IKE starts.
    CHECK(lab.imip->access_mode() == Access::Outside);
    lab.advance(2s);
    REQUIRE(lab.vpn->sessions_started() == 1);
    CHECK(lab.ike_at_gateway() >= 1);
    // The direct request is still retried within internal_retry_window; now the i-HA's
    // answers arrive.
    REQUIRE(!lab.held.empty());
    lab.hold_iha_replies = false;
    for (const auto& p : lab.held) lab.to_node(p);
    lab.exchange();
    CHECK(lab.status().mode == ND::Mode::InsideCoLocated);
    CHECK(lab.imip->access_mode() == Access::Inside);
    CHECK(lab.vpn->dormant());
    CHECK(lab.xmip->dormant());
    lab.advance(1s);
    CHECK(lab.xha->agent().bindings().find(external_home) == nullptr);
    CHECK(lab.send_user().passed());
    // The other held replies answered requests already answered: counted, never a second decision.
    CHECK(lab.count(ND::ReplyResult::MadeInside) == 1);
}

TEST_CASE("RFC 5265 §3.3 with ike_delay_ms: the x-HA answers first, IKE waits; the i-HA in time means no IKE at all, silence means IKE after the delay") {
    Lab lab(Lab::Options{.gateway = true, .ike_delay = 800ms});
    lab.hold_iha_replies = true;
    lab.address(office, true);
    lab.exchange();
    REQUIRE(lab.imip->access_mode() == Access::Outside);  // tentatively: the x-HA answered
    lab.advance(500ms);
    CHECK(lab.vpn->sessions_started() == 0);
    CHECK(lab.ike_at_gateway() == 0);
    test::FlatStatus waiting;
    lab.vpn->report(waiting);
    CHECK(waiting.values.contains("ike_delayed_ms"));
    SUBCASE("the i-HA's TNC reply within the delay: inside, and the VPN never negotiated") {
        lab.hold_iha_replies = false;
        for (const auto& p : std::exchange(lab.held, {})) lab.to_node(p);
        lab.exchange();
        CHECK(lab.status().mode == ND::Mode::InsideCoLocated);
        CHECK(lab.vpn->dormant());
        lab.advance(3s);
        CHECK(lab.vpn->sessions_started() == 0);
        CHECK(lab.ike_at_gateway() == 0);
        CHECK(static_cast<ipsec::VpnGatewayStage&>(lab.gw->stage(0)).client_count() == 0);
    }
    SUBCASE("no answer from the i-HA: IKE starts once the delay is over, and the inner address is registered") {
        lab.advance(400ms);
        CHECK(lab.vpn->sessions_started() == 1);
        lab.advance(2s);
        REQUIRE(lab.vpn->inner_address());
        // (This i-HA takes the held direct retries too, so its binding is not the point here.)
        REQUIRE(lab.imip->active_registration() != nullptr);
        CHECK(lab.imip->active_registration()->care_of_address == lab.vpn->inner_address()->address);
    }
}

TEST_CASE("RFC 5265 §3.3: the i-HA answering after the inner-address registration reached it: re-registered directly") {
    // A real gateway: the i-MIP registration with the VPN inner address reaches the i-HA
    // through ESP while the direct answers are late. The direct answer then makes the node
    // inside, but the i-HA's binding points at the inner address: the stage must register
    // directly again, or the i-HA keeps tunnelling to the VPN while the node is inside.
    Lab lab(Lab::Options{.gateway = true});
    lab.hold_iha_replies = true;
    lab.address(office, true);
    lab.exchange();
    REQUIRE(lab.imip->access_mode() == Access::Outside);
    for (int i = 0; i < 20 && !(lab.vpn->inner_address() && lab.iha->agent().bindings().find(internal_home) &&
                               lab.iha->agent().bindings().find(internal_home)->care_of_address == lab.vpn->inner_address()->address);
         ++i)
        lab.advance(100ms);
    REQUIRE(lab.vpn->inner_address());
    REQUIRE(lab.iha->agent().bindings().find(internal_home) != nullptr);
    REQUIRE(lab.iha->agent().bindings().find(internal_home)->care_of_address == lab.vpn->inner_address()->address);
    REQUIRE(!lab.held.empty());
    lab.hold_iha_replies = false;
    const auto held = std::move(lab.held);
    const auto direct_before = lab.direct_requests.size();
    const auto replies_before = lab.iha_replies.size();
    const auto rejected_before = lab.iha->counters().requests_rejected;
    lab.to_node(held.front());
    lab.exchange();
    // The direct clients and the inner-address one share one Identification sequence, so the
    // i-HA takes the new direct request at once (no 133 and resynchronisation, RFC 5944 §5.7).
    lab.advance(3s);
    CHECK(lab.direct_requests.size() > direct_before);
    CHECK(lab.iha_replies.size() > replies_before);
    CHECK(lab.iha->counters().requests_rejected == rejected_before);
    REQUIRE(lab.imip->access_mode() == Access::Inside);
    CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == office);
    CHECK(lab.imip->direct()->state() == mip::MobileNode::State::Registered);
    CHECK(lab.send_user().passed());
}

TEST_CASE("RFC 5265 §3.3: a tunnelled registration reaching the i-HA after the direct retries, then the late TNC answer: the binding ends at the office address") {
    // The x-HA answers first, IKE comes up and i-MIP registers the VPN inner address through
    // the tunnel, but the intranet path from the gateway is slow: that request reaches the
    // i-HA only after the direct retries sent before it. The i-HA then holds the inner
    // address, and the direct answers arriving now (late) make the node inside. The direct
    // client's own pending request is one of those older retries: its answer changes nothing
    // at the i-HA, so the node must register directly once more, or the i-HA keeps tunnelling
    // into the dormant VPN until the next re-registration (T_MONITOR - N later).
    Lab lab(Lab::Options{.gateway = true});
    lab.hold_iha_replies = true;
    lab.hold_tunnelled_requests = true;
    lab.hold_at_gateway = true;
    lab.address(office, true);
    lab.exchange();
    REQUIRE(lab.imip->access_mode() == Access::Outside);
    // IKE is slow to reach the gateway: the direct client retries first (about a second on;
    // not on the whole second, so that the timestamps' low 32 bits, which a reply must match,
    // differ from the first request's as they do on a real clock).
    for (int i = 0; i < 20 && lab.direct_requests.size() < 2; ++i) lab.advance(300ms);
    REQUIRE(lab.direct_requests.size() == 2);
    REQUIRE(!lab.held_at_gateway.empty());
    lab.hold_at_gateway = false;
    for (const auto& p : std::exchange(lab.held_at_gateway, {})) lab.to_gateway(p);
    // Until the inner-address request left the VPN (IKE, Mode Config, Quick Mode first).
    for (int i = 0; i < 10 && lab.held_tunnelled.empty(); ++i) lab.advance(100ms);
    REQUIRE(lab.vpn->inner_address());
    const auto tia = lab.vpn->inner_address()->address;
    REQUIRE(lab.direct_requests.size() >= 2);
    REQUIRE(!lab.held_tunnelled.empty());
    const auto direct_before = lab.direct_requests.size();
    const auto id = [](const Bytes& p) { return mip::RegistrationRequestView::check(udp_payload(p))->identification(); };
    REQUIRE(id(lab.held_tunnelled.front()) > id(lab.direct_requests.back()));  // sent after the direct retry
    // The tunnelled request reaches the i-HA last: it takes the binding (newest Identification).
    for (const auto& p : std::exchange(lab.held_tunnelled, {})) {
        auto in = test::load(lab.pool, p);
        lab.iha->decapsulate(in, lab.iha_ctx);
    }
    lab.hold_tunnelled_requests = false;
    lab.exchange();
    REQUIRE(lab.iha->agent().bindings().find(internal_home) != nullptr);
    REQUIRE(lab.iha->agent().bindings().find(internal_home)->care_of_address == tia);
    REQUIRE(lab.imip->access_mode() == Access::Outside);
    // Now the i-HA's direct answers, in the order it sent them: the first makes the node inside.
    REQUIRE(lab.held.size() >= 2);
    lab.hold_iha_replies = false;
    for (const auto& p : std::exchange(lab.held, {})) lab.to_node(p);
    lab.exchange();
    REQUIRE(lab.imip->access_mode() == Access::Inside);
    CHECK(lab.vpn->dormant());
    // Registered directly once more, after the tunnelled request: the binding is the office's.
    CHECK(lab.direct_requests.size() > direct_before);
    REQUIRE(lab.iha->agent().bindings().find(internal_home) != nullptr);
    CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == office);
    // And it stays there for more than T_MONITOR / 2, with user data straight to the i-HA both ways.
    const auto inner_requests = lab.inner_requests();
    lab.advance(35s);
    REQUIRE(lab.imip->access_mode() == Access::Inside);
    CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == office);
    const auto ike = lab.ike_at_gateway();
    const auto at_gateway = lab.at_gateway.size();
    REQUIRE(lab.send_user(correspondent, 31).passed());
    CHECK(lab.arrived_up(31));
    CHECK(source_of(lab.last_user_outer) == office);
    lab.send_down(32);
    CHECK(lab.received_down(32));
    CHECK(lab.at_gateway.size() == at_gateway);  // nothing through the VPN
    CHECK(lab.ike_at_gateway() == ike);
    // The stopped inner-address client never renews its binding through the VPN (it would
    // leave from 0.0.0.0, in the clear past the dormant VPN): past its whole lifetime, nothing.
    lab.advance(620s);
    CHECK(lab.inner_requests() == inner_requests);
    CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == office);
    CHECK(lab.imip->node().state() == mip::MobileNode::State::Idle);
}

TEST_CASE("an internal HA without RFC 5265 (no TNC): never inside under rfc5265, inside under plain_internal_first") {
    SUBCASE("rfc5265: its plain reply proves nothing; the node stays outside, data only through the VPN") {
        Lab lab(Lab::Options{.iha_rfc5265 = false});
        lab.address(office, true);
        lab.exchange();
        CHECK(lab.count(ND::ReplyResult::NoTrustedNetworks) >= 1);
        CHECK(lab.count(ND::ReplyResult::MadeInside) == 0);
        CHECK(lab.imip->access_mode() == Access::Outside);
        CHECK_FALSE(lab.vpn->dormant());
    }
    SUBCASE("plain_internal_first (2002 draft): any authenticated direct reply means inside") {
        Lab lab(Lab::Options{.profile = ND::Profile::PlainInternalFirst, .iha_rfc5265 = false});
        lab.address(office, true);
        lab.exchange();
        CHECK(lab.status().decided_by.cause == ND::Decision::Cause::InternalPlain);
        CHECK(lab.imip->access_mode() == Access::Inside);
        CHECK(lab.vpn->dormant());
        CHECK(lab.send_user().passed());
    }
    SUBCASE("plain_internal_first outside: the x-HA's answer counts only once the i-HA had its turn") {
        Lab lab(Lab::Options{.profile = ND::Profile::PlainInternalFirst, .iha_rfc5265 = false});
        lab.inside = false;
        lab.address(cafe, true);
        lab.exchange();
        CHECK(lab.xha->agent().bindings().find(external_home) != nullptr);  // x-MIP registered at once
        CHECK(lab.imip->access_mode() == Access::Detecting);
        CHECK(lab.send_user().reason == core::DropReason::Blocked);
        lab.advance(3s);  // the profile's wait for the i-HA alone
        CHECK(lab.imip->access_mode() == Access::Outside);
        CHECK(lab.status().decided_by.cause == ND::Decision::Cause::ExternalReply);
    }
}

TEST_CASE("RFC 5265 §6: forged, replayed and tunnelled i-HA replies never make the node inside") {
    Lab lab;
    lab.address(office, true);
    lab.exchange();
    REQUIRE(!lab.iha_replies.empty());
    const Bytes office_reply = lab.iha_replies.back();  // a genuine one, captured in the office

    lab.move_to(office, cafe, false);
    lab.exchange();
    REQUIRE(lab.imip->access_mode() == Access::Outside);
    REQUIRE(!lab.firewalled.empty());
    const Bytes request = lab.firewalled.back();  // the direct request from the cafe
    CHECK(source_of(request) == cafe);

    // An attacker on the cafe network answers for the i-HA's address:
    SUBCASE("with the wrong key") {
        CHECK(lab.to_node(Lab::reply_to(request, cafe, wrong_key, true)).action == core::Action::Consumed);
        CHECK(lab.count(ND::ReplyResult::BadAuthenticator) == 1);
    }
    SUBCASE("with the right key but no TNC") {
        lab.to_node(Lab::reply_to(request, cafe, internal_key, false));
        CHECK(lab.count(ND::ReplyResult::NoTrustedNetworks) == 1);
    }
    SUBCASE("replaying the genuine office reply, readdressed to the cafe") {
        Bytes replay = office_reply;
        test::rewrite(replay, std::nullopt, core::Endpoint{cafe, 0});
        lab.to_node(replay);
        CHECK(lab.count(ND::ReplyResult::Replayed) == 1);  // the very reply accepted in the office
    }
    SUBCASE("a flood of fake replies, each counted, none deciding anything") {
        Bytes fake = Lab::reply_to(request, cafe, wrong_key, true);
        for (int n = 0; n < 500; ++n) {
            // Fresh identifications, so that nothing but the authenticator gives them away.
            auto payload = std::span(fake).subspan(28);
            mip::RegistrationReplyMutView::check(payload)->set_identification(0xE000000000000000u + static_cast<std::uint64_t>(n));
            core::UdpMutView::check(std::span(fake).subspan(20))->update_checksum(internal_ha, cafe);
            CHECK(lab.to_node(fake).action == core::Action::Consumed);
        }
        CHECK(lab.count(ND::ReplyResult::BadAuthenticator) == 500);
        CHECK(lab.imip->counters().direct_replies_rejected == 500);
        CHECK(lab.xha->agent().bindings().find(external_home)->care_of_address == cafe);  // x-MIP unaffected
        CHECK(lab.imip->access_mode() == Access::Outside);
        return;
    }
    SUBCASE("a valid TNC reply that arrived through a tunnel") {
        const Bytes valid = Lab::reply_to(request, cafe, internal_key, true);
        lab.to_node(ip_in_ip(external_ha, cafe, valid));  // unwrapped by x-MIP
        CHECK(lab.count(ND::ReplyResult::ViaTunnel) == 1);
        CHECK(lab.imip->access_mode() == Access::Outside);
        // Only the path was wrong: the same reply straight on the link (the i-HA reachable after
        // all, answering even after IPsec setup began, §3.3) makes the node inside.
        lab.to_node(valid);
        CHECK(lab.count(ND::ReplyResult::MadeInside) == 2);
        CHECK(lab.imip->access_mode() == Access::Inside);
        return;
    }
    CHECK(lab.imip->access_mode() == Access::Outside);
    CHECK(lab.status().mode == ND::Mode::OutsideCoLocated);
    CHECK_FALSE(lab.vpn->dormant());
    CHECK_FALSE(lab.send_user().passed());  // no inner address yet; certainly not in the clear
    CHECK(lab.count(ND::ReplyResult::MadeInside) == 1);  // the office only
    test::FlatStatus status;
    lab.imip->report(status);
    CHECK(status.values["detection.mode"] == "cvc");
    CHECK(status.values["counters.direct_replies_rejected"] == "1");
}

TEST_CASE("RFC 5265 §6: T_MONITOR without a successful re-registration stops user data and restarts detection") {
    Lab lab;
    lab.address(office, true);
    lab.exchange();
    REQUIRE(lab.imip->access_mode() == Access::Inside);
    REQUIRE(lab.send_user().passed());
    // x-MIP's answer from the start (it came after the i-HA's) must not decide anything later.
    REQUIRE(lab.xmip->dormant());

    lab.iha_up = false;         // the i-HA stops answering; the link does not change
    lab.xha_reachable = false;  // nor does the x-HA now: nothing may decide "outside" either
    const auto requests = lab.direct_requests.size();
    lab.advance(55s);
    CHECK(lab.direct_requests.size() > requests);  // re-registration at T_MONITOR - N, unanswered
    CHECK(lab.imip->access_mode() == Access::Inside);
    CHECK(lab.send_user().passed());  // still within T_MONITOR

    lab.advance(6s);  // past T_MONITOR since the last success
    CHECK(lab.send_user().reason == core::DropReason::Blocked);
    CHECK(lab.status().mode == ND::Mode::Detecting);
    CHECK(lab.status().decided_by.cause == ND::Decision::Cause::MonitorExpired);
    CHECK(lab.imip->access_mode() == Access::Detecting);
    CHECK_FALSE(lab.xmip->dormant());  // x-MIP is asked again, in parallel
    CHECK(lab.imip->counters().dropped_detecting >= 1);

    // The i-HA comes back: inside again, data flows.
    lab.iha_up = true;
    lab.advance(5s);
    CHECK(lab.imip->access_mode() == Access::Inside);
    CHECK(lab.send_user().passed());
}

TEST_CASE("RFC 5265 §6 on the home link: a deregistration answered with TNC makes the node inside, and keeps it there") {
    // Starting at home there is no binding to end, but only a direct i-HA answer may decide
    // "inside": the node deregisters anyway (CoA = HoA, lifetime 0), at once and then every
    // T_MONITOR - N. Without that it never learns it is inside and stops user data at home.
    Lab lab(Lab::Options{.home_link_trusted = true});
    lab.address(internal_home, true);
    lab.exchange();
    REQUIRE(!lab.direct_requests.empty());
    auto request = mip::RegistrationRequestView::check(udp_payload(lab.direct_requests.front()));
    REQUIRE(request);
    CHECK(request->lifetime() == 0);
    CHECK(request->care_of_address() == internal_home);
    CHECK(source_of(lab.direct_requests.front()) == internal_home);
    CHECK(lab.status().mode == ND::Mode::InsideCoLocated);
    CHECK(lab.status().decided_by.cause == ND::Decision::Cause::InternalTnc);
    CHECK(lab.imip->access_mode() == Access::Inside);
    CHECK(lab.imip->direct()->state() == mip::MobileNode::State::AtHome);
    CHECK(lab.iha->agent().bindings().find(internal_home) == nullptr);
    CHECK(lab.vpn->dormant());
    CHECK(lab.xmip->dormant());
    // At home user data leaves as it is: no tunnel, no VPN.
    const auto echo = test::echo_packet(internal_home, correspondent, 1);
    auto buf = test::load(lab.pool, echo, lab.mn->headroom());
    REQUIRE(lab.mn->encapsulate(buf).passed());
    CHECK(test::bytes_of(buf) == echo);

    // Minutes later: confirmed every T_MONITOR - N, still inside, data still flowing, no IKE.
    const auto requests = lab.direct_requests.size();
    lab.advance(150s);
    CHECK(lab.direct_requests.size() >= requests + 2);
    CHECK(lab.imip->access_mode() == Access::Inside);
    CHECK(lab.send_user().passed());
    CHECK(lab.vpn->sessions_started() == 0);

    // To the office (c) and home again: the office binding is deregistered, inside throughout.
    lab.move_to(internal_home, office, true);
    lab.exchange();
    CHECK(lab.imip->access_mode() == Access::Inside);
    REQUIRE(lab.iha->agent().bindings().find(internal_home) != nullptr);
    lab.move_to(office, internal_home, true);
    lab.exchange();
    CHECK(lab.status().mode == ND::Mode::InsideCoLocated);
    CHECK(lab.imip->direct()->state() == mip::MobileNode::State::AtHome);
    CHECK(lab.iha->agent().bindings().find(internal_home) == nullptr);
    CHECK(lab.send_user().passed());
}

TEST_CASE("RFC 5265 §4: keep_sas_inside false deletes the VPN's SAs when the node goes inside") {
    Lab lab(false);
    lab.address(cafe, true);
    lab.inside = false;
    lab.exchange();
    REQUIRE(lab.imip->access_mode() == Access::Outside);
    lab.advance(1s);
    REQUIRE(lab.vpn->session() != nullptr);
    lab.move_to(cafe, office, true);
    lab.exchange();
    CHECK(lab.imip->access_mode() == Access::Inside);
    CHECK(lab.vpn->dormant());
    CHECK(lab.vpn->session() == nullptr);
}

namespace {
nlohmann::json detection_config() {
    return nlohmann::json::parse(R"({
      "name": "mn", "tun": {"name": "mip0"}, "transport": {"local": "0.0.0.0", "udp_ports": [434, 500, 4500]},
      "pipeline": [
        {"type": "mip.mobile_node", "home_address": "10.1.0.77", "home_agent": "10.1.0.1", "spi": 400,
         "key": "00112233445566778899aabbccddeeff", "care_of": "inner_address", "udp_tunnelling": "off",
         "detection": {"interface": "lo", "external_home_agent": "198.51.100.1", "t_monitor_s": 60,
                       "monitor_margin_s": 10, "internal_retry_window_s": 10, "profile": "rfc5265", "keep_sas_inside": true}},
        {"type": "ipsec.vpn_client", "local": "198.51.100.77", "gateway": "203.0.113.1", "psk": "lab-psk-01",
         "wait_for_access_mode": true},
        {"type": "nat.udp_encap", "keepalive_s": 20},
        {"type": "mip.mobile_node", "home_address": "198.51.100.77", "home_agent": "198.51.100.1", "spi": 300,
         "key": "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf", "care_of": "interface", "interface": "lo"}
      ]})");
}

std::string config_error(const nlohmann::json& j) {
    try {
        (void)shell::parse_run_config(j);
    } catch (const shell::ConfigError& e) {
        return e.what();
    }
    return "";
}
}  // namespace

TEST_CASE("detection's ike_delay_ms: within the internal retry window, named with its pointer otherwise") {
    auto j = detection_config();
    j["pipeline"][0]["detection"]["ike_delay_ms"] = 500;
    CHECK(config_error(j).empty());
    j["pipeline"][0]["detection"]["ike_delay_ms"] = 11000;
    CHECK(config_error(j).find("/pipeline/0/detection/ike_delay_ms") != std::string::npos);
    j["pipeline"][0]["detection"]["ike_delay_ms"] = 9000;
    j["pipeline"][0]["detection"]["internal_retry_window_s"] = 5;
    CHECK(config_error(j).find("longer than internal_retry_window_s") != std::string::npos);
}

TEST_CASE("the i-MIP detection block: a good one parses, bad ones name the JSON pointer") {
    CHECK(config_error(detection_config()) == "");
    auto listed = detection_config();
    listed["pipeline"][0]["detection"].erase("interface");
    listed["pipeline"][0]["detection"]["interfaces"] = {"lo"};
    CHECK(config_error(listed) == "");
    using nlohmann::json;
    struct Row {
        const char* name;
        void (*mutate)(json&);
        const char* expected_text;
    };
    const Row rows[] = {
        {"not the i-MIP layer", [](json& j) { j["pipeline"][3]["detection"] = j["pipeline"][0]["detection"]; },
         "/pipeline/3/detection: is only used with \"care_of\": \"inner_address\""},
        {"no interface", [](json& j) { j["pipeline"][0]["detection"].erase("interface"); }, "/pipeline/0/detection/interface: is missing"},
        {"interface and interfaces", [](json& j) { j["pipeline"][0]["detection"]["interfaces"] = {"lo"}; },
         "/pipeline/0/detection/interfaces: is given with \"interface\""},
        {"interfaces empty",
         [](json& j) {
             j["pipeline"][0]["detection"].erase("interface");
             j["pipeline"][0]["detection"]["interfaces"] = json::array();
         },
         "/pipeline/0/detection/interfaces: is not an array of 1 to 8 interface names"},
        {"interfaces not names",
         [](json& j) {
             j["pipeline"][0]["detection"].erase("interface");
             j["pipeline"][0]["detection"]["interfaces"] = {"lo", 7};
         },
         "/pipeline/0/detection/interfaces/1: is 7"},
        {"an interface twice",
         [](json& j) {
             j["pipeline"][0]["detection"].erase("interface");
             j["pipeline"][0]["detection"]["interfaces"] = {"lo", "lo"};
         },
         "/pipeline/0/detection/interfaces/1: \"lo\" is listed twice"},
        {"a bad name",
         [](json& j) {
             j["pipeline"][0]["detection"].erase("interface");
             j["pipeline"][0]["detection"]["interfaces"] = {"lo", "a-name-far-too-long"};
         },
         "/pipeline/0/detection/interfaces/1: \"a-name-far-too-long\" is not an interface name"},
        {"same HA twice", [](json& j) { j["pipeline"][0]["detection"]["external_home_agent"] = "10.1.0.1"; },
         "/pipeline/0/detection/external_home_agent: equals home_agent"},
        {"margin too large", [](json& j) { j["pipeline"][0]["detection"]["monitor_margin_s"] = 60; },
         "/pipeline/0/detection/monitor_margin_s: is not below t_monitor_s"},
        {"unknown profile", [](json& j) { j["pipeline"][0]["detection"]["profile"] = "trust_me"; },
         "/pipeline/0/detection/profile:"},
        {"unknown key", [](json& j) { j["pipeline"][0]["detection"]["t_monitor"] = 60; },
         "/pipeline/0/detection/t_monitor: is not a known setting here"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        auto j = detection_config();
        row.mutate(j);
        const auto error = config_error(j);
        CAPTURE(error);
        CHECK(error.starts_with(row.expected_text));
    }
}

TEST_CASE("RFC 5265 cvc with a real VPN gateway: i-MIP registers the inner address through ESP; outside again reuses the kept SAs, zero IKE") {
    Lab lab(Lab::Options{.gateway = true});
    lab.inside = false;
    lab.address(cafe, true);
    lab.exchange();
    REQUIRE(lab.imip->access_mode() == Access::Outside);
    lab.advance(3s);
    // IKE through x-MIP, Mode Config, Quick Mode; then the i-MIP registration with CoA = the
    // inner address, through the tunnel (RFC 5265 §4 steps 3-5).
    REQUIRE(lab.vpn->inner_address());
    const auto tia = lab.vpn->inner_address()->address;
    CHECK(vpn_pool.contains(tia));
    REQUIRE(lab.imip->active_registration() != nullptr);
    CHECK(lab.imip->active_registration()->care_of_address == tia);
    REQUIRE(lab.iha->agent().bindings().find(internal_home) != nullptr);
    CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == tia);
    // The i-HA's TNC replies to the tunnelled registrations proved nothing about the cafe.
    CHECK(lab.count(ND::ReplyResult::ViaTunnel) >= 1);
    CHECK(lab.imip->access_mode() == Access::Outside);
    // User data: i-MIP inside ESP inside x-MIP, out at the i-HA byte for byte.
    const auto tunnelled = lab.from_iha_tunnel.size();
    REQUIRE(lab.send_user(correspondent, 21).passed());
    REQUIRE(lab.from_iha_tunnel.size() == tunnelled + 1);
    CHECK(lab.from_iha_tunnel.back() == test::echo_packet(internal_home, correspondent, 21));

    // Into the office (c) and out again to another cafe: the kept SAs carry i-MIP at once.
    const auto ike = lab.ike_at_gateway();
    lab.move_to(cafe, office, true);
    lab.exchange();
    REQUIRE(lab.imip->access_mode() == Access::Inside);
    CHECK(lab.vpn->dormant());
    CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == office);
    CHECK(lab.vpn->inner_address());  // kept (keep_sas_inside)
    lab.advance(5s);
    lab.move_to(office, cafe2, false);
    lab.exchange();
    lab.advance(2s);
    CHECK(lab.imip->access_mode() == Access::Outside);
    // No negotiation: the one IKE message is the R-U-THERE asking whether the kept SA stands.
    CHECK(lab.ike_at_gateway() == ike + 1);
    CHECK(lab.vpn->sessions_started() == 1);
    REQUIRE(lab.imip->active_registration() != nullptr);
    CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == tia);
    CHECK(lab.xha->agent().bindings().find(external_home)->care_of_address == cafe2);
    REQUIRE(lab.send_user(correspondent, 22).passed());
    CHECK(lab.from_iha_tunnel.back() == test::echo_packet(internal_home, correspondent, 22));
}

TEST_CASE("RFC 5265 §4: SAs kept while inside are probed on waking; a gateway that forgot them gets a new negotiation within seconds") {
    Lab lab(Lab::Options{.gateway = true});
    lab.inside = false;
    lab.address(cafe, true);
    lab.exchange();
    lab.advance(3s);
    REQUIRE(lab.vpn->inner_address());
    lab.move_to(cafe, office, true);
    lab.exchange();
    REQUIRE(lab.imip->access_mode() == Access::Inside);
    REQUIRE(lab.vpn->session() != nullptr);  // kept
    lab.advance(5s);

    SUBCASE("the gateway still holds them: one R-U-THERE answered, zero IKE negotiations, data at once") {
        lab.move_to(office, cafe2, false);
        lab.exchange();
        lab.advance(2s);
        CHECK(lab.imip->access_mode() == Access::Outside);
        CHECK(lab.vpn->sessions_started() == 1);
        REQUIRE(lab.vpn->session() != nullptr);
        CHECK(lab.vpn->session()->counters().dpd_sent == 1);
        CHECK(lab.vpn->session()->counters().dpd_acked == 1);
        lab.advance(10s);
        CHECK(lab.vpn->sessions_started() == 1);
        const auto tunnelled = lab.from_iha_tunnel.size();
        REQUIRE(lab.send_user(correspondent, 31).passed());
        REQUIRE(lab.from_iha_tunnel.size() == tunnelled + 1);
        CHECK(lab.from_iha_tunnel.back() == test::echo_packet(internal_home, correspondent, 31));
    }
    SUBCASE("the gateway restarted meanwhile: no answer within the wake window, a new IKE SA, i-MIP registers its address") {
        lab.start_gateway();
        lab.set_now();
        lab.move_to(office, cafe2, false);
        lab.exchange();
        lab.advance(5s);
        CHECK(lab.vpn->sessions_started() == 1);  // still asking
        lab.advance(10s);  // 6 s window, then the restart delay (5 s)
        CHECK(lab.vpn->sessions_started() == 2);
        lab.advance(2s);
        REQUIRE(lab.vpn->inner_address());
        REQUIRE(lab.iha->agent().bindings().find(internal_home) != nullptr);
        CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == lab.vpn->inner_address()->address);
        const auto tunnelled = lab.from_iha_tunnel.size();
        REQUIRE(lab.send_user(correspondent, 32).passed());
        REQUIRE(lab.from_iha_tunnel.size() == tunnelled + 1);
        CHECK(lab.from_iha_tunnel.back() == test::echo_packet(internal_home, correspondent, 32));
    }
}

TEST_CASE("RFC 5265 §5.2: the active stack's MTU follows the mode (c: 1480, cvc: 1403), and the TUN is sized for mode f") {
    Lab lab(Lab::Options{.gateway = true});
    // The TUN MTU: the lightest stack, mode f's (user data to the intranet foreign agent as it
    // is; the layers below idle inside).
    CHECK(core::least_stack_overhead(*lab.mn) == 0);
    core::MtuGuard guard({.outer_mtu = 1500});
    // A ping of `len` bytes with DF from the intranet home address, through the node's stack:
    // the outer packet's length, or 0 when the stack did not pass it.
    auto outer_len = [&](std::size_t len, std::uint16_t seq) -> std::size_t {
        auto buf = test::load(lab.pool, test::echo_packet(internal_home, correspondent, seq, len - 28), lab.mn->headroom());
        if (!lab.mn->encapsulate(buf).passed()) return 0;
        return buf.size();
    };

    lab.address(office, true);
    lab.exchange();
    REQUIRE(lab.imip->access_mode() == Access::Inside);
    CHECK(lab.imip->overhead() == mip::ip_in_ip_overhead);
    CHECK(lab.vpn->overhead() == 0);  // dormant
    CHECK(lab.encap->overhead() == 0);
    CHECK(lab.xmip->overhead() == 0);  // dormant
    guard.set_overhead(core::active_overhead(*lab.mn));
    CHECK(guard.mtu() == 1480);
    auto inside_packet = test::load(lab.pool, test::echo_packet(internal_home, correspondent, 1, 1450 - 28));
    CHECK_FALSE(guard.too_big(inside_packet));
    CHECK(outer_len(1480, 1) == 1500);

    lab.move_to(office, cafe, false);
    // Detecting: the stack's overhead is not known yet, and user data stops in the i-MIP layer
    // (counted there), so no MTU is announced for it: the node answers only what the stages passed.
    guard.set_overhead(core::active_overhead(*lab.mn));
    auto detecting_packet = test::load(lab.pool, test::echo_packet(internal_home, correspondent, 3, 1450 - 28), lab.mn->headroom());
    REQUIRE(guard.too_big(detecting_packet));
    CHECK(lab.mn->encapsulate(detecting_packet).reason == core::DropReason::Blocked);
    lab.exchange();
    lab.advance(3s);
    REQUIRE(lab.imip->access_mode() == Access::Outside);
    REQUIRE(lab.imip->active_registration() != nullptr);
    // cvc: i-MIP IP-in-IP 20 + ESP AES-GCM-16 (20 + 8 SPI/seq + 8 IV + at most 3 padding + 2 +
    // 16 ICV) + x-MIP IP-in-IP 20; no NAT, so no UDP.
    CHECK(lab.imip->overhead() == 20);
    CHECK(lab.vpn->overhead() == 57);
    CHECK(lab.encap->overhead() == 0);
    CHECK(lab.xmip->overhead() == 20);
    guard.set_overhead(core::active_overhead(*lab.mn));
    CHECK(guard.mtu() == 1403);
    // A 1450-byte ping: too big for cvc; wrapped it does not fit, and is answered with 1403.
    auto outside_packet = test::load(lab.pool, test::echo_packet(internal_home, correspondent, 2, 1450 - 28), lab.mn->headroom());
    const auto quote = guard.too_big(outside_packet);
    REQUIRE(quote);
    REQUIRE(lab.mn->encapsulate(outside_packet).passed());
    CHECK_FALSE(guard.fits_outer(outside_packet));
    REQUIRE(guard.answer(outside_packet, *quote, lab.now) == core::MtuGuard::Outcome::Answered);
    auto icmp = core::IcmpView::check(core::Ipv4View::check(outside_packet.bytes())->payload());
    REQUIRE(icmp);
    CHECK(icmp->next_hop_mtu() == 1403);
    // The figure is exact where the padding is at its worst, and safe for every length below.
    std::size_t longest = 0;
    for (std::size_t len = 1380; len <= 1403; ++len) longest = std::max(longest, outer_len(len, static_cast<std::uint16_t>(len)));
    CHECK(longest == 1500);

    lab.move_to(cafe, office2, true);
    lab.exchange();
    REQUIRE(lab.imip->access_mode() == Access::Inside);
    guard.set_overhead(core::active_overhead(*lab.mn));
    CHECK(guard.mtu() == 1480);
}

namespace {
// A stage's context at position 2 of its pipeline, recording what it sends.
class PositionedContext final : public core::StageContext {
public:
    explicit PositionedContext(core::BufferPool& pool) : pool_(pool), log_(core::null_logger()) {}
    core::TimePoint now() const override { return now_; }
    core::PacketBuf allocate() override { return pool_.acquire(64); }
    void send_control(core::PacketBuf&& p) override { sent.push_back(std::move(p)); }
    void deliver_inward(core::PacketBuf&&) override {}
    void raise(core::ControlEvent) override {}
    core::Logger& log() override { return log_; }
    std::size_t position() const override { return 2; }
    core::TimePoint now_ = core::TimePoint{} + 1h;
    std::vector<core::PacketBuf> sent;

private:
    core::BufferPool& pool_;
    core::Logger log_;
};

Bytes esp_in_udp(core::Ipv4Address from, core::Ipv4Address to) {
    const Bytes esp = test::from_hex("00 00 12 34 00 00 00 01 aa bb cc dd ee ff 00 11");
    return test::udp_packet({from, 4500}, {to, 4500}, esp);
}
}  // namespace

TEST_CASE("nat.udp_encap follows only an access mode from above: dormant inside, no keepalives, direct packets pass") {
    core::BufferPool pool(16, 512);
    PositionedContext ctx(pool);
    const auto local = ip("198.51.100.77");
    const auto peer = ip("203.0.113.1");
    nat::UdpEncapStage stage({.keepalive = 20s, .local = local, .remote = peer});
    auto in = test::load(pool, esp_in_udp(peer, local));
    REQUIRE(stage.decapsulate(in, ctx).passed());  // ESP unwrapped: encapsulation in use, keepalives due
    REQUIRE(stage.poll(ctx));

    // From the shell or from a layer below: not ours to follow.
    stage.on_event({core::RaisedEvent::external, core::AccessModeChanged{Access::Inside, eth, true}}, ctx);
    stage.on_event({3, core::AccessModeChanged{Access::Inside, eth, true}}, ctx);
    CHECK_FALSE(stage.dormant());

    stage.on_event({0, core::AccessModeChanged{Access::Inside, eth, true}}, ctx);
    CHECK(stage.dormant());
    const auto wrapped = esp_in_udp(peer, local);
    auto again = test::load(pool, wrapped);
    CHECK(stage.decapsulate(again, ctx).unclaimed());
    CHECK(test::bytes_of(again) == wrapped);
    ctx.now_ += 1h;
    CHECK_FALSE(stage.poll(ctx));
    CHECK(ctx.sent.empty());

    stage.on_event({0, core::AccessModeChanged{Access::Detecting, eth, true}}, ctx);
    CHECK_FALSE(stage.dormant());
    // A packet a mobile node layer above sends directly passes, even awake and marked for UDP.
    auto direct = test::load(pool, esp_in_udp(local, peer));
    direct.meta().direct = true;
    CHECK(stage.encapsulate(direct, ctx).unclaimed());
    CHECK(stage.counters().passed_direct == 1);
    CHECK(stage.counters().passed_dormant == 1);
    // Awake again: the first keepalive waits a whole idle interval.
    CHECK(*stage.poll(ctx) == ctx.now_ + 20s);
}

TEST_CASE("RFC 5265 §6: a link going down stops user data; up again (same address) restarts detection") {
    Lab lab;
    lab.address(office, true);
    lab.exchange();
    REQUIRE(lab.imip->access_mode() == Access::Inside);
    const auto inside_decisions = lab.count(ND::ReplyResult::MadeInside);

    lab.mn->dispatch(core::LinkChanged{eth, "eth0", false});
    lab.exchange();
    CHECK(lab.imip->access_mode() == Access::NoService);
    CHECK(lab.status().decided_by.cause == ND::Decision::Cause::Detached);
    CHECK(lab.send_user().reason == core::DropReason::Blocked);
    const auto requests = lab.direct_requests.size();
    lab.advance(5s);
    CHECK(lab.direct_requests.size() == requests);  // nothing is asked over a dead link

    // The kernel kept the address; only the link comes back.
    lab.mn->dispatch(core::LinkChanged{eth, "eth0", true});
    lab.exchange();
    CHECK(lab.direct_requests.size() > requests);
    CHECK(lab.imip->access_mode() == Access::Inside);
    CHECK(lab.count(ND::ReplyResult::MadeInside) == inside_decisions + 1);
    CHECK(lab.send_user().passed());
}

// ---- Foreign agents under detection: modes f and fvc (RFC 5265 §2, §4, §6) ----

namespace {
std::string report_value(const mip::MobileNodeStage& s, const std::string& key) {
    test::FlatStatus st;
    s.report(st);
    return st.values[key];
}
// As a router forwarding it, a foreign agent decrements the TTL of what it tunnels or
// detunnels (RFC 2003 §3.1).
Bytes forwarded(Bytes p) {
    auto v = core::Ipv4MutView::check(std::span(p));
    REQUIRE(v);
    v->decrement_ttl();
    return p;
}
bool is_plain_user_packet(const Bytes& p) {
    auto v = core::Ipv4View::check(p);
    return v && v->protocol() == core::ip_protocol::icmp && v->source() == internal_home;
}
}  // namespace

TEST_CASE("RFC 5265 mode f: the i-HA's TNC reply relayed by an intranet foreign agent makes the node inside") {
    Lab lab;
    lab.relink(std::nullopt, lab.office_fa.get());
    lab.exchange();
    lab.advance(2s);

    const auto st = lab.status();
    CHECK(st.mode == ND::Mode::InsideForeignAgent);
    CHECK(st.attachment == ND::Attachment::ForeignAgent);
    CHECK(st.decided_by.cause == ND::Decision::Cause::InternalTnc);
    CHECK(lab.imip->access_mode() == Access::Inside);
    // The direct request went to the agent from the home address, FA care-of address inside;
    // the agent relayed it from its care-of address (trusted by the i-HA, so TNC came back).
    const auto to_fa = std::find_if(lab.to_agent.begin(), lab.to_agent.end(), [](const Bytes& p) {
        return is_registration(p) && destination_of(p) == office_agent && source_of(p) == internal_home;
    });
    REQUIRE(to_fa != lab.to_agent.end());
    REQUIRE(!lab.direct_requests.empty());
    CHECK(source_of(lab.direct_requests.front()) == office_agent);
    const auto* binding = lab.iha->agent().bindings().find(internal_home);
    REQUIRE(binding != nullptr);
    CHECK(binding->care_of_address == office_agent);
    CHECK(lab.office_fa->stage.agent().visitor(internal_home) != nullptr);
    // VPN and x-MIP dormant, no IKE.
    CHECK(lab.vpn->dormant());
    CHECK(lab.xmip->dormant());
    CHECK(lab.vpn->sessions_started() == 0);
    CHECK(lab.at_gateway.empty());

    // User data: in the clear to the agent, which reverse-tunnels it to the i-HA (RFC 3024).
    const auto before = lab.from_iha_tunnel.size();
    REQUIRE(lab.send_user(correspondent, 31).passed());
    REQUIRE(lab.from_iha_tunnel.size() == before + 1);
    CHECK(lab.from_iha_tunnel.back() == forwarded(test::echo_packet(internal_home, correspondent, 31)));
    CHECK(std::any_of(lab.to_agent.begin(), lab.to_agent.end(),
                      [](const Bytes& p) { return p == test::echo_packet(internal_home, correspondent, 31); }));
    // And back: the i-HA tunnels to the agent, which delivers it on the link.
    const auto down = test::echo_packet(correspondent, internal_home, 32);
    auto buf = test::load(lab.pool, down, lab.iha->headroom());
    REQUIRE(lab.iha->encapsulate(buf, lab.iha_ctx).passed());
    lab.toward_node(test::bytes_of(buf));
    REQUIRE(!lab.agent_delivered.empty());
    CHECK(lab.agent_delivered.back() == forwarded(down));

    // Re-registered through the agent every T_MONITOR - N: still f.
    const auto requests = lab.direct_requests.size();
    lab.advance(150s);
    CHECK(lab.direct_requests.size() >= requests + 3);
    CHECK(lab.status().mode == ND::Mode::InsideForeignAgent);
    CHECK(lab.send_user(correspondent, 33).passed());
    CHECK(report_value(*lab.imip, "detection.mode") == "f");
    CHECK(report_value(*lab.imip, "detection.cause") == "internal_ha_tnc_reply");
    CHECK(report_value(*lab.imip, "detection.foreign_agent") == "10.2.0.1");
    CHECK(report_value(*lab.imip, "care_of_source") == "foreign_agent");
    CHECK(report_value(*lab.imip, "care_of_address") == "10.2.0.1");
    CHECK(report_value(*lab.imip, "state") == "registered");
}

TEST_CASE("RFC 5265 §3.3 with an intranet foreign agent: either reply order ends in f") {
    SUBCASE("the x-HA (through the agent) answers first: tentatively fvc, the relayed TNC reply then wins") {
        Lab lab;
        lab.hold_iha_replies = true;
        lab.relink(std::nullopt, lab.office_fa.get());
        lab.exchange();
        lab.advance(1s);
        CHECK(lab.status().mode == ND::Mode::OutsideForeignAgent);
        CHECK(lab.status().decided_by.cause == ND::Decision::Cause::ExternalReply);
        REQUIRE(lab.xha->agent().bindings().find(external_home) != nullptr);
        CHECK(lab.xha->agent().bindings().find(external_home)->care_of_address == office_agent);
        REQUIRE(!lab.held.empty());
        lab.hold_iha_replies = false;
        for (auto& p : std::exchange(lab.held, {})) lab.toward_node(p);
        lab.exchange();
        CHECK(lab.status().mode == ND::Mode::InsideForeignAgent);
        CHECK(lab.imip->access_mode() == Access::Inside);
        CHECK(lab.xmip->dormant());
        lab.advance(2s);
        CHECK(lab.xha->agent().bindings().find(external_home) == nullptr);  // deregistered through the agent
        CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == office_agent);
    }
    SUBCASE("the i-HA answers first; the x-HA is unreachable from the intranet") {
        Lab lab;
        lab.xha_reachable = false;
        lab.relink(std::nullopt, lab.office_fa.get());
        lab.exchange();
        lab.advance(1s);
        CHECK(lab.status().mode == ND::Mode::InsideForeignAgent);
        CHECK(lab.count(ND::ReplyResult::MadeOutside) == 0);
    }
}

TEST_CASE("RFC 5265 mode fvc: x-MIP through a cafe foreign agent, the VPN over it, i-MIP registers the inner address through ESP") {
    Lab lab(Lab::Options{.gateway = true});
    lab.relink(std::nullopt, lab.cafe_fa.get());
    lab.exchange();
    lab.advance(3s);

    CHECK(lab.status().mode == ND::Mode::OutsideForeignAgent);
    CHECK(lab.status().decided_by.cause == ND::Decision::Cause::ExternalReply);
    CHECK(lab.imip->access_mode() == Access::Outside);
    // The direct request to the i-HA went through the cafe agent, and the firewall stopped it.
    REQUIRE(!lab.firewalled.empty());
    CHECK(source_of(lab.firewalled.front()) == cafe_agent);
    REQUIRE(lab.xha->agent().bindings().find(external_home) != nullptr);
    CHECK(lab.xha->agent().bindings().find(external_home)->care_of_address == cafe_agent);
    REQUIRE(lab.vpn->inner_address());
    const auto tia = lab.vpn->inner_address()->address;
    REQUIRE(lab.imip->active_registration() != nullptr);
    CHECK(lab.imip->active_registration()->care_of_address == tia);
    CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == tia);
    CHECK(lab.vpn->sessions_started() == 1);
    // User data: i-MIP inside ESP, carried by the agent's reverse tunnel; nothing in the clear.
    const auto tunnelled = lab.from_iha_tunnel.size();
    REQUIRE(lab.send_user(correspondent, 41).passed());
    REQUIRE(lab.from_iha_tunnel.size() == tunnelled + 1);
    CHECK(lab.from_iha_tunnel.back() == test::echo_packet(internal_home, correspondent, 41));
    CHECK(std::none_of(lab.to_agent.begin(), lab.to_agent.end(), is_plain_user_packet));
    CHECK(report_value(*lab.imip, "detection.mode") == "fvc");
    CHECK(report_value(*lab.imip, "detection.cause") == "external_ha_reply");
}

TEST_CASE("RFC 5265 §6: forged, TNC-less and replayed i-HA replies relayed by a rogue cafe agent never make the node inside") {
    Lab lab(Lab::Options{.gateway = true});
    // A genuine TNC reply, captured in the office (through the intranet agent), to replay later.
    lab.relink(std::nullopt, lab.office_fa.get());
    lab.exchange();
    lab.advance(1s);
    REQUIRE(lab.status().mode == ND::Mode::InsideForeignAgent);
    REQUIRE(!lab.iha_replies.empty());
    const Bytes genuine(udp_payload(lab.iha_replies.back()).begin(), udp_payload(lab.iha_replies.back()).end());

    SUBCASE("TNC under a wrong key") {
        lab.forger = Lab::Forger::WrongKey;
        lab.relink(std::nullopt, lab.cafe_fa.get());
        lab.exchange();
        lab.advance(3s);
        CHECK(lab.forged >= 1);
        CHECK(lab.count(ND::ReplyResult::BadAuthenticator) >= 1);
    }
    SUBCASE("the right key without TNC") {
        lab.forger = Lab::Forger::NoTnc;
        lab.relink(std::nullopt, lab.cafe_fa.get());
        lab.exchange();
        lab.advance(3s);
        CHECK(lab.forged >= 1);
        CHECK(lab.count(ND::ReplyResult::NoTrustedNetworks) >= 1);
    }
    SUBCASE("the agent itself replays the genuine TNC reply from the office") {
        lab.relink(std::nullopt, lab.cafe_fa.get());
        lab.exchange();
        const auto replay = test::udp_packet({cafe_agent, mip::registration_port}, {internal_home, mip::registration_port}, genuine);
        CHECK(lab.to_node(replay).action == core::Action::Consumed);
        lab.advance(3s);
        // The lab's clock has whole seconds, so the reply's low 32 bits (the request's fraction of
        // a second) equal those of the fresh cafe request; the i-HA's time gives it away.
        CHECK(lab.count(ND::ReplyResult::Replayed) >= 1);
    }
    CHECK(lab.status().mode == ND::Mode::OutsideForeignAgent);
    CHECK(lab.imip->access_mode() == Access::Outside);
    CHECK(lab.imip->counters().direct_replies_rejected >= 1);
    // User data stays inside IPsec.
    const auto tunnelled = lab.from_iha_tunnel.size();
    REQUIRE(lab.send_user(correspondent, 51).passed());
    CHECK(lab.from_iha_tunnel.size() == tunnelled + 1);
    CHECK(std::none_of(lab.to_agent.begin(), lab.to_agent.end(), is_plain_user_packet));
}

TEST_CASE("RFC 5265 transitions c -> f -> cvc -> fvc -> f -> c: outside -> outside moves only x-MIP (zero IKE, no i-MIP registration)") {
    Lab lab(Lab::Options{.gateway = true});
    lab.address(office, true);
    lab.exchange();
    REQUIRE(lab.status().mode == ND::Mode::InsideCoLocated);

    // c -> f: the intranet agent; the i-HA's binding moves to its care-of address.
    lab.relink(office, lab.office_fa.get());
    CHECK(lab.send_user().reason == core::DropReason::Blocked);
    lab.exchange();
    lab.advance(1s);
    CHECK(lab.status().mode == ND::Mode::InsideForeignAgent);
    CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == office_agent);
    CHECK(lab.vpn->sessions_started() == 0);
    // Mode f: we add nothing, the agent's reverse tunnel adds 20 (RFC 3024 §5.2): a full-sized
    // DF packet gets "fragmentation needed" from us rather than vanishing at the agent.
    CHECK(core::active_overhead(*lab.mn) == mip::ip_in_ip_overhead);

    // f -> cvc: a cafe with DHCP; x-MIP co-located, IKE, i-MIP with the inner address.
    lab.relink(std::nullopt, nullptr, cafe, false);
    lab.exchange();
    lab.advance(3s);
    CHECK(lab.status().mode == ND::Mode::OutsideCoLocated);
    CHECK(lab.xha->agent().bindings().find(external_home)->care_of_address == cafe);
    REQUIRE(lab.vpn->inner_address());
    const auto tia = lab.vpn->inner_address()->address;
    CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == tia);
    REQUIRE(lab.send_user(correspondent, 61).passed());
    CHECK(lab.from_iha_tunnel.back() == test::echo_packet(internal_home, correspondent, 61));

    // cvc -> fvc: a cafe agent. Only x-MIP moves: zero IKE, no i-MIP registration.
    const auto ike = lab.ike_at_gateway();
    const auto sessions = lab.vpn->sessions_started();
    const auto inner = lab.inner_requests();
    const auto iha_accepted = lab.iha_replies.size();
    lab.relink(cafe, lab.cafe_fa.get());
    lab.exchange();
    lab.advance(3s);
    CHECK(lab.status().mode == ND::Mode::OutsideForeignAgent);
    CHECK(lab.xha->agent().bindings().find(external_home)->care_of_address == cafe_agent);
    // fvc: i-MIP 20 + ESP 57 + the cafe agent's reverse tunnel 20, as much as cvc.
    CHECK(core::active_overhead(*lab.mn) == 97);
    CHECK(lab.ike_at_gateway() == ike);
    CHECK(lab.vpn->sessions_started() == sessions);
    CHECK(lab.inner_requests() == inner);
    CHECK(lab.iha_replies.size() == iha_accepted);  // the i-HA saw no registration at all
    CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == tia);
    REQUIRE(lab.send_user(correspondent, 62).passed());
    CHECK(lab.from_iha_tunnel.back() == test::echo_packet(internal_home, correspondent, 62));

    // fvc -> f: the intranet agent again; VPN and x-MIP dormant, x-MIP deregistered.
    lab.relink(std::nullopt, lab.office_fa.get());
    lab.exchange();
    lab.advance(2s);
    CHECK(lab.status().mode == ND::Mode::InsideForeignAgent);
    CHECK(lab.vpn->dormant());
    CHECK(lab.xmip->dormant());
    CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == office_agent);
    CHECK(lab.xha->agent().bindings().find(external_home) == nullptr);
    REQUIRE(lab.send_user(correspondent, 63).passed());
    CHECK(lab.from_iha_tunnel.back() == forwarded(test::echo_packet(internal_home, correspondent, 63)));

    // f -> c: DHCP in the office; the direct registration is co-located again.
    lab.relink(std::nullopt, nullptr, office2, true);
    lab.exchange();
    lab.advance(1s);
    CHECK(lab.status().mode == ND::Mode::InsideCoLocated);
    CHECK(lab.status().attachment == ND::Attachment::CoLocated);
    CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == office2);
    CHECK(report_value(*lab.imip, "detection.mode") == "c");
    CHECK(report_value(*lab.imip, "care_of_source") == "interface");
    REQUIRE(lab.send_user(correspondent, 64).passed());
    CHECK(lab.from_iha_tunnel.back() == test::echo_packet(internal_home, correspondent, 64));
    CHECK(lab.vpn->sessions_started() == sessions);  // the kept SAs were never renegotiated
}

TEST_CASE("RFC 5265 §4 through an intranet agent with keep_sas_inside false: the Deletes reach the gateway before x-MIP deregisters") {
    // The race a live run showed: x-HA's answer (through the agent) came first, IKE ran, then
    // the i-HA's TNC reply made the node inside. The VPN's Deletes leave through x-MIP; an
    // agent may relay x-MIP's deregistration ahead of them (it reads registrations and tunnelled
    // packets from different sockets), and an x-HA without the binding drops them, so the
    // gateway keeps a client. x-MIP's binding must outlive the Deletes.
    Lab lab(Lab::Options{.keep_sas = false, .gateway = true});
    lab.hold_iha_replies = true;
    lab.relink(std::nullopt, lab.office_fa.get());
    lab.exchange();
    lab.advance(3s);
    REQUIRE(lab.status().mode == ND::Mode::OutsideForeignAgent);
    REQUIRE(lab.vpn->inner_address());
    auto& gateway_stage = static_cast<ipsec::VpnGatewayStage&>(lab.gw->stage(0));
    REQUIRE(gateway_stage.client_count() == 1);
    lab.hold_iha_replies = false;
    for (auto& p : std::exchange(lab.held, {})) lab.toward_node(p);
    // The agent's turn, deregistration first, as the live agent did it.
    lab.defer_office_agent_tunnel = true;
    lab.exchange();
    REQUIRE(lab.status().mode == ND::Mode::InsideForeignAgent);
    CHECK(lab.vpn->session() == nullptr);
    CHECK(lab.xmip->dormant());
    CHECK(lab.xha->agent().bindings().find(external_home) != nullptr);  // not yet deregistered
    lab.release_office_agent_tunnel();
    lab.advance(1s);
    CHECK(gateway_stage.client_count() == 0);  // the Delete payloads arrived
    CHECK(lab.xha->agent().bindings().find(external_home) == nullptr);  // then x-MIP deregistered
}

TEST_CASE("RFC 5265 f -> fvc: from an intranet agent straight to a cafe agent, x-MIP wakes and registers through it, IKE, i-MIP the inner address") {
    Lab lab(Lab::Options{.gateway = true});
    lab.address(office, true);
    lab.exchange();
    REQUIRE(lab.status().mode == ND::Mode::InsideCoLocated);
    lab.relink(office, lab.office_fa.get());
    lab.exchange();
    lab.advance(1s);
    REQUIRE(lab.status().mode == ND::Mode::InsideForeignAgent);
    CHECK(lab.xmip->dormant());

    lab.relink(std::nullopt, lab.cafe_fa.get());

    lab.exchange();
    lab.advance(3s);
    CHECK(lab.status().mode == ND::Mode::OutsideForeignAgent);
    CHECK_FALSE(lab.xmip->dormant());
    REQUIRE(lab.xha->agent().bindings().find(external_home) != nullptr);
    CHECK(lab.xha->agent().bindings().find(external_home)->care_of_address == cafe_agent);
    REQUIRE(lab.vpn->inner_address());
    CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == lab.vpn->inner_address()->address);
    REQUIRE(lab.send_user(correspondent, 71).passed());
    CHECK(lab.from_iha_tunnel.back() == test::echo_packet(internal_home, correspondent, 71));
}

TEST_CASE("two interfaces: the inside one carries user data; losing it moves data to the outside one, its return brings it back") {
    Lab lab(Lab::Options{.gateway = true, .two_links = true});
    // The wireless link comes up first, in a cafe: outside (cvc), the VPN over x-MIP from there.
    lab.plug(wifi, cafe);
    lab.exchange();
    lab.advance(3s);
    REQUIRE(lab.imip->access_mode() == Access::Outside);
    CHECK(lab.imip->access_interface() == wifi);
    REQUIRE(lab.vpn->inner_address());
    const auto tia = lab.vpn->inner_address()->address;
    CHECK(lab.xha->agent().bindings().find(external_home)->care_of_address == cafe);
    CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == tia);
    REQUIRE(lab.send_user(correspondent, 1).passed());
    CHECK(lab.arrived_up(1));
    // The other interface knows nothing yet.
    CHECK(lab.status(eth).mode == ND::Mode::NoService);

    // The office cable goes in: only that interface detects; data keeps flowing over wifi meanwhile.
    lab.plug(eth, office);
    CHECK(lab.status(eth).mode == ND::Mode::Detecting);
    CHECK(lab.status(wifi).mode == ND::Mode::OutsideCoLocated);
    REQUIRE(lab.send_user(correspondent, 2).passed());
    lab.exchange();
    // Proven inside (direct TNC reply on eth): user data moves to it, the layers below sleep.
    CHECK(lab.status(eth).mode == ND::Mode::InsideCoLocated);
    CHECK(lab.status(wifi).mode == ND::Mode::OutsideCoLocated);  // success on eth says nothing about wifi
    REQUIRE(lab.imip->access_mode() == Access::Inside);
    CHECK(lab.imip->access_interface() == eth);
    CHECK(lab.vpn->dormant());
    CHECK(lab.xmip->dormant());
    lab.advance(1s);
    CHECK(lab.xha->agent().bindings().find(external_home) == nullptr);
    CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == office);
    // The direct requests left by the interface whose address they carry.
    CHECK(lab.wire.egress_by_source[office] == std::set<std::uint32_t>{eth});
    CHECK(lab.wire.egress_by_source[cafe].contains(wifi));
    REQUIRE(lab.send_user(correspondent, 3).passed());
    CHECK(lab.arrived_up(3));
    CHECK(source_of(lab.last_user_outer) == office);
    CHECK(destination_of(lab.last_user_outer) == internal_ha);
    CHECK(lab.last_user_egress == eth);
    lab.send_down(4);
    CHECK(lab.received_down(4));
    lab.advance(20s);  // re-registrations on eth; wifi's direct requests are firewalled meanwhile
    REQUIRE(lab.imip->access_mode() == Access::Inside);
    CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == office);

    // The office cable is pulled: data moves to wifi at once (outside there already); x-MIP
    // registers the cafe address again, the VPN wakes with its kept SAs, i-MIP registers the
    // inner address through it. No IKE.
    const auto ike = lab.ike_at_gateway();
    lab.unplug(eth);
    CHECK(lab.imip->access_mode() == Access::Outside);
    CHECK(lab.imip->access_interface() == wifi);
    lab.exchange();
    lab.advance(2s);
    CHECK_FALSE(lab.vpn->dormant());
    CHECK_FALSE(lab.xmip->dormant());
    CHECK(lab.xha->agent().bindings().find(external_home)->care_of_address == cafe);
    CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == tia);
    CHECK(lab.ike_at_gateway() == ike + 1);  // the kept SA's R-U-THERE, no negotiation
    CHECK(lab.vpn->sessions_started() == 1);
    REQUIRE(lab.send_user(correspondent, 5).passed());
    CHECK(lab.arrived_up(5));
    CHECK(destination_of(lab.last_user_outer) == external_ha);  // i-MIP in ESP in x-MIP
    lab.send_down(6);
    CHECK(lab.received_down(6));

    // Plugged in again: detected again, inside again, and the data returns to it.
    lab.replug(eth);
    CHECK(lab.imip->access_interface() == wifi);  // not before it is proven inside
    CHECK(lab.send_user(correspondent, 7).passed());
    lab.exchange();
    CHECK(lab.imip->access_mode() == Access::Inside);
    CHECK(lab.imip->access_interface() == eth);
    CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == office);
    CHECK(lab.xmip->dormant());
    REQUIRE(lab.send_user(correspondent, 8).passed());
    CHECK(lab.arrived_up(8));
    CHECK(lab.last_user_egress == eth);
    lab.send_down(9);
    CHECK(lab.received_down(9));

    // Status: the interface in use, and every interface's own detection state.
    test::FlatStatus status;
    lab.imip->report(status);
    CHECK(status.values["detection.interface"] == "eth0");
    CHECK(status.values["detection.mode"] == "c");
    CHECK(status.values["detection.interfaces[0].name"] == "eth0");
    CHECK(status.values["detection.interfaces[0].mode"] == "c");
    CHECK(status.values["detection.interfaces[0].cause"] == "internal_ha_tnc_reply");
    CHECK(status.values["detection.interfaces[0].in_use"] == "true");
    CHECK(status.values["detection.interfaces[0].since_internal_success_s"] == "0");
    CHECK(status.values["detection.interfaces[1].name"] == "wlan0");
    CHECK(status.values["detection.interfaces[1].mode"] == "cvc");
    CHECK(status.values["detection.interfaces[1].cause"] == "external_ha_reply");
    CHECK(status.values["detection.interfaces[1].in_use"] == "false");
    CHECK(status.values["detection.interfaces[1].interface_address"] == cafe.to_string());
}

TEST_CASE("two interfaces: with neither decided, x-MIP follows the one being detected; losing the inside one with the other undecided") {
    Lab lab(Lab::Options{.gateway = true, .two_links = true});
    lab.xha_reachable = false;  // the x-HA cannot answer for wifi yet
    lab.plug(eth, office);
    lab.plug(wifi, cafe);
    lab.exchange();
    REQUIRE(lab.imip->access_mode() == Access::Inside);
    CHECK(lab.imip->access_interface() == eth);
    lab.xha_reachable = true;
    lab.advance(35s);
    // wifi had no answer from either home agent: no service there, data stays on eth.
    CHECK(lab.status(wifi).mode == ND::Mode::NoService);
    CHECK(lab.imip->access_interface() == eth);
    CHECK(lab.xmip->dormant());

    // eth lost: nothing is decided, so the layers below move to wifi and x-MIP's answer there decides it.
    lab.unplug(eth);
    CHECK(lab.imip->access_interface() == wifi);
    CHECK(lab.send_user().reason == core::DropReason::Blocked);
    lab.exchange();
    lab.advance(3s);
    CHECK(lab.status(wifi).mode == ND::Mode::OutsideCoLocated);
    CHECK(lab.imip->access_mode() == Access::Outside);
    CHECK(lab.xha->agent().bindings().find(external_home)->care_of_address == cafe);
    REQUIRE(lab.vpn->inner_address());
    CHECK(lab.iha->agent().bindings().find(internal_home)->care_of_address == lab.vpn->inner_address()->address);
    REQUIRE(lab.send_user(correspondent, 11).passed());
    CHECK(lab.arrived_up(11));
}

TEST_CASE("RFC 5265 §6: an authenticated TNC reply arriving on another interface than its request's never makes the node inside") {
    Lab lab(Lab::Options{.gateway = true, .two_links = true});
    lab.plug(wifi, cafe);
    lab.exchange();
    lab.advance(3s);
    REQUIRE(lab.imip->access_mode() == Access::Outside);
    REQUIRE(lab.vpn->inner_address());
    // The office link comes up; the i-HA's answers to its direct requests are held back.
    lab.hold_iha_replies = true;
    lab.plug(eth, office);
    lab.exchange();
    REQUIRE(!lab.held.empty());
    CHECK(lab.imip->access_mode() != Access::Inside);
    const auto rejected = lab.imip->counters().direct_replies_rejected;

    // Genuine, authenticated, with TNC, answering eth's request: but it comes in on wifi.
    for (const auto& p : lab.held) CHECK(lab.to_node(p, wifi).action == core::Action::Consumed);
    CHECK(lab.count(ND::ReplyResult::UnknownIdentification) == lab.held.size());
    CHECK(lab.imip->counters().direct_replies_rejected == rejected + lab.held.size());
    // And on an interface detection does not watch at all.
    CHECK(lab.to_node(lab.held.front(), 9).action == core::Action::Consumed);
    CHECK(lab.count(ND::ReplyResult::UnknownInterface) == 1);
    CHECK(lab.status(eth).mode != ND::Mode::InsideCoLocated);
    CHECK(lab.status(wifi).mode == ND::Mode::OutsideCoLocated);
    CHECK(lab.imip->access_mode() == Access::Outside);
    // User data stays inside IPsec: i-MIP in ESP in x-MIP, to the external home agent. (The
    // i-HA itself bound the office address on eth's request and now refuses the tunnel from
    // the inner address, RFC 3024; what matters here is that nothing left in the clear.)
    const auto gateway_packets = lab.at_gateway.size();
    REQUIRE(lab.send_user(correspondent, 31).passed());
    CHECK(destination_of(lab.last_user_outer) == external_ha);
    REQUIRE(lab.at_gateway.size() == gateway_packets + 1);
    CHECK(core::Ipv4View::check(lab.at_gateway.back())->protocol() == core::ip_protocol::esp);

    // The same replies on eth, where the requests went, are the proof (the first of them).
    lab.hold_iha_replies = false;
    for (const auto& p : lab.held) lab.to_node(p, eth);
    CHECK(lab.count(ND::ReplyResult::MadeInside) == 1);
    CHECK(lab.imip->access_mode() == Access::Inside);
    CHECK(lab.imip->access_interface() == eth);
}
