// SPDX-License-Identifier: MIT
#include "ipsec/ike/session.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

#include "core/endian.hpp"

namespace mipsec::ipsec::ike {
namespace {


bool prefix_inside(core::Ipv4Prefix inner, core::Ipv4Prefix outer) {
    return inner.length >= outer.length && outer.contains(inner.address);
}

bool equal_bytes(std::span<const std::uint8_t> a, const Bytes& b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end());
}

/// RFC 2408 §3.14.1 names, as strongSwan logs them.
std::string notify_name(std::uint16_t n) {
    switch (n) {
    case notify_type::invalid_payload_type: return "INVALID-PAYLOAD-TYPE";
    case notify_type::invalid_exchange_type: return "INVALID-EXCHANGE-TYPE";
    case notify_type::invalid_spi: return "INVALID-SPI";
    case notify_type::attributes_not_supported: return "ATTRIBUTES-NOT-SUPPORTED";
    case notify_type::no_proposal_chosen: return "NO-PROPOSAL-CHOSEN";
    case notify_type::bad_proposal_syntax: return "BAD-PROPOSAL-SYNTAX";
    case notify_type::payload_malformed: return "PAYLOAD-MALFORMED";
    case notify_type::invalid_key_information: return "INVALID-KEY-INFORMATION";
    case notify_type::invalid_id_information: return "INVALID-ID-INFORMATION";
    case notify_type::invalid_hash_information: return "INVALID-HASH-INFORMATION";
    case notify_type::authentication_failed: return "AUTHENTICATION-FAILED";
    default: return "error notify " + std::to_string(n);
    }
}

FailReason reason_for_notify(std::uint16_t n) {
    switch (n) {
    case notify_type::no_proposal_chosen: return FailReason::NoProposalChosen;
    case notify_type::authentication_failed:
    case notify_type::invalid_hash_information: return FailReason::AuthenticationFailed;
    case notify_type::invalid_id_information: return FailReason::InvalidId;
    default: return FailReason::PeerNotified;
    }
}

}  // namespace

std::string_view to_string(FailReason r) noexcept {
    switch (r) {
    case FailReason::Timeout: return "timeout";
    case FailReason::NoProposalChosen: return "no proposal chosen";
    case FailReason::AuthenticationFailed: return "authentication failed";
    case FailReason::InvalidId: return "invalid ID";
    case FailReason::InvalidKeyInformation: return "invalid key information";
    case FailReason::ProtocolError: return "protocol error";
    case FailReason::PeerDead: return "peer dead (DPD)";
    case FailReason::PeerNotified: return "error notify from peer";
    case FailReason::NoAddress: return "no virtual address";
    case FailReason::Expired: return "IKE SA expired";
    }
    return "?";
}

std::string_view to_string(SessionState s) noexcept {
    switch (s) {
    case SessionState::Connecting: return "connecting";
    case SessionState::Established: return "established";
    case SessionState::Closed: return "closed";
    case SessionState::Failed: return "failed";
    }
    return "?";
}

core::Duration RetransmitPolicy::delay(unsigned n) const {
    auto d = std::chrono::duration<double>(timeout) * std::pow(base, static_cast<double>(n));
    if (limit > core::Duration::zero() && d > std::chrono::duration<double>(limit)) return limit;
    return std::chrono::duration_cast<core::Duration>(d);
}

RetransmitPolicy RetransmitPolicy::limited_to(core::Duration max_delay) const {
    RetransmitPolicy p = *this;
    if (max_delay <= core::Duration::zero() || (limit > core::Duration::zero() && limit <= max_delay)) return p;
    p.limit = max_delay;
    const core::Duration total = give_up_after();
    core::Duration sum{};
    unsigned n = 0;
    for (; (sum += p.delay(n)) < total; ++n) {
    }
    p.retransmits = std::max(retransmits, n);
    return p;
}

core::Duration RetransmitPolicy::give_up_after() const {
    core::Duration total{};
    for (unsigned n = 0; n <= retransmits; ++n) total += delay(n);
    return total;
}

const crypto::SecretBytes* SessionConfig::psk_for(core::Ipv4Address peer) const noexcept {
    for (const auto& e : psks)
        if (!e.peer || e.peer->contains(peer)) return &e.key;
    return nullptr;
}

// ---- construction ------------------------------------------------------------------------

Session::Session(std::shared_ptr<const SessionConfig> cfg, crypto::Random& random, bool initiator,
                 core::Endpoint local, core::Endpoint remote)
    : cfg_(std::move(cfg)), random_(random), dpd_(cfg_->dpd_delay, cfg_->retransmit, cfg_->dpd_timeout) {
    sa_.initiator = initiator;
    sa_.local = local;
    sa_.remote = remote;
    mm_ = std::make_unique<MainMode>(sa_, *cfg_, random_);
}

Session::~Session() { release_lease(); }

std::unique_ptr<Session> Session::initiator(std::shared_ptr<const SessionConfig> cfg, crypto::Random& random,
                                            core::Endpoint local, core::Endpoint remote) {
    std::unique_ptr<Session> s(new Session(std::move(cfg), random, true, local, remote));
    // RFC 2408 §2.5.3: a cookie unique to this SA; zero is reserved for "not yet known".
    do random.fill(s->sa_.cky_i); while (s->sa_.cky_i == Cookie{});
    return s;
}

std::unique_ptr<Session> Session::responder(std::shared_ptr<const SessionConfig> cfg, crypto::Random& random,
                                            core::Endpoint local, core::Endpoint remote, const Cookie& cky_i,
                                            const Cookie& cky_r, AddressPool* pool, std::uint64_t owner,
                                            core::TimePoint now) {
    std::unique_ptr<Session> s(new Session(std::move(cfg), random, false, local, remote));
    s->sa_.cky_i = cky_i;
    s->sa_.cky_r = cky_r;
    s->pool_ = pool;
    s->owner_ = owner;
    s->created_ = now;
    s->started_ = true;
    return s;
}

void Session::start(core::TimePoint now, std::optional<core::Ipv4Address> previous_address) {
    if (started_ || !sa_.initiator) return;
    started_ = true;
    previous_address_ = previous_address;
    created_ = now;
    Message mm1;
    if (mm_->build(mm1) == TaskStatus::Failed) return fail(FailReason::ProtocolError, mm_->failure().detail, false);
    Exchange& ex = new_exchange(0);
    if (!send_message(mm1, &ex.last_sent)) return fail(FailReason::ProtocolError, "cannot encode MM1", false);
    arm(ex, now);
}

SessionOutput Session::take_output() { return std::exchange(out_, SessionOutput{}); }

void Session::note_traffic(core::TimePoint now) {
    if (now > last_rx_) last_rx_ = now;
}

// ---- receive -----------------------------------------------------------------------------

void Session::on_datagram(std::span<const std::uint8_t> bytes, core::Endpoint local, core::Endpoint remote,
                          core::TimePoint now) {
    if (state_ == SessionState::Closed || state_ == SessionState::Failed || !started_) {
        ++counters_.dropped_unexpected;
        return;
    }
    ++counters_.received;
    auto parsed = parse(bytes);
    if (!parsed) {
        ++counters_.dropped_malformed;
        return;
    }
    const IsakmpHeader& h = parsed->header;
    bool zero_r = h.responder_cookie == Cookie{};
    bool cookies_ok = h.initiator_cookie == sa_.cky_i &&
                      (h.responder_cookie == sa_.cky_r ||
                       // MM2 (or a phase-1 error notify) tells the initiator CKY-R
                       (sa_.initiator && sa_.cky_r == Cookie{}) ||
                       // a retransmitted MM1 still carries CKY-R = 0
                       (!sa_.initiator && zero_r && h.exchange_type == exchange_type::main_mode));
    if (!cookies_ok) {
        ++counters_.dropped_malformed;
        return;
    }
    // RFC 3947 §4: after floating, packets for this SA on the IKE port are stale. Not so a
    // notify answering our floated MM5: strongSwan, not having accepted MM5, answers from the
    // port it last accepted a message on (500).
    const bool phase1_notify = sa_.initiator && !mm_->established() && h.exchange_type == exchange_type::informational;
    if (sa_.local.port == cfg_->nat_t_port && cfg_->nat_t_port != cfg_->ike_port && local.port != cfg_->nat_t_port &&
        !phase1_notify) {
        ++counters_.dropped_unexpected;
        return;
    }
    if (Exchange* ex = find_exchange(h.message_id); ex && !ex->last_received.empty() && equal_bytes(bytes, ex->last_received)) {
        // Pitfall 15: a repeated request gets the identical reply, never a recomputed one.
        if (ex->last_sent_is_reply && !ex->last_sent.empty()) {
            ++counters_.duplicates_answered;
            send_bytes(ex->last_sent);
        } else {
            ++counters_.dropped_replay;
        }
        return;
    }
    if (h.exchange_type == exchange_type::main_mode) return on_phase1(*parsed, bytes, local, remote, now);
    if (!mm_->established()) {
        if (h.exchange_type == exchange_type::informational && !h.encrypted()) return on_plain_informational(*parsed);
        if (h.exchange_type == exchange_type::informational) return on_phase1_informational(*parsed, bytes);
        ++counters_.dropped_unexpected;
        return;
    }
    on_protected(*parsed, bytes, local, remote, now);
}

void Session::on_phase1(const Message& header_only, std::span<const std::uint8_t> bytes, core::Endpoint local,
                        core::Endpoint remote, core::TimePoint now) {
    if (mm_->established() || mm_->failed() || header_only.header.message_id != 0) {
        ++counters_.dropped_unexpected;
        return;
    }
    // The responder answers from where the request arrived to where it came from (RFC 3947
    // §4), also when the answer is an error; its NAT-D hashes use these endpoints.
    if (!sa_.initiator) adopt_endpoints(local, remote);
    Message msg;
    std::optional<Bytes16> block;
    if (header_only.header.encrypted()) {
        bool auth_step = sa_.initiator ? mm_->step() == 5 : mm_->step() == 4;
        if (!sa_.cipher || !auth_step) {
            ++counters_.dropped_unexpected;
            return;
        }
        auto o = sa_.cipher->open(bytes);
        if (!o) {
            // With another PSK on the two sides MM5/MM6 decrypt to garbage. Answer as strongSwan
            // does (task_manager_v1.c: a body that does not parse gets PAYLOAD-MALFORMED in an
            // Informational protected with our phase-1 keys): the peer cannot read it, but learns
            // at once that its authentication was not understood (see on_phase1_informational).
            ++counters_.dropped_auth;
            send_error_notify(notify_type::payload_malformed);
            return fail(FailReason::AuthenticationFailed,
                        sa_.initiator ? "cannot decrypt the gateway's authentication message (MM6): wrong PSK?"
                                      : "cannot decrypt the peer's authentication message (MM5): the two sides hold different PSKs",
                        false);
        }
        msg = std::move(o->message);
        block = o->last_block;
    } else {
        msg = header_only;
    }
    TaskStatus st = mm_->process(msg);
    if (st == TaskStatus::Dropped) {
        ++counters_.dropped_unexpected;
        return;
    }
    if (st == TaskStatus::Failed) {
        if (block) {
            ++counters_.dropped_auth;
            // The notify goes under the IV this message leaves, which is what the peer expects.
            sa_.cipher->commit(0, *block);
        }
        if (mm_->failure().notify) send_error_notify(mm_->failure().notify);
        return fail(mm_->failure().reason, mm_->failure().detail, false);
    }
    if (block) sa_.cipher->commit(0, *block);
    last_rx_ = now;
    Exchange* ex = find_exchange(0);
    if (!ex) ex = &new_exchange(0);
    ex->last_received.assign(bytes.begin(), bytes.end());
    ex->awaiting = false;
    if (!sa_.initiator) {
        Message reply;
        TaskStatus bst = mm_->build(reply);
        if (bst == TaskStatus::Failed) {
            if (mm_->failure().notify) send_error_notify(mm_->failure().notify);
            return fail(mm_->failure().reason, mm_->failure().detail, false);
        }
        if (!send_message(reply, &ex->last_sent)) return fail(FailReason::ProtocolError, "cannot encode reply", false);
        ex->last_sent_is_reply = true;
        if (bst == TaskStatus::Done) phase1_established(now);
        return;
    }
    if (st == TaskStatus::Done) return phase1_established(now);
    // RFC 3947 §4: float to port 4500 with the first encrypted message when a NAT is in the way.
    if (mm_->next_is_encrypted() && sa_.peer_nat_t && sa_.nat_detected() && sa_.local.port != cfg_->nat_t_port) {
        sa_.local.port = cfg_->nat_t_port;
        sa_.remote.port = cfg_->nat_t_port;
    }
    Message next;
    if (mm_->build(next) == TaskStatus::Failed) return fail(mm_->failure().reason, mm_->failure().detail, false);
    if (!send_message(next, &ex->last_sent)) return fail(FailReason::ProtocolError, "cannot encode request", false);
    ex->last_sent_is_reply = false;
    arm(*ex, now);
}

void Session::phase1_established(core::TimePoint now) {
    state_ = SessionState::Established;
    established_at_ = now;
    last_rx_ = now;
    if (Exchange* ex = find_exchange(0)) ex->finished = true;
    dpd_.start(random_.next_u32() & 0x7FFFFFFFu);  // RFC 3706 §7: top bit zero leaves room to grow
    Established e;
    e.local = sa_.local;
    e.remote = sa_.remote;
    e.udp_encapsulation = sa_.peer_nat_t && sa_.nat_detected();
    e.local_behind_nat = sa_.local_behind_nat;
    e.remote_behind_nat = sa_.remote_behind_nat;
    e.dpd = sa_.peer_dpd && cfg_->dpd;
    e.peer_id = sa_.peer_id;
    out_.events.emplace_back(std::move(e));
    if (!sa_.initiator) return;
    if (cfg_->request_virtual_ip)
        start_mode_config(now);
    else
        start_quick_mode(now, std::nullopt);
}

void Session::on_plain_informational(const Message& m) {
    // Before the phase-1 keys exist the peer can only tell us in the clear why it gave up.
    for (const auto* n : m.find_all<NotifyPayload>()) {
        if (!n->is_error()) continue;
        auto [reason, detail] = phase1_refusal(n->notify_type);
        fail(reason, std::move(detail), false, n->notify_type);
        return;
    }
    ++counters_.dropped_unexpected;
}

// An encrypted Informational before Main Mode completed. strongSwan answers an MM5 it cannot
// decrypt or verify with an error notify protected by its own phase-1 keys; with another PSK
// those differ from ours, so the answer cannot be read here, and it never sends MM6. Arriving
// while we wait for MM6, it can only mean that the gateway did not accept our MM5: say so at
// once instead of retransmitting MM5 until the retransmissions run out. (Like the plaintext
// notifies above it is unauthenticated; the client stage retries after its restart delay.)
void Session::on_phase1_informational(const Message& header_only, std::span<const std::uint8_t> bytes) {
    if (!sa_.initiator || mm_->step() != 5 || !sa_.cipher || !sa_.keys) {
        ++counters_.dropped_unexpected;
        return;
    }
    const std::uint32_t mid = header_only.header.message_id;
    auto o = sa_.cipher->open(bytes);
    bool authentic = false;
    if (o && o->message.payloads.size() >= 2) {
        if (const auto* hash = o->message.payloads.front().get<HashPayload>()) {
            auto expected = sa_.keys->hash1(mid, o->message.wire_from(1));
            authentic = expected && crypto::constant_time_equal(*expected, hash->data);
        }
    }
    if (!authentic) {
        ++counters_.dropped_auth;
        return fail(FailReason::AuthenticationFailed, "the gateway could not decrypt our authentication: wrong PSK or identity?",
                    false);
    }
    // Same keys on both sides: the gateway read MM5 and says what it did not like.
    for (const auto* n : o->message.find_all<NotifyPayload>()) {
        if (!n->is_error()) continue;
        auto [reason, detail] = phase1_refusal(n->notify_type);
        return fail(reason, std::move(detail), false, n->notify_type);
    }
    ++counters_.dropped_unexpected;
}

Session::Refusal Session::phase1_refusal(std::uint16_t notify) const {
    const std::string name = notify_name(notify);
    if (sa_.initiator && mm_->step() == 5) {
        // The answer to MM5, our ID and HASH_I.
        if (notify == notify_type::invalid_id_information)
            return {FailReason::InvalidId, "the gateway does not accept our identity (" + name + ")"};
        if (notify == notify_type::payload_malformed)
            return {FailReason::AuthenticationFailed, "the gateway could not decrypt our authentication: wrong PSK or identity? (" + name + ")"};
        return {FailReason::AuthenticationFailed, "the gateway did not accept our authentication: wrong PSK or identity? (" + name + ")"};
    }
    if (notify == notify_type::no_proposal_chosen)
        return {FailReason::NoProposalChosen, "phase 1 (Main Mode): no proposal chosen by the peer; we offered " +
                                                  describe(cfg_->ike_proposals) + " (the peer's log names what it accepts)"};
    if (notify == notify_type::authentication_failed && sa_.initiator)
        return {FailReason::AuthenticationFailed,
                "phase 1 (Main Mode): the gateway refused us before authentication (" + name + "): has it a PSK for our address?"};
    return {reason_for_notify(notify), "phase 1 (Main Mode): the peer refused with " + name};
}

void Session::on_protected(const Message& header_only, std::span<const std::uint8_t> bytes, core::Endpoint local,
                           core::Endpoint remote, core::TimePoint now) {
    const IsakmpHeader& h = header_only.header;
    // RFC 2408 §5.14 as strongSwan applies it: unprotected messages after phase 1 are ignored.
    if (!h.encrypted() || h.message_id == 0) {
        ++counters_.dropped_unexpected;
        return;
    }
    if (h.exchange_type == exchange_type::informational) {
        if (seen(h.message_id)) {
            ++counters_.dropped_replay;
            return;
        }
        auto o = sa_.cipher->open(bytes);
        if (!o || o->message.payloads.size() < 2 || !o->message.payloads.front().get<HashPayload>()) {
            ++counters_.dropped_auth;
            return;
        }
        auto expected = sa_.keys->hash1(h.message_id, o->message.wire_from(1));
        if (!expected || !crypto::constant_time_equal(*expected, o->message.payloads.front().get<HashPayload>()->data)) {
            ++counters_.dropped_auth;
            return;
        }
        remember(h.message_id);
        last_rx_ = now;
        if (!sa_.initiator) adopt_endpoints(local, remote);
        return on_informational(o->message, now);
    }
    if (h.exchange_type != exchange_type::quick_mode && h.exchange_type != exchange_type::transaction) {
        ++counters_.dropped_unexpected;
        return;
    }
    Exchange* ex = find_exchange(h.message_id);
    if (ex && (ex->finished || !ex->awaiting)) {
        ++counters_.dropped_replay;
        return;
    }
    if (!ex && seen(h.message_id)) {
        ++counters_.dropped_replay;
        return;
    }
    auto o = sa_.cipher->open(bytes);
    if (!o) {
        ++counters_.dropped_auth;
        return;
    }
    TaskStatus st;
    if (!ex) {
        // A new exchange started by the peer.
        std::variant<std::monostate, QuickMode, ModeConfig> task;
        if (h.exchange_type == exchange_type::quick_mode) {
            auto policy = [this](core::Ipv4Prefix remote_ts, core::Ipv4Prefix local_ts) {
                if (mode_config_ && !sa_.initiator && remote_ts != core::Ipv4Prefix{mode_config_->address, 32}) return false;
                if (cfg_->local_ts.empty()) return true;
                return std::any_of(cfg_->local_ts.begin(), cfg_->local_ts.end(),
                                   [&](core::Ipv4Prefix p) { return prefix_inside(local_ts, p); });
            };
            task.emplace<QuickMode>(QuickMode::responder(sa_, *cfg_, random_, h.message_id, fresh_spi(), policy));
            st = std::get<QuickMode>(task).process(o->message);
        } else if (!sa_.initiator) {
            task.emplace<ModeConfig>(ModeConfig::gateway(sa_, *cfg_, h.message_id, pool_, owner_));
            st = std::get<ModeConfig>(task).process(o->message);
        } else {
            ++counters_.dropped_unexpected;  // push mode (CFG_SET) is not supported
            return;
        }
        if (st == TaskStatus::Dropped) {
            ++counters_.dropped_auth;
            return;
        }
        remember(h.message_id);
        sa_.cipher->commit(h.message_id, o->last_block);
        last_rx_ = now;
        if (!sa_.initiator) adopt_endpoints(local, remote);
        Exchange& nex = new_exchange(h.message_id);
        nex.task = std::move(task);
        nex.last_received.assign(bytes.begin(), bytes.end());
        if (st == TaskStatus::Failed) {
            nex.finished = true;
            std::uint16_t notify = 0;
            if (auto* q = std::get_if<QuickMode>(&nex.task)) {
                notify = q->failure().notify;
                out_.events.emplace_back(ChildSaRefused{q->failure().reason, q->failure().detail});
            }
            if (notify) {
                NotifyPayload n;
                n.protocol_id = protocol_id::ipsec_esp;
                n.notify_type = notify;
                send_informational({Payload(std::move(n))}, now);
            }
            return;
        }
        Message reply;
        TaskStatus bst = std::visit(
            [&](auto& t) -> TaskStatus {
                if constexpr (std::is_same_v<std::decay_t<decltype(t)>, std::monostate>)
                    return TaskStatus::Failed;
                else
                    return t.build(reply);
            },
            nex.task);
        if (bst == TaskStatus::Failed || !send_message(reply, &nex.last_sent)) {
            nex.finished = true;
            return;
        }
        nex.last_sent_is_reply = true;
        if (bst == TaskStatus::NeedMore)
            arm(nex, now);  // responder QM waits for HASH(3) and resends QM2 meanwhile
        else
            exchange_done(nex, now);
        return;
    }
    st = std::visit(
        [&](auto& t) -> TaskStatus {
            if constexpr (std::is_same_v<std::decay_t<decltype(t)>, std::monostate>)
                return TaskStatus::Dropped;
            else
                return t.process(o->message);
        },
        ex->task);
    if (st == TaskStatus::Dropped) {
        ++counters_.dropped_auth;
        return;
    }
    sa_.cipher->commit(h.message_id, o->last_block);
    last_rx_ = now;
    if (!sa_.initiator) adopt_endpoints(local, remote);
    ex->last_received.assign(bytes.begin(), bytes.end());
    ex->awaiting = false;
    if (st == TaskStatus::Failed) {
        TaskFailure f = std::visit(
            [](auto& t) -> TaskFailure {
                if constexpr (std::is_same_v<std::decay_t<decltype(t)>, std::monostate>)
                    return {};
                else
                    return t.failure();
            },
            ex->task);
        ex->finished = true;
        bool rekey = false;
        if (auto* q = std::get_if<QuickMode>(&ex->task); q && q->replaces()) {
            rekey = true;
            children_.rekey_abandoned(*q->replaces(), now);
        }
        if (ex->we_initiated && !rekey && sa_.initiator) fail(f.reason, f.detail, true);
        return;
    }
    if (st == TaskStatus::NeedMore) {
        // Quick Mode initiator after QM2: HASH(3) completes the exchange.
        Message third;
        auto* q = std::get_if<QuickMode>(&ex->task);
        if (!q || q->build(third) != TaskStatus::Done || !send_message(third, &ex->last_sent)) {
            ex->finished = true;
            return;
        }
        ex->last_sent_is_reply = true;  // a repeated QM2 gets the same QM3
    } else {
        // Nothing answers this message (QM3, CFG_REPLY): a repeat of it is a replay, and
        // answering it with our previous message would make two peers ping-pong forever.
        ex->last_sent_is_reply = false;
    }
    exchange_done(*ex, now);
}

void Session::exchange_done(Exchange& ex, core::TimePoint now) {
    ex.finished = true;
    ex.awaiting = false;
    if (auto* q = std::get_if<QuickMode>(&ex.task)) {
        std::optional<std::uint32_t> replaces = q->replaces();
        if (auto child = q->take_child()) install_child(std::move(*child), replaces, now);
    } else if (auto* m = std::get_if<ModeConfig>(&ex.task)) {
        if (m->result()) {
            mode_config_ = m->result();
            InnerAddressAssigned a;
            std::uint8_t len = 32;
            if (mode_config_->netmask) len = static_cast<std::uint8_t>(std::popcount(mode_config_->netmask->value));
            a.address = core::Ipv4Prefix{mode_config_->address, len};
            a.dns = mode_config_->dns;
            a.ours = m->is_client();
            out_.events.emplace_back(std::move(a));
            if (m->is_client()) start_quick_mode(now, std::nullopt);
        }
    }
    prune_exchanges();
}

void Session::on_informational(const Message& m, core::TimePoint now) {
    auto cookies = m.header.cookies();
    for (std::size_t i = 1; i < m.payloads.size(); ++i) {
        if (const auto* n = m.payloads[i].get<NotifyPayload>()) {
            bool spi_ok = n->spi.empty() || std::equal(n->spi.begin(), n->spi.end(), cookies.begin(), cookies.end());
            if (n->notify_type == notify_type::r_u_there) {
                // RFC 3706 §5.1: answer with the same sequence number.
                if (!spi_ok || n->data.size() != 4 || !cfg_->dpd) continue;
                NotifyPayload ack;
                ack.protocol_id = protocol_id::isakmp;
                ack.notify_type = notify_type::r_u_there_ack;
                ack.spi.assign(cookies.begin(), cookies.end());
                ack.data = n->data;
                send_informational({Payload(std::move(ack))}, now);
            } else if (n->notify_type == notify_type::r_u_there_ack) {
                if (!spi_ok || n->data.size() != 4) continue;
                if (dpd_.acknowledge(core::load_be32(n->data.data()))) ++counters_.dpd_acked;
            } else if (n->is_error()) {
                // An error about an exchange we started (strongSwan: NO-PROPOSAL-CHOSEN for a QM).
                for (auto& ex : exchanges_.all()) {
                    if (!ex.we_initiated || ex.finished || ex.message_id == 0) continue;
                    ex.finished = true;
                    ex.awaiting = false;
                    auto* q = std::get_if<QuickMode>(&ex.task);
                    if (q && q->replaces()) {
                        children_.rekey_abandoned(*q->replaces(), now);
                        continue;
                    }
                    if (!sa_.initiator) continue;
                    std::string detail;
                    if (q && n->notify_type == notify_type::no_proposal_chosen)
                        detail = "phase 2 (Quick Mode): no proposal chosen by the gateway; we offered " + q->describe_our_offer() +
                                 " (the gateway's log names what it accepts)";
                    else
                        detail = std::string(q ? "phase 2 (Quick Mode)" : "Mode Config") + ": the gateway refused with " +
                                 notify_name(n->notify_type);
                    return fail(reason_for_notify(n->notify_type), std::move(detail), true, n->notify_type);
                }
            }
        } else if (const auto* d = m.payloads[i].get<DeletePayload>()) {
            if (d->protocol_id == protocol_id::isakmp) {
                bool match = std::any_of(d->spis.begin(), d->spis.end(), [&](const Bytes& s) {
                    return std::equal(s.begin(), s.end(), cookies.begin(), cookies.end());
                });
                if (!match) continue;
                end_children(true, true);
                state_ = SessionState::Closed;
                out_.events.emplace_back(Closed{true});
                release_lease();
                return;
            }
            if (d->protocol_id != protocol_id::ipsec_esp || d->spi_size != 4) continue;
            for (const auto& s : d->spis) {
                std::uint32_t spi = core::load_be32(s.data());
                // The sender names its inbound SPI (strongSwan quick_delete.c): our outbound.
                if (const ChildSa* c = children_.find_named_by_peer(spi)) delete_child(c->spi_in, true, false, now);
            }
        }
    }
}

// ---- initiated exchanges -----------------------------------------------------------------

void Session::start_mode_config(core::TimePoint now) {
    std::uint32_t mid = fresh_message_id();
    Exchange& ex = new_exchange(mid);
    ex.we_initiated = true;
    ex.task.emplace<ModeConfig>(ModeConfig::client(sa_, *cfg_, mid, previous_address_));
    Message req;
    if (std::get<ModeConfig>(ex.task).build(req) == TaskStatus::Failed || !send_message(req, &ex.last_sent))
        return fail(FailReason::ProtocolError, "cannot build the Mode Config request", true);
    arm(ex, now);
}

void Session::start_quick_mode(core::TimePoint now, std::optional<std::uint32_t> replaces) {
    QuickMode::InitiatorParams p;
    p.proposals = cfg_->esp_proposals;
    p.pfs_group = cfg_->pfs_group;
    if (replaces) {
        const ChildSa* it = children_.find(*replaces);
        if (!it) return;
        p.local_ts = it->local_ts;
        p.remote_ts = it->remote_ts;
    } else {
        if (mode_config_)
            p.local_ts = core::Ipv4Prefix{mode_config_->address, 32};
        else if (!cfg_->local_ts.empty())
            p.local_ts = cfg_->local_ts.front();
        else
            p.local_ts = core::Ipv4Prefix{sa_.local.address, 32};
        p.remote_ts = cfg_->remote_ts;
    }
    p.spi_in = fresh_spi();
    p.rekey_time = cfg_->child_rekey_time;
    p.replaces = replaces;
    std::uint32_t mid = fresh_message_id();
    Exchange& ex = new_exchange(mid);
    ex.we_initiated = true;
    ex.task.emplace<QuickMode>(QuickMode::initiator(sa_, random_, mid, std::move(p)));
    Message qm1;
    if (std::get<QuickMode>(ex.task).build(qm1) == TaskStatus::Failed || !send_message(qm1, &ex.last_sent)) {
        ex.finished = true;
        if (!replaces) fail(FailReason::ProtocolError, "cannot build Quick Mode", true);
        return;
    }
    if (replaces) children_.rekey_started(*replaces);
    arm(ex, now);
}

bool Session::request_child(core::TimePoint now) {
    if (state_ != SessionState::Established || !sa_.initiator) return false;
    if (children_.has_live()) return false;
    // Mode Config still running starts Quick Mode itself; a Quick Mode in flight (a rekey too)
    // brings a CHILD_SA already.
    if (cfg_->request_virtual_ip && !mode_config_) return false;
    for (const auto& ex : exchanges_.all())
        if (ex.we_initiated && !ex.finished && std::holds_alternative<QuickMode>(ex.task)) return false;
    start_quick_mode(now, std::nullopt);
    return state_ == SessionState::Established;
}

void Session::resend_pending(core::TimePoint now) {
    if (state_ == SessionState::Closed || state_ == SessionState::Failed || !started_) return;
    for (auto& ex : exchanges_.all()) {
        if (!ex.awaiting || ex.finished || ex.last_sent.empty()) continue;
        ++counters_.retransmitted;
        send_bytes(ex.last_sent);
        ex.next_retransmit = now + cfg_->retransmit.delay(ex.retransmits);
    }
}

bool Session::rekey_child(std::uint32_t spi_in, core::TimePoint now) {
    if (state_ != SessionState::Established) return false;
    if (children_.rekeying(spi_in) || !children_.find(spi_in)) return false;
    start_quick_mode(now, spi_in);
    return true;
}

// The rules (make-before-break, the peer's rekey, collisions) are ChildSaSet's; a peer's
// Quick Mode arriving within two retransmission timeouts of our own rekey finishing collided
// with it.
void Session::install_child(ChildSa child, std::optional<std::uint32_t> replaces, core::TimePoint now) {
    const auto r = children_.install(std::move(child), replaces, now, 2 * cfg_->retransmit.timeout);
    if (r.collision) ++counters_.rekey_collisions;
    out_.events.emplace_back(ChildSaInstalled{children_.all().back().clone(), r.replaces, r.inbound_only});
}

void Session::delete_child(std::uint32_t spi_in, bool by_peer, bool notify_peer, core::TimePoint now) {
    if (!children_.find(spi_in)) return;
    if (notify_peer) {
        DeletePayload d;
        d.protocol_id = protocol_id::ipsec_esp;
        d.spi_size = 4;
        Bytes spi(4);
        core::store_be32(spi.data(), spi_in);
        d.spis.push_back(std::move(spi));
        send_informational({Payload(std::move(d))}, now);
    }
    out_.events.emplace_back(ChildSaDeleted{std::move(*children_.remove(spi_in)), by_peer});
}

void Session::send_informational(std::vector<Payload> payloads, core::TimePoint) {
    if (!sa_.keys || !sa_.cipher) return;
    std::uint32_t mid = fresh_message_id();
    Bytes chain;
    if (!emit_payloads(payloads, chain)) return;
    auto h = sa_.keys->hash1(mid, chain);  // RFC 2409 §5.7: HASH(1) first
    if (!h) return;
    Message m;
    m.header = sa_.header(exchange_type::informational, mid);
    m.header.flags = header_flag::encryption;
    m.payloads.emplace_back(HashPayload{std::move(*h)});
    for (auto& p : payloads) m.payloads.push_back(std::move(p));
    send_message(m, nullptr);
    sa_.cipher->forget(mid);  // one-shot: strongSwan never chains informationals
}

void Session::send_plain_notify(std::uint16_t type) {
    Message m;
    m.header = sa_.header(exchange_type::informational, fresh_message_id());
    NotifyPayload n;
    n.protocol_id = protocol_id::isakmp;
    n.notify_type = type;
    auto ck = m.header.cookies();
    n.spi.assign(ck.begin(), ck.end());
    m.payloads.emplace_back(std::move(n));
    send_message(m, nullptr);
}

// An error notify about phase 1. Once the phase-1 keys exist it goes in a protected
// Informational (HASH(1) first, encrypted) as strongSwan sends it; a strongSwan peer ignores
// plaintext notifies from then on. Before that, only a plaintext one can be sent.
void Session::send_error_notify(std::uint16_t type) {
    if (!sa_.keys || !sa_.cipher) return send_plain_notify(type);
    NotifyPayload n;
    n.protocol_id = protocol_id::isakmp;
    n.notify_type = type;
    auto ck = sa_.header(0, 0).cookies();
    n.spi.assign(ck.begin(), ck.end());
    send_informational({Payload(std::move(n))}, core::TimePoint{});
}

bool Session::send_dpd(core::TimePoint now) { return send_dpd(now, false); }

bool Session::probe_peer(core::TimePoint now, core::Duration answer_within, core::Duration retry_every) {
    if (!send_dpd(now, false)) return false;
    dpd_.expect_answer_by(now, now + answer_within, retry_every);
    return true;
}

bool Session::send_dpd(core::TimePoint now, bool retry) {
    if (state_ != SessionState::Established || !cfg_->dpd || !sa_.peer_dpd) return false;
    NotifyPayload n;
    n.protocol_id = protocol_id::isakmp;
    n.notify_type = notify_type::r_u_there;
    auto ck = sa_.header(0, 0).cookies();
    n.spi.assign(ck.begin(), ck.end());
    n.data.resize(4);
    core::store_be32(n.data.data(), dpd_.probe(now, retry));
    send_informational({Payload(std::move(n))}, now);
    ++counters_.dpd_sent;
    return true;
}

void Session::close(core::TimePoint now) {
    if (state_ == SessionState::Closed || state_ == SessionState::Failed) return;
    if (state_ == SessionState::Established) {
        while (!children_.empty()) delete_child(children_.all().front().spi_in, false, true, now);
        DeletePayload d;
        d.protocol_id = protocol_id::isakmp;
        d.spi_size = 16;
        auto ck = sa_.header(0, 0).cookies();
        d.spis.emplace_back(ck.begin(), ck.end());
        send_informational({Payload(std::move(d))}, now);
    }
    state_ = SessionState::Closed;
    out_.events.emplace_back(Closed{false});
    release_lease();
}

// ---- timers ------------------------------------------------------------------------------

std::optional<core::TimePoint> Session::poll(core::TimePoint now) {
    if (state_ == SessionState::Closed || state_ == SessionState::Failed || !started_) return std::nullopt;
    std::optional<core::TimePoint> next;
    auto consider = [&](core::TimePoint t) {
        if (!next || t < *next) next = t;
    };
    const RetransmitPolicy& rp = cfg_->retransmit;
    if (state_ == SessionState::Connecting) {
        // The responder forgets a Main Mode that has not completed in its half-open time
        // (strongSwan: 30 s, like ours); the initiator stops then too, since what it would
        // still retransmit reaches no one (the next retransmission of the default schedule is
        // due 47 s after MM1, the last 165 s after it), and a fresh Main Mode can start at once.
        core::TimePoint t = created_ + cfg_->half_open_timeout;
        if (now >= t) {
            fail(FailReason::Timeout,
                 sa_.initiator ? "Main Mode incomplete after " +
                                     std::to_string(std::chrono::duration_cast<std::chrono::seconds>(cfg_->half_open_timeout).count()) +
                                     " s, when the gateway drops a half-open IKE SA"
                               : "half-open IKE SA timed out",
                 false);
            return std::nullopt;
        }
        consider(t);
    }
    for (auto& ex : exchanges_.all()) {
        if (!ex.awaiting || ex.finished) continue;
        const auto timer = ExchangeTable::tick(ex, now, rp);
        if (timer == ExchangeTable::Timer::Resend) {
            ++counters_.retransmitted;
            send_bytes(ex.last_sent);
        } else if (timer == ExchangeTable::Timer::GiveUp) {
            bool rekey = false;
            if (auto* q = std::get_if<QuickMode>(&ex.task); q && q->replaces()) {
                rekey = true;
                children_.rekey_abandoned(*q->replaces(), now);
            }
            if (ex.message_id == 0 || (ex.we_initiated && !rekey && sa_.initiator)) {
                fail(FailReason::Timeout, ex.message_id == 0 ? "no answer to Main Mode" : "no answer to phase-2 exchange",
                     ex.message_id != 0);
                return std::nullopt;
            }
            continue;
        }
        consider(ex.next_retransmit);
    }
    if (state_ != SessionState::Established) return next;
    const ChildSaSet::Due due = children_.due(now);
    for (std::uint32_t spi_in : due.expired) delete_child(spi_in, false, true, now);
    for (std::uint32_t spi_in : due.to_rekey) {
        start_quick_mode(now, spi_in);
        if (state_ != SessionState::Established) return std::nullopt;
    }
    if (due.next) consider(*due.next);
    // Retransmissions of the rekey exchanges started just now.
    for (const auto& ex : exchanges_.all())
        if (ex.awaiting && !ex.finished) consider(ex.next_retransmit);
    if (cfg_->dpd && sa_.peer_dpd) {
        switch (dpd_.due(now, last_rx_)) {
        case Dpd::Due::Nothing: break;
        case Dpd::Due::Probe: send_dpd(now, false); break;
        case Dpd::Due::Retry: send_dpd(now, true); break;
        case Dpd::Due::PeerDead: fail(FailReason::PeerDead, "no R-U-THERE-ACK", false); return std::nullopt;
        }
        if (auto t = dpd_.next(last_rx_)) consider(*t);
    }
    core::TimePoint expiry = established_at_ + sa_.proposal.lifetime;
    if (now >= expiry) {
        fail(FailReason::Expired, "IKE SA lifetime reached before a re-authentication completed", true);
        return std::nullopt;
    }
    consider(expiry);
    return next;
}

// ---- transport and bookkeeping -----------------------------------------------------------

bool Session::send_message(Message& m, Bytes* copy) {
    Bytes bytes;
    if (m.header.encrypted()) {
        if (!sa_.cipher) return false;
        auto sealed = sa_.cipher->seal(m);
        if (!sealed) return false;
        bytes = std::move(*sealed);
    } else if (!m.emit(bytes)) {
        return false;
    }
    send_bytes(bytes);
    if (copy) *copy = std::move(bytes);
    return true;
}

void Session::send_bytes(const Bytes& bytes) {
    ++counters_.sent;
    out_.datagrams.push_back({bytes, sa_.local, sa_.remote, sa_.local.port == cfg_->nat_t_port});
}

void Session::arm(Exchange& ex, core::TimePoint now) { ExchangeTable::arm(ex, now, cfg_->retransmit); }

Session::Exchange* Session::find_exchange(std::uint32_t mid) { return exchanges_.find(mid); }

Session::Exchange& Session::new_exchange(std::uint32_t mid) { return exchanges_.open(mid); }

void Session::prune_exchanges() {
    // The IV chains of forgotten exchanges go too; their M-IDs stay seen, so replays are refused.
    for (std::uint32_t mid : exchanges_.prune())
        if (sa_.cipher) sa_.cipher->forget(mid);
}

std::uint32_t Session::fresh_message_id() { return exchanges_.fresh_message_id(random_); }

std::uint32_t Session::fresh_spi() {
    // SPIs 1-255 are reserved (RFC 4303 §2.1).
    std::uint32_t spi = 0;
    while (spi < 256 || children_.find(spi)) spi = random_.next_u32();
    return spi;
}

bool Session::seen(std::uint32_t mid) const { return exchanges_.seen(mid); }

void Session::remember(std::uint32_t mid) { exchanges_.remember(mid); }

void Session::adopt_endpoints(core::Endpoint local, core::Endpoint remote) {
    sa_.local = local;
    sa_.remote = remote;
}

void Session::fail(FailReason reason, std::string detail, bool send_delete, std::uint16_t peer_notify) {
    if (state_ == SessionState::Closed || state_ == SessionState::Failed) return;
    if (send_delete && state_ == SessionState::Established) {
        DeletePayload d;
        d.protocol_id = protocol_id::isakmp;
        d.spi_size = 16;
        auto ck = sa_.header(0, 0).cookies();
        d.spis.emplace_back(ck.begin(), ck.end());
        send_informational({Payload(std::move(d))}, core::TimePoint{});
    }
    end_children(false, reason == FailReason::Expired);
    state_ = SessionState::Failed;
    out_.events.emplace_back(Failed{reason, peer_notify, std::move(detail)});
    release_lease();
}

void Session::end_children(bool by_peer, bool may_hand_over) {
    // A gateway's children (and their address lease) go to the Responder, which keeps them
    // for the peer's next IKE SA.
    const bool hand_over = may_hand_over && !sa_.initiator && !children_.empty() && sa_.peer_id;
    if (hand_over) {
        out_.events.emplace_back(ChildSasHandedOver{children_.take_all(), 0});
        lease_handed_over_ = true;
    } else {
        for (auto& c : children_.take_all()) out_.events.emplace_back(ChildSaDeleted{std::move(c), by_peer});
    }
}

void Session::adopt_children(std::vector<ChildSa> children, core::TimePoint now) { children_.adopt(std::move(children), now); }

void Session::release_lease() {
    if (pool_ && !lease_handed_over_) pool_->release(owner_);
}

}  // namespace mipsec::ipsec::ike
