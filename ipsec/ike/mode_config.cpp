// SPDX-License-Identifier: MIT
#include "ipsec/ike/mode_config.hpp"

#include "core/endian.hpp"

namespace mipsec::ipsec::ike {
namespace {

Bytes addr_bytes(core::Ipv4Address a) {
    Bytes b(4);
    core::store_be32(b.data(), a.value);
    return b;
}

std::optional<core::Ipv4Address> addr_of(const DataAttribute& a) {
    if (a.tv || a.value.size() != 4) return std::nullopt;
    return core::Ipv4Address{core::load_be32(a.value.data())};
}

const HashPayload* leading_hash(const Message& in) {
    return in.payloads.empty() ? nullptr : in.payloads.front().get<HashPayload>();
}

}  // namespace

ModeConfig ModeConfig::client(IkeSa& sa, const SessionConfig& cfg, std::uint32_t message_id,
                              std::optional<core::Ipv4Address> previous) {
    ModeConfig m(sa, cfg, message_id, true);
    m.previous_ = previous;
    return m;
}

ModeConfig ModeConfig::gateway(IkeSa& sa, const SessionConfig& cfg, std::uint32_t message_id, AddressPool* pool,
                               std::uint64_t owner) {
    ModeConfig m(sa, cfg, message_id, false);
    m.pool_ = pool;
    m.owner_ = owner;
    return m;
}

TaskStatus ModeConfig::fail(FailReason r, std::string detail) {
    failure_ = {r, 0, std::move(detail)};
    step_ = 99;
    return TaskStatus::Failed;
}

TaskStatus ModeConfig::build(Message& out) {
    if (step_ != (client_ ? 0u : 1u) || !sa_->keys) return TaskStatus::Failed;
    out = Message{};
    out.header = sa_->header(exchange_type::transaction, message_id_);
    out.header.flags = header_flag::encryption;
    AttributePayload attr;
    attr.identifier = identifier_;
    if (client_) {
        attr.cfg_type = cfg_type::request;
        // An empty value asks for any address; the old one asks to keep it (strongSwan).
        attr.attributes.add(DataAttribute::variable(cfg_attr::internal_ip4_address,
                                                    previous_ ? addr_bytes(*previous_) : Bytes{}));
        if (cfg_->request_netmask) attr.attributes.add(DataAttribute::variable(cfg_attr::internal_ip4_netmask, {}));
        if (cfg_->request_dns) attr.attributes.add(DataAttribute::variable(cfg_attr::internal_ip4_dns, {}));
    } else {
        attr.cfg_type = cfg_type::reply;
        attr.attributes.add(DataAttribute::variable(cfg_attr::internal_ip4_address, addr_bytes(result_->address)));
        if (requested_.find(cfg_attr::internal_ip4_netmask) && cfg_->netmask)
            attr.attributes.add(DataAttribute::variable(cfg_attr::internal_ip4_netmask, addr_bytes(*cfg_->netmask)));
        if (requested_.find(cfg_attr::internal_ip4_dns))
            for (auto d : cfg_->dns_servers) attr.attributes.add(DataAttribute::variable(cfg_attr::internal_ip4_dns, addr_bytes(d)));
    }
    std::vector<Payload> body;
    body.emplace_back(std::move(attr));
    Bytes chain;
    if (!emit_payloads(body, chain)) return fail(FailReason::ProtocolError, "cannot encode ATTR");
    auto h = sa_->keys->hash1(message_id_, chain);
    if (!h) return fail(FailReason::ProtocolError, "prf failed");
    out.payloads.emplace_back(HashPayload{std::move(*h)});
    out.payloads.push_back(std::move(body.front()));
    ++step_;
    return client_ ? TaskStatus::NeedMore : TaskStatus::Done;
}

TaskStatus ModeConfig::process(const Message& in) {
    if (step_ != (client_ ? 1u : 0u) || !sa_->keys || in.header.exchange_type != exchange_type::transaction ||
        in.header.message_id != message_id_ || !in.header.encrypted() || !leading_hash(in))
        return TaskStatus::Dropped;
    auto expected = sa_->keys->hash1(message_id_, in.wire_from(1));
    if (!expected || !crypto::constant_time_equal(*expected, leading_hash(in)->data)) return TaskStatus::Dropped;
    const AttributePayload* attr = in.payloads.size() >= 2 ? in.payloads[1].get<AttributePayload>() : nullptr;
    if (!attr) return fail(FailReason::ProtocolError, "no ATTR payload");
    if (client_) {
        if (attr->cfg_type != cfg_type::reply || attr->identifier != identifier_)
            return fail(FailReason::ProtocolError, "unexpected Mode Config reply");
        ModeConfigResult r;
        bool have = false;
        for (const auto& a : attr->attributes) {
            auto v = addr_of(a);
            if (a.type == cfg_attr::internal_ip4_address && v && !have) {
                r.address = *v;
                have = !v->is_unspecified();
            } else if (a.type == cfg_attr::internal_ip4_netmask && v) {
                r.netmask = *v;
            } else if (a.type == cfg_attr::internal_ip4_dns && v) {
                r.dns.push_back(*v);
            }
        }
        if (!have) return fail(FailReason::NoAddress, "no INTERNAL_IP4_ADDRESS in the reply");
        result_ = std::move(r);
        ++step_;
        return TaskStatus::Done;
    }
    if (attr->cfg_type != cfg_type::request) return fail(FailReason::ProtocolError, "only pull mode (CFG_REQUEST) is supported");
    identifier_ = attr->identifier;
    requested_ = attr->attributes;
    const DataAttribute* want = attr->attributes.find(cfg_attr::internal_ip4_address);
    if (!want) return fail(FailReason::NoAddress, "no address requested");
    if (!pool_) return fail(FailReason::NoAddress, "no address pool configured");
    // The authenticated peer ID: the same client re-authenticating keeps its address.
    std::string identity;
    if (sa_->peer_id) {
        identity.push_back(static_cast<char>(sa_->peer_id->id_type));
        identity.append(sa_->peer_id->data.begin(), sa_->peer_id->data.end());
    }
    auto lease = pool_->acquire(owner_, addr_of(*want), identity);
    if (!lease) return fail(FailReason::NoAddress, "address pool exhausted");
    result_ = ModeConfigResult{*lease, cfg_->netmask, cfg_->dns_servers};
    ++step_;
    return TaskStatus::NeedMore;
}

}  // namespace mipsec::ipsec::ike
