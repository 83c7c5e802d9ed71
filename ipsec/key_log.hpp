// SPDX-License-Identifier: MIT
#pragma once
// KeyLog: where a stage reports keys it derived, when the user asked for a key log (to
// decrypt captures in Wireshark). The shell implements it with files; stages never do I/O.
// Implementations must not keep or print the keys anywhere else.
#include <cstdint>
#include <span>

#include "core/address.hpp"
#include "ipsec/sa.hpp"

namespace mipsec::ipsec {

class KeyLog {
public:
    /// An IKEv1 SA: the initiator cookie and the phase-1 encryption key (SKEYID_e expanded).
    virtual void ike_sa(std::span<const std::uint8_t, 8> initiator_cookie, std::span<const std::uint8_t> encryption_key) = 0;
    /// One ESP SA direction: outer source/destination, SPI, suite, KEYMAT (enc key + salt, integrity key).
    virtual void esp_sa(core::Ipv4Address source, core::Ipv4Address destination, std::uint32_t spi, EspSuite suite,
                        std::span<const std::uint8_t> keymat) = 0;

protected:
    ~KeyLog() = default;
};

}  // namespace mipsec::ipsec
