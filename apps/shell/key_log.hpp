// SPDX-License-Identifier: MIT
#pragma once
// Key logs the user asked for, in the formats Wireshark reads, so captures of mipsec traffic
// can be decrypted. They contain live keys: written only on request, created mode 0600, and an
// existing file that group or others could read is refused (as ssh refuses a private key).
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
/// Opens `path` for appending (created 0600). Throws std::runtime_error if it cannot, or if the
/// file is not regular or its mode lets group or others in ("chmod 600 it").
int open_key_log(const std::string& path);
/// Appends the line to `path`; throws std::runtime_error if it cannot.
void append_esp_key_log(const std::string& path, const EspKeyLogEntry& entry);
/// One line of Wireshark's IKEv1 decryption table (`ikev1_decryption_table`).
std::string ikev1_uat_line(std::span<const std::uint8_t, 8> initiator_cookie, std::span<const std::uint8_t> encryption_key);

/// ipsec::KeyLog writing `<prefix>.esp_sa` and `<prefix>.ikev1_decryption_table` (mode 0600).
/// Both files are opened by the constructor (which throws as open_key_log does), while the
/// node is set up and may still create files where it likes; after `mipsec run` has dropped
/// its privileges it only appends. Write errors are logged once and otherwise ignored: a key
/// log never stops the tunnel.
class FileKeyLog final : public ipsec::KeyLog {
public:
    explicit FileKeyLog(std::string prefix);
    ~FileKeyLog();
    FileKeyLog(const FileKeyLog&) = delete;
    FileKeyLog& operator=(const FileKeyLog&) = delete;
    void ike_sa(std::span<const std::uint8_t, 8> initiator_cookie, std::span<const std::uint8_t> encryption_key) override;
    void esp_sa(core::Ipv4Address source, core::Ipv4Address destination, std::uint32_t spi, ipsec::EspSuite suite,
                std::span<const std::uint8_t> keymat) override;
    bool failed() const noexcept { return failed_; }

private:
    void append(int fd, const std::string& path, std::string line);
    std::string prefix_;
    int esp_fd_ = -1;
    int ike_fd_ = -1;
    bool failed_ = false;
};

}  // namespace mipsec::shell
