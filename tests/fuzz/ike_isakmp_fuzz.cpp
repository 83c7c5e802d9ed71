// SPDX-License-Identifier: MIT
// ISAKMP codec: parse arbitrary bytes; whatever parses must re-emit and re-parse to an equal
// message, and the re-emitted bytes must be a fixed point. Random input rarely passes the
// 28-byte header checks, so the same bytes are also fed as a decrypted body (first byte =
// first payload type), which exercises every payload decoder and the padding rule.
#include <cstdint>
#include <cstdlib>
#include <span>

#include "ipsec/ike/message.hpp"

using namespace mipsec::ipsec::ike;

namespace {
void require(bool ok) {
    if (!ok) std::abort();
}

void check_message(std::span<const std::uint8_t> bytes) {
    auto m = parse(bytes);
    if (!m) return;
    Bytes out;
    require(m->emit(out).has_value());
    auto again = parse(out);
    require(again.has_value());
    require(*again == *m);
    Bytes out2;
    require(again->emit(out2).has_value());
    require(out2 == out);
    // Every payload's recorded wire range lies inside the parsed bytes.
    for (std::size_t i = 0; i < m->payloads.size(); ++i) require(m->wire_payload(i).size() == m->payloads[i].wire.len);
}

void check_decrypted(std::span<const std::uint8_t> bytes) {
    if (bytes.empty()) return;
    IsakmpHeader h;
    h.flags = header_flag::encryption;
    h.exchange_type = exchange_type::quick_mode;
    h.next_payload = bytes[0];
    auto body = bytes.subspan(1);
    auto m = parse_decrypted(h, body);
    if (!m) return;
    Bytes chain;
    require(emit_payloads(m->payloads, chain).has_value());
    require(chain.size() <= body.size());
    auto again = parse_decrypted(h, chain);
    require(again.has_value());
    require(again->payloads == m->payloads);
    // The re-emitted chain has no padding, so as a plaintext message it parses strictly.
    Message plain;
    plain.header.exchange_type = exchange_type::quick_mode;
    plain.payloads = m->payloads;
    Bytes wire;
    require(plain.emit(wire).has_value());
    auto strict = parse(wire);
    require(strict.has_value());
    require(strict->payloads == m->payloads);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::span<const std::uint8_t> bytes(data, size);
    check_message(bytes);
    check_decrypted(bytes);
    return 0;
}
