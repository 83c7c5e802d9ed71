// SPDX-License-Identifier: MIT
#include "ipsec/ike/quick_mode.hpp"

namespace mipsec::ipsec::ike {
namespace {

constexpr std::size_t nonce_len = 32;

/// HASH must be the first payload (RFC 2409 §5.5); returns it or nullptr.
const HashPayload* leading_hash(const Message& in) {
    return in.payloads.empty() ? nullptr : in.payloads.front().get<HashPayload>();
}

}  // namespace

QuickMode QuickMode::initiator(IkeSa& sa, crypto::Random& random, std::uint32_t message_id, InitiatorParams p) {
    QuickMode q(sa, random, message_id, true);
    q.params_ = std::move(p);
    return q;
}

QuickMode QuickMode::responder(IkeSa& sa, const SessionConfig& cfg, crypto::Random& random, std::uint32_t message_id,
                               std::uint32_t spi_in, TsPolicy policy) {
    QuickMode q(sa, random, message_id, false);
    q.cfg_ = &cfg;
    q.params_.spi_in = spi_in;
    q.params_.pfs_group = cfg.pfs_group;
    // Either peer may rekey (strongSwan does as responder too); a gateway leaves it to its
    // clients unless configured otherwise.
    q.params_.rekey_time = cfg.child_rekey_time;
    q.policy_ = std::move(policy);
    return q;
}

TaskStatus QuickMode::fail(FailReason r, std::uint16_t notify, std::string detail) {
    failed_ = true;
    failure_ = {r, notify, std::move(detail)};
    return TaskStatus::Failed;
}

bool QuickMode::make_ke() {
    if (!params_.pfs_group) return true;
    auto dh = crypto::DiffieHellman::create(*params_.pfs_group, *random_);
    if (!dh) return false;
    dh_ = std::move(*dh);
    return true;
}

TaskStatus QuickMode::build(Message& out) {
    bool my_turn = initiator_ ? (step_ == 0 || step_ == 2) : step_ == 1;
    if (failed_ || !my_turn || !sa_->keys) return TaskStatus::Failed;
    out = Message{};
    out.header = sa_->header(exchange_type::quick_mode, message_id_);
    out.header.flags = header_flag::encryption;
    const Phase1Keys& keys = *sa_->keys;
    if (step_ == 2) {  // QM3
        auto h = keys.hash3(message_id_, ni_, nr_);
        if (!h) return fail(FailReason::ProtocolError, 0, "prf failed");
        out.payloads.emplace_back(HashPayload{std::move(*h)});
        ++step_;
        return TaskStatus::Done;
    }
    std::vector<Payload> body;
    Bytes nonce(nonce_len);
    random_->fill(nonce);
    if (step_ == 0) {
        if (!make_ke()) return fail(FailReason::ProtocolError, 0, "DH group unavailable");
        ni_ = nonce;
        body.emplace_back(make_esp_sa(params_.proposals, params_.spi_in, params_.pfs_group, udp_encap()));
        body.emplace_back(NoncePayload{std::move(nonce)});
        if (dh_) body.emplace_back(KePayload{dh_->public_value()});
        body.emplace_back(to_id(params_.local_ts));
        body.emplace_back(to_id(params_.remote_ts));
    } else {
        nr_ = nonce;
        if (chosen_->pfs_group) {
            params_.pfs_group = chosen_->pfs_group;
            if (!make_ke()) return fail(FailReason::ProtocolError, 0, "DH group unavailable");
            auto s = dh_->shared_secret(peer_ke_);
            if (!s) return fail(FailReason::InvalidKeyInformation, notify_type::invalid_key_information, "bad QM KE");
            g_qm_xy_ = std::move(*s);
        }
        body.emplace_back(std::move(reply_sa_));
        body.emplace_back(NoncePayload{std::move(nonce)});
        if (dh_) body.emplace_back(KePayload{dh_->public_value()});
        for (auto& id : reply_ids_) body.push_back(std::move(id));
    }
    Bytes chain;
    if (!emit_payloads(body, chain)) return fail(FailReason::ProtocolError, 0, "cannot encode QM payloads");
    auto h = step_ == 0 ? keys.hash1(message_id_, chain) : keys.hash2(message_id_, ni_, chain);
    if (!h) return fail(FailReason::ProtocolError, 0, "prf failed");
    out.payloads.emplace_back(HashPayload{std::move(*h)});
    for (auto& p : body) out.payloads.push_back(std::move(p));
    ++step_;
    return TaskStatus::NeedMore;
}

TaskStatus QuickMode::process(const Message& in) {
    bool my_turn = initiator_ ? step_ == 1 : (step_ == 0 || step_ == 2);
    if (failed_ || !my_turn || !sa_->keys || in.header.exchange_type != exchange_type::quick_mode ||
        in.header.message_id != message_id_ || !in.header.encrypted())
        return TaskStatus::Dropped;
    if (!leading_hash(in)) return TaskStatus::Dropped;
    TaskStatus st = initiator_ ? process_qm2(in) : (step_ == 0 ? process_qm1(in) : process_qm3(in));
    if (st == TaskStatus::NeedMore || st == TaskStatus::Done) ++step_;
    return st;
}

TaskStatus QuickMode::process_qm1(const Message& in) {
    const Phase1Keys& keys = *sa_->keys;
    auto expected = keys.hash1(message_id_, in.wire_from(1));
    if (in.payloads.size() < 2 || !expected || !crypto::constant_time_equal(*expected, leading_hash(in)->data))
        return TaskStatus::Dropped;
    const SaPayload* sa = in.payloads[1].get<SaPayload>();
    const NoncePayload* nonce = in.find<NoncePayload>();
    if (!sa || !nonce || nonce->data.size() < 8 || nonce->data.size() > 256)
        return fail(FailReason::ProtocolError, notify_type::payload_malformed, "QM1 without SA or nonce");
    ni_ = nonce->data;
    const KePayload* ke = in.find<KePayload>();
    auto sel = select_esp(*sa, cfg_->esp_proposals, cfg_->pfs_group, udp_encap(), params_.spi_in);
    if (!sel)
        return fail(FailReason::NoProposalChosen, notify_type::no_proposal_chosen,
                    "phase 2 (Quick Mode): no proposal chosen; the peer offered " + describe_offer(*sa) + ", we accept " +
                        describe(cfg_->esp_proposals, cfg_->pfs_group) + (udp_encap() ? " in UDP tunnel mode (NAT-T)" : ""));
    // RFC 2409 §5.5: a KE goes with a Group Description in the transform, and vice versa.
    if (static_cast<bool>(ke) != sel->offer.pfs_group.has_value())
        return fail(FailReason::NoProposalChosen, notify_type::no_proposal_chosen,
                    std::string("phase 2 (Quick Mode): the peer's transform ") + (ke ? "has no PFS group but a KE payload came"
                                                                                     : "names a PFS group but no KE payload came"));
    if (ke) {
        if (ke->data.size() != crypto::modulus_len(*sel->offer.pfs_group))
            return fail(FailReason::InvalidKeyInformation, notify_type::invalid_key_information, "QM KE length");
        peer_ke_ = ke->data;
    }
    auto ids = in.find_all<IdPayload>();
    core::Ipv4Prefix remote_ts{sa_->remote.address, 32};
    core::Ipv4Prefix local_ts{sa_->local.address, 32};
    if (ids.size() == 2) {
        auto ci = from_id(*ids[0]);
        auto cr = from_id(*ids[1]);
        if (!ci || !cr) return fail(FailReason::InvalidId, notify_type::invalid_id_information, "unsupported ID type");
        remote_ts = *ci;
        local_ts = *cr;
        reply_ids_ = {*ids[0], *ids[1]};  // echoed unchanged (RFC 2409 §5.5)
    } else if (!ids.empty()) {
        return fail(FailReason::InvalidId, notify_type::invalid_id_information, "IDci without IDcr");
    }
    if (policy_ && !policy_(remote_ts, local_ts))
        return fail(FailReason::InvalidId, notify_type::invalid_id_information, "traffic selectors not allowed");
    params_.local_ts = local_ts;
    params_.remote_ts = remote_ts;
    spi_out_ = sel->spi_out;
    chosen_ = sel->offer;
    reply_sa_ = std::move(sel->reply);
    return TaskStatus::NeedMore;
}

TaskStatus QuickMode::process_qm2(const Message& in) {
    const Phase1Keys& keys = *sa_->keys;
    auto expected = keys.hash2(message_id_, ni_, in.wire_from(1));
    if (in.payloads.size() < 2 || !expected || !crypto::constant_time_equal(*expected, leading_hash(in)->data))
        return TaskStatus::Dropped;
    const SaPayload* sa = in.payloads[1].get<SaPayload>();
    const NoncePayload* nonce = in.find<NoncePayload>();
    if (!sa || !nonce || nonce->data.size() < 8 || nonce->data.size() > 256)
        return fail(FailReason::ProtocolError, 0, "QM2 without SA or nonce");
    auto acc = accept_esp_reply(*sa, params_.proposals, params_.pfs_group, udp_encap());
    if (!acc)
        return fail(FailReason::NoProposalChosen, 0,
                    "phase 2 (Quick Mode): the gateway chose " + describe_offer(*sa) + ", which we did not offer (we offered " +
                        describe(params_.proposals, params_.pfs_group) + ")");
    nr_ = nonce->data;
    const KePayload* ke = in.find<KePayload>();
    if (static_cast<bool>(ke) != static_cast<bool>(dh_)) return fail(FailReason::InvalidKeyInformation, 0, "PFS KE missing");
    if (ke) {
        auto s = dh_->shared_secret(ke->data);
        if (!s) return fail(FailReason::InvalidKeyInformation, 0, "bad QM KE");
        g_qm_xy_ = std::move(*s);
    }
    auto ids = in.find_all<IdPayload>();
    if (ids.size() == 2) {
        // IKEv1 does not narrow: the responder must return the selectors we sent.
        if (from_id(*ids[0]) != params_.local_ts || from_id(*ids[1]) != params_.remote_ts)
            return fail(FailReason::InvalidId, 0, "responder changed the traffic selectors");
    } else if (!ids.empty()) {
        return fail(FailReason::InvalidId, 0, "IDci without IDcr");
    }
    if (!derive_child(acc->offer, acc->spi_out)) return fail(FailReason::ProtocolError, 0, "KEYMAT derivation failed");
    return TaskStatus::NeedMore;
}

TaskStatus QuickMode::process_qm3(const Message& in) {
    auto expected = sa_->keys->hash3(message_id_, ni_, nr_);
    if (!expected || !crypto::constant_time_equal(*expected, leading_hash(in)->data)) return TaskStatus::Dropped;
    if (!derive_child(*chosen_, spi_out_)) return fail(FailReason::ProtocolError, 0, "KEYMAT derivation failed");
    return TaskStatus::Done;
}

bool QuickMode::derive_child(const EspOffer& offer, std::uint32_t spi_out) {
    const Phase1Keys& keys = *sa_->keys;
    EspAlgorithm alg = offer.proposal.algorithm;
    std::size_t ek = cipher_key_len(alg), sl = salt_len(alg), ik = integrity_key_len(alg);
    std::size_t len = ek + sl + ik;
    // Pitfall 16: each direction's KEYMAT uses the SPI its receiver chose.
    auto in_km = keys.keymat(g_qm_xy_.span(), protocol_id::ipsec_esp, params_.spi_in, ni_, nr_, len);
    auto out_km = keys.keymat(g_qm_xy_.span(), protocol_id::ipsec_esp, spi_out, ni_, nr_, len);
    if (!in_km || !out_km) return false;
    ChildSa c;
    c.spi_in = params_.spi_in;
    c.spi_out = spi_out;
    c.algorithm = alg;
    c.encryption_key_in = in_km->subspan(0, ek);
    c.salt_in = in_km->subspan(ek, sl);
    c.integrity_key_in = in_km->subspan(ek + sl, ik);
    c.encryption_key_out = out_km->subspan(0, ek);
    c.salt_out = out_km->subspan(ek, sl);
    c.integrity_key_out = out_km->subspan(ek + sl, ik);
    c.hard_lifetime = offer.proposal.lifetime;
    c.soft_lifetime = params_.rekey_time < c.hard_lifetime ? params_.rekey_time : core::Duration::zero();
    c.local_ts = params_.local_ts;
    c.remote_ts = params_.remote_ts;
    c.udp_encapsulation = offer.encapsulation == encapsulation_mode::udp_tunnel;
    c.local = sa_->local;
    c.remote = sa_->remote;
    c.pfs_group = offer.pfs_group;
    c.initiator = initiator_;
    c.collision_nonce = std::min(ni_, nr_);
    child_ = std::move(c);
    return true;
}

}  // namespace mipsec::ipsec::ike
