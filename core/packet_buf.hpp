// SPDX-License-Identifier: MIT
#pragma once
// PacketBuf: a move-only handle to one fixed block of a BufferPool, holding one packet with
// room in front (headroom) and behind (tailroom). Stages wrap a packet by push()ing a header
// into the headroom and unwrap it by pull()ing one, so the payload never moves and ESP
// encrypts in place. push/put that do not fit return false: the caller drops the packet with
// DropReason::NoHeadroom / NoTailroom; nothing is ever reallocated.
// Not thread-safe; a buffer and its pool belong to one thread.
#include <array>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <utility>

#include "core/address.hpp"
#include "core/drop_reason.hpp"

namespace mipsec::crypto {
class Aead;
}

namespace mipsec::core {

class BufferPool;

/// An AEAD seal an ESP layer prepared and left for the data-path thread (core/aead_offload.hpp):
/// header, IV, padding and trailer are written; `len` bytes at `offset` are encrypted in place
/// and the 16-byte tag written right after them.
struct PendingAeadSeal {
    std::shared_ptr<const crypto::Aead> key;
    std::array<std::uint8_t, 12> nonce{};
    std::array<std::uint8_t, 12> aad{};
    std::uint8_t aad_len = 0;
    // From the start of the block, not of the data: the stages below push headers in front.
    std::uint32_t offset = 0;
    std::uint32_t len = 0;
};

/// What the data-path thread found opening an ESP packet before the stages ran
/// (core/aead_offload.hpp). The bytes behind the ESP header are plaintext now when `result`
/// is None, and unusable otherwise.
struct OpenedEsp {
    std::uint64_t key_id = 0;  // EspOpenKey::id of the key that opened it
    std::uint32_t seq = 0;
    std::uint8_t next_header = 0;
    std::uint32_t payload_len = 0;  // without padding and trailer
    DropReason result = DropReason::None;
};

/// The UDP endpoints an ESP packet travelled between before nat.udp_encap unwrapped it.
struct UdpOrigin {
    Endpoint from;  // the peer as this side sees it (after any NAT)
    Endpoint to;    // the local address and port it arrived on
};

/// Small typed per-packet metadata, never raw scratch bytes. Each field belongs to one pair of
/// adjacent layers: the layer that learns something sets it for its neighbour, and the
/// neighbour that acts on it clears it, so nothing one layer wrote leaks to another layer of
/// the same kind further up or down the stack.
struct PacketMeta {
    // Inbound: nat.udp_encap stripped a UDP header from this ESP packet (RFC 3948); the ESP
    // layer directly above takes it (source checks, NAT float) and clears it.
    std::optional<UdpOrigin> esp_in_udp;
    // Outbound: the ESP layer that sealed this packet uses a UDP-encapsulated SA (IKE found a
    // NAT, or the user forced it); the nat.udp_encap directly below wraps it and clears this.
    // A request no stage took is dropped by the pipeline (UdpEncapMissing).
    bool esp_wants_udp = false;
    // Outbound: leave through this interface whatever the routing table says (a mobile node
    // talking to an agent on a link where it has no address). 0: route normally.
    std::uint32_t egress_ifindex = 0;
    // Inbound: the interface the packet arrived on, as the socket reported it (IP_PKTINFO).
    // 0: unknown (a test, or a device that does not say). RFC 5265 §6 detection takes a reply
    // as proof only on the interface its request left from.
    std::uint32_t ingress_ifindex = 0;
    // Outbound: a mobile node layer sends this in the clear on the link, around every layer
    // below it (RFC 5265 §4, §6: the direct registration with the internal home agent that
    // proves the node is inside must never go through the VPN): each layer below passes it
    // unchanged. Inbound: a layer of the stack unwrapped this packet from a tunnel (ESP, a
    // Mobile IP tunnel), so it did not arrive directly on the link; a registration reply
    // carrying it proves nothing about the network the node is attached to (RFC 5265 §5).
    bool direct = false;
    bool tunnelled = false;
    // Outbound: the ESP layer left its seal for the data-path thread; it must run before the
    // packet leaves (ipsec::finish_seal).
    std::optional<PendingAeadSeal> aead_seal;
    // Inbound: the data-path thread opened this ESP packet; the SA that owns the key takes it
    // (replay window, counters) and clears it.
    std::optional<OpenedEsp> esp_opened;
};

class PacketBuf {
public:
    PacketBuf() noexcept = default;
    PacketBuf(PacketBuf&& other) noexcept { *this = std::move(other); }
    PacketBuf& operator=(PacketBuf&& other) noexcept;
    PacketBuf(const PacketBuf&) = delete;
    PacketBuf& operator=(const PacketBuf&) = delete;
    ~PacketBuf() { release(); }

    bool valid() const noexcept { return block_ != nullptr; }
    std::uint8_t* data() noexcept { return block_ + head_; }
    const std::uint8_t* data() const noexcept { return block_ + head_; }
    std::size_t size() const noexcept { return len_; }
    bool empty() const noexcept { return len_ == 0; }
    std::span<std::uint8_t> bytes() noexcept { return {data(), len_}; }
    std::span<const std::uint8_t> bytes() const noexcept { return {data(), len_}; }
    std::size_t capacity() const noexcept { return capacity_; }
    std::size_t headroom() const noexcept { return head_; }
    std::size_t tailroom() const noexcept { return capacity_ - head_ - len_; }
    /// The block's identity; equal before and after any push/pull, which tests rely on.
    const std::uint8_t* block() const noexcept { return block_; }
    PacketMeta& meta() noexcept { return meta_; }
    const PacketMeta& meta() const noexcept { return meta_; }

    /// Empties the buffer and places its start `headroom` bytes into the block.
    void reset(std::size_t headroom) noexcept {
        assert(headroom <= capacity_);
        head_ = headroom <= capacity_ ? headroom : capacity_;
        len_ = 0;
        meta_ = {};
    }
    /// Grows the front by n bytes (a new outer header); contents of the new bytes are unspecified.
    [[nodiscard]] bool push(std::size_t n) noexcept {
        if (n > head_) return false;
        head_ -= n;
        len_ += n;
        return true;
    }
    /// Strips n bytes from the front.
    [[nodiscard]] bool pull(std::size_t n) noexcept {
        if (n > len_) return false;
        head_ += n;
        len_ -= n;
        return true;
    }
    /// Grows the back by n bytes (padding, trailer, ICV).
    [[nodiscard]] bool put(std::size_t n) noexcept {
        if (n > tailroom()) return false;
        len_ += n;
        return true;
    }
    /// Shrinks the back by n bytes.
    [[nodiscard]] bool trim(std::size_t n) noexcept {
        if (n > len_) return false;
        len_ -= n;
        return true;
    }
    /// Sets the length directly, e.g. after a read() into the tail space; false if it does not fit.
    [[nodiscard]] bool resize(std::size_t len) noexcept {
        if (len > capacity_ - head_) return false;
        len_ = len;
        return true;
    }
    /// The bytes from data() to the end of the block, for reading a packet into.
    std::span<std::uint8_t> writable() noexcept { return {data(), capacity_ - head_}; }

private:
    friend class BufferPool;
    PacketBuf(BufferPool* pool, std::uint8_t* block, std::uint32_t index, std::size_t capacity) noexcept
        : pool_(pool), block_(block), capacity_(capacity), index_(index) {}
    void release() noexcept;

    BufferPool* pool_ = nullptr;
    std::uint8_t* block_ = nullptr;
    std::size_t capacity_ = 0;
    std::size_t head_ = 0;
    std::size_t len_ = 0;
    std::uint32_t index_ = 0;
    PacketMeta meta_{};
};

}  // namespace mipsec::core
