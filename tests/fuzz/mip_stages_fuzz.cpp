// SPDX-License-Identifier: MIT
// Arbitrary packets into the Mobile IP stages — mobile node, home agent, foreign agent — in
// both directions, after a real registration set them up (so binding, visitor and tunnel
// checks are reached), then a timer poll. Must never crash, leak or misbehave.
//
// Input: byte 0 picks the stage and direction, byte 1 how far the clock moves before the
// poll (low 7 bits) and whether the MN and the FA ask for RFC 3519 (0x80), the rest is the packet.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/buffer_pool.hpp"
#include "core/logger.hpp"
#include "core/stage.hpp"
#include "mip/foreign_agent_stage.hpp"
#include "mip/home_agent_stage.hpp"
#include "mip/mobile_node_stage.hpp"

namespace {

using namespace mipsec;

class CountingRandom final : public crypto::Random {
public:
    void fill(std::span<std::uint8_t> out) noexcept override {
        for (auto& b : out) b = static_cast<std::uint8_t>(++n_ * 131);
    }

private:
    std::uint32_t n_ = 0;
};

// Keeps what a stage sends so the set-up can hand it to the next stage.
class CapturingContext final : public core::StageContext {
public:
    explicit CapturingContext(core::BufferPool& pool) : pool_(pool), log_(core::null_logger()) {}
    core::TimePoint now() const override { return now_; }
    core::PacketBuf allocate() override { return pool_.acquire(64); }
    void send_control(core::PacketBuf&& p) override { keep(sent, std::move(p)); }
    void deliver_inward(core::PacketBuf&& p) override { keep(delivered, std::move(p)); }
    void raise(core::ControlEvent) override {}
    core::Logger& log() override { return log_; }

    core::TimePoint now_ = core::TimePoint{} + std::chrono::hours(1);
    std::vector<std::vector<std::uint8_t>> sent, delivered;

private:
    static void keep(std::vector<std::vector<std::uint8_t>>& to, core::PacketBuf&& p) {
        if (to.size() < 16) to.emplace_back(p.bytes().begin(), p.bytes().end());
    }
    core::BufferPool& pool_;
    core::Logger log_;
};

const auto home = core::Ipv4Address::from_octets(10, 1, 0, 77);
const auto visitor_home = core::Ipv4Address::from_octets(10, 1, 0, 78);
const auto ha_addr = core::Ipv4Address::from_octets(203, 0, 113, 1);
const auto fa_addr = core::Ipv4Address::from_octets(198, 51, 100, 1);
const auto coa = core::Ipv4Address::from_octets(192, 0, 2, 9);
const std::uint8_t key[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

mip::SecurityAssociation sa() {
    mip::SecurityAssociation s;
    s.spi = 256;
    s.key = crypto::SecretBytes(std::span<const std::uint8_t>(key));
    return s;
}

core::PacketBuf load(core::BufferPool& pool, std::span<const std::uint8_t> bytes) {
    auto buf = pool.acquire(128);
    if (buf.valid() && buf.resize(std::min(bytes.size(), buf.capacity() - 128))) std::memcpy(buf.data(), bytes.data(), buf.size());
    return buf;
}

// Hands every packet `from` sent to `to` (inward), returning what `to` sent in turn.
void relay(core::BufferPool& pool, CapturingContext& from, core::Stage& to, CapturingContext& to_ctx, bool inward = true) {
    auto packets = std::move(from.sent);
    from.sent.clear();
    for (const auto& p : packets) {
        auto buf = load(pool, p);
        if (!buf.valid()) continue;
        (void)(inward ? to.decapsulate(buf, to_ctx) : to.encapsulate(buf, to_ctx));
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    static core::BufferPool pool(64, 4096);
    CountingRandom random;

    mip::HomeAgentStage::Config hc;
    hc.agent.address = ha_addr;
    hc.agent.home_network = core::Ipv4Prefix{core::Ipv4Address::from_octets(10, 1, 0, 0), 24};
    hc.agent.mobile_nodes.push_back({home, sa(), ""});
    hc.agent.mobile_nodes.push_back({visitor_home, sa(), ""});
    mip::HomeAgentStage ha(std::move(hc), random);

    mip::MobileNodeStage::Config mc;
    mc.node.home_address = home;
    mc.node.home_agent = ha_addr;
    mc.node.sa = sa();
    mc.node.udp_tunnelling = (data[1] & 0x80) ? mip::MobileNode::UdpTunnelling::Forced : mip::MobileNode::UdpTunnelling::Off;
    mc.care_of_source = mip::MobileNodeStage::CareOfSource::Static;
    mc.static_care_of = coa;
    mip::MobileNodeStage mn(std::move(mc), random);

    mip::ForeignAgentStage::Config fc;
    fc.agent.link_address = fa_addr;
    // With the same bit the FA asks its HA for RFC 3519 (forced: there is no NAT here), so its
    // visitor's tunnel, keepalives and checks are IP-in-UDP.
    fc.agent.home_agent_udp_tunnelling = (data[1] & 0x80) ? mip::ForeignAgent::UdpTunnelling::Forced : mip::ForeignAgent::UdpTunnelling::Off;
    mip::ForeignAgentStage fa(std::move(fc), random);

    CapturingContext mn_ctx(pool), ha_ctx(pool), fa_ctx(pool);
    // A co-located registration: MN -> HA -> MN.
    (void)mn.poll(mn_ctx);
    relay(pool, mn_ctx, ha, ha_ctx);
    relay(pool, ha_ctx, mn, mn_ctx);
    // A second MN's request relayed by the FA makes it a visitor: link -> FA -> HA -> FA.
    {
        CapturingContext via_ctx(pool);
        mip::MobileNodeStage::Config vc;
        vc.node.home_address = visitor_home;
        vc.node.home_agent = ha_addr;
        vc.node.sa = sa();
        vc.care_of_source = mip::MobileNodeStage::CareOfSource::ForeignAgent;
        mip::MobileNodeStage visitor(std::move(vc), random);
        (void)visitor.poll(via_ctx);  // solicits
        (void)fa.poll(fa_ctx);        // the FA's first advertisement, delivered to the link
        for (const auto& p : fa_ctx.delivered) {
            auto buf = load(pool, p);
            if (buf.valid()) (void)visitor.decapsulate(buf, via_ctx);
        }
        fa_ctx.delivered.clear();
        via_ctx.sent.erase(via_ctx.sent.begin());  // the solicitation
        relay(pool, via_ctx, fa, fa_ctx, false);
        relay(pool, fa_ctx, ha, ha_ctx);
        relay(pool, ha_ctx, fa, fa_ctx);
    }

    const std::span<const std::uint8_t> packet(data + 2, size - 2);
    auto buf = load(pool, packet);
    if (!buf.valid()) return 0;
    core::Stage* stages[] = {&mn, &ha, &fa};
    CapturingContext* contexts[] = {&mn_ctx, &ha_ctx, &fa_ctx};
    const std::size_t which = data[0] % 3;
    const bool inward = (data[0] & 0x04) != 0;
    auto v = inward ? stages[which]->decapsulate(buf, *contexts[which]) : stages[which]->encapsulate(buf, *contexts[which]);
    if (v.passed() && buf.size() > 65535) __builtin_trap();  // a stage grew a packet past IPv4's limit
    contexts[which]->now_ += std::chrono::milliseconds(data[1] & 0x7F) * 1000;
    (void)stages[which]->poll(*contexts[which]);
    return 0;
}
