// SPDX-License-Identifier: MIT
#pragma once
// SecretBytes: key material that is wiped when destroyed or overwritten and never printed
// (no stream operator; describe() shows only the length). Move-only copies are explicit.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace mipsec::crypto {

/// Zeroes a heap block that held key material (all `len` bytes, not only the used ones), then
/// tells the release observer, if one is set.
void wipe_released_block(void* block, std::size_t len) noexcept;
/// Called with every block a WipingAllocator frees, after zeroing and before freeing: lets a
/// test look at the bytes a destroyed or regrown secret left behind. Null (the default): none.
using ReleaseObserver = void (*)(const std::uint8_t* block, std::size_t len);
void set_release_observer(ReleaseObserver observer) noexcept;

/// std::allocator that zeroes each block before giving it back, so neither destruction nor a
/// reallocation (a vector growing) leaves key bytes in freed memory.
template <class T>
struct WipingAllocator {
    using value_type = T;
    WipingAllocator() noexcept = default;
    template <class U>
    WipingAllocator(const WipingAllocator<U>&) noexcept {}
    T* allocate(std::size_t n) { return std::allocator<T>{}.allocate(n); }
    void deallocate(T* p, std::size_t n) noexcept {
        wipe_released_block(p, n * sizeof(T));
        std::allocator<T>{}.deallocate(p, n);
    }
    friend bool operator==(const WipingAllocator&, const WipingAllocator&) noexcept { return true; }
};

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
    /// Appends bytes (e.g. building prf+ output); the old storage is wiped if it has to grow.
    void append(std::span<const std::uint8_t> more);
    /// "<secret, 20 bytes>": safe to log.
    std::string describe() const { return "<secret, " + std::to_string(bytes_.size()) + " bytes>"; }
    /// Lower-case hex, for key logs the user asked for explicitly (Wireshark tables). Never log it.
    std::string reveal_hex() const;
    void wipe() noexcept;

private:
    std::vector<std::uint8_t, WipingAllocator<std::uint8_t>> bytes_;
};

/// Constant-time comparison of equal-length spans; false when the lengths differ.
bool constant_time_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) noexcept;
/// Overwrites memory in a way the compiler cannot elide.
void secure_wipe(std::span<std::uint8_t> bytes) noexcept;

}  // namespace mipsec::crypto
