// SPDX-License-Identifier: MIT
#pragma once
// SecretBytes: key material that is wiped when destroyed or overwritten and never printed
// (no stream operator; describe() shows only the length). Move-only copies are explicit.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace mipsec::crypto {

class SecretBytes {
public:
    SecretBytes() = default;
    explicit SecretBytes(std::size_t len) : bytes_(len, 0) {}
    explicit SecretBytes(std::span<const std::uint8_t> bytes) : bytes_(bytes.begin(), bytes.end()) {}
    SecretBytes(SecretBytes&& other) noexcept : bytes_(std::move(other.bytes_)) { other.bytes_.clear(); }
    SecretBytes& operator=(SecretBytes&& other) noexcept;
    SecretBytes(const SecretBytes&) = delete;
    SecretBytes& operator=(const SecretBytes&) = delete;
    ~SecretBytes() { wipe(); }

    SecretBytes clone() const { return SecretBytes(span()); }
    std::span<const std::uint8_t> span() const noexcept { return bytes_; }
    std::span<std::uint8_t> mutable_span() noexcept { return bytes_; }
    std::size_t size() const noexcept { return bytes_.size(); }
    bool empty() const noexcept { return bytes_.empty(); }
    /// The first `len` bytes / the bytes from `offset` on, as a new secret.
    SecretBytes first(std::size_t len) const { return SecretBytes(span().first(len)); }
    SecretBytes subspan(std::size_t offset, std::size_t len) const { return SecretBytes(span().subspan(offset, len)); }
    /// Appends bytes (e.g. building prf+ output); wipes the old storage if it has to grow.
    void append(std::span<const std::uint8_t> more);
    /// "<secret, 20 bytes>": safe to log.
    std::string describe() const { return "<secret, " + std::to_string(bytes_.size()) + " bytes>"; }
    /// Lower-case hex, for key logs the user asked for explicitly (Wireshark tables). Never log it.
    std::string reveal_hex() const;
    void wipe() noexcept;

private:
    std::vector<std::uint8_t> bytes_;
};

/// Constant-time comparison of equal-length spans; false when the lengths differ.
bool constant_time_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) noexcept;
/// Overwrites memory in a way the compiler cannot elide.
void secure_wipe(std::span<std::uint8_t> bytes) noexcept;

}  // namespace mipsec::crypto
