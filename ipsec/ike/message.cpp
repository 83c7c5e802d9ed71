// SPDX-License-Identifier: MIT
#include "ipsec/ike/message.hpp"

#include "ipsec/ike/byte_writer.hpp"
#include "ipsec/ike/errc.hpp"
#include "ipsec/ike/payload_chain.hpp"

namespace mipsec::ipsec::ike {
namespace {

void write_chain(ByteWriter& w, std::span<const Payload> payloads) {
    for (std::size_t i = 0; i < payloads.size(); ++i) {
        std::size_t start = w.pos();
        w.u8(i + 1 < payloads.size() ? payloads[i + 1].type() : payload_type::none);
        w.u8(0);
        w.u16(0);
        write_body(w, payloads[i].body);
        std::size_t len = w.pos() - start;
        if (len > 0xFFFF) return w.invalid();
        w.patch_u16(start + 2, static_cast<std::uint16_t>(len));
    }
}

void write_message(ByteWriter& w, const Message& m) {
    IsakmpHeader h = m.header;
    bool ciphertext = h.encrypted() && !m.encrypted_body.empty();
    if (!ciphertext) h.next_payload = first_payload_type(m.payloads);
    std::size_t start = w.pos();
    for (std::size_t i = 0; i < IsakmpHeader::len; ++i) w.u8(0);  // header written once the length is known
    if (ciphertext)
        w.bytes(m.encrypted_body);
    else
        write_chain(w, m.payloads);
    std::size_t len = w.pos() - start;
    if (len > 0xFFFFFFFFu) return w.invalid();
    h.length = static_cast<std::uint32_t>(len);
    std::uint8_t hdr[IsakmpHeader::len];
    (void)h.emit(hdr);
    for (std::size_t i = 0; i < IsakmpHeader::len; ++i) w.patch_u8(start + i, hdr[i]);
}

template <class Fn>
core::Result<void> append(Bytes& out, Fn&& fill) {
    ByteWriter m = ByteWriter::measuring();
    fill(m);
    if (!m.ok()) return m.error();
    std::size_t at = out.size();
    out.resize(at + m.pos());
    ByteWriter w(std::span<std::uint8_t>(out).subspan(at));
    fill(w);
    if (!w.ok()) {
        out.resize(at);
        return w.error();
    }
    return {};
}

core::Result<IsakmpHeader> parse_header(std::span<const std::uint8_t> bytes) {
    if (bytes.size() < IsakmpHeader::len) return Errc::Truncated;
    std::size_t length = core::load_be32(bytes.data() + 24);
    if (length < IsakmpHeader::len) return Errc::InvalidLength;
    if (length > bytes.size()) return Errc::Truncated;
    // One datagram carries one message: extra bytes mean a broken sender (or a forgotten
    // non-ESP marker strip), not padding.
    if (length < bytes.size()) return Errc::TrailingData;
    auto view = IsakmpHeaderView::check(bytes);
    IsakmpHeader h = IsakmpHeader::parse(*view);
    // RFC 2408 §5.2: a major version we do not implement is rejected
    // (INVALID-MAJOR-VERSION); a newer minor version is tolerated.
    if ((h.version >> 4) != (isakmp_version >> 4)) return Errc::InvalidMajorVersion;
    return h;
}

}  // namespace

std::uint8_t first_payload_type(std::span<const Payload> payloads) noexcept {
    return payloads.empty() ? payload_type::none : payloads.front().type();
}

core::Result<std::vector<Payload>> parse_payloads(std::span<const std::uint8_t> chain, std::uint8_t first_type,
                                                  const ParseOptions& opts, std::size_t base_offset,
                                                  std::size_t* end) {
    std::vector<Payload> out;
    PayloadIterator it(chain, first_type, opts.max_payloads);
    while (auto e = it.next()) {
        if (opts.unknown == UnknownPayloads::Reject && !is_decoded_payload_type(e->type))
            return Errc::UnknownPayloadType;
        auto body = parse_body(e->type, e->view.body());
        if (!body) return body.error();
        Payload p(std::move(*body));
        p.wire = {base_offset + e->offset, e->view.payload_length()};
        out.push_back(std::move(p));
    }
    if (it.error()) return it.error();
    if (end) *end = it.end_offset();
    return out;
}

core::Result<Message> parse(std::span<const std::uint8_t> bytes, const ParseOptions& opts) {
    auto h = parse_header(bytes);
    if (!h) return h.error();
    Message m;
    m.header = *h;
    auto body = bytes.subspan(IsakmpHeader::len);
    if (m.header.encrypted()) {
        // Nothing to decrypt is not an encrypted message (and could not re-emit as one).
        if (body.empty()) return Errc::InvalidLength;
        m.encrypted_body.assign(body.begin(), body.end());
        m.wire.assign(bytes.begin(), bytes.end());
        return m;
    }
    std::size_t end = 0;
    auto payloads = parse_payloads(body, m.header.next_payload, opts, IsakmpHeader::len, &end);
    if (!payloads) return payloads.error();
    if (end != body.size()) return Errc::TrailingData;
    m.payloads = std::move(*payloads);
    m.wire.assign(bytes.begin(), bytes.end());
    return m;
}

core::Result<Message> parse_decrypted(const IsakmpHeader& header, std::span<const std::uint8_t> plaintext,
                                      const ParseOptions& opts) {
    Message m;
    m.header = header;
    std::size_t end = 0;
    auto payloads = parse_payloads(plaintext, header.next_payload, opts, IsakmpHeader::len, &end);
    if (!payloads) return payloads.error();
    m.payloads = std::move(*payloads);
    m.wire.resize(IsakmpHeader::len);
    (void)header.emit(m.wire);
    m.wire.insert(m.wire.end(), plaintext.begin(), plaintext.begin() + static_cast<std::ptrdiff_t>(end));
    return m;
}

std::size_t Message::index_of(std::uint8_t type) const noexcept {
    for (std::size_t i = 0; i < payloads.size(); ++i)
        if (payloads[i].type() == type) return i;
    return payloads.size();
}

bool Message::has_unknown() const noexcept {
    for (const auto& p : payloads)
        if (p.get<UnknownPayload>()) return true;
    return false;
}

std::span<const std::uint8_t> Message::wire_payload(std::size_t i) const noexcept {
    if (i >= payloads.size()) return {};
    const WireRange& r = payloads[i].wire;
    if (r.len == 0 || r.offset + r.len > wire.size()) return {};
    return std::span<const std::uint8_t>(wire).subspan(r.offset, r.len);
}

std::span<const std::uint8_t> Message::wire_body(std::size_t i) const noexcept {
    auto p = wire_payload(i);
    return p.empty() ? p : p.subspan(GenericPayloadView::header_len);
}

std::span<const std::uint8_t> Message::wire_from(std::size_t i) const noexcept {
    auto first = wire_payload(i);
    auto last = wire_payload(payloads.size() - 1);
    if (first.empty() || last.empty()) return {};
    const WireRange& a = payloads[i].wire;
    const WireRange& b = payloads.back().wire;
    return std::span<const std::uint8_t>(wire).subspan(a.offset, b.offset + b.len - a.offset);
}

core::Result<std::size_t> Message::emitted_len() const {
    ByteWriter m = ByteWriter::measuring();
    write_message(m, *this);
    if (!m.ok()) return m.error();
    return m.pos();
}

core::Result<std::size_t> Message::emit(std::span<std::uint8_t> out) const {
    ByteWriter w(out);
    write_message(w, *this);
    if (!w.ok()) return w.error();
    return w.pos();
}

core::Result<void> Message::emit(Bytes& out) const {
    return append(out, [this](ByteWriter& w) { write_message(w, *this); });
}

core::Result<std::size_t> emit_payloads(std::span<const Payload> payloads, std::span<std::uint8_t> out) {
    ByteWriter w(out);
    write_chain(w, payloads);
    if (!w.ok()) return w.error();
    return w.pos();
}

core::Result<void> emit_payloads(std::span<const Payload> payloads, Bytes& out) {
    return append(out, [payloads](ByteWriter& w) { write_chain(w, payloads); });
}

}  // namespace mipsec::ipsec::ike
