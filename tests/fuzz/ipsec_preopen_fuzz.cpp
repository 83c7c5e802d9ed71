// SPDX-License-Identifier: MIT
// Arbitrary bytes as a batch of wire packets for ipsec::preopen_esp (AEAD opened by a data-path
// thread before the stages, core/aead_offload.hpp), each then handed to its SA's open().
// Pre-opening must change nothing but where the AEAD work is done, so besides not crashing:
//   - a packet preopen_esp did not mark is byte for byte what arrived, and every packet it
//     should have taken (IPv4, not a fragment, UDP to the key's port or protocol 50, a
//     published SPI, long enough for ESP) is marked, with its key and sequence number;
//   - a marked packet's headers, IV and ICV are untouched: only the ciphertext is rewritten;
//   - the SA's verdict, next header, plaintext and counters equal those of a second SA with
//     the same key that opens the packet's original bytes itself;
//   - a packet either SA refuses leaves its replay window's highest number where it was
//     (RFC 4303 §3.4.3).
// Two inbound SAs, keyed as published test vectors so vector packets are seeds that
// authenticate: AES-128-GCM (draft-mcgrew-gcm-test-01 case 2) whose key is published for ESP
// in UDP to 4500 (RFC 3948), and ChaCha20-Poly1305 (RFC 7634 Appendix A) for plain ESP.
// Input: [window size: low 2 bits][highest sequence number already accepted: 4 bytes] and
// then up to 8 records [control][length: 2 bytes][body], the last one cut to what is left.
// Control bits 0-1 pick how the body makes a packet:
//   0: the body is the whole packet;
//   1: the body is ESP behind a valid outer header; bit 3 forces the SPI to the SA's;
//   2: the body is sealed with the SA's real key: [sequence number: 4 bytes] then either
//      (bit 5 clear) [next header][plaintext], sealed by an outbound Sa, or (bit 5 set)
//      [IV: 8 bytes][plaintext with a trailer of the fuzzer's own], sealed by the AEAD
//      directly; with bit 3, two more bytes before the plaintext name a bit of the packet
//      to flip;
//   3: [index]: the packet of an earlier record again (a replay, in the same batch).
// Bit 2 picks the SA (GCM or ChaCha20); for modes 1 and 2, bit 4 uses the other SA's
// encapsulation (which preopen_esp must leave alone), bit 6 adds IPv4 options and bit 7 link
// padding after Total Length.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "core/aead_offload.hpp"
#include "core/buffer_pool.hpp"
#include "core/endian.hpp"
#include "core/ipv4.hpp"
#include "core/udp.hpp"
#include "crypto/aead.hpp"
#include "crypto/aead_contexts.hpp"
#include "crypto/random.hpp"
#include "crypto/secret_bytes.hpp"
#include "ipsec/esp_offload.hpp"
#include "ipsec/sa.hpp"

namespace {
using namespace mipsec;
using Bytes = std::vector<std::uint8_t>;

class FixedRandom final : public crypto::Random {
public:
    void fill(std::span<std::uint8_t> out) noexcept override { std::fill(out.begin(), out.end(), std::uint8_t{0x5a}); }
};

const core::TimePoint now = core::TimePoint{} + std::chrono::hours(1);
const auto local = core::Ipv4Address::from_octets(192, 0, 2, 1);
const auto remote = core::Ipv4Address::from_octets(198, 51, 100, 2);
constexpr std::uint16_t nat_t_port = 4500;
constexpr std::size_t esp_header_len = 16;  // SPI, sequence number, 8-byte IV (RFC 4106 §3)
constexpr std::size_t tag_len = crypto::Aead::tag_len;
constexpr std::size_t max_records = 8;
constexpr std::size_t max_body = 4000;

struct Suite {
    ipsec::EspSuite suite;
    crypto::AeadAlgorithm algorithm;
    std::uint32_t spi;
    std::uint16_t udp_port;  // where its key is published: 0 for plain ESP
    std::array<std::uint8_t, 36> keymat;
    std::size_t keymat_len;
};

constexpr Suite suites[2] = {
    {ipsec::EspSuite::AesGcm128, crypto::AeadAlgorithm::AesGcm128, 0x0000a5f8, nat_t_port,
     {0xfe, 0xff, 0xe9, 0x92, 0x86, 0x65, 0x73, 0x1c, 0x6d, 0x6a, 0x8f, 0x94, 0x67, 0x30, 0x83, 0x08, 0xca, 0xfe, 0xba, 0xbe},
     20},
    {ipsec::EspSuite::ChaCha20Poly1305, crypto::AeadAlgorithm::ChaCha20Poly1305, 0x01020304, 0,
     {0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f, 0x90, 0x91,
      0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f, 0xa0, 0xa1, 0xa2, 0xa3},
     36},
};

crypto::SecretBytes keymat_of(const Suite& s) { return crypto::SecretBytes(std::span(s.keymat).first(s.keymat_len)); }

ipsec::Sa make_sa(ipsec::Sa::Direction dir, const Suite& s, std::size_t window, std::uint64_t initial_seq) {
    static FixedRandom random;
    ipsec::Sa::Config cfg{.spi = s.spi, .suite = s.suite, .replay_window = window, .initial_seq = initial_seq};
    auto sa = ipsec::Sa::create(dir, cfg, keymat_of(s), random, now);
    if (!sa) std::abort();
    return std::move(*sa);
}

// ESP as the wire delivers it: in UDP to `port` (RFC 3948) or plain (port 0), optionally with
// IPv4 options and link padding past Total Length.
Bytes on_the_wire(std::span<const std::uint8_t> esp, std::uint16_t port, bool options, bool padding) {
    const std::size_t ip_len = core::Ipv4Header::len + (options ? 4 : 0);
    const std::size_t udp_len = port != 0 ? core::UdpHeader::len : 0;
    Bytes out(ip_len + udp_len);
    core::Ipv4Header ip;
    ip.total_length = static_cast<std::uint16_t>(out.size() + esp.size());
    ip.protocol = port != 0 ? core::ip_protocol::udp : core::ip_protocol::esp;
    ip.source = remote;
    ip.destination = local;
    ip.emit(out);
    if (options) {
        out[0] = 0x46;
        const std::uint8_t nop_nop_nop_eol[] = {1, 1, 1, 0};
        std::copy(std::begin(nop_nop_nop_eol), std::end(nop_nop_nop_eol), out.begin() + core::Ipv4Header::len);
        core::store_be16(out.data() + 10, 0);
        core::store_be16(out.data() + 10, core::internet_checksum(std::span(out).first(ip_len)));
    }
    if (port != 0)
        core::UdpHeader{nat_t_port, port, static_cast<std::uint16_t>(udp_len + esp.size()), 0}.emit(std::span(out).subspan(ip_len));
    out.insert(out.end(), esp.begin(), esp.end());
    if (padding) out.insert(out.end(), 4, std::uint8_t{0xEE});
    return out;
}

// Where the ESP bytes sit in a wire packet, as the stages below the ESP layer leave them:
// nat.udp_encap takes IP and UDP headers off ESP in UDP, esp_tunnel the IP header off plain
// ESP (both cut link padding). Anything else reaches the SA as it arrived.
struct Span {
    std::size_t offset = 0;
    std::size_t len = 0;
    bool esp = false;  // IPv4 carrying ESP, plain or in UDP
    std::uint16_t port = 0;
};

Span locate_esp(std::span<const std::uint8_t> wire) {
    auto ip = core::Ipv4View::check(wire);
    if (!ip) return {0, wire.size()};
    auto at = [&](std::span<const std::uint8_t> s, std::uint16_t port) {
        return Span{static_cast<std::size_t>(s.data() - wire.data()), s.size(), true, port};
    };
    if (ip->protocol() == core::ip_protocol::esp) return at(ip->payload(), 0);
    if (ip->protocol() == core::ip_protocol::udp) {
        if (auto udp = core::UdpView::check(ip->payload())) return at(udp->payload(), udp->destination_port());
    }
    return {0, wire.size()};
}

// Independently of preopen_esp: whether this packet is one it must open.
std::optional<int> should_open(std::span<const std::uint8_t> wire) {
    auto ip = core::Ipv4View::check(wire);
    if (!ip || ip->is_fragment()) return std::nullopt;
    std::span<const std::uint8_t> esp;
    std::uint16_t port = 0;
    if (ip->protocol() == core::ip_protocol::esp) {
        esp = ip->payload();
    } else if (ip->protocol() == core::ip_protocol::udp) {
        auto udp = core::UdpView::check(ip->payload());
        if (!udp || udp->length() != ip->payload().size()) return std::nullopt;
        esp = udp->payload();
        port = udp->destination_port();
        if (port == 0) return std::nullopt;  // UDP port 0 is never the wire form of plain ESP
    } else {
        return std::nullopt;
    }
    if (esp.size() < esp_header_len + 2 + tag_len) return std::nullopt;
    const std::uint32_t spi = core::load_be32(esp.data());
    for (int i = 0; i < 2; ++i)
        if (spi == suites[i].spi && port == suites[i].udp_port) return i;
    return std::nullopt;
}

int owner_of(std::span<const std::uint8_t> esp) {
    return esp.size() >= 4 && core::load_be32(esp.data()) == suites[1].spi ? 1 : 0;
}

void flip(Bytes& wire, std::uint16_t bit) {
    if (wire.empty()) return;
    const std::size_t at = bit % (wire.size() * 8);
    wire[at / 8] ^= static_cast<std::uint8_t>(1u << (at % 8));
}

// Mode 2: an ESP packet that authenticates under the suite's key, or nothing.
std::optional<Bytes> sealed(const Suite& s, std::uint8_t control, std::span<const std::uint8_t> body, core::BufferPool& pool) {
    if (body.size() < 4) return std::nullopt;
    const std::uint32_t seq = core::load_be32(body.data());
    body = body.subspan(4);
    if ((control & 0x20) == 0) {
        if (body.empty()) return std::nullopt;
        const std::uint8_t next_header = body[0];
        std::optional<std::uint16_t> bit;
        body = body.subspan(1);
        if ((control & 0x08) != 0) {
            if (body.size() < 2) return std::nullopt;
            bit = core::load_be16(body.data());
            body = body.subspan(2);
        }
        auto out = make_sa(ipsec::Sa::Direction::Outbound, s, ipsec::ReplayWindow::min_size, seq == 0 ? 0 : seq - 1);
        auto buf = pool.acquire(128);
        if (!buf.resize(body.size())) std::abort();
        std::copy(body.begin(), body.end(), buf.data());
        if (!out.seal(buf, next_header, now).passed()) std::abort();
        Bytes esp(buf.bytes().begin(), buf.bytes().end());
        if (bit) flip(esp, *bit);
        return esp;
    }
    if (body.size() < 8) return std::nullopt;
    Bytes esp(esp_header_len);
    core::store_be32(esp.data(), s.spi);
    core::store_be32(esp.data() + 4, seq);
    std::copy_n(body.begin(), 8, esp.begin() + 8);
    body = body.subspan(8);
    std::optional<std::uint16_t> bit;
    if ((control & 0x08) != 0) {
        if (body.size() < 2) return std::nullopt;
        bit = core::load_be16(body.data());
        body = body.subspan(2);
    }
    esp.insert(esp.end(), body.begin(), body.end());
    esp.resize(esp.size() + tag_len);
    const std::size_t key_len = crypto::key_len(s.algorithm);
    auto aead = crypto::Aead::create(s.algorithm, std::span(s.keymat).first(key_len));
    if (!aead) std::abort();
    std::array<std::uint8_t, crypto::Aead::nonce_len> nonce;
    std::copy_n(s.keymat.begin() + key_len, 4, nonce.begin());  // salt || IV (RFC 4106 §4)
    std::copy_n(esp.begin() + 8, 8, nonce.begin() + 4);
    auto ciphertext = std::span(esp).subspan(esp_header_len, esp.size() - esp_header_len - tag_len);
    if (!(*aead)->seal(nonce, std::span(esp).first(8), ciphertext, std::span<std::uint8_t, tag_len>(esp.data() + esp.size() - tag_len, tag_len)))
        std::abort();
    if (bit) flip(esp, *bit);
    return esp;
}

core::PacketBuf load(core::BufferPool& pool, std::span<const std::uint8_t> bytes) {
    auto buf = pool.acquire(128);
    if (!buf.valid() || !buf.resize(bytes.size())) std::abort();
    std::copy(bytes.begin(), bytes.end(), buf.data());
    return buf;
}

bool same(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) { return std::equal(a.begin(), a.end(), b.begin(), b.end()); }

bool same_counters(const ipsec::SaCounters& offloaded, const ipsec::SaCounters& reference) {
    return offloaded.packets == reference.packets && offloaded.bytes == reference.bytes && offloaded.drops == reference.drops &&
           offloaded.auth_failures == reference.auth_failures && offloaded.replay_drops == reference.replay_drops;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static core::BufferPool pool(2 * max_records + 4, max_body + 512);
    if (size < 5) return 0;
    constexpr std::size_t windows[] = {ipsec::ReplayWindow::min_size, 64, ipsec::ReplayWindow::default_size, ipsec::ReplayWindow::max_size};
    const std::size_t window = windows[data[0] & 3];
    const std::uint32_t highest = core::load_be32(data + 1);
    std::span<const std::uint8_t> in(data + 5, size - 5);

    // The packets of one batch, as they arrived.
    std::vector<Bytes> wires;
    while (in.size() >= 3 && wires.size() < max_records) {
        const std::uint8_t control = in[0];
        const std::size_t len = std::min<std::size_t>({core::load_be16(in.data() + 1), in.size() - 3, max_body});
        auto body = in.subspan(3, len);
        in = in.subspan(3 + len);
        const Suite& s = suites[(control >> 2) & 1];
        const std::uint16_t port = (control & 0x10) != 0 ? (s.udp_port != 0 ? 0 : nat_t_port) : s.udp_port;
        const bool options = (control & 0x40) != 0, padding = (control & 0x80) != 0;
        switch (control & 3) {
        case 0:
            wires.emplace_back(body.begin(), body.end());
            break;
        case 1: {
            Bytes esp(body.begin(), body.end());
            if ((control & 0x08) != 0 && esp.size() >= 4) core::store_be32(esp.data(), s.spi);
            wires.push_back(on_the_wire(esp, port, options, padding));
            break;
        }
        case 2:
            if (auto esp = sealed(s, control, body, pool)) wires.push_back(on_the_wire(*esp, port, options, padding));
            break;
        default:
            if (!body.empty() && !wires.empty()) wires.push_back(Bytes(wires[body[0] % wires.size()]));
            break;
        }
    }
    if (wires.empty()) return 0;

    // Both SAs twice: one pair whose keys the data-path thread opens with, one that opens
    // everything itself.
    std::vector<ipsec::Sa> offloaded, reference;
    core::AeadOffload keys;
    std::array<std::uint64_t, 2> key_ids{};
    for (int i = 0; i < 2; ++i) {
        offloaded.push_back(make_sa(ipsec::Sa::Direction::Inbound, suites[i], window, highest));
        reference.push_back(make_sa(ipsec::Sa::Direction::Inbound, suites[i], window, highest));
        auto key = offloaded.back().open_key(suites[i].udp_port);
        if (!key) std::abort();
        key_ids[i] = key->id;
        keys.publish(key);
    }

    std::vector<core::PacketBuf> batch;
    for (const auto& w : wires) batch.push_back(load(pool, w));
    crypto::AeadContexts contexts;
    const std::size_t opened = ipsec::preopen_esp(batch, keys, contexts);

    std::size_t marked = 0;
    for (std::size_t i = 0; i < batch.size(); ++i) {
        const Bytes& wire = wires[i];
        core::PacketBuf& packet = batch[i];
        const auto esp = locate_esp(wire);
        const auto& mark = packet.meta().esp_opened;
        const auto expected = should_open(wire);
        if (mark.has_value() != expected.has_value()) std::abort();
        if (!mark) {
            if (!same(packet.bytes(), wire)) std::abort();
        } else {
            ++marked;
            if (mark->key_id != key_ids[*expected] || mark->seq != core::load_be32(wire.data() + esp.offset + 4)) std::abort();
            // Only the ciphertext between IV and ICV may have changed.
            const std::size_t ciphertext_end = esp.offset + esp.len - tag_len;
            if (packet.size() != wire.size() || !same(packet.bytes().first(esp.offset + esp_header_len), std::span(wire).first(esp.offset + esp_header_len)) ||
                !same(packet.bytes().subspan(ciphertext_end), std::span(wire).subspan(ciphertext_end)))
                std::abort();
            if (mark->result == core::DropReason::None &&
                std::size_t{mark->payload_len} + 2 > esp.len - esp_header_len - tag_len)
                std::abort();
        }

        auto original = load(pool, wire);
        if (!packet.pull(esp.offset) || !packet.trim(packet.size() - esp.len)) std::abort();
        if (!original.pull(esp.offset) || !original.trim(original.size() - esp.len)) std::abort();
        const int owner = owner_of(original.bytes());
        ipsec::Sa& sa = offloaded[owner];
        ipsec::Sa& ref = reference[owner];
        const std::uint64_t sa_highest = sa.sequence(), ref_highest = ref.sequence();
        std::uint8_t nh = 0, ref_nh = 0;
        const auto v = sa.open(packet, now, nh);
        const auto ref_v = ref.open(original, now, ref_nh);
        if (packet.meta().esp_opened) std::abort();  // taken by the SA
        if (!v.passed() && sa.sequence() != sa_highest) std::abort();
        if (!ref_v.passed() && ref.sequence() != ref_highest) std::abort();
        // Pre-opened or not, the same verdict for the same reason (RFC 4303 §3.4.3 order).
        if (v.action != ref_v.action || v.reason != ref_v.reason) std::abort();
        if (v.passed() && (nh != ref_nh || !same(packet.bytes(), original.bytes()))) std::abort();
        if (sa.sequence() != ref.sequence() || !same_counters(sa.counters(), ref.counters())) std::abort();
    }
    if (opened != marked) std::abort();
    return 0;
}
