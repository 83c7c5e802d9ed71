// SPDX-License-Identifier: MIT
#pragma once
// Mobility security association between a mobile node and its home agent (RFC 5944 §3.5,
// §5.1) and the NTP-format clock that timestamp Identification uses (RFC 5944 §5.7).
//
// Cores never read a clock: the NTP time of a core::TimePoint is `now + ntp_offset`, where
// the shell computes the offset once with ntp_offset(system_clock::now(), steady_clock::now()).
#include <chrono>
#include <cstdint>

#include "core/time.hpp"
#include "crypto/secret_bytes.hpp"
#include "mip/registration_wire.hpp"

namespace mipsec::mip {

/// Replay protection style, part of the SA (RFC 5944 §5.7).
enum class ReplayProtection : std::uint8_t { Timestamp, Nonce };

struct SecurityAssociation {
    /// SPIs 0-255 are reserved and MUST NOT be used (RFC 5944 §1.10).
    static constexpr std::uint32_t min_spi = 256;
    std::uint32_t spi = min_spi;
    crypto::SecretBytes key;  // HMAC-MD5 key; any length and value is accepted (§5.1)
    ReplayProtection replay = ReplayProtection::Timestamp;

    AuthKey auth_key() const noexcept { return {spi, key.span()}; }
    SecurityAssociation clone() const { return {spi, key.clone(), replay}; }
};

/// Seconds between the NTP era (1900-01-01) and the Unix epoch.
inline constexpr std::int64_t ntp_unix_offset_s = 2208988800;

/// The offset that turns `mono` into NTP time, given the wall clock read at the same moment.
inline core::Duration ntp_offset(std::chrono::system_clock::time_point wall, core::TimePoint mono) noexcept {
    return std::chrono::duration_cast<core::Duration>(wall.time_since_epoch()) + std::chrono::seconds(ntp_unix_offset_s) -
           mono.time_since_epoch();
}

/// 64-bit NTP timestamp: seconds since 1900 in the high 32 bits, binary fraction in the low.
inline std::uint64_t ntp_time(core::TimePoint now, core::Duration offset) noexcept {
    const auto t = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch() + offset);
    const auto s = std::chrono::floor<std::chrono::seconds>(t);
    const auto ns = static_cast<std::uint64_t>((t - s).count());
    const auto seconds = static_cast<std::uint32_t>(static_cast<std::uint64_t>(s.count()));
    return (std::uint64_t{seconds} << 32) | ((ns << 32) / 1'000'000'000u);
}

}  // namespace mipsec::mip
