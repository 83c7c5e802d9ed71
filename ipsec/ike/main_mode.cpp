// SPDX-License-Identifier: MIT
#include "ipsec/ike/main_mode.hpp"

#include <algorithm>

namespace mipsec::ipsec::ike {
namespace {

constexpr std::size_t nonce_len = 32;  // strongSwan's size; RFC 2409 §5: 8..256

bool vid_is(const VendorIdPayload& v, std::span<const std::uint8_t> known) {
    return std::equal(v.data.begin(), v.data.end(), known.begin(), known.end());
}

Bytes to_bytes(std::span<const std::uint8_t> s) { return Bytes(s.begin(), s.end()); }

}  // namespace

MainMode::MainMode(IkeSa& sa, const SessionConfig& cfg, crypto::Random& random)
    : sa_(sa), cfg_(cfg), random_(random) {}

TaskStatus MainMode::fail(FailReason r, std::uint16_t notify, std::string detail) {
    failed_ = true;
    failure_ = {r, notify, std::move(detail)};
    return TaskStatus::Failed;
}

bool MainMode::next_is_encrypted() const noexcept { return sa_.initiator ? step_ >= 4 : step_ >= 5; }

TaskStatus MainMode::build(Message& out) {
    bool my_turn = sa_.initiator ? (step_ % 2 == 0 && step_ < 6) : (step_ % 2 == 1);
    if (failed_ || !my_turn) return TaskStatus::Failed;
    out = Message{};
    out.header = sa_.header(exchange_type::main_mode, 0);
    switch (step_) {
    case 0: {  // MM1
        SaPayload sa = make_ike_sa(cfg_.ike_proposals);
        auto body = emit_body(sa);
        if (!body) return fail(FailReason::ProtocolError, 0, "cannot encode our SA");
        sai_b_ = std::move(*body);
        out.payloads.emplace_back(std::move(sa));
        if (cfg_.dpd) out.payloads.emplace_back(VendorIdPayload{to_bytes(vendor_id::dpd)});
        if (cfg_.nat_traversal) out.payloads.emplace_back(VendorIdPayload{to_bytes(vendor_id::nat_t_rfc3947)});
        break;
    }
    case 1:  // MM2: the transform was chosen in process(MM1)
        out.payloads.emplace_back(std::move(reply_sa_));
        if (cfg_.dpd && sa_.peer_dpd) out.payloads.emplace_back(VendorIdPayload{to_bytes(vendor_id::dpd)});
        if (cfg_.nat_traversal && sa_.peer_nat_t)
            out.payloads.emplace_back(VendorIdPayload{to_bytes(vendor_id::nat_t_rfc3947)});
        break;
    case 2:  // MM3
    case 3:  // MM4
        build_ke(out);
        if (failed_) return TaskStatus::Failed;
        if (!sa_.initiator && !derive_keys()) return TaskStatus::Failed;
        break;
    case 4:    // MM5
    case 5: {  // MM6
        out.header.flags = header_flag::encryption;
        IdPayload id = cfg_.local_id;
        auto id_b = emit_body(id);
        if (!id_b) return fail(FailReason::ProtocolError, 0, "cannot encode our ID");
        auto h = sa_.keys->auth_hash(sa_.initiator, g_xi_, g_xr_, sa_.cky_i, sa_.cky_r, sai_b_, *id_b);
        if (!h) return fail(FailReason::ProtocolError, 0, "prf failed");
        out.payloads.emplace_back(std::move(id));
        out.payloads.emplace_back(HashPayload{std::move(*h)});
        if (sa_.initiator && cfg_.send_initial_contact) {
            // RFC 2407 §4.6.3.3: protocol ISAKMP, SPI = CKY-I | CKY-R.
            NotifyPayload n;
            n.protocol_id = protocol_id::isakmp;
            n.notify_type = notify_type::initial_contact;
            auto ck = out.header.cookies();
            n.spi.assign(ck.begin(), ck.end());
            out.payloads.emplace_back(std::move(n));
        }
        break;
    }
    default:
        return TaskStatus::Failed;
    }
    ++step_;
    return (!sa_.initiator && step_ == 6) ? TaskStatus::Done : TaskStatus::NeedMore;
}

void MainMode::build_ke(Message& out) {
    auto dh = crypto::DiffieHellman::create(sa_.proposal.group, random_);
    if (!dh) {
        fail(FailReason::ProtocolError, 0, "DH group unavailable");
        return;
    }
    dh_ = std::move(*dh);
    Bytes nonce(nonce_len);
    random_.fill(nonce);
    const auto& pub = dh_->public_value();
    (sa_.initiator ? g_xi_ : g_xr_).assign(pub.begin(), pub.end());
    (sa_.initiator ? ni_ : nr_) = nonce;
    if (!sa_.initiator) {
        auto s = dh_->shared_secret(g_xi_);
        if (!s) {
            fail(FailReason::InvalidKeyInformation, notify_type::invalid_key_information, "bad KE from initiator");
            return;
        }
        g_xy_ = std::move(*s);
    }
    out.payloads.emplace_back(KePayload{Bytes(pub.begin(), pub.end())});
    out.payloads.emplace_back(NoncePayload{std::move(nonce)});
    if (cfg_.nat_traversal && sa_.peer_nat_t) {
        // RFC 3947 §3.2: first the peer's address as this packet's destination, then ours.
        auto h = sa_.proposal.hash_algorithm();
        out.payloads.emplace_back(NatDPayload{nat_d_hash(h, sa_.cky_i, sa_.cky_r, sa_.remote)});
        Bytes mine = nat_d_hash(h, sa_.cky_i, sa_.cky_r, sa_.local);
        if (cfg_.force_udp_encapsulation) random_.fill(mine);  // strongSwan encap=yes: claim a NAT
        out.payloads.emplace_back(NatDPayload{std::move(mine)});
    }
}

bool MainMode::derive_keys() {
    const crypto::SecretBytes* psk = cfg_.psk_for(sa_.remote.address);
    if (!psk) {
        fail(FailReason::AuthenticationFailed, notify_type::authentication_failed, "no PSK for this peer");
        return false;
    }
    Phase1Keys::Inputs in;
    in.psk = psk->span();
    in.ni_b = ni_;
    in.nr_b = nr_;
    in.g_xy = g_xy_.span();
    in.g_xi = g_xi_;
    in.g_xr = g_xr_;
    in.cky_i = sa_.cky_i;
    in.cky_r = sa_.cky_r;
    in.key_len = sa_.proposal.key_bits / 8;
    auto keys = Phase1Keys::derive_psk(sa_.proposal.prf(), sa_.proposal.hash_algorithm(), in);
    if (!keys) {
        fail(FailReason::ProtocolError, 0, "key derivation failed");
        return false;
    }
    auto cipher = MessageCipher::create(sa_.proposal.cipher(), keys->cipher_key.span(), keys->hash_algorithm, keys->iv);
    if (!cipher) {
        fail(FailReason::ProtocolError, 0, "cipher unavailable");
        return false;
    }
    sa_.keys = std::move(*keys);
    sa_.cipher.emplace(std::move(*cipher));
    return true;
}

TaskStatus MainMode::process(const Message& in) {
    bool my_turn = sa_.initiator ? (step_ % 2 == 1) : (step_ % 2 == 0 && step_ < 6);
    if (failed_ || !my_turn || in.header.exchange_type != exchange_type::main_mode || in.header.message_id != 0)
        return TaskStatus::Dropped;
    // MM1-MM4 travel in the clear, MM5/MM6 encrypted; anything else is not this step's message.
    if (in.header.encrypted() != (step_ >= 4)) return TaskStatus::Dropped;
    TaskStatus st;
    if (step_ <= 1)
        st = process_sa(in);
    else if (step_ <= 3)
        st = process_ke(in);
    else
        st = process_auth(in);
    if (st != TaskStatus::NeedMore) return st;
    ++step_;
    return (sa_.initiator && step_ == 6) ? TaskStatus::Done : TaskStatus::NeedMore;
}

TaskStatus MainMode::process_sa(const Message& in) {
    std::size_t sa_index = in.index_of(payload_type::sa);
    const SaPayload* sa = in.find<SaPayload>();
    if (!sa) return fail(FailReason::ProtocolError, notify_type::payload_malformed, "no SA payload");
    bool nat_t = false, dpd = false;
    for (const auto* v : in.find_all<VendorIdPayload>()) {
        if (vid_is(*v, vendor_id::nat_t_rfc3947)) nat_t = true;
        if (vid_is(*v, vendor_id::dpd)) dpd = true;
    }
    sa_.peer_nat_t = nat_t && cfg_.nat_traversal;
    sa_.peer_dpd = dpd;
    if (sa_.initiator) {
        auto p = accept_ike_reply(*sa, cfg_.ike_proposals);
        if (!p)
            return fail(FailReason::NoProposalChosen, 0,
                        "phase 1 (Main Mode): the gateway chose " + describe_offer(*sa) + ", which we did not offer (we offered " +
                            describe(cfg_.ike_proposals) + ")");
        sa_.proposal = *p;
        sa_.cky_r = in.header.responder_cookie;
        return TaskStatus::NeedMore;
    }
    auto sel = select_ike(*sa, cfg_.ike_proposals);
    if (!sel)
        return fail(FailReason::NoProposalChosen, notify_type::no_proposal_chosen,
                    "phase 1 (Main Mode): no proposal chosen; the peer offered " + describe_offer(*sa) + ", we accept " +
                        describe(cfg_.ike_proposals));
    sa_.proposal = sel->proposal;
    // Our own lifetime bounds the one we keep (the initiator's stays in the reply).
    for (const auto& mine : cfg_.ike_proposals)
        if (mine.same_algorithms(sel->proposal)) sa_.proposal.lifetime = std::min(mine.lifetime, sel->proposal.lifetime);
    auto body = in.wire_body(sa_index);
    sai_b_.assign(body.begin(), body.end());
    reply_sa_ = std::move(sel->reply);
    return TaskStatus::NeedMore;
}

void MainMode::detect_nat(const Message& in) {
    auto natd = in.find_all<NatDPayload>();
    if (!sa_.peer_nat_t || natd.size() < 2) {
        sa_.peer_nat_t = false;  // RFC 3947 §3: no NAT-D, no NAT-T
        return;
    }
    auto h = sa_.proposal.hash_algorithm();
    // The first NAT-D is us as the peer addressed us; a mismatch means a NAT rewrote it.
    sa_.local_behind_nat = natd[0]->hash != nat_d_hash(h, sa_.cky_i, sa_.cky_r, sa_.local);
    Bytes peer = nat_d_hash(h, sa_.cky_i, sa_.cky_r, sa_.remote);
    bool peer_match = false;
    for (std::size_t i = 1; i < natd.size(); ++i) peer_match |= natd[i]->hash == peer;
    sa_.remote_behind_nat = !peer_match;
    if (cfg_.force_udp_encapsulation) sa_.local_behind_nat = true;
}

TaskStatus MainMode::process_ke(const Message& in) {
    const KePayload* ke = in.find<KePayload>();
    const NoncePayload* nonce = in.find<NoncePayload>();
    if (!ke || !nonce) return fail(FailReason::ProtocolError, notify_type::payload_malformed, "KE or nonce missing");
    if (nonce->data.size() < 8 || nonce->data.size() > 256)
        return fail(FailReason::ProtocolError, notify_type::payload_malformed, "bad nonce length");
    if (ke->data.size() != crypto::modulus_len(sa_.proposal.group))
        return fail(FailReason::InvalidKeyInformation, notify_type::invalid_key_information, "KE length");
    detect_nat(in);
    if (sa_.initiator) {
        g_xr_ = ke->data;
        nr_ = nonce->data;
        auto s = dh_->shared_secret(g_xr_);
        if (!s) return fail(FailReason::InvalidKeyInformation, 0, "bad KE from responder");
        g_xy_ = std::move(*s);
        if (!derive_keys()) return TaskStatus::Failed;
    } else {
        g_xi_ = ke->data;
        ni_ = nonce->data;
        if (!cfg_.psk_for(sa_.remote.address))
            return fail(FailReason::AuthenticationFailed, notify_type::authentication_failed, "no PSK for this peer");
    }
    return TaskStatus::NeedMore;
}

TaskStatus MainMode::process_auth(const Message& in) {
    std::size_t id_index = in.index_of(payload_type::id);
    const IdPayload* id = in.find<IdPayload>();
    const HashPayload* hash = in.find<HashPayload>();
    // A wrong PSK decrypts to garbage: whatever is missing, the peer could not authenticate.
    if (!id || !hash)
        return fail(FailReason::AuthenticationFailed, notify_type::authentication_failed, "ID or HASH missing");
    bool peer_is_initiator = !sa_.initiator;
    auto expected = sa_.keys->auth_hash(peer_is_initiator, g_xi_, g_xr_, sa_.cky_i, sa_.cky_r, sai_b_, in.wire_body(id_index));
    if (!expected || !crypto::constant_time_equal(*expected, hash->data))
        return fail(FailReason::AuthenticationFailed, notify_type::authentication_failed,
                    peer_is_initiator ? "HASH_I mismatch (wrong PSK?)" : "HASH_R mismatch (wrong PSK?)");
    if (cfg_.remote_id && !(cfg_.remote_id->id_type == id->id_type && cfg_.remote_id->data == id->data))
        return fail(FailReason::AuthenticationFailed, notify_type::invalid_id_information, "peer ID not allowed");
    sa_.peer_id = *id;
    for (const auto* n : in.find_all<NotifyPayload>())
        if (n->notify_type == notify_type::initial_contact) sa_.initial_contact_received = true;
    return TaskStatus::NeedMore;
}

}  // namespace mipsec::ipsec::ike
