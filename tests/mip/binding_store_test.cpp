// SPDX-License-Identifier: MIT
// BindingStore and a home agent restart: the SQLite store round trip, a corrupt file, and
// HomeAgentStage restoring bindings (remaining lifetime, RegistrationChanged, forwarding at
// once) and replay state (RFC 5944 §5.7: an old request is refused after the restart); a
// mobile node restart replacing its own binding.
#include <doctest/doctest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "mip/binding_store.hpp"
#include "mip/home_agent_stage.hpp"
#include "mip/tunnel_encap.hpp"
#include "tests/mip/mobile_ip_world.hpp"

using namespace mipsec;
using namespace mipsec::test::literals;
using namespace std::chrono_literals;
using test::ip;

namespace {

const auto key1 = "00112233445566778899aabbccddeeff"_hex;
const auto home1 = ip("10.1.0.77");
const auto home2 = ip("10.1.0.78");
const auto ha1 = ip("10.1.0.1");
const auto home_net = *core::Ipv4Prefix::parse("10.1.0.0/24");
const auto coa1 = ip("192.168.1.23");
const auto coa2 = ip("172.16.9.9");
const auto cn = ip("10.9.9.9");

/// A fresh directory under $TMPDIR, removed with everything in it at the end of the test.
struct TempDir {
    std::filesystem::path path;
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "mipsec-store-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string file(const char* name) const { return (path / name).string(); }
};

mip::SqliteBindingStore::Opened open_store(const std::string& path) {
    auto opened = mip::SqliteBindingStore::open({path, false});
    REQUIRE_MESSAGE(opened, opened.error().message());
    return std::move(*opened);
}

/// Runs SQL on a database file directly, as another program would.
void run_sql(const std::string& path, const char* sql) {
    sqlite3* db = nullptr;
    REQUIRE(::sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    const int rc = ::sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
    ::sqlite3_close(db);
    REQUIRE(rc == SQLITE_OK);
}

mip::Binding sample_binding(core::Ipv4Address home) {
    mip::Binding b;
    b.home_address = home;
    b.care_of_address = coa1;
    b.udp_endpoint = {ip("203.0.113.5"), 61000};
    b.identification = 0xF123456789ABCDEFu;  // above INT64_MAX: stored bit for bit
    b.lifetime = 600;
    b.keepalive_interval = 20;
    b.mode = mip::TunnelMode::Udp;
    b.reverse_tunnel = true;
    b.broadcast = true;
    b.half_bound = true;
    return b;
}

/// A home agent stage for home1 with its own clock, fed whole UDP packets.
struct HomeAgentRun {
    core::BufferPool& pool;
    test::FakeStageContext ctx;
    mip::HomeAgentStage stage;
    HomeAgentRun(core::BufferPool& p, crypto::Random& random, core::TimePoint now, core::Duration ntp_offset = test::world_ntp_offset)
        : pool(p), ctx(p), stage(config(ntp_offset), random) {
        ctx.set_now(now);
    }
    static mip::HomeAgentStage::Config config(core::Duration ntp_offset) {
        auto c = test::ha_stage_config(ha1, home_net, {{home1, &key1}});
        c.agent.ntp_offset = ntp_offset;
        return c;
    }
    /// Sends a request's bytes from `care_of` and polls, as the shell does after a receive
    /// batch; returns the reply code (or -1 without a reply).
    int send(const test::Bytes& request, core::Ipv4Address care_of) {
        ctx.sent.clear();
        auto p = test::load(pool, test::udp_packet({care_of, 434}, {ha1, 434}, request));
        (void)stage.decapsulate(p, ctx);
        (void)stage.poll(ctx);
        if (ctx.sent.empty()) return -1;
        auto ip_reply = core::Ipv4View::check(ctx.sent.back().bytes());
        REQUIRE(ip_reply);
        auto reply = mip::RegistrationReplyView::check(mip::udp_of(*ip_reply)->payload());
        REQUIRE(reply);
        return reply->code();
    }
    std::vector<core::RegistrationChanged> registrations() const { return test::registrations(ctx); }
};

/// A registration request for home1 from `care_of`, stamped with `now` as NTP time.
test::Bytes request(core::Ipv4Address care_of, core::TimePoint now, std::uint16_t lifetime = 600) {
    mip::RegistrationRequest fixed{mip::RegistrationRequestView::flag_t, lifetime, home1, ha1, care_of,
                                   mip::ntp_time(now, test::world_ntp_offset)};
    auto m = mip::build_request(fixed, {}, test::make_sa(256, key1).auth_key());
    REQUIRE(m);
    return {m->bytes().begin(), m->bytes().end()};
}

/// Where the stage tunnels a packet for `home`, or nullopt when it does not.
std::optional<core::Ipv4Address> tunnel_destination(HomeAgentRun& ha, core::Ipv4Address home) {
    auto p = test::load(ha.pool, test::echo_packet(cn, home));
    if (!ha.stage.encapsulate(p, ha.ctx).passed()) return std::nullopt;
    return core::Ipv4View::check(p.bytes())->destination();
}

/// Hands the opened store to the stage with what it holds, as the shell does.
void attach(mip::HomeAgentStage& stage, mip::SqliteBindingStore::Opened& opened) {
    auto state = opened.store->load();
    REQUIRE(state);
    mip::HomeAgentStage::StoreOpening o{"test", std::move(*state), std::nullopt};
    if (opened.was_corrupt) o.corruption = opened.corruption;
    stage.attach_store(std::move(opened.store), std::move(o));
}

}  // namespace

TEST_CASE("BindingStore: wall time conversion keeps the instant and maps infinite to none") {
    const core::TimePoint t = core::TimePoint{} + 5h + 123ms;
    const auto wall = mip::wall_time_of(t, test::world_ntp_offset);
    REQUIRE(wall);
    CHECK(mip::time_point_of(wall, test::world_ntp_offset) == t);
    CHECK_FALSE(mip::wall_time_of(core::TimePoint::max(), test::world_ntp_offset));
    CHECK(mip::time_point_of(std::nullopt, test::world_ntp_offset) == core::TimePoint::max());
    // After a reboot the monotonic clock restarts; the same wall instant is then another TimePoint.
    const core::Duration rebooted_offset = test::world_ntp_offset + 5h;
    CHECK(mip::time_point_of(wall, rebooted_offset) == t - 5h);
}

TEST_CASE("SqliteBindingStore: bindings and replay state survive closing and reopening, bit for bit") {
    TempDir dir;
    const auto path = dir.file("ha.db");
    const auto expires = mip::WallTime(std::chrono::milliseconds(1'800'000'123'456));
    {
        auto opened = open_store(path);
        CHECK_FALSE(opened.was_corrupt);
        std::vector<mip::StoreChange> changes{
            {mip::StoreChange::PutBinding{{sample_binding(home1), expires}}},
            {mip::StoreChange::PutBinding{{sample_binding(home2), std::nullopt}}},
            {mip::StoreChange::PutReplay{{home1, {0xFEDCBA9876543210u, 0xDEADBEEF, true, true}}}},
        };
        REQUIRE(opened.store->write(changes));
        const mip::StoreChange erase{mip::StoreChange::EraseBinding{home2}};
        REQUIRE(opened.store->write(std::span(&erase, 1)));
    }
    struct stat st{};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);

    auto opened = open_store(path);
    auto state = opened.store->load();
    REQUIRE(state);
    REQUIRE(state->bindings.size() == 1);
    const auto& b = state->bindings[0].binding;
    const auto want = sample_binding(home1);
    CHECK(b.home_address == want.home_address);
    CHECK(b.care_of_address == want.care_of_address);
    CHECK(b.udp_endpoint == want.udp_endpoint);
    CHECK(b.identification == want.identification);
    CHECK(b.lifetime == want.lifetime);
    CHECK(b.keepalive_interval == want.keepalive_interval);
    CHECK(b.mode == want.mode);
    CHECK(b.reverse_tunnel);
    CHECK(b.broadcast);
    CHECK(b.half_bound);
    CHECK(state->bindings[0].expires == expires);
    REQUIRE(state->replay.size() == 1);
    CHECK(state->replay[0].home_address == home1);
    CHECK(state->replay[0].state == mip::ReplayState{0xFEDCBA9876543210u, 0xDEADBEEF, true, true});
}

TEST_CASE("SqliteBindingStore: a second home agent on the same file is refused while the first runs") {
    TempDir dir;
    auto first = open_store(dir.file("ha.db"));
    auto second = mip::SqliteBindingStore::open({dir.file("ha.db"), false});
    CHECK_FALSE(second);
}

TEST_CASE("SqliteBindingStore: an unreadable file is moved aside and the store starts empty") {
    struct Case {
        const char* name;
        std::function<void(const std::string&)> damage;
    };
    const Case cases[] = {
        {"not a database", [](const std::string& p) { std::ofstream(p) << std::string(8192, 'x'); }},
        {"truncated database header",
         [](const std::string& p) {
             { auto o = open_store(p); }
             std::filesystem::resize_file(p, 50);
         }},
        {"a row no version writes (mode 7)",
         [](const std::string& p) {
             {
                 auto o = open_store(p);
                 const mip::StoreChange c{mip::StoreChange::PutBinding{{sample_binding(home1), std::nullopt}}};
                 REQUIRE(o.store->write(std::span(&c, 1)));
             }
             // Flip the stored mode byte through SQLite itself: same file format, foreign content.
             run_sql(p, "UPDATE mobile_node SET mode = 7");
         }},
        {"someone else's database",
         [](const std::string& p) { run_sql(p, "CREATE TABLE mobile_node(x)"); }},
    };
    for (const auto& row : cases) {
        CAPTURE(row.name);
        TempDir dir;
        const auto path = dir.file("ha.db");
        row.damage(path);
        auto opened = open_store(path);
        CHECK(opened.was_corrupt);
        CHECK_FALSE(opened.corruption.empty());
        CHECK(std::filesystem::exists(opened.moved_aside));
        auto state = opened.store->load();
        REQUIRE(state);
        CHECK(state->bindings.empty());
        // The fresh store works.
        const mip::StoreChange c{mip::StoreChange::PutBinding{{sample_binding(home2), std::nullopt}}};
        CHECK(opened.store->write(std::span(&c, 1)));
        CHECK(opened.store->load()->bindings.size() == 1);
    }
}

TEST_CASE("HA restart: bindings come back with their remaining lifetime and forward before any re-registration") {
    TempDir dir;
    const auto path = dir.file("ha.db");
    core::BufferPool pool{64, 2048};
    test::SeededRandom random{3};
    const core::TimePoint t0 = core::TimePoint{} + 1h;

    SUBCASE("process restart: the same monotonic clock") {
        {
            HomeAgentRun before(pool, random, t0);
            auto opened = open_store(path);
            attach(before.stage, opened);
            REQUIRE(before.send(request(coa1, t0), coa1) == 0);
            CHECK(tunnel_destination(before, home1) == coa1);
            CHECK(before.stage.counters().store_writes == 1);
        }
        HomeAgentRun after(pool, random, t0 + 100s);
        auto opened = open_store(path);
        attach(after.stage, opened);
        // No request arrives: the first downlink packet is tunnelled already.
        CHECK(tunnel_destination(after, home1) == coa1);
        auto events = after.registrations();
        REQUIRE(events.size() == 1);
        CHECK(events[0].registered);
        CHECK(events[0].home_address == home1);
        CHECK(events[0].care_of_address == coa1);
        CHECK(events[0].kind == core::RegistrationChanged::Kind::HomeBinding);
        auto b = after.stage.agent().binding(home1);
        REQUIRE(b);
        CHECK(b->expires == t0 + 600s);  // 500 s left, not a fresh 600
        CHECK(after.stage.counters().bindings_restored == 1);
        // The lifetime still runs out when it should.
        after.ctx.set_now(t0 + 600s);
        (void)after.stage.poll(after.ctx);
        CHECK_FALSE(after.stage.agent().binding(home1));
    }
    SUBCASE("host reboot: the monotonic clock restarted, the wall clock did not") {
        {
            HomeAgentRun before(pool, random, t0);
            auto opened = open_store(path);
            attach(before.stage, opened);
            REQUIRE(before.send(request(coa1, t0), coa1) == 0);
        }
        // 100 s later on the wall clock; the new monotonic clock reads 30 s.
        const core::TimePoint boot_now = core::TimePoint{} + 30s;
        const core::Duration rebooted_offset = test::world_ntp_offset + (t0 + 100s - boot_now);
        HomeAgentRun after(pool, random, boot_now, rebooted_offset);
        auto opened = open_store(path);
        attach(after.stage, opened);
        CHECK(tunnel_destination(after, home1) == coa1);
        auto b = after.stage.agent().binding(home1);
        REQUIRE(b);
        CHECK(b->expires == boot_now + 500s);
    }
}

TEST_CASE("HA restart: a binding whose lifetime ran out while the agent was down is not restored") {
    TempDir dir;
    const auto path = dir.file("ha.db");
    core::BufferPool pool{64, 2048};
    test::SeededRandom random{3};
    const core::TimePoint t0 = core::TimePoint{} + 1h;
    {
        HomeAgentRun before(pool, random, t0);
        auto opened = open_store(path);
        attach(before.stage, opened);
        REQUIRE(before.send(request(coa1, t0, 60), coa1) == 0);
    }
    {
        HomeAgentRun after(pool, random, t0 + 61s);
        auto opened = open_store(path);
        attach(after.stage, opened);
        (void)after.stage.poll(after.ctx);
        CHECK(after.registrations().empty());
        CHECK_FALSE(tunnel_destination(after, home1));
        CHECK(after.stage.counters().bindings_restored == 0);
        CHECK(after.stage.counters().bindings_not_restored == 1);
    }
    // ...and it is gone from the file too.
    CHECK(open_store(path).store->load()->bindings.empty());
}

TEST_CASE("HA restart: a request accepted before the restart cannot be replayed after it (RFC 5944 §5.7)") {
    TempDir dir;
    const auto path = dir.file("ha.db");
    core::BufferPool pool{64, 2048};
    test::SeededRandom random{3};
    const core::TimePoint t0 = core::TimePoint{} + 1h;
    const auto old_request = request(coa1, t0);  // recorded by an attacker
    {
        HomeAgentRun before(pool, random, t0);
        auto opened = open_store(path);
        attach(before.stage, opened);
        REQUIRE(before.send(old_request, coa1) == 0);
        before.ctx.set_now(t0 + 1s);
        REQUIRE(before.send(request(coa2, t0 + 1s), coa2) == 0);  // the node moved on
    }
    HomeAgentRun after(pool, random, t0 + 2s);
    auto opened = open_store(path);
    attach(after.stage, opened);
    (void)after.stage.poll(after.ctx);
    // Still within the 7 s timestamp tolerance: only the stored last identification stops it.
    CHECK(after.send(old_request, coa1) == mip::reply_code::ha_identification_mismatch);
    CHECK(tunnel_destination(after, home1) == coa2);
    CHECK(after.registrations().size() == 1);  // the restore only

    SUBCASE("without the store the same replay would have moved the binding") {
        HomeAgentRun amnesiac(pool, random, t0 + 2s);
        CHECK(amnesiac.send(old_request, coa1) == 0);
        CHECK(tunnel_destination(amnesiac, home1) == coa1);
    }
}

TEST_CASE("HA restart: a corrupt state file is counted and logged, and the agent serves from empty") {
    TempDir dir;
    const auto path = dir.file("ha.db");
    std::ofstream(path) << "garbage, not SQLite";
    core::BufferPool pool{64, 2048};
    test::SeededRandom random{3};
    HomeAgentRun ha(pool, random, core::TimePoint{} + 1h);
    auto opened = open_store(path);
    REQUIRE(opened.was_corrupt);
    attach(ha.stage, opened);
    (void)ha.stage.poll(ha.ctx);
    CHECK(ha.stage.counters().state_file_corrupt == 1);
    test::FlatStatus status;
    ha.stage.report(status);
    CHECK(status.values["counters.state_file_corrupt"] == "1");
    CHECK(ha.send(request(coa1, ha.ctx.now()), coa1) == 0);
    CHECK(ha.stage.counters().store_writes == 1);
}

TEST_CASE("A restarted mobile node replaces its old binding cleanly") {
    test::World w;
    auto& ha = w.add_ha(test::ha_stage_config(ha1, home_net, {{home1, &key1}}), {ha1});
    auto& old_mn = w.add_mn(test::mn_stage_config(home1, ha1, key1, coa1), {coa1});
    w.poll();
    REQUIRE(old_mn.stage.active_registration());
    REQUIRE(ha.stage.agent().binding(home1)->care_of_address == coa1);

    // The node crashes (its state is gone) and comes back a little later on another network;
    // a new MobileNode knows nothing of the old identification, only the clock.
    w.net.nodes.erase(std::find(w.net.nodes.begin(), w.net.nodes.end(), &old_mn.node));
    w.advance(3s);
    auto& restarted = w.add_mn(test::mn_stage_config(home1, ha1, key1, coa2), {coa2});
    w.poll();
    REQUIRE(restarted.stage.active_registration());
    const auto b = ha.stage.agent().binding(home1);
    REQUIRE(b);
    CHECK(b->care_of_address == coa2);
    CHECK(b->expires == w.now + 1000s);
    CHECK(ha.stage.agent().bindings().size() == 1);
    CHECK(ha.stage.counters().requests_rejected == 0);
    auto events = test::registrations(ha.ctx);
    REQUIRE(events.size() == 2);
    CHECK(events[1].care_of_address == coa2);
    CHECK(events[1].registered);
}

TEST_CASE("HA with a store: replies wait for the group commit at poll, one transaction per batch") {
    core::BufferPool pool{64, 2048};
    test::SeededRandom random{3};
    const core::TimePoint t0 = core::TimePoint{} + 1h;
    HomeAgentRun ha(pool, random, t0);
    ha.stage.attach_store(std::make_unique<mip::MemoryBindingStore>(), {"memory", {}, std::nullopt});
    (void)ha.stage.poll(ha.ctx);
    // Two accepted requests in one receive batch (the node moved at once): nothing leaves yet.
    for (auto [care_of, at] : {std::pair{coa1, t0}, std::pair{coa2, t0 + 1ms}}) {
        auto p = test::load(pool, test::udp_packet({care_of, 434}, {ha1, 434}, request(care_of, at)));
        CHECK(ha.stage.decapsulate(p, ha.ctx).action == core::Action::Consumed);
    }
    CHECK(ha.ctx.sent.empty());
    CHECK(ha.stage.counters().store_writes == 0);
    // The poll after the batch commits both, then sends both replies, in order.
    (void)ha.stage.poll(ha.ctx);
    CHECK(ha.stage.counters().store_writes == 1);
    REQUIRE(ha.ctx.sent.size() == 2);
    CHECK(core::Ipv4View::check(ha.ctx.sent[0].bytes())->destination() == coa1);
    CHECK(core::Ipv4View::check(ha.ctx.sent[1].bytes())->destination() == coa2);
    // A request that changes nothing (bad authenticator: 131) costs no transaction.
    auto forged = request(coa1, t0 + 2ms);
    forged.back() ^= 1;
    CHECK(ha.send(forged, coa1) == mip::reply_code::ha_mn_auth_failed);
    CHECK(ha.stage.counters().store_writes == 1);
}
