// SPDX-License-Identifier: MIT
#pragma once
// Gratuitous ARP (RFC 5944 §4.6): a home agent announces that it now answers for an away
// mobile node's home address; the mobile node, back home, takes it back. Linux sends none
// for these cases by itself (it does not know about Mobile IP bindings).
#include <array>
#include <cstdint>

#include "core/address.hpp"
#include "core/result.hpp"

namespace mipsec::tun {

using MacAddress = std::array<std::uint8_t, 6>;

/// The 28-byte Ethernet/IPv4 ARP request announcing `address` at `mac` (sender and target
/// protocol address both `address`, target hardware address zero, RFC 5227 §3 style).
std::array<std::uint8_t, 28> encode_gratuitous_arp(const MacAddress& mac, core::Ipv4Address address) noexcept;

/// Broadcasts it on interface `ifindex` with that interface's own hardware address.
core::Result<void> send_gratuitous_arp(std::uint32_t ifindex, core::Ipv4Address address);

}  // namespace mipsec::tun
