// SPDX-License-Identifier: MIT
// Mode Config (draft-dukes-ike-mode-cfg §3): a Transaction message whose payload chain after
// HASH is fuzzer-chosen, given a correct HASH(1) = prf(SKEYID_a, M-ID | payloads) so the
// attribute interpretation behind the hash check runs, both as the client's reply and as a
// request to the gateway (address pool, requested netmask/DNS, re-emitted reply).
// Input: byte 0 = role and options, byte 1 = first payload type after HASH, the rest = chain.
#include <cstdint>
#include <cstdlib>
#include <span>

#include "ipsec/ike/mode_config.hpp"

using namespace mipsec;
using namespace mipsec::ipsec::ike;

namespace {

void require(bool ok) {
    if (!ok) std::abort();
}

constexpr std::uint32_t message_id = 0x4d434647;

struct Keys {
    IkeSa sa;
    SessionConfig client_cfg;
    SessionConfig gateway_cfg;
    Keys() {
        const std::uint8_t psk[] = {'f', 'u', 'z', 'z'};
        const std::uint8_t ni[16] = {1, 2, 3};
        const std::uint8_t nr[16] = {4, 5, 6};
        const std::uint8_t gxy[128] = {7};
        const std::uint8_t gxi[128] = {8};
        const std::uint8_t gxr[128] = {9};
        Phase1Keys::Inputs in{psk, ni, nr, gxy, gxi, gxr, Cookie{1}, Cookie{2}, 16};
        auto k = Phase1Keys::derive_psk(crypto::MacAlgorithm::HmacSha1, crypto::HashAlgorithm::Sha1, in);
        require(k.has_value());
        sa.keys = std::move(*k);
        sa.cky_i = Cookie{1};
        sa.cky_r = Cookie{2};
        client_cfg.request_dns = true;
        client_cfg.request_netmask = true;
        gateway_cfg.netmask = core::Ipv4Address::from_octets(255, 255, 255, 0);
        gateway_cfg.dns_servers = {core::Ipv4Address::from_octets(10, 99, 0, 53), core::Ipv4Address::from_octets(10, 99, 0, 54)};
    }
};

Keys& keys() {
    static Keys k;
    return k;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    Keys& k = keys();
    const bool gateway = data[0] & 1;
    const bool wrong_hash = (data[0] & 0x0e) == 0x0e;  // now and then, the hash check itself
    std::span<const std::uint8_t> chain(data + 2, size - 2);

    // HASH(1) payload (generic header + 20-byte HMAC-SHA1), then the fuzzer's chain.
    auto h = k.sa.keys->hash1(message_id, chain);
    require(h.has_value());
    Bytes plain{data[1], 0, 0, static_cast<std::uint8_t>(4 + h->size())};
    plain.insert(plain.end(), h->begin(), h->end());
    if (wrong_hash) plain[4] ^= 1;
    plain.insert(plain.end(), chain.begin(), chain.end());
    IsakmpHeader header = k.sa.header(exchange_type::transaction, message_id);
    header.flags = header_flag::encryption;
    header.next_payload = payload_type::hash;
    auto msg = parse_decrypted(header, plain);
    if (!msg) return 0;

    if (!gateway) {
        auto previous = (data[0] & 0x10) ? std::optional(core::Ipv4Address::from_octets(10, 99, 1, 7)) : std::nullopt;
        auto task = ModeConfig::client(k.sa, k.client_cfg, message_id, previous);
        Message request;
        require(task.build(request) == TaskStatus::NeedMore);
        const auto status = task.process(*msg);
        if (wrong_hash) require(status == TaskStatus::Dropped);
        if (status == TaskStatus::Done) require(task.result() && !task.result()->address.is_unspecified());
        return 0;
    }

    // A small pool, sometimes already full, so exhaustion and "wanted" addresses both happen.
    AddressPool pool(*core::Ipv4Prefix::parse("10.99.1.0/29"));
    if (data[0] & 0x10)
        for (std::uint64_t owner = 100; pool.acquire(owner); ++owner) {
        }
    auto task = ModeConfig::gateway(k.sa, k.gateway_cfg, message_id, &pool, 7);
    const auto status = task.process(*msg);
    if (wrong_hash) require(status == TaskStatus::Dropped);
    if (status != TaskStatus::NeedMore) return 0;
    require(task.result().has_value());
    require(pool.range().contains(task.result()->address));
    require(pool.lease_of(7) == task.result()->address);
    Message reply;
    require(task.build(reply) == TaskStatus::Done);
    Bytes wire;
    require(reply.emit(wire).has_value());
    // The reply must authenticate at the client and carry the leased address when it answers
    // the client's own request identifier (ours: 0); any other identifier is refused.
    const auto* asked = msg->payloads[1].get<AttributePayload>();
    require(asked != nullptr);
    auto client = ModeConfig::client(k.sa, k.client_cfg, message_id);
    Message request;
    require(client.build(request) == TaskStatus::NeedMore);
    Bytes reply_chain;
    require(emit_payloads(reply.payloads, reply_chain).has_value());
    IsakmpHeader reply_header = reply.header;
    reply_header.next_payload = payload_type::hash;
    auto again = parse_decrypted(reply_header, reply_chain);
    require(again.has_value());
    const auto answered = client.process(*again);
    if (asked->identifier == 0) {
        require(answered == TaskStatus::Done);
        require(client.result()->address == task.result()->address);
    } else {
        require(answered == TaskStatus::Failed);
    }
    return 0;
}
