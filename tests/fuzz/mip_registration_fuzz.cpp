// SPDX-License-Identifier: MIT
// Registration messages: request/reply views, the extension walker and scanner (both message
// kinds), and the whole HomeAgent::process path with one configured mobile node, fed the
// input as is and with a valid MHAE appended (so the checks after authentication run too);
// the TNC extension and the RFC 5265 detection core's reply check.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "mip/home_agent.hpp"
#include "mip/mobile_node.hpp"
#include "mip/network_detection.hpp"
#include "mip/registration_wire.hpp"

using namespace mipsec;

namespace {
class ZeroRandom final : public crypto::Random {
public:
    void fill(std::span<std::uint8_t> out) noexcept override {
        for (auto& b : out) b = static_cast<std::uint8_t>(++n_);
    }

private:
    std::uint8_t n_ = 0;
};

const std::uint8_t key[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::span<const std::uint8_t> in(data, size);

    if (auto v = mip::RegistrationRequestView::check(in)) (void)mip::RegistrationRequest::parse(*v);
    if (auto v = mip::RegistrationReplyView::check(in)) (void)mip::RegistrationReply::parse(*v);
    if (auto v = mip::TunnelDataView::check(in)) (void)v->payload();
    mip::ExtensionReader reader(in);
    while (auto e = reader.next()) {
        if (auto a = mip::AuthExtensionView::check(e->bytes)) (void)a->spi();
        if (auto t = mip::UdpTunnelRequestView::check(e->bytes)) (void)mip::UdpTunnelRequest::parse(*t);
        if (auto t = mip::UdpTunnelReplyView::check(e->bytes)) (void)mip::UdpTunnelReply::parse(*t);
        if (auto t = mip::TrustedNetworksView::check(e->bytes)) (void)mip::TrustedNetworks::parse(*t);
    }
    mip::ScannedExtensions scanned;
    (void)mip::scan_extensions(in, 24, mip::MessageKind::Request, scanned);
    (void)mip::scan_extensions(in, 20, mip::MessageKind::Reply, scanned);
    (void)scanned.trusted_networks_authenticated();

    ZeroRandom random;
    const core::TimePoint now = core::TimePoint{} + std::chrono::hours(1);
    mip::HomeAgent::Config cfg;
    cfg.address = core::Ipv4Address::from_octets(10, 1, 0, 1);
    cfg.home_network = {cfg.address, 24};
    mip::SecurityAssociation sa;
    sa.spi = 256;
    sa.key = crypto::SecretBytes(std::span<const std::uint8_t>(key));
    // Home address taken from the input so the SA lookup succeeds now and then.
    const core::Ipv4Address home = size >= 8 ? core::Ipv4Address{core::load_be32(data + 4)}
                                             : core::Ipv4Address::from_octets(10, 1, 0, 77);
    cfg.mobile_nodes.push_back({home, std::move(sa), "fuzz@example"});
    // RFC 5265 internal HA: replies to the trusted sender carry TNC; the other sender is dropped.
    cfg.trusted_networks = {{core::Ipv4Address::from_octets(192, 0, 2, 0), 24}};
    mip::HomeAgent ha(std::move(cfg), random);
    const mip::HomeAgent::Received rx{core::Ipv4Address::from_octets(192, 0, 2, 1), core::Ipv4Address::from_octets(10, 1, 0, 1), 1234, 434};
    const mip::HomeAgent::Received untrusted{core::Ipv4Address::from_octets(198, 51, 100, 1), core::Ipv4Address::from_octets(10, 1, 0, 1), 1234, 434};
    (void)ha.process(in, untrusted, now);
    (void)ha.process(in, rx, now);

    // Same bytes with a correct MHAE appended: exercises every check after authentication.
    if (size >= 24 && size < 512) {
        std::vector<std::uint8_t> msg(in.begin(), in.end());
        msg[0] = 1;
        msg.insert(msg.end(), {32, 20, 0, 0, 1, 0});
        std::array<std::uint8_t, mip::hmac_md5_len> mac{};
        if (mip::compute_authenticator(key, msg, mac)) {
            msg.insert(msg.end(), mac.begin(), mac.end());
            auto out = ha.process(msg, rx, now);
            if (out.reply) {
                (void)mip::RegistrationReplyView::check(out.reply->bytes());
                mip::ScannedExtensions rs;
                (void)mip::scan_extensions(out.reply->bytes(), 20, mip::MessageKind::Reply, rs);
            }
            (void)ha.poll(now + std::chrono::seconds(70000));
        }
    }

    // RFC 5265 detection: the input as the internal HA's reply to a request it may answer
    // (Identification taken from the input), directly and through the tunnel.
    mip::NetworkDetection::Config dc;
    dc.internal_home_agent = core::Ipv4Address::from_octets(10, 1, 0, 1);
    dc.internal_home_address = core::Ipv4Address::from_octets(10, 1, 0, 77);
    dc.internal_sa.spi = 256;
    dc.internal_sa.key = crypto::SecretBytes(std::span<const std::uint8_t>(key));
    dc.external_home_agent = core::Ipv4Address::from_octets(198, 51, 100, 1);
    mip::NetworkDetection detection(std::move(dc));
    (void)detection.attachment_changed(2, mip::NetworkDetection::Attachment::CoLocated, now);
    if (size >= 20) detection.request_sent(2, mip::NetworkDetection::Target::Internal, core::load_be64(data + 12), now);
    const core::Endpoint iha{core::Ipv4Address::from_octets(10, 1, 0, 1), 434};
    (void)detection.internal_reply(2, mip::NetworkDetection::Path::Tunnel, iha, in, now);
    (void)detection.internal_reply(2, mip::NetworkDetection::Path::Direct, iha, in, now);
    (void)detection.poll(now + std::chrono::seconds(61));

    // A mobile node waiting for a reply gets the input as a reply.
    mip::MobileNode::Config mc;
    mc.home_address = core::Ipv4Address::from_octets(10, 1, 0, 77);
    mc.home_agent = core::Ipv4Address::from_octets(10, 1, 0, 1);
    mc.sa.spi = 256;
    mc.sa.key = crypto::SecretBytes(std::span<const std::uint8_t>(key));
    mip::MobileNode mn(std::move(mc), random);
    (void)mn.care_of_address_changed(core::Ipv4Address::from_octets(192, 0, 2, 1), now);
    (void)mn.on_reply(in, {core::Ipv4Address::from_octets(10, 1, 0, 1), 434}, now);
    (void)mn.poll(now + std::chrono::seconds(1));
    return 0;
}
