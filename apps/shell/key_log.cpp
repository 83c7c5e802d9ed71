// SPDX-License-Identifier: MIT
#include "apps/shell/key_log.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/hex.hpp"
#include "crypto/secret_bytes.hpp"

namespace mipsec::shell {

namespace {
std::string hex(std::span<const std::uint8_t> bytes) { return "0x" + core::to_hex(bytes); }

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

std::string ikev1_uat_line(std::span<const std::uint8_t, 8> initiator_cookie, std::span<const std::uint8_t> encryption_key) {
    // Both columns are UAT byte buffers: bare hex, no quotes and no 0x (quoted strings are
    // refused as "Length of Initiator's COOKIE must be 8 octets").
    return hex(initiator_cookie).substr(2) + "," + hex(encryption_key).substr(2);
}

namespace {
void wipe(std::string& text) {
    crypto::secure_wipe(std::span(reinterpret_cast<std::uint8_t*>(text.data()), text.size()));
}
}  // namespace

int open_key_log(const std::string& path) {
    // O_NOFOLLOW: a symlink planted at the path must not send live keys elsewhere.
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
    if (fd < 0) throw std::runtime_error("cannot open key log \"" + path + "\": " + std::strerror(errno));
    struct stat st{};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw std::runtime_error("key log \"" + path + "\" is not a regular file");
    }
    if (const unsigned mode = st.st_mode & 07777; (mode & 077) != 0) {
        ::close(fd);
        char octal[8];
        std::snprintf(octal, sizeof octal, "%04o", mode);
        throw std::runtime_error("key log \"" + path + "\" is open to " + ((mode & 007) != 0 ? "others" : "its group") + " (mode " + octal +
                                 "): chmod 600 it, or remove it and it is created so");
    }
    return fd;
}

FileKeyLog::FileKeyLog(std::string prefix) : prefix_(std::move(prefix)) {
    esp_fd_ = open_key_log(prefix_ + ".esp_sa");
    try {
        ike_fd_ = open_key_log(prefix_ + ".ikev1_decryption_table");
    } catch (...) {
        ::close(esp_fd_);
        throw;
    }
}

FileKeyLog::~FileKeyLog() {
    ::close(esp_fd_);
    ::close(ike_fd_);
}

void FileKeyLog::append(int fd, const std::string& path, std::string line) {
    const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
    const int err = errno;
    wipe(line);
    if (!ok && !failed_) {
        failed_ = true;
        std::fprintf(stderr, "mipsec: cannot write key log %s: %s\n", path.c_str(), std::strerror(err));
    }
}

void FileKeyLog::ike_sa(std::span<const std::uint8_t, 8> initiator_cookie, std::span<const std::uint8_t> encryption_key) {
    append(ike_fd_, prefix_ + ".ikev1_decryption_table", ikev1_uat_line(initiator_cookie, encryption_key) + "\n");
}

void FileKeyLog::esp_sa(core::Ipv4Address source, core::Ipv4Address destination, std::uint32_t spi, ipsec::EspSuite suite,
                        std::span<const std::uint8_t> keymat) {
    append(esp_fd_, prefix_ + ".esp_sa", esp_sa_uat_line({source, destination, spi, suite, keymat}) + "\n");
}

void append_esp_key_log(const std::string& path, const EspKeyLogEntry& entry) {
    int fd = open_key_log(path);
    auto line = esp_sa_uat_line(entry) + "\n";
    auto written = ::write(fd, line.data(), line.size());
    ::close(fd);
    wipe(line);
    if (written != static_cast<ssize_t>(line.size())) throw std::runtime_error("cannot write key log " + path);
}

}  // namespace mipsec::shell
