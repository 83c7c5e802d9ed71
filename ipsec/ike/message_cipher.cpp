// SPDX-License-Identifier: MIT
#include "ipsec/ike/message_cipher.hpp"

#include <algorithm>

#include "ipsec/ike/errc.hpp"

namespace mipsec::ipsec::ike {

core::Result<MessageCipher> MessageCipher::create(crypto::CipherAlgorithm algorithm, std::span<const std::uint8_t> key,
                                                  crypto::HashAlgorithm hash, const Bytes16& phase1_iv) {
    auto c = crypto::Cipher::create(algorithm, key);
    if (!c) return c.error();
    return MessageCipher(std::move(*c), hash, phase1_iv);
}

Bytes16 MessageCipher::iv(std::uint32_t message_id) const {
    if (message_id == 0) return phase1_;
    for (const auto& c : chains_)
        if (c.message_id == message_id) return c.iv;
    return phase2_iv(hash_, phase1_, message_id);
}

void MessageCipher::set_chain(std::uint32_t message_id, const Bytes16& iv) {
    if (message_id == 0) {
        phase1_ = iv;
        return;
    }
    for (auto& c : chains_)
        if (c.message_id == message_id) {
            c.iv = iv;
            return;
        }
    if (chains_.size() >= max_chains) chains_.erase(chains_.begin());
    chains_.push_back({message_id, iv});
}

void MessageCipher::commit(std::uint32_t message_id, const Bytes16& last_block) { set_chain(message_id, last_block); }

void MessageCipher::forget(std::uint32_t message_id) {
    std::erase_if(chains_, [&](const Chain& c) { return c.message_id == message_id; });
}

core::Result<Bytes> MessageCipher::seal(const Message& m) {
    Bytes plain;
    if (auto r = emit_payloads(m.payloads, plain); !r) return r.error();
    // RFC 2409 App. B pads with zeros; strongSwan always adds 1..16 bytes.
    std::size_t pad = crypto::Cipher::block_len - plain.size() % crypto::Cipher::block_len;
    plain.resize(plain.size() + pad, 0);
    Bytes16 iv_now = iv(m.header.message_id);
    if (!cipher_->encrypt(iv_now, plain)) return core::Errc::Unsupported;
    Bytes16 last{};
    std::copy(plain.end() - static_cast<std::ptrdiff_t>(last.size()), plain.end(), last.begin());
    Message out;
    out.header = m.header;
    out.header.flags |= header_flag::encryption;
    out.header.next_payload = first_payload_type(m.payloads);
    out.encrypted_body = std::move(plain);
    Bytes wire;
    if (auto r = out.emit(wire); !r) return r.error();
    set_chain(m.header.message_id, last);
    return wire;
}

core::Result<MessageCipher::Opened> MessageCipher::open(std::span<const std::uint8_t> bytes) const {
    auto m = parse(bytes);
    if (!m) return m.error();
    if (!m->header.encrypted()) return Errc::Malformed;
    Bytes& body = m->encrypted_body;
    if (body.empty() || body.size() % crypto::Cipher::block_len != 0) return Errc::InvalidLength;
    Opened o;
    std::copy(body.end() - static_cast<std::ptrdiff_t>(o.last_block.size()), body.end(), o.last_block.begin());
    Bytes16 iv_now = iv(m->header.message_id);
    if (!cipher_->decrypt(iv_now, body)) return core::Errc::Unsupported;
    auto dec = parse_decrypted(m->header, body);
    crypto::secure_wipe(body);
    if (!dec) return dec.error();
    o.message = std::move(*dec);
    return o;
}

}  // namespace mipsec::ipsec::ike
