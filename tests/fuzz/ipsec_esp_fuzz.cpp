// SPDX-License-Identifier: MIT
// Arbitrary bytes as inbound packets for ipsec.esp_tunnel; must never crash or misbehave.
// The first byte picks how the rest is used, so the fuzzer reaches past the outer checks:
//   0: the whole packet as received from the wire;
//   1: an ESP packet behind a valid outer header (our addresses, protocol 50), the SPI forced
//      to a configured SA every other time, so the replay and ICV paths run;
//   2: a plaintext sealed with the SA's real keys under a fuzzer-chosen Next Header, so the
//      post-ICV paths (trailer, padding, NH, inner IPv4, policy, TFC) see arbitrary content.
// An accepted packet must be a whole IPv4 packet that fits the buffer.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/buffer_pool.hpp"
#include "core/detached_stage_context.hpp"
#include "core/ipv4.hpp"
#include "crypto/random.hpp"
#include "ipsec/esp_tunnel_stage.hpp"

namespace {
using namespace mipsec;

class ZeroRandom final : public crypto::Random {
public:
    void fill(std::span<std::uint8_t> out) noexcept override { std::fill(out.begin(), out.end(), std::uint8_t{0x5a}); }
};

const auto local = core::Ipv4Address::from_octets(192, 0, 2, 1);
const auto remote = core::Ipv4Address::from_octets(198, 51, 100, 2);

struct Sas {
    ipsec::Sa::Config cfg;
    crypto::SecretBytes keymat;
};

Sas config_for(int which) {
    const auto suite = which == 0 ? ipsec::EspSuite::AesGcm128 : ipsec::EspSuite::AesCbc128HmacSha1;
    ipsec::Sa::Config cfg{.spi = which == 0 ? 0x100u : 0x200u, .suite = suite, .esn = which == 1, .replay_window = 64};
    crypto::SecretBytes k(ipsec::keymat_len(suite));
    for (std::size_t i = 0; i < k.size(); ++i) k.mutable_span()[i] = static_cast<std::uint8_t>(i * 11 + which);
    return {cfg, std::move(k)};
}

void emit_outer(core::PacketBuf& buf) {
    core::Ipv4Header ip;
    ip.total_length = static_cast<std::uint16_t>(buf.size());
    ip.protocol = core::ip_protocol::esp;
    ip.source = remote;
    ip.destination = local;
    ip.emit(buf.bytes());
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static core::BufferPool pool(4, 70000);
    static ZeroRandom random;
    if (size == 0) return 0;
    const std::uint8_t mode = data[0] % 3;
    const int which = (data[0] >> 2) & 1;
    ++data;
    --size;
    size = std::min<std::size_t>(size, 65000);

    core::DetachedStageContext ctx(pool);
    ipsec::EspTunnelStage stage({.local = local, .remote = remote,
                                 .allowed_inner_source = core::Ipv4Prefix{core::Ipv4Address::from_octets(10, 0, 0, 0), 8}});
    for (int i = 0; i < 2; ++i) {
        auto s = config_for(i);
        auto sa = ipsec::Sa::create(ipsec::Sa::Direction::Inbound, s.cfg, s.keymat, random, ctx.now());
        if (!sa || !stage.install_inbound(std::move(*sa))) std::abort();
    }

    auto buf = pool.acquire(128);
    if (mode == 0) {
        if (!buf.resize(size)) return 0;
        std::memcpy(buf.data(), data, size);
    } else if (mode == 1) {
        if (!buf.resize(20 + size)) return 0;
        std::memcpy(buf.data() + 20, data, size);
        if (size >= 4 && (data[0] & 1) != 0) {
            core::store_be32(buf.data() + 20, which == 0 ? 0x100u : 0x200u);
        }
        emit_outer(buf);
    } else {
        if (size < 1) return 0;
        const std::uint8_t next_header = data[0];
        auto s = config_for(which);
        auto sealer = ipsec::Sa::create(ipsec::Sa::Direction::Outbound, s.cfg, s.keymat, random, ctx.now());
        if (!sealer) std::abort();
        if (!buf.resize(size - 1)) return 0;
        std::memcpy(buf.data(), data + 1, size - 1);
        if (!sealer->seal(buf, next_header, ctx.now()).passed()) return 0;
        if (!buf.push(20)) std::abort();
        emit_outer(buf);
    }
    const std::vector<std::uint8_t> wire(buf.bytes().begin(), buf.bytes().end());
    const auto* block = buf.block();
    auto v = stage.decapsulate(buf, ctx);
    if (buf.block() != block) std::abort();
    if (v.passed() || v.reason == core::DropReason::DummyPacket || v.reason == core::DropReason::BadNextHeader ||
        v.reason == core::DropReason::PolicyMismatch) {
        if (v.passed()) {
            auto inner = core::Ipv4View::check(buf.bytes());
            if (!inner || inner->total_length() != buf.size()) std::abort();
        }
        // Authenticated once, so the same bytes again are a replay (RFC 4303 §3.4.3).
        auto again = pool.acquire(128);
        if (!again.resize(wire.size())) std::abort();
        std::memcpy(again.data(), wire.data(), wire.size());
        if (stage.decapsulate(again, ctx).reason != core::DropReason::ReplayedSequence) std::abort();
    }
    return 0;
}
