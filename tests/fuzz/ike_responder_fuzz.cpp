// SPDX-License-Identifier: MIT
// IKEv1 Responder and Session: arbitrary datagrams must never crash, and must never disturb an
// established SA (its children survive; only authenticated messages could change them).
// The first input byte picks a mode, so random inputs reach past the header checks:
//   0: raw bytes as a first message to a fresh Responder
//   1: a genuine MM1 with input bytes XORed in (SA/VID parsing, proposal selection, MM2 build)
//   2: a header with the established SA's cookies and the input as plaintext payload chain
//   3: a recorded encrypted message of the established SA with input bytes XORed in
// Modes 2/3 go to both the gateway (through its Responder) and the client session.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <span>
#include <vector>

#include "core/endian.hpp"
#include "ipsec/ike/responder.hpp"
#include "ipsec/ike/session.hpp"

using namespace mipsec;
using namespace mipsec::ipsec::ike;

namespace {

void require(bool ok) {
    if (!ok) std::abort();
}

class SplitMix final : public crypto::Random {
public:
    explicit SplitMix(std::uint64_t s) : s_(s) {}
    void fill(std::span<std::uint8_t> out) noexcept override {
        for (auto& b : out) {
            std::uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            b = static_cast<std::uint8_t>(z ^ (z >> 31));
        }
    }

private:
    std::uint64_t s_;
};

const core::Endpoint gw_ep{core::Ipv4Address::from_octets(198, 51, 100, 1), 500};
const core::Endpoint cli_ep{core::Ipv4Address::from_octets(192, 0, 2, 10), 500};

struct World {
    SplitMix crng{11};
    SplitMix grng{12};
    std::shared_ptr<SessionConfig> ccfg = std::make_shared<SessionConfig>();
    std::shared_ptr<SessionConfig> gcfg = std::make_shared<SessionConfig>();
    std::unique_ptr<Session> client;
    std::unique_ptr<Responder> gw;
    std::vector<Bytes> recorded;  // every datagram of the handshake, both directions
    core::TimePoint now{};

    World() {
        const std::uint8_t psk[] = {'f', 'u', 'z', 'z'};
        for (auto* c : {ccfg.get(), gcfg.get()}) {
            c->psks.push_back({std::nullopt, crypto::SecretBytes(psk)});
            c->ike_proposals = {{128, IkeHash::Sha1, crypto::ModpGroup::Modp1024}};
            c->esp_proposals = {{EspAlgorithm::AesCbc128HmacSha1}};
            c->pfs_group = crypto::ModpGroup::Modp1024;
            c->dpd_delay = std::chrono::seconds(30);
        }
        ccfg->request_virtual_ip = true;
        establish();
    }

    ~World() {
        // IKE_FUZZ_STATS=1 shows how deep the inputs got (are the mutations reaching the hashes?).
        if (!std::getenv("IKE_FUZZ_STATS") || !client) return;
        const Session* gs = gw->find(client->ike_sa().cky_i, client->ike_sa().cky_r);
        for (const Session* s : {static_cast<const Session*>(client.get()), gs}) {
            if (!s) continue;
            const auto& c = s->counters();
            std::fprintf(stderr, "received %llu malformed %llu auth %llu replay %llu unexpected %llu dup-answered %llu\n",
                         static_cast<unsigned long long>(c.received), static_cast<unsigned long long>(c.dropped_malformed),
                         static_cast<unsigned long long>(c.dropped_auth), static_cast<unsigned long long>(c.dropped_replay),
                         static_cast<unsigned long long>(c.dropped_unexpected),
                         static_cast<unsigned long long>(c.duplicates_answered));
        }
    }

    void establish() {
        ResponderConfig rc;
        rc.session = gcfg;
        rc.pool = core::Ipv4Prefix::parse("10.99.100.0/24");
        gw = std::make_unique<Responder>(rc, grng);
        client = Session::initiator(ccfg, crng, cli_ep, gw_ep);
        client->start(now);
        recorded.clear();
        pump();
        require(client->state() == SessionState::Established && client->children().size() == 1);
    }

    void pump() {
        for (int i = 0; i < 50; ++i) {
            auto co = client->take_output();
            auto go = gw->take_output();
            if (co.datagrams.empty() && go.datagrams.empty()) return;
            for (auto& d : co.datagrams) {
                recorded.push_back(d.payload);
                gw->on_datagram(d.payload, d.remote, d.local, now);
            }
            for (auto& d : go.datagrams) {
                recorded.push_back(d.payload);
                client->on_datagram(d.payload, d.remote, d.local, now);
            }
        }
    }
};

World& world() {
    static World w;
    return w;
}

/// Input bytes as (position, xor) pairs: a few targeted flips keep most of a genuine message
/// intact, so the parsers and hash checks behind the header are reached.
void mutate(Bytes& msg, std::span<const std::uint8_t> in) {
    std::size_t flips = in.empty() ? 0 : 1 + in[0] % 4;
    for (std::size_t k = 1; k + 1 < in.size() && k < 1 + 2 * flips; k += 2)
        msg[(std::size_t{in[k]} * msg.size()) / 256] ^= in[k + 1];
    // Growing the message only sometimes: encrypted bodies must stay whole blocks to be opened.
    if (in.size() > 16 && (in[0] & 1)) msg.insert(msg.end(), in.begin() + 16, in.end());
}

void fix_length(Bytes& b) {
    if (b.size() >= 28) core::store_be32(b.data() + 24, static_cast<std::uint32_t>(b.size()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    World& w = world();
    std::uint8_t mode = data[0] % 4;
    bool fix = data[1] & 1;
    std::span<const std::uint8_t> in(data + 2, size - 2);

    if (mode <= 1) {
        SplitMix rng(size);
        ResponderConfig rc;
        rc.session = w.gcfg;
        rc.pool = core::Ipv4Prefix::parse("10.99.100.0/30");
        Responder fresh(rc, rng);
        Bytes msg;
        if (mode == 0) {
            msg.assign(in.begin(), in.end());
        } else {
            msg = w.recorded.front();
            mutate(msg, in);
        }
        if (fix) fix_length(msg);
        fresh.on_datagram(msg, gw_ep, cli_ep, w.now);
        auto out = fresh.take_output();
        require(out.datagrams.size() <= 1);
        fresh.poll(w.now + std::chrono::seconds(60));
        require(fresh.session_count() == 0);  // half-open sessions time out
        return 0;
    }

    std::size_t children_before = w.client->children().size();
    Bytes msg;
    if (mode == 2) {
        IsakmpHeader h = w.client->ike_sa().header(in.empty() ? 5 : in[0], in.size() > 1 ? in[1] : 0);
        h.next_payload = in.size() > 2 ? in[2] : 0;
        h.flags = in.size() > 3 ? in[3] : 0;
        msg.resize(IsakmpHeader::len);
        (void)h.emit(msg);
        if (in.size() > 4) msg.insert(msg.end(), in.begin() + 4, in.end());
        fix_length(msg);
    } else {
        const Bytes& base = w.recorded[(in.empty() ? 0 : in[0]) % w.recorded.size()];
        msg = base;
        mutate(msg, in.subspan(std::min<std::size_t>(1, in.size())));
        // A fresh Message ID gets past the replay check to decryption and the HASH checks.
        if (!in.empty() && (in[0] & 2) && msg.size() >= 28) core::store_be32(msg.data() + 20, 0x5A000000u + in[0]);
        if (fix) fix_length(msg);
    }
    core::Endpoint gw_local = w.client->ike_sa().remote;
    w.gw->on_datagram(msg, gw_local, w.client->ike_sa().local, w.now);
    w.client->on_datagram(msg, w.client->ike_sa().local, gw_local, w.now);
    w.pump();
    // Without the keys nothing can delete or add an SA; a repeat of a genuine request may at
    // most be answered with the stored reply.
    require(w.client->state() == SessionState::Established);
    require(w.client->children().size() == children_before);
    Session* gs = w.gw->find(w.client->ike_sa().cky_i, w.client->ike_sa().cky_r);
    require(gs && gs->state() == SessionState::Established && gs->children().size() == 1);
    return 0;
}
