// SPDX-License-Identifier: MIT
#include "ipsec/ike/child_sa.hpp"

namespace mipsec::ipsec::ike {

crypto::SecretBytes ChildSa::keymat_in() const {
    crypto::SecretBytes k = encryption_key_in.clone();
    k.append(salt_in.span());
    k.append(integrity_key_in.span());
    return k;
}

crypto::SecretBytes ChildSa::keymat_out() const {
    crypto::SecretBytes k = encryption_key_out.clone();
    k.append(salt_out.span());
    k.append(integrity_key_out.span());
    return k;
}

ChildSa ChildSa::clone() const {
    ChildSa c;
    c.spi_in = spi_in;
    c.spi_out = spi_out;
    c.algorithm = algorithm;
    c.encryption_key_in = encryption_key_in.clone();
    c.encryption_key_out = encryption_key_out.clone();
    c.salt_in = salt_in.clone();
    c.salt_out = salt_out.clone();
    c.integrity_key_in = integrity_key_in.clone();
    c.integrity_key_out = integrity_key_out.clone();
    c.soft_lifetime = soft_lifetime;
    c.hard_lifetime = hard_lifetime;
    c.local_ts = local_ts;
    c.remote_ts = remote_ts;
    c.udp_encapsulation = udp_encapsulation;
    c.local = local;
    c.remote = remote;
    c.pfs_group = pfs_group;
    c.initiator = initiator;
    c.installed_at = installed_at;
    c.collision_nonce = collision_nonce;
    c.replaces = replaces;
    c.superseded = superseded;
    c.delete_at = delete_at;
    return c;
}

}  // namespace mipsec::ipsec::ike
