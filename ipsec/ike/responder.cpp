// SPDX-License-Identifier: MIT
#include "ipsec/ike/responder.hpp"

#include <algorithm>
#include <cassert>

#include "core/endian.hpp"
#include "crypto/hash.hpp"

namespace mipsec::ipsec::ike {

Responder::Responder(ResponderConfig cfg, crypto::Random& random) : cfg_(std::move(cfg)), random_(random) {
    if (cfg_.pool) pool_.emplace(*cfg_.pool);
    random_.fill(secret_);
}

std::size_t Responder::reconfigure(ResponderConfig cfg) {
    assert(cfg.pool.has_value() == pool_.has_value());
    std::size_t outside = 0;
    if (pool_ && cfg.pool) outside = pool_->set_range(*cfg.pool);
    else cfg.pool = cfg_.pool;
    cfg_ = std::move(cfg);
    return outside;
}

Cookie Responder::make_cookie(const Cookie& cky_i, core::Endpoint remote) {
    std::uint8_t ep[6], ctr[8];
    core::store_be32(ep, remote.address.value);
    core::store_be16(ep + 4, remote.port);
    std::uint64_t n = next_owner_;
    for (int i = 7; i >= 0; --i, n >>= 8) ctr[i] = static_cast<std::uint8_t>(n);
    std::span<const std::uint8_t> parts[] = {secret_, ep, cky_i, ctr};
    std::array<std::uint8_t, 32> h{};
    crypto::hash(crypto::HashAlgorithm::Sha256, parts, h);
    Cookie c;
    std::copy_n(h.begin(), c.size(), c.begin());
    if (c == Cookie{}) c[7] = 1;
    return c;
}

std::size_t Responder::half_open_count() const noexcept { return half_open_.size(); }

const Session* Responder::session_of(std::uint64_t owner) const {
    auto it = by_owner_.find(owner);
    return it == by_owner_.end() ? nullptr : it->second;
}

Session* Responder::find(const Cookie& cky_i, const Cookie& cky_r) {
    auto it = sessions_.find({cky_i, cky_r});
    if (it == sessions_.end()) return nullptr;
    session_timers_.schedule(it->second->owner(), core::TimePoint::min());
    return it->second.get();
}

std::optional<core::TimePoint> Responder::next_deadline() const noexcept {
    auto a = session_timers_.next();
    auto b = orphan_timers_.next();
    if (!a) return b;
    if (!b) return a;
    return std::min(*a, *b);
}

void Responder::refresh(Session& s, core::TimePoint now) {
    collect(s, now);
    auto next = s.poll(now);
    collect(s, now);
    session_timers_.schedule(s.owner(), next);
}

void Responder::schedule_orphans(const Orphans& o) {
    std::optional<core::TimePoint> next;
    for (const auto& c : o.children) {
        // A CHILD_SA without a lifetime is not kept (see poll): due at once.
        const auto end = c.hard_lifetime == core::Duration::zero() ? core::TimePoint::min() : c.installed_at + c.hard_lifetime;
        if (!next || end < *next) next = end;
    }
    orphan_timers_.schedule(o.owner, next);
}

bool Responder::close(std::uint64_t owner, core::TimePoint now) {
    auto it = by_owner_.find(owner);
    if (it == by_owner_.end()) return false;
    it->second->close(now);
    collect(*it->second, now);
    reap();
    return true;
}

void Responder::note_traffic(std::uint64_t owner, core::TimePoint now) {
    // Only moves the DPD deadline later: the queued one fires early and is refiled then.
    auto it = by_owner_.find(owner);
    if (it != by_owner_.end()) it->second->note_traffic(now);
}

void Responder::on_datagram(std::span<const std::uint8_t> bytes, core::Endpoint local, core::Endpoint remote,
                            core::TimePoint now) {
    auto view = IsakmpHeaderView::check(bytes);
    if (!view) {
        ++counters_.dropped_malformed;
        return;
    }
    Cookie cky_i, cky_r;
    std::copy_n(view->initiator_cookie().begin(), 8, cky_i.begin());
    std::copy_n(view->responder_cookie().begin(), 8, cky_r.begin());
    Session* target = nullptr;
    if (cky_r == Cookie{}) {
        if (view->exchange_type() != exchange_type::main_mode || view->message_id() != 0 || view->encrypted() ||
            cky_i == Cookie{}) {
            ++counters_.dropped_malformed;
            return;
        }
        // A retransmitted MM1 belongs to the half-open session it created (sessions_ is
        // ordered by CKY-I first, so this visits only the sessions with this CKY-I).
        for (auto it = sessions_.lower_bound({cky_i, Cookie{}}); it != sessions_.end() && it->first.first == cky_i; ++it)
            if (it->second->state() == SessionState::Connecting && it->second->ike_sa().remote == remote) target = it->second.get();
        if (!target) {
            if (half_open_count() >= cfg_.max_half_open || sessions_.size() >= cfg_.max_sessions) {
                ++counters_.dropped_half_open;
                return;
            }
            Cookie mine = make_cookie(cky_i, remote);
            std::uint64_t owner = next_owner_++;
            auto s = Session::responder(cfg_.session, random_, local, remote, cky_i, mine, pool(), owner, now);
            target = s.get();
            by_owner_[owner] = target;
            half_open_.insert(owner);
            sessions_[{cky_i, mine}] = std::move(s);
            ++counters_.sessions_created;
        }
    } else {
        target = find(cky_i, cky_r);
        if (!target) {
            ++counters_.dropped_unknown_sa;
            return;
        }
    }
    target->on_datagram(bytes, local, remote, now);
    refresh(*target, now);  // its deadline may have moved (a retransmission armed, an SA installed)
    reap();
}

std::optional<core::TimePoint> Responder::poll(core::TimePoint now) {
    // Only what is due: the keys come out of the queues first, so a session that files a
    // deadline <= now again (a successor that just adopted CHILD_SAs) runs at the next poll.
    std::vector<std::uint64_t> due;
    while (auto owner = orphan_timers_.pop_due(now)) due.push_back(*owner);
    for (auto owner : due) {
        auto it = std::find_if(orphans_.begin(), orphans_.end(), [&](const Orphans& o) { return o.owner == owner; });
        if (it == orphans_.end()) continue;
        auto& kids = it->children;
        for (auto c = kids.begin(); c != kids.end();) {
            if (c->hard_lifetime == core::Duration::zero() || now >= c->installed_at + c->hard_lifetime) {
                out_.events.push_back({it->owner, ChildSaDeleted{std::move(*c), false}});
                c = kids.erase(c);
            } else {
                ++c;
            }
        }
        if (kids.empty()) {
            if (pool_) pool_->release(it->owner);
            orphans_.erase(it);
        } else {
            schedule_orphans(*it);
        }
    }
    due.clear();
    while (auto owner = session_timers_.pop_due(now)) due.push_back(*owner);
    for (auto owner : due) {
        auto it = by_owner_.find(owner);
        if (it != by_owner_.end()) refresh(*it->second, now);
    }
    reap();
    return next_deadline();
}

void Responder::collect(Session& s, core::TimePoint now) {
    if (s.state() != SessionState::Connecting) half_open_.erase(s.owner());
    if (s.state() == SessionState::Failed || s.state() == SessionState::Closed) ended_.push_back(s.owner());
    SessionOutput o = s.take_output();
    for (auto& d : o.datagrams) out_.datagrams.push_back(std::move(d));
    bool initial_contact = false;
    for (auto& e : o.events) {
        if (std::holds_alternative<Established>(e) && s.ike_sa().initial_contact_received) initial_contact = true;
        if (auto* handed = std::get_if<ChildSasHandedOver>(&e)) {
            std::vector<ChildSa> copies;
            for (const auto& c : handed->children) copies.push_back(c.clone());
            if (Session* heir = successor_of(s)) {
                heir->adopt_children(std::move(copies), now);
                session_timers_.schedule(heir->owner(), now);  // adopted SAs have deadlines of their own
                handed->successor = heir->owner();
                if (pool_) pool_->release(s.owner());
            } else if (orphan_count() + copies.size() > cfg_.max_sessions) {
                // Orphans are bounded like sessions: past the limit they are simply deleted.
                for (auto& c : handed->children) out_.events.push_back({s.owner(), ChildSaDeleted{std::move(c), false}});
                if (pool_) pool_->release(s.owner());
                continue;
            } else {
                orphans_.push_back({s.owner(), *s.ike_sa().peer_id, std::move(copies)});
                schedule_orphans(orphans_.back());
            }
        }
        out_.events.push_back({s.owner(), std::move(e)});
    }
    if (std::any_of(o.events.begin(), o.events.end(), [](const SessionEvent& e) { return std::holds_alternative<Established>(e); }) &&
        s.ike_sa().peer_id) {
        if (initial_contact) drop_orphans(*s.ike_sa().peer_id);
        else adopt_orphans(s, now);
    }
    if (!initial_contact || !s.ike_sa().peer_id) return;
    // RFC 2407 §4.6.3.3: the peer rebooted; its older SAs are stale.
    for (auto& [k, other] : sessions_) {
        if (other.get() == &s || other->state() != SessionState::Established || !other->ike_sa().peer_id) continue;
        if (*other->ike_sa().peer_id != *s.ike_sa().peer_id) continue;
        other->close(now);
        SessionOutput oo = other->take_output();
        for (auto& d : oo.datagrams) out_.datagrams.push_back(std::move(d));
        for (auto& e : oo.events) out_.events.push_back({other->owner(), std::move(e)});
        ended_.push_back(other->owner());
    }
}

std::size_t Responder::orphan_count() const noexcept {
    std::size_t n = 0;
    for (const auto& o : orphans_) n += o.children.size();
    return n;
}

void Responder::adopt_orphans(Session& heir, core::TimePoint now) {
    for (auto it = orphans_.begin(); it != orphans_.end();) {
        if (it->peer != *heir.ike_sa().peer_id) {
            ++it;
            continue;
        }
        // The heir's Mode Config gets the same address: the pool shares it by identity.
        heir.adopt_children(std::move(it->children), now);
        session_timers_.schedule(heir.owner(), now);
        out_.events.push_back({it->owner, ChildSasHandedOver{{}, heir.owner()}});
        if (pool_) pool_->release(it->owner);
        orphan_timers_.cancel(it->owner);
        it = orphans_.erase(it);
    }
}

// INITIAL-CONTACT: the peer restarted and forgot them.
void Responder::drop_orphans(const IdPayload& peer) {
    for (auto it = orphans_.begin(); it != orphans_.end();) {
        if (it->peer != peer) {
            ++it;
            continue;
        }
        for (auto& c : it->children) out_.events.push_back({it->owner, ChildSaDeleted{std::move(c), false}});
        if (pool_) pool_->release(it->owner);
        orphan_timers_.cancel(it->owner);
        it = orphans_.erase(it);
    }
}

// The newest other established session of the same authenticated peer: its re-authentication
// (strongSwan rekeys the old CHILD_SA under the new IKE SA only when it is due).
Session* Responder::successor_of(const Session& s) {
    if (!s.ike_sa().peer_id) return nullptr;
    Session* best = nullptr;
    for (auto& [k, other] : sessions_) {
        if (other.get() == &s || other->state() != SessionState::Established || !other->ike_sa().peer_id) continue;
        if (*other->ike_sa().peer_id != *s.ike_sa().peer_id) continue;
        if (!best || other->owner() > best->owner()) best = other.get();
    }
    return best;
}

// Removes the sessions collect() saw fail or close (only those: no walk over all sessions).
void Responder::reap() {
    for (auto owner : ended_) {
        auto it = by_owner_.find(owner);
        if (it == by_owner_.end()) continue;  // listed twice
        const auto& sa = it->second->ike_sa();
        sessions_.erase({sa.cky_i, sa.cky_r});
        by_owner_.erase(it);
        half_open_.erase(owner);
        session_timers_.cancel(owner);
        ++counters_.sessions_removed;
    }
    ended_.clear();
}

void Responder::close_all(core::TimePoint now) {
    for (auto& o : orphans_)
        for (auto& c : o.children) out_.events.push_back({o.owner, ChildSaDeleted{std::move(c), false}});
    for (auto& o : orphans_) {
        if (pool_) pool_->release(o.owner);
        orphan_timers_.cancel(o.owner);
    }
    orphans_.clear();
    for (auto& [k, s] : sessions_) {
        s->close(now);
        collect(*s, now);
    }
    reap();
}

ResponderOutput Responder::take_output() { return std::exchange(out_, ResponderOutput{}); }

}  // namespace mipsec::ipsec::ike
