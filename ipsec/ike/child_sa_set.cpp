// SPDX-License-Identifier: MIT
#include "ipsec/ike/child_sa_set.hpp"

#include <algorithm>
#include <utility>

namespace mipsec::ipsec::ike {

ChildSaSet::Installed ChildSaSet::install(ChildSa child, std::optional<std::uint32_t> replaces, core::TimePoint now,
                                          core::Duration fresh_window) {
    child.installed_at = now;
    ChildSa* rival = nullptr;  // the other new SA of a collision
    if (replaces) {
        // Our rekey finished; did the peer's rekey of the same SA finish first?
        for (auto& c : children_)
            if (c.replaces == replaces && !c.superseded) rival = &c;
    } else if (!child.initiator) {
        auto live = std::find_if(children_.begin(), children_.end(),
                                 [&](const ChildSa& c) { return !c.superseded && c.same_selectors(child); });
        if (live != children_.end()) {
            const bool under_our_rekey = rekeying(live->spi_in);
            // Our own rekey finished moments ago (well inside one retransmission timeout): the
            // peer started this one before it learnt of ours. An older SA is simply rekeyed.
            const bool fresh_rekey = live->replaces && live->initiator && now - live->installed_at < fresh_window;
            if (fresh_rekey) {
                rival = &*live;
                replaces = live->replaces;
            } else {
                replaces = live->spi_in;
                if (!under_our_rekey) {
                    // The peer rekeyed it: stop using and rekeying it, delete it soon.
                    live->superseded = true;
                    live->delete_at = now + peer_rekeyed_grace;
                }
            }
        }
    }
    child.replaces = replaces;
    Installed result;
    result.replaces = replaces;
    if (rival) {
        result.collision = true;
        ChildSa* loser = rival->collision_nonce < child.collision_nonce ? rival : &child;
        loser->superseded = true;
        loser->delete_at = now + superseded_grace;
        result.inbound_only = loser == &child;
    }
    const bool ours_replacing = replaces && child.initiator;
    children_.push_back(std::move(child));
    if (!ours_replacing) return result;
    // Make-before-break: the new SA is in place; our traffic moves to it once the peer shows
    // it has seen QM3 (the ESP stage waits for that). Until then the old pair is the one both
    // ends hold, both ways: it stays long enough for a lost QM3 to be sent again.
    std::erase(rekeying_, *replaces);
    if (ChildSa* old = find(*replaces); old && !old->superseded) {
        old->superseded = true;
        old->delete_at = now + rekeyed_grace;
    }
    return result;
}

void ChildSaSet::adopt(std::vector<ChildSa> children, core::TimePoint now) {
    for (auto& c : children) {
        const bool covered = std::any_of(children_.begin(), children_.end(),
                                         [&](const ChildSa& mine) { return !mine.superseded && mine.same_selectors(c); });
        if (covered && !c.superseded) {
            c.superseded = true;
            c.delete_at = now + superseded_grace;
        }
        children_.push_back(std::move(c));
    }
}

void ChildSaSet::rekey_started(std::uint32_t spi_in) {
    if (!rekeying(spi_in)) rekeying_.push_back(spi_in);
}

bool ChildSaSet::rekeying(std::uint32_t spi_in) const noexcept {
    return std::find(rekeying_.begin(), rekeying_.end(), spi_in) != rekeying_.end();
}

void ChildSaSet::rekey_abandoned(std::uint32_t spi_in, core::TimePoint now) {
    std::erase(rekeying_, spi_in);
    if (std::none_of(children_.begin(), children_.end(), [&](const ChildSa& c) { return c.replaces == spi_in && !c.superseded; }))
        return;
    for (auto& c : children_)
        if (c.spi_in == spi_in && !c.superseded) {
            c.superseded = true;
            c.delete_at = now + superseded_grace;
        }
}

ChildSaSet::Due ChildSaSet::due(core::TimePoint now) const {
    Due d;
    auto consider = [&](core::TimePoint t) {
        if (!d.next || t < *d.next) d.next = t;
    };
    for (const auto& c : children_) {
        const core::TimePoint hard = c.installed_at + c.hard_lifetime;
        if ((c.hard_lifetime > core::Duration::zero() && now >= hard) || (c.delete_at && now >= *c.delete_at)) {
            d.expired.push_back(c.spi_in);
            continue;
        }
        if (c.hard_lifetime > core::Duration::zero()) consider(hard);
        if (c.delete_at) consider(*c.delete_at);
        if (!c.superseded && c.soft_lifetime > core::Duration::zero() && !rekeying(c.spi_in)) {
            const core::TimePoint soft = c.installed_at + c.soft_lifetime;
            if (now >= soft)
                d.to_rekey.push_back(c.spi_in);
            else
                consider(soft);
        }
    }
    return d;
}

const ChildSa* ChildSaSet::find(std::uint32_t spi_in) const noexcept {
    auto it = std::find_if(children_.begin(), children_.end(), [&](const ChildSa& c) { return c.spi_in == spi_in; });
    return it == children_.end() ? nullptr : &*it;
}

ChildSa* ChildSaSet::find(std::uint32_t spi_in) noexcept {
    return const_cast<ChildSa*>(std::as_const(*this).find(spi_in));
}

const ChildSa* ChildSaSet::find_named_by_peer(std::uint32_t spi) const noexcept {
    auto it = std::find_if(children_.begin(), children_.end(), [&](const ChildSa& c) { return c.spi_out == spi; });
    return it != children_.end() ? &*it : find(spi);
}

std::optional<ChildSa> ChildSaSet::remove(std::uint32_t spi_in) {
    auto it = std::find_if(children_.begin(), children_.end(), [&](const ChildSa& c) { return c.spi_in == spi_in; });
    if (it == children_.end()) return std::nullopt;
    ChildSa c = std::move(*it);
    children_.erase(it);
    std::erase(rekeying_, spi_in);
    return c;
}

std::vector<ChildSa> ChildSaSet::take_all() {
    rekeying_.clear();
    return std::exchange(children_, {});
}

bool ChildSaSet::has_live() const noexcept {
    return std::any_of(children_.begin(), children_.end(), [](const ChildSa& c) { return !c.superseded; });
}

}  // namespace mipsec::ipsec::ike
