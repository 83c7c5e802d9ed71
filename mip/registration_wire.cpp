// SPDX-License-Identifier: MIT
#include "mip/registration_wire.hpp"

#include <algorithm>
#include <cstring>

#include "crypto/mac.hpp"
#include "crypto/secret_bytes.hpp"

namespace mipsec::mip {

void RegistrationRequest::emit(std::span<std::uint8_t> out) const noexcept {
    out[0] = message_type::registration_request;
    out[1] = flags;
    core::store_be16(out.data() + 2, lifetime);
    core::store_be32(out.data() + 4, home_address.value);
    core::store_be32(out.data() + 8, home_agent.value);
    core::store_be32(out.data() + 12, care_of_address.value);
    core::store_be64(out.data() + 16, identification);
}

void RegistrationReply::emit(std::span<std::uint8_t> out) const noexcept {
    out[0] = message_type::registration_reply;
    out[1] = code;
    core::store_be16(out.data() + 2, lifetime);
    core::store_be32(out.data() + 4, home_address.value);
    core::store_be32(out.data() + 8, home_agent.value);
    core::store_be64(out.data() + 12, identification);
}

void UdpTunnelRequest::emit(std::span<std::uint8_t> out) const noexcept {
    out[0] = extension_type::udp_tunnel_request;
    out[1] = UdpTunnelRequestView::length_value;
    out[2] = 0;  // Sub-Type
    out[3] = 0;  // Reserved 1
    out[4] = static_cast<std::uint8_t>((force ? UdpTunnelRequestView::flag_f : 0) |
                                       (registered_via_fa ? UdpTunnelRequestView::flag_r : 0));
    out[5] = encapsulation;
    core::store_be16(out.data() + 6, 0);  // Reserved 3 MUST be zero (RFC 3519 §3.1)
}

void UdpTunnelReply::emit(std::span<std::uint8_t> out) const noexcept {
    out[0] = extension_type::udp_tunnel_reply;
    out[1] = UdpTunnelReplyView::length_value;
    out[2] = 0;
    out[3] = reply_code;
    core::store_be16(out.data() + 4, forced ? UdpTunnelReplyView::flag_f : 0);
    core::store_be16(out.data() + 6, keepalive_interval);
}

void TrustedNetworks::emit(std::span<std::uint8_t> out) const noexcept {
    out[0] = extension_type::trusted_networks;
    out[1] = TrustedNetworksView::length_value;
    out[2] = TrustedNetworksView::sub_type_value;
    out[3] = 0;  // Reserved (RFC 5265 §5)
}

std::optional<Extension> ExtensionReader::next() noexcept {
    if (truncated_ || pos_ >= list_.size()) return std::nullopt;
    const std::size_t remaining = list_.size() - pos_;
    const std::uint8_t* p = list_.data() + pos_;
    Extension ext;
    ext.type = p[0];
    ext.encoding = encoding_of(p[0]);
    ext.offset = pos_;
    std::size_t header = 0;
    std::size_t data_len = 0;
    switch (ext.encoding) {
    case ExtensionEncoding::Pad:
        header = 1;
        break;
    case ExtensionEncoding::Simple:
        if (remaining < 2) {
            truncated_ = true;
            return std::nullopt;
        }
        header = 2;
        data_len = p[1];
        break;
    case ExtensionEncoding::Long:
        if (remaining < 4) {
            truncated_ = true;
            return std::nullopt;
        }
        header = 4;
        ext.sub_type = p[1];
        data_len = core::load_be16(p + 2);
        break;
    }
    if (header + data_len > remaining) {
        truncated_ = true;
        return std::nullopt;
    }
    ext.bytes = list_.subspan(pos_, header + data_len);
    ext.data = ext.bytes.subspan(header);
    pos_ += header + data_len;
    return ext;
}

namespace {

bool recognised(std::uint8_t type, MessageKind kind) noexcept {
    switch (type) {
    case extension_type::pad:
    case extension_type::mobile_home_auth:
    case extension_type::mobile_foreign_auth:
    case extension_type::foreign_home_auth:
    case extension_type::mn_nai:
        return true;
    case extension_type::udp_tunnel_request:
    case extension_type::encapsulating_delivery:
        return kind == MessageKind::Request;
    case extension_type::udp_tunnel_reply:
    case extension_type::trusted_networks:  // RFC 5265 §5: replies only; in a request it is skipped
        return kind == MessageKind::Reply;
    default:
        return false;
    }
}

}  // namespace

std::optional<ScanError> scan_extensions(std::span<const std::uint8_t> message, std::size_t header_len,
                                         MessageKind kind, ScannedExtensions& out) noexcept {
    out = {};
    if (message.size() < header_len) return ScanError::Truncated;
    ExtensionReader reader(message.subspan(header_len));
    while (auto ext = reader.next()) {
        const std::size_t offset = header_len + ext->offset;
        if (!recognised(ext->type, kind)) {
            // RFC 5944 §3.6.1.3 / §3.8.3.1: unknown 0-127 => silently discard the message.
            if (!is_skippable(ext->type)) return ScanError::UnknownNonSkippable;
            continue;
        }
        const bool before_mhae = !out.mobile_home_auth.has_value();
        switch (ext->type) {
        case extension_type::mobile_home_auth:
        case extension_type::mobile_foreign_auth:
        case extension_type::foreign_home_auth: {
            auto view = AuthExtensionView::check(ext->bytes);
            if (!view) return ScanError::Malformed;
            AuthLocation loc{offset, view->spi(), view->authenticator()};
            if (ext->type == extension_type::mobile_home_auth) {
                if (!out.mobile_home_auth) out.mobile_home_auth = loc;
                ++out.mobile_home_auth_count;
            } else if (ext->type == extension_type::mobile_foreign_auth) {
                if (!out.mobile_foreign_auth) out.mobile_foreign_auth = loc;
            } else if (!out.foreign_home_auth) {
                out.foreign_home_auth = loc;
            }
            break;
        }
        case extension_type::mn_nai:
            if (!out.nai_present) {
                out.nai_present = true;
                out.nai = ext->data;
                out.nai_before_mhae = before_mhae;
            }
            break;
        case extension_type::udp_tunnel_request: {
            auto view = UdpTunnelRequestView::check(ext->bytes);
            // RFC 3519 §3.1: a non-zero Reserved 3 (or a wrong length) means the extension is
            // treated as not understood; 144 is skippable, so it is skipped, but remembered so
            // the HA can answer 134.
            if (!view || !view->reserved3_valid()) {
                out.udp_tunnel_request_ignored = true;
                break;
            }
            if (out.udp_tunnel_request.empty()) {
                out.udp_tunnel_request = ext->bytes;
                out.udp_tunnel_request_before_mhae = before_mhae;
            }
            break;
        }
        case extension_type::udp_tunnel_reply:
            // Type 44 is not skippable: a malformed one makes the reply unusable.
            if (!UdpTunnelReplyView::check(ext->bytes)) return ScanError::Malformed;
            if (out.udp_tunnel_reply.empty()) out.udp_tunnel_reply = ext->bytes;
            break;
        case extension_type::trusted_networks: {
            // 149 is skippable (RFC 5944 §1.9): a wrong Length or an unknown Sub-Type makes it
            // an extension we do not understand, skipped and never taken as "trusted".
            auto view = TrustedNetworksView::check(ext->bytes);
            if (!view || !TrustedNetworks::parse(*view)) {
                out.trusted_networks_ignored = true;
                break;
            }
            if (!out.trusted_networks) {
                out.trusted_networks = true;
                out.trusted_networks_before_mhae = before_mhae;
            }
            break;
        }
        default:
            break;  // pad, encapsulating delivery style
        }
    }
    if (reader.truncated()) return ScanError::Truncated;
    return std::nullopt;
}

std::span<const std::uint8_t> authenticated_bytes(std::span<const std::uint8_t> message, std::size_t auth_offset) noexcept {
    const std::size_t end = auth_offset + AuthExtensionView::fixed_len;
    if (end > message.size()) return {};
    return message.first(end);
}

bool compute_authenticator(std::span<const std::uint8_t> key, std::span<const std::uint8_t> covered,
                           std::span<std::uint8_t, hmac_md5_len> out, crypto::Mac* context) noexcept {
    if (context != nullptr) return context->algorithm() == crypto::MacAlgorithm::HmacMd5 && context->rekey(key) && context->compute(covered, out);
    auto mac = crypto::Mac::create(crypto::MacAlgorithm::HmacMd5, key);
    if (!mac) return false;
    return (*mac)->compute(covered, out);
}

bool verify_authenticator(std::span<const std::uint8_t> message, const AuthLocation& auth,
                          std::span<const std::uint8_t> key, crypto::Mac* context) noexcept {
    if (auth.authenticator.size() != hmac_md5_len) return false;
    auto covered = authenticated_bytes(message, auth.offset);
    if (covered.empty()) return false;
    std::array<std::uint8_t, hmac_md5_len> expected{};
    if (!compute_authenticator(key, covered, expected, context)) return false;
    return crypto::constant_time_equal(expected, auth.authenticator);
}

namespace {

// Appends the MHAE and fills in its authenticator over everything before it.
bool append_mhae(Message& m, const AuthKey& auth) noexcept {
    if (m.len + mhae_len > m.storage.size()) return false;
    std::uint8_t* p = m.storage.data() + m.len;
    p[0] = extension_type::mobile_home_auth;
    p[1] = 4 + hmac_md5_len;
    core::store_be32(p + 2, auth.spi);
    const std::size_t covered = m.len + AuthExtensionView::fixed_len;
    std::span<std::uint8_t, hmac_md5_len> out(p + AuthExtensionView::fixed_len, hmac_md5_len);
    if (!compute_authenticator(auth.key, {m.storage.data(), covered}, out, auth.context)) return false;
    m.len += mhae_len;
    return true;
}

bool append_nai(Message& m, std::string_view nai) noexcept {
    if (nai.empty()) return true;
    if (nai.size() > 255) return false;
    std::uint8_t* p = m.storage.data() + m.len;
    p[0] = extension_type::mn_nai;
    p[1] = static_cast<std::uint8_t>(nai.size());
    std::memcpy(p + 2, nai.data(), nai.size());
    m.len += 2 + nai.size();
    return true;
}

}  // namespace

core::Result<Message> build_request(const RegistrationRequest& request, const RequestExtensions& extensions,
                                    const AuthKey& auth) {
    Message m;
    request.emit(m.storage);
    m.len = RegistrationRequest::len;
    if (!append_nai(m, extensions.nai)) return core::Errc::InvalidArgument;
    if (extensions.udp_tunnel) {
        extensions.udp_tunnel->emit(std::span(m.storage).subspan(m.len));
        m.len += UdpTunnelRequest::len;
    }
    if (!append_mhae(m, auth)) return core::Errc::Unsupported;
    return m;
}

core::Result<Message> build_reply(const RegistrationReply& reply, const ReplyExtensions& extensions,
                                  const AuthKey& auth) {
    Message m;
    reply.emit(m.storage);
    m.len = RegistrationReply::len;
    if (!append_nai(m, extensions.nai)) return core::Errc::InvalidArgument;
    if (extensions.udp_tunnel) {
        extensions.udp_tunnel->emit(std::span(m.storage).subspan(m.len));
        m.len += UdpTunnelReply::len;
    }
    // RFC 5265 §5: before the MHAE, so the authenticator covers it.
    if (extensions.trusted_networks) {
        TrustedNetworks{}.emit(std::span(m.storage).subspan(m.len));
        m.len += TrustedNetworks::len;
    }
    if (!append_mhae(m, auth)) return core::Errc::Unsupported;
    return m;
}

}  // namespace mipsec::mip
