// SPDX-License-Identifier: MIT
#pragma once
// The data-path threads' half of core/aead_offload.hpp: the AEAD work of ESP done outside the
// node's lock, with the thread's own AeadContexts. Stateless and thread-safe apart from the
// contexts passed in.
#include <cstddef>
#include <span>

#include "core/aead_offload.hpp"
#include "core/packet_buf.hpp"
#include "crypto/aead_contexts.hpp"

namespace mipsec::ipsec {

/// Runs the seal an ESP layer left in PacketMeta::aead_seal and clears it; true when there was
/// none. False on a library failure or a pending seal that no longer fits the packet: the
/// packet must not leave.
bool finish_seal(core::PacketBuf& packet, crypto::AeadContexts& contexts) noexcept;

/// Opens the ESP packets of a batch as the wire delivered them (IPv4 whose payload is ESP, or
/// UDP to the port a key was published with, RFC 3948), where the SPI has a key in `keys`, and
/// leaves PacketMeta::esp_opened on each: authenticated and decrypted in place, or the reason
/// it is not (AuthFailed, BadPadding). Everything else is left untouched for the stages.
/// Returns how many it opened, authenticated or not.
std::size_t preopen_esp(std::span<core::PacketBuf> packets, const core::AeadOffload& keys, crypto::AeadContexts& contexts) noexcept;

}  // namespace mipsec::ipsec
