// SPDX-License-Identifier: MIT
#pragma once
// AeadOffload: AEAD work of ESP layers done by the data-path threads outside the node's lock,
// so that with several workers the stages (which run one at a time) keep the headers, the
// sequence numbers and the replay windows, and the encryption runs on every worker at once.
//   Outbound: an ESP layer whose StageContext says may_defer_seal() assigns the sequence
//   number and writes header, IV, padding and trailer as always, and leaves the AEAD seal in
//   PacketMeta::aead_seal; the stages below only put headers in front (leaves_payload_alone()),
//   and the worker seals (ipsec::finish_seal) before the packet is sent.
//   Inbound: an ESP layer that receives straight from the wire (IP/ESP or IP/UDP/ESP, nothing
//   below it but layers that leave payloads alone) publishes each inbound AEAD SA's key here
//   once a packet has authenticated under it; a worker opens packets for those SPIs as they
//   arrive (ipsec::preopen_esp) and leaves the result in PacketMeta::esp_opened; the SA then
//   checks and moves its replay window under the lock (RFC 4303 §3.4.3: the window moves only
//   for authenticated packets).
// The table holds its keys weakly: an SA that is removed takes its key with it. Thread-safe.
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <unordered_map>

namespace mipsec::crypto {
class Aead;
}

namespace mipsec::core {

/// An inbound ESP SA's key as the data-path threads see it.
struct EspOpenKey {
    std::uint64_t id = 0;     // unique per process: an opened packet names the key that opened it
    std::uint32_t spi = 0;
    std::uint16_t udp_port = 0;  // the local UDP port its ESP arrives on (RFC 3948); 0: plain ESP
    std::shared_ptr<const crypto::Aead> aead;
    std::array<std::uint8_t, 4> salt{};  // RFC 4106 §4, RFC 7634 §2
    static std::uint64_t next_id() noexcept {
        static std::atomic<std::uint64_t> ids{0};
        return ++ids;
    }
};

class AeadOffload {
public:
    /// Makes `key` findable by its SPI (replacing an earlier key of that SPI).
    void publish(const std::shared_ptr<const EspOpenKey>& key);
    /// The live key for `spi`, or null.
    std::shared_ptr<const EspOpenKey> find(std::uint32_t spi) const;
    /// Keys published and still alive (their SA holds them).
    std::size_t live() const;

private:
    mutable std::shared_mutex mutex_;
    std::unordered_map<std::uint32_t, std::weak_ptr<const EspOpenKey>> keys_;
    std::size_t publishes_ = 0;
};

}  // namespace mipsec::core
