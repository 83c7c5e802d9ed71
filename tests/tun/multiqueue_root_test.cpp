// SPDX-License-Identifier: MIT
// A multi-queue TUN (LinuxDevice opened with Options::queues = 2, the second queue from
// open_queue()) against the real kernel, in a throw-away network namespace (exits 77 without
// root). Ordinary UDP sockets send datagrams of 32 flows (32 source ports) into a /24 routed to
// the interface; the kernel picks a queue per packet by the flow's hash (tun_automq_select_queue
// in drivers/net/tun.c). The kernel is the oracle for what was sent: every datagram must come out
// of exactly one queue, all datagrams of a flow out of the same queue and in the order sent, and
// both queues must get some flow; a flow written into the other queue moves there. The hash is
// keyed by a random seed per boot, so the split differs from run to run, but with 32 flows the
// chance that all land on one of two queues is 2 * 2^-32: the test cannot fail that way in
// practice.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <chrono>
#include <cstring>
#include <linux/udp.h>
#include <map>
#include <netinet/in.h>
#include <poll.h>
#include <set>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

#include "core/buffer_pool.hpp"
#include "core/endian.hpp"
#include "core/ipv4.hpp"
#include "core/udp.hpp"
#include "tests/support/private_netns.hpp"
#include "tests/support/socket.hpp"
#include "tun/errc.hpp"
#include "tun/linux_device.hpp"
#include "tun/netlink.hpp"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

using namespace mipsec;
using namespace std::chrono_literals;

namespace {

const core::Ipv4Prefix tun_prefix = *core::Ipv4Prefix::parse("10.206.0.1/24");
const core::Ipv4Prefix routed = *core::Ipv4Prefix::parse("10.207.0.0/24");
const core::Ipv4Address routed_host = *core::Ipv4Address::parse("10.207.0.9");
constexpr std::uint16_t dst_port = 4500;
constexpr std::uint16_t first_src_port = 20000;
constexpr std::size_t flows = 32;
constexpr std::size_t per_flow = 8;

using test::Fd;
using test::to_sockaddr;

/// One UDP socket per flow, bound to its own source port.
std::vector<Fd> flow_sockets() {
    std::vector<Fd> socks;
    for (std::size_t f = 0; f < flows; ++f) {
        Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        REQUIRE(s.get() >= 0);
        sockaddr_in local = to_sockaddr({0}, static_cast<std::uint16_t>(first_src_port + f));
        REQUIRE(::bind(s.get(), reinterpret_cast<const sockaddr*>(&local), sizeof local) == 0);
        socks.push_back(std::move(s));
    }
    return socks;
}

/// A datagram's payload: its flow and its number within the flow, then filler up to `len`.
std::vector<std::uint8_t> tagged(std::size_t flow, std::size_t seq, std::size_t len = 64) {
    std::vector<std::uint8_t> p(len, static_cast<std::uint8_t>(seq * 31 + flow));
    core::store_be16(p.data(), static_cast<std::uint16_t>(flow));
    core::store_be16(p.data() + 2, static_cast<std::uint16_t>(seq));
    return p;
}

void send_to_routed(const Fd& s, std::span<const std::uint8_t> payload) {
    sockaddr_in to = to_sockaddr(routed_host, dst_port);
    REQUIRE(::sendto(s.get(), payload.data(), payload.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) ==
            static_cast<ssize_t>(payload.size()));
}

/// Sends `count` tagged datagrams on every flow, round by round (flows interleaved), numbered
/// from `first_seq`.
void send_rounds(const std::vector<Fd>& socks, std::size_t first_seq, std::size_t count) {
    for (std::size_t seq = first_seq; seq < first_seq + count; ++seq)
        for (std::size_t f = 0; f < flows; ++f) send_to_routed(socks[f], tagged(f, seq));
}

struct Arrival {
    std::size_t queue;
    std::size_t flow;
    std::size_t seq;
};

/// Reads every queue until none has had anything for 300 ms: the IPv4 packets to routed_host,
/// with the index of the queue each came from, in the order each queue gave them (IPv6 noise,
/// router solicitations and MLD reports, is skipped). No doctest assertions: a worker thread
/// may call it.
std::vector<std::pair<std::size_t, std::vector<std::uint8_t>>> read_raw(const std::vector<tun::LinuxDevice*>& queues) {
    core::BufferPool pool(64, 2048);
    std::vector<std::pair<std::size_t, std::vector<std::uint8_t>>> got;
    std::vector<pollfd> pfds;
    for (auto* q : queues) pfds.push_back({q->fd(), POLLIN, 0});
    for (;;) {
        for (auto& p : pfds) p.revents = 0;
        if (::poll(pfds.data(), pfds.size(), 300) <= 0) break;
        for (std::size_t qi = 0; qi < queues.size(); ++qi) {
            if ((pfds[qi].revents & POLLIN) == 0) continue;
            std::vector<core::PacketBuf> bufs;
            for (int i = 0; i < 16; ++i) bufs.push_back(pool.acquire(96));
            const std::size_t n = queues[qi]->read(bufs);
            for (std::size_t i = 0; i < n; ++i) {
                const auto bytes = std::as_const(bufs[i]).bytes();
                auto ip = core::Ipv4View::check(bytes);
                if (ip && ip->destination() == routed_host) got.emplace_back(qi, std::vector(bytes.begin(), bytes.end()));
            }
        }
    }
    return got;
}

/// Our datagrams among `raw` (UDP to routed_host:dst_port, checksums verified).
std::vector<Arrival> arrivals(const std::vector<std::pair<std::size_t, std::vector<std::uint8_t>>>& raw) {
    std::vector<Arrival> got;
    for (const auto& [queue, bytes] : raw) {
        auto ip = core::Ipv4View::check(std::span<const std::uint8_t>(bytes));
        REQUIRE(ip);
        CHECK(ip->checksum_valid());
        REQUIRE(ip->protocol() == core::ip_protocol::udp);
        auto udp = core::UdpView::check(ip->payload());
        REQUIRE(udp);
        REQUIRE(udp->destination_port() == dst_port);
        CHECK(udp->checksum_valid(ip->source(), ip->destination()));
        REQUIRE(udp->payload().size() >= 4);
        const std::size_t flow = core::load_be16(udp->payload().data());
        CHECK(udp->source_port() == first_src_port + flow);
        got.push_back({queue, flow, core::load_be16(udp->payload().data() + 2)});
    }
    return got;
}

std::vector<Arrival> read_queues(const std::vector<tun::LinuxDevice*>& queues) { return arrivals(read_raw(queues)); }

/// The same with one thread per queue, as the node's workers read them: each queue's
/// LinuxDevice is used by its thread alone, at the same time as the others.
std::vector<Arrival> read_queues_in_threads(const std::vector<tun::LinuxDevice*>& queues) {
    std::vector<std::vector<std::pair<std::size_t, std::vector<std::uint8_t>>>> per_queue(queues.size());
    std::vector<std::thread> workers;
    for (std::size_t qi = 0; qi < queues.size(); ++qi)
        workers.emplace_back([&, qi] { per_queue[qi] = read_raw({queues[qi]}); });
    for (auto& w : workers) w.join();
    std::vector<std::pair<std::size_t, std::vector<std::uint8_t>>> raw;
    for (std::size_t qi = 0; qi < queues.size(); ++qi)
        for (auto& [q, bytes] : per_queue[qi]) raw.emplace_back(qi, std::move(bytes));
    return arrivals(raw);
}

/// Every (flow, seq) with seq in [first_seq, first_seq + count) exactly once, each flow on one
/// queue and in order; returns the queue each flow came out of.
std::map<std::size_t, std::size_t> check_arrivals(const std::vector<Arrival>& got, std::size_t first_seq,
                                                  std::size_t count) {
    CHECK(got.size() == flows * count);
    std::set<std::pair<std::size_t, std::size_t>> seen;
    std::map<std::size_t, std::size_t> queue_of;
    std::map<std::size_t, std::size_t> next_seq;
    for (const Arrival& a : got) {
        CAPTURE(a.flow);
        CAPTURE(a.seq);
        CHECK(a.flow < flows);
        CHECK((a.seq >= first_seq && a.seq < first_seq + count));
        CHECK(seen.insert({a.flow, a.seq}).second);  // no duplicate
        auto [it, first] = queue_of.try_emplace(a.flow, a.queue);
        CHECK(it->second == a.queue);  // one flow, one queue
        auto [next, fresh] = next_seq.try_emplace(a.flow, first_seq);
        CHECK(a.seq == next->second);  // in the order sent
        next->second = a.seq + 1;
    }
    CHECK(seen.size() == flows * count);
    return queue_of;
}

std::set<std::size_t> queues_used(const std::map<std::size_t, std::size_t>& queue_of) {
    std::set<std::size_t> used;
    for (const auto& [flow, queue] : queue_of) used.insert(queue);
    return used;
}

struct TwoQueues {
    std::unique_ptr<tun::LinuxDevice> first;
    std::unique_ptr<tun::LinuxDevice> second;
    tun::Netlink nl;
};

/// "mqtest0" opened with two queues, 10.206.0.1/24, up, 10.207.0.0/24 routed into it.
TwoQueues open_two_queues(bool offload) {
    auto dev = tun::LinuxDevice::open("mqtest0", {.offload = offload, .queues = 2});
    REQUIRE_MESSAGE(dev, dev.error().message());
    auto& first = **dev;
    CHECK(first.multi_queue());
    auto second = first.open_queue();
    REQUIRE_MESSAGE(second, second.error().message());
    auto& q2 = **second;
    CHECK(q2.fd() != first.fd());
    CHECK(q2.name() == first.name());
    CHECK(q2.ifindex() == first.ifindex());
    CHECK(q2.offloads() == first.offloads());
    CHECK(q2.tx_queue_len() == first.tx_queue_len());
    CHECK(q2.multi_queue());
    auto nl = tun::Netlink::open();
    REQUIRE_MESSAGE(nl, nl.error().message());
    const auto ifx = first.ifindex();
    REQUIRE(nl->add_address(ifx, tun_prefix));
    REQUIRE(nl->set_up(ifx, true));
    REQUIRE(nl->add_route({.destination = routed, .ifindex = ifx, .source = tun_prefix.address}));
    return {std::move(dev).value(), std::move(second).value(), std::move(nl).value()};
}

}  // namespace

TEST_CASE("multi-queue TUN: the kernel spreads flows over the queues, each flow whole and in order on one") {
    test::enter_private_netns();
    auto [first, second, nl] = open_two_queues(false);
    CHECK(first->offloads() == 0);
    const auto socks = flow_sockets();

    send_rounds(socks, 0, per_flow);
    const auto got = read_queues({first.get(), second.get()});
    const auto queue_of = check_arrivals(got, 0, per_flow);
    CHECK(queue_of.size() == flows);
    CHECK(queues_used(queue_of).size() == 2);
    CHECK(first->counters().rx_errors == 0);
    CHECK(second->counters().rx_errors == 0);
    CHECK(first->counters().rx_packets + second->counters().rx_packets >= flows * per_flow);

    // The same flows again hash to the same queues.
    send_rounds(socks, per_flow, per_flow);
    CHECK(check_arrivals(read_queues({first.get(), second.get()}), per_flow, per_flow) == queue_of);

    // A flow's packet written into the other queue (a reply: the kernel's flow hash is
    // symmetric) moves the flow to that queue (tun_flow_update); the other flows stay.
    const std::size_t moved = 0;
    const std::size_t other = 1 - queue_of.at(moved);
    core::BufferPool pool(2, 2048);
    std::vector<core::PacketBuf> reply;
    reply.push_back(pool.acquire(64));
    REQUIRE(reply[0].put(core::Ipv4Header::len + core::UdpHeader::len + 4));
    core::Ipv4Header{.total_length = static_cast<std::uint16_t>(reply[0].size()),
                     .protocol = core::ip_protocol::udp,
                     .source = routed_host,
                     .destination = tun_prefix.address}
        .emit(reply[0].bytes());
    core::UdpHeader{.source_port = dst_port,
                    .destination_port = static_cast<std::uint16_t>(first_src_port + moved),
                    .length = static_cast<std::uint16_t>(core::UdpHeader::len + 4)}
        .emit(reply[0].bytes().subspan(core::Ipv4Header::len));
    core::UdpMutView::check(reply[0].bytes().subspan(core::Ipv4Header::len))
        ->update_checksum(routed_host, tun_prefix.address);
    tun::LinuxDevice* queue[] = {first.get(), second.get()};
    REQUIRE(queue[other]->write(reply) == 1);
    send_rounds(socks, 2 * per_flow, 1);
    auto steered = queue_of;
    steered[moved] = other;
    CHECK(check_arrivals(read_queues({first.get(), second.get()}), 2 * per_flow, 1) == steered);

    // A queue that closes detaches: the interface stays and its flows move to the queue left.
    const auto ifx = second->ifindex();
    second.reset();
    CHECK(nl.link(ifx));
    send_rounds(socks, 3 * per_flow, 1);
    const auto after = check_arrivals(read_queues({first.get()}), 3 * per_flow, 1);
    CHECK(after.size() == flows);
    CHECK(queues_used(after) == std::set<std::size_t>{0});

    // A queue opened later takes its share again.
    auto again = first->open_queue();
    REQUIRE_MESSAGE(again, again.error().message());
    send_rounds(socks, 4 * per_flow, per_flow);
    CHECK(queues_used(check_arrivals(read_queues({first.get(), again->get()}), 4 * per_flow, per_flow)).size() == 2);
}

TEST_CASE("multi-queue TUN with offloads, one reading thread per queue: each queue cuts super-packets, flows stay whole") {
    test::enter_private_netns();
    auto [first, second, nl] = open_two_queues(true);
    REQUIRE(first->offloads() != 0);
    const auto socks = flow_sockets();

    send_rounds(socks, 0, per_flow);
    const auto got = read_queues_in_threads({first.get(), second.get()});
    const auto queue_of = check_arrivals(got, 0, per_flow);
    CHECK(queues_used(queue_of).size() == 2);
    CHECK(first->counters().rx_errors == 0);
    CHECK(second->counters().rx_errors == 0);

    if ((first->offloads() & tun::tun_offload::uso4) == 0) {
        MESSAGE("the kernel granted no USO: no UDP super-packets to cut");
        return;
    }
    // With USO the kernel hands over a UDP_SEGMENT send whole, as one super-packet, to the queue
    // of its flow: each queue must cut the ones it gets into the datagrams the socket meant.
    constexpr std::size_t gso_size = 400;
    constexpr std::size_t segments = 3;
    for (std::size_t f = 0; f < flows; ++f) {
        const int size = gso_size;
        REQUIRE(::setsockopt(socks[f].get(), IPPROTO_UDP, UDP_SEGMENT, &size, sizeof size) == 0);
        std::vector<std::uint8_t> payload;
        for (std::size_t k = 0; k < segments; ++k) {
            const auto part = tagged(f, per_flow + k, gso_size);
            payload.insert(payload.end(), part.begin(), part.end());
        }
        send_to_routed(socks[f], payload);
    }
    const auto cut = check_arrivals(read_queues_in_threads({first.get(), second.get()}), per_flow, segments);
    CHECK(cut == queue_of);  // the super-packet of a flow went to that flow's queue
    for (auto* q : {first.get(), second.get()}) {
        const auto o = q->offload_counters();
        CHECK(o.rx_super_packets > 0);
        CHECK(o.rx_segments == o.rx_super_packets * segments);
        CHECK(q->counters().rx_errors == 0);
    }
}

TEST_CASE("open_queue is refused on a single-queue TUN, which takes no second descriptor either") {
    test::enter_private_netns();
    auto dev = tun::LinuxDevice::open("mqtest0");
    REQUIRE_MESSAGE(dev, dev.error().message());
    CHECK_FALSE((*dev)->multi_queue());
    CHECK((*dev)->open_queue().error() == core::Errc::InvalidArgument);
    CHECK(tun::LinuxDevice::open("mqtest0").error() == tun::Errc::DeviceBusy);
    // The mode is the device's: a multi-queue attach to it is refused by the kernel (EINVAL).
    CHECK(tun::LinuxDevice::open("mqtest0", {.queues = 2}).error() == tun::Errc::NotTunDevice);
    CHECK(tun::LinuxDevice::open("mqtest1", {.queues = 0}).error() == core::Errc::InvalidArgument);
    CHECK(tun::LinuxDevice::open("mqtest1", {.queues = tun::LinuxDevice::max_queues + 1}).error() ==
          core::Errc::InvalidArgument);
}

TEST_CASE("a multi-queue TUN takes max_queues queues, the kernel refuses one more") {
    test::enter_private_netns();
    auto dev = tun::LinuxDevice::open("mqtest0", {.tx_queue_len = 0, .queues = 2});
    REQUIRE_MESSAGE(dev, dev.error().message());
    std::vector<std::unique_ptr<tun::LinuxDevice>> more;
    for (std::size_t i = 1; i < tun::LinuxDevice::max_queues; ++i) {
        auto q = (*dev)->open_queue();
        REQUIRE_MESSAGE(q, i, ": ", q.error().message());
        more.push_back(std::move(q).value());
    }
    CHECK((*dev)->open_queue().error() == std::errc::argument_list_too_long);  // E2BIG from tun_attach
    more.pop_back();  // a closed queue frees its place
    CHECK((*dev)->open_queue());
}
