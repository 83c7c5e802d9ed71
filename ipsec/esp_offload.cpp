// SPDX-License-Identifier: MIT
#include "ipsec/esp_offload.hpp"

#include <algorithm>
#include <array>
#include <new>

#include "core/endian.hpp"
#include "core/ipv4.hpp"
#include "core/udp.hpp"
#include "crypto/aead.hpp"
#include "ipsec/esp_wire.hpp"

namespace mipsec::ipsec {

namespace {
// RFC 4106 §3, RFC 7634 §2: an 8-byte IV behind SPI and sequence number.
constexpr std::size_t header_len = EspHeader::len + 8;
constexpr std::size_t tag_len = crypto::Aead::tag_len;

crypto::Aead* instance(crypto::AeadContexts& contexts, const std::shared_ptr<const crypto::Aead>& key) noexcept {
    try {
        return contexts.get(key);
    } catch (const std::bad_alloc&) {
        return nullptr;
    }
}

// What preopen_esp found in one packet: the ESP bytes and their key, or nothing to do.
struct EspFound {
    std::span<std::uint8_t> esp;
    std::shared_ptr<const core::EspOpenKey> key;
};
}  // namespace

bool finish_seal(core::PacketBuf& packet, crypto::AeadContexts& contexts) noexcept {
    auto pending = std::exchange(packet.meta().aead_seal, std::nullopt);
    if (!pending) return true;
    const std::size_t start = packet.headroom();
    if (pending->offset < start || std::size_t{pending->offset} + pending->len + tag_len > start + packet.size()) return false;
    std::uint8_t* block = packet.data() - start;
    crypto::Aead* aead = instance(contexts, pending->key);
    if (aead == nullptr) return false;
    return aead->seal(pending->nonce, std::span(pending->aad).first(pending->aad_len), std::span(block + pending->offset, pending->len),
                      std::span<std::uint8_t, tag_len>(block + pending->offset + pending->len, tag_len));
}

std::size_t preopen_esp(std::span<core::PacketBuf> packets, const core::AeadOffload& keys, crypto::AeadContexts& contexts) noexcept {
    std::size_t opened = 0;
    // A batch is mostly one SA: look its key up once.
    std::uint32_t last_spi = 0;
    std::shared_ptr<const core::EspOpenKey> last_key;
    for (auto& packet : packets) {
        auto ip = core::Ipv4MutView::check(packet.bytes());
        if (!ip || ip->is_fragment()) continue;
        std::span<std::uint8_t> esp;
        std::uint16_t port = 0;
        if (ip->protocol() == core::ip_protocol::udp) {
            auto udp = core::UdpMutView::check(ip->payload());
            // A datagram shorter than its IP payload is the stages' to judge, as is anything
            // too short to be ESP (keepalives) or behind the non-ESP marker (IKE).
            if (!udp || udp->length() != ip->payload().size()) continue;
            esp = udp->payload();
            port = udp->destination_port();
            if (port == 0) continue;  // 0 names plain ESP in a key; no UDP arrives on it
        } else if (ip->protocol() == core::ip_protocol::esp) {
            esp = ip->payload();
        } else {
            continue;
        }
        if (esp.size() < header_len + EspTrailer::len + tag_len) continue;
        const std::uint32_t spi = core::load_be32(esp.data());
        if (spi == 0) continue;
        if (spi != last_spi || !last_key) {
            last_key = keys.find(spi);
            last_spi = spi;
        }
        if (!last_key || last_key->udp_port != port) continue;
        crypto::Aead* aead = instance(contexts, last_key->aead);
        if (aead == nullptr) continue;  // the stages open it the usual way

        const std::uint32_t seq = core::load_be32(esp.data() + 4);
        std::array<std::uint8_t, crypto::Aead::nonce_len> nonce;
        std::copy(last_key->salt.begin(), last_key->salt.end(), nonce.begin());
        std::copy_n(esp.begin() + EspHeader::len, nonce.size() - last_key->salt.size(), nonce.begin() + last_key->salt.size());
        // RFC 4106 §5 without ESN: the AAD is SPI and 32-bit sequence number, as on the wire.
        auto aad = esp.first(EspHeader::len);
        auto ciphertext = esp.subspan(header_len, esp.size() - header_len - tag_len);
        auto tag = esp.last(tag_len);
        core::OpenedEsp result{last_key->id, seq, 0, 0, core::DropReason::None};
        if (!aead->open(nonce, aad, ciphertext, std::span<const std::uint8_t, tag_len>(tag.data(), tag_len))) {
            result.result = core::DropReason::AuthFailed;
        } else if (auto trailer = EspTrailer::parse(ciphertext); !trailer) {
            result.result = core::DropReason::BadPadding;
        } else {
            const std::size_t payload_len = ciphertext.size() - EspTrailer::len - trailer->pad_length;
            // RFC 4303 §2.4: the receiver SHOULD check the default 1, 2, 3, ... padding.
            if (!EspTrailer::padding_valid(ciphertext.subspan(payload_len, trailer->pad_length))) {
                result.result = core::DropReason::BadPadding;
            } else {
                result.next_header = trailer->next_header;
                result.payload_len = static_cast<std::uint32_t>(payload_len);
            }
        }
        packet.meta().esp_opened = result;
        ++opened;
    }
    return opened;
}

}  // namespace mipsec::ipsec
