// SPDX-License-Identifier: MIT
// Agent discovery: Agent Advertisement (ICMP 9 + MAAE + Prefix-Lengths), its value struct
// and re-emission, Agent Solicitation, and a foreign-agent-mode MobileNode reacting to it.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "mip/agent_advertisement_wire.hpp"
#include "mip/mobile_node.hpp"

using namespace mipsec;

namespace {
class CountingRandom final : public crypto::Random {
public:
    void fill(std::span<std::uint8_t> out) noexcept override {
        for (auto& b : out) b = static_cast<std::uint8_t>(++n_);
    }

private:
    std::uint8_t n_ = 0;
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::span<const std::uint8_t> in(data, size);
    if (auto s = mip::AgentSolicitationView::check(in)) (void)s->reserved();
    auto v = mip::AgentAdvertisementView::check(in);
    if (!v) return 0;
    for (std::size_t i = 0; i < v->num_addrs(); ++i) {
        (void)v->router_address(i);
        (void)v->preference(i);
    }
    (void)v->prefix_lengths();
    if (auto m = v->mobility_extension()) {
        for (std::size_t i = 0; i < m->care_of_count(); ++i) (void)m->care_of_address(i);
    }
    auto a = mip::AgentAdvertisement::parse(*v);
    if (!a) return 0;
    std::array<std::uint8_t, 64> out{};
    const std::size_t n = a->emit(out);
    if (n != 0) {
        auto again = mip::AgentAdvertisementView::check(std::span<const std::uint8_t>(out.data(), n));
        if (!again || !mip::AgentAdvertisement::parse(*again)) __builtin_trap();  // emit must round-trip
    }

    CountingRandom random;
    mip::MobileNode::Config mc;
    mc.home_address = core::Ipv4Address::from_octets(10, 1, 0, 77);
    mc.home_agent = core::Ipv4Address::from_octets(10, 1, 0, 1);
    mc.colocated = false;
    const std::uint8_t key[16] = {1};
    mc.sa.key = crypto::SecretBytes(std::span<const std::uint8_t>(key));
    mip::MobileNode mn(std::move(mc), random);
    const core::TimePoint now = core::TimePoint{} + std::chrono::hours(1);
    (void)mn.agent_advertisement(*a, core::Ipv4Address::from_octets(192, 0, 2, 9), now);
    (void)mn.agent_advertisement(*a, core::Ipv4Address::from_octets(10, 1, 0, 1), now);
    (void)mn.poll(now + std::chrono::seconds(2));
    return 0;
}
