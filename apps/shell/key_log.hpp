// SPDX-License-Identifier: MIT
#pragma once
// Key logs the user asked for, in the formats Wireshark reads, so captures of mipsec traffic
// can be decrypted. They contain live keys: written only on request, created mode 0600.
#include <cstdint>
#include <span>
#include <string>

#include "core/address.hpp"
#include "ipsec/key_log.hpp"
#include "ipsec/sa.hpp"

namespace mipsec::shell {

struct EspKeyLogEntry {
    core::Ipv4Address source;
    core::Ipv4Address destination;
    std::uint32_t spi;
    ipsec::EspSuite suite;
    std::span<const std::uint8_t> keymat;  // encryption key (+ salt) then integrity key
};

/// One line of Wireshark's ESP SA table (the `esp_sa` UAT file in a profile, or the value of
/// `tshark -o uat:esp_sa:<line>`).
std::string esp_sa_uat_line(const EspKeyLogEntry& entry);
/// Appends the line to `path`; throws std::runtime_error if it cannot.
void append_esp_key_log(const std::string& path, const EspKeyLogEntry& entry);
/// One line of Wireshark's IKEv1 decryption table (`ikev1_decryption_table`).
std::string ikev1_uat_line(std::span<const std::uint8_t, 8> initiator_cookie, std::span<const std::uint8_t> encryption_key);

/// ipsec::KeyLog writing `<prefix>.esp_sa` and `<prefix>.ikev1_decryption_table` (mode 0600).
/// Write errors are logged once and otherwise ignored: a key log never stops the tunnel.
class FileKeyLog final : public ipsec::KeyLog {
public:
    explicit FileKeyLog(std::string prefix) : prefix_(std::move(prefix)) {}
    void ike_sa(std::span<const std::uint8_t, 8> initiator_cookie, std::span<const std::uint8_t> encryption_key) override;
    void esp_sa(core::Ipv4Address source, core::Ipv4Address destination, std::uint32_t spi, ipsec::EspSuite suite,
                std::span<const std::uint8_t> keymat) override;
    bool failed() const noexcept { return failed_; }

private:
    void append(const std::string& path, const std::string& line);
    std::string prefix_;
    bool failed_ = false;
};

}  // namespace mipsec::shell
