// SPDX-License-Identifier: MIT
#include "apps/shell/key_log.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include <fcntl.h>
#include <unistd.h>

namespace mipsec::shell {

namespace {
std::string hex(std::span<const std::uint8_t> bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s = "0x";
    for (auto b : bytes) {
        s.push_back(digits[b >> 4]);
        s.push_back(digits[b & 0xF]);
    }
    return s;
}

struct WiresharkNames {
    const char* encryption;
    const char* authentication;
};

// The exact value strings of Wireshark's ESP dissector (packet-ipsec.c) UAT columns.
WiresharkNames wireshark_names(ipsec::EspSuite s) {
    switch (s) {
        case ipsec::EspSuite::AesGcm128:
        case ipsec::EspSuite::AesGcm256: return {"AES-GCM with 16 octet ICV [RFC4106]", "NULL"};
        case ipsec::EspSuite::ChaCha20Poly1305: return {"ChaCha20/Poly1305 with 16 octet ICV [RFC7634]", "NULL"};
        case ipsec::EspSuite::AesCbc128HmacSha1:
        case ipsec::EspSuite::AesCbc256HmacSha1: return {"AES-CBC [RFC3602]", "HMAC-SHA-1-96 [RFC2404]"};
        case ipsec::EspSuite::AesCbc128HmacSha256:
        case ipsec::EspSuite::AesCbc256HmacSha256: return {"AES-CBC [RFC3602]", "HMAC-SHA-256-128 [RFC4868]"};
    }
    return {"NULL", "NULL"};
}
}  // namespace

std::string esp_sa_uat_line(const EspKeyLogEntry& e) {
    auto names = wireshark_names(e.suite);
    const std::size_t enc_len = ipsec::encryption_keymat_len(e.suite);
    auto enc = e.keymat.first(std::min(enc_len, e.keymat.size()));
    auto auth = e.keymat.subspan(enc.size());
    char spi[16];
    std::snprintf(spi, sizeof spi, "0x%08x", e.spi);
    return "\"IPv4\",\"" + e.source.to_string() + "\",\"" + e.destination.to_string() + "\",\"" + spi + "\",\"" +
           names.encryption + "\",\"" + hex(enc) + "\",\"" + names.authentication + "\",\"" + (auth.empty() ? "" : hex(auth)) + "\"";
}

void append_esp_key_log(const std::string& path, const EspKeyLogEntry& entry) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) throw std::runtime_error("cannot open key log " + path + ": " + std::strerror(errno));
    auto line = esp_sa_uat_line(entry) + "\n";
    auto written = ::write(fd, line.data(), line.size());
    ::close(fd);
    if (written != static_cast<ssize_t>(line.size())) throw std::runtime_error("cannot write key log " + path);
}

}  // namespace mipsec::shell
