// SPDX-License-Identifier: MIT
// `mipsec bench ha`: how many Registration Requests the home agent core (mip::HomeAgent) turns
// into authenticated replies per second on one core, beside the raw HMAC-MD5 rate of the two
// MACs every registration needs (verify the request's MHAE, authenticate the reply's), and
// the resident memory a configured mobile node and a binding cost at 10k, 100k and 1M.
//
// Every measurement runs in its own forked child so that one size's heap (and what malloc
// keeps of it after freeing) cannot hide or inflate another's; the child sends a fixed-size
// result back through a pipe. Time is the core's parameter: each registration gets `now`
// 1 µs after the previous one and an NTP-timestamp Identification taken from that `now`, so
// every request passes the HA's replay check (RFC 5944 §5.7.1) exactly as a live MN's would.
//
// `--flood` (run_ha_flood) measures the HomeAgentStage instead, with whole IPv4/UDP packets:
// packets/s of a good renewal and of each kind of bad request a flooder sends, the cost of
// each relative to the good one, and a mixed flood in which every good renewal must be
// accepted and every bad packet counted.
// Persistence: the same registrations with the binding store the home agent stage writes
// (`state_file`): each accepted request's binding and replay state, committed before its
// reply, in SQLite's WAL mode with synchronous=NORMAL (survives kill -9) and FULL (survives
// power loss); a transaction per request, and group commit (a receive batch per transaction)
// as the stage does; beside the same loop with no store, alternating so load hits all alike.
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <optional>
#include <random>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/mipsec/bench.hpp"
#include "core/buffer_pool.hpp"
#include "core/endian.hpp"
#include "crypto/mac.hpp"
#include "crypto/random.hpp"
#include "mip/binding_store.hpp"
#include "mip/home_agent.hpp"
#include "mip/home_agent_stage.hpp"
#include "mip/tunnel_encap.hpp"
#include "mip/registration_wire.hpp"
#include "mip/security_association.hpp"

namespace mipsec::bench {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::size_t batch = 4096;   // requests pre-built (untimed) before each timed batch
constexpr std::size_t key_len = 16;   // 128-bit HMAC-MD5 key, the RFC 5944 §3.5.1 default
constexpr std::uint16_t requested_lifetime = 1800;
constexpr auto registration_step = 1us;  // simulated time between two registrations
const core::Ipv4Address ha_address = core::Ipv4Address::from_octets(192, 0, 2, 1);
const core::Ipv4Prefix home_network{core::Ipv4Address::from_octets(10, 0, 0, 0), 8};
const core::Ipv4Address nat_public = core::Ipv4Address::from_octets(203, 0, 113, 7);
// The NTP clock: era seconds of late 2023, so Identifications look like a real MN's.
const core::Duration ntp_offset = std::chrono::seconds(3'910'000'000);
const core::TimePoint t0 = core::TimePoint{} + 1h;

core::Ipv4Address home_address(std::size_t i) { return {home_network.address.value + 1 + static_cast<std::uint32_t>(i)}; }
core::Ipv4Address care_of_address(std::size_t i) {
    return {core::Ipv4Address::from_octets(100, 64, 0, 0).value + static_cast<std::uint32_t>(i)};  // 100.64/10
}
std::uint32_t spi(std::size_t i) { return mip::SecurityAssociation::min_spi + static_cast<std::uint32_t>(i); }

// Keys are a function of the index (splitmix64), so neither side has to store them.
std::array<std::uint8_t, key_len> key_for(std::size_t i) {
    std::array<std::uint8_t, key_len> k{};
    std::uint64_t x = 0x9E3779B97F4A7C15u * (i + 1);
    for (std::size_t w = 0; w < 2; ++w) {
        x += 0x9E3779B97F4A7C15u;
        std::uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
        core::store_be64(k.data() + 8 * w, z ^ (z >> 31));
    }
    return k;
}

mip::HomeAgent::Config make_config(std::size_t nodes) {
    mip::HomeAgent::Config c;
    c.address = ha_address;
    c.home_network = home_network;
    c.ntp_offset = ntp_offset;
    c.max_bindings = std::max<std::size_t>(c.max_bindings, nodes);
    c.mobile_nodes.reserve(nodes);
    for (std::size_t i = 0; i < nodes; ++i) {
        const auto k = key_for(i);
        mip::HomeAgent::MobileNodeConfig mn;
        mn.home_address = home_address(i);
        mn.sa.spi = spi(i);
        mn.sa.key = crypto::SecretBytes(k);
        c.mobile_nodes.push_back(std::move(mn));
    }
    return c;
}

core::TimePoint time_of(std::uint64_t registration) { return t0 + registration * registration_step; }

// The order MNs register in: a fixed shuffle, so the HA's per-MN state and the binding table
// are visited as scattered as live traffic would visit them, not in allocation order.
std::vector<std::uint32_t> shuffled(std::size_t nodes) {
    std::vector<std::uint32_t> order(nodes);
    std::iota(order.begin(), order.end(), 0u);
    std::shuffle(order.begin(), order.end(), std::mt19937(5944));
    return order;
}

/// Requests for `count` consecutive registrations starting at global number `first` (the MN
/// is `order[number % order.size()]`), in fixed-stride storage, with how each one arrived.
class RequestBatch {
public:
    explicit RequestBatch(bool nat) : nat_(nat), stride_(mip::RegistrationRequest::len + (nat ? mip::UdpTunnelRequest::len : 0) + mip::mhae_len) {
        bytes_.resize(batch * stride_);
        from_.resize(batch);
    }
    std::size_t request_len() const noexcept { return stride_; }
    std::size_t reply_len() const noexcept { return reply_len_; }

    bool build(std::uint64_t first, std::size_t count, const std::vector<std::uint32_t>& order) {
        first_ = first;
        count_ = count;
        for (std::size_t j = 0; j < count; ++j) {
            const std::uint64_t g = first + j;
            const std::size_t i = order[static_cast<std::size_t>(g % order.size())];
            mip::RegistrationRequest r;
            r.flags = mip::RegistrationRequestView::flag_d | mip::RegistrationRequestView::flag_t;
            r.lifetime = requested_lifetime;
            r.home_address = home_address(i);
            r.home_agent = ha_address;
            r.care_of_address = care_of_address(i);
            r.identification = mip::ntp_time(time_of(g), ntp_offset);
            mip::RequestExtensions ext;
            if (nat_) ext.udp_tunnel = mip::UdpTunnelRequest{};
            const auto k = key_for(i);
            auto m = mip::build_request(r, ext, {spi(i), k});
            if (!m || m->len != stride_) return false;
            std::memcpy(bytes_.data() + j * stride_, m->storage.data(), stride_);
            // Behind a NAT the request arrives from the NAT's address and a mapped port
            // (RFC 3519 §4.1 detects NAT by IP source != CoA); otherwise from the CoA.
            from_[j] = {nat_ ? nat_public : r.care_of_address, ha_address,
                        static_cast<std::uint16_t>(nat_ ? 1024 + i % 60000 : mip::registration_port), mip::registration_port};
        }
        return true;
    }
    /// Runs every request through `ha`; returns how many got an accepting reply. With a
    /// `store`, each accepted request's binding and replay state are written to it, as
    /// HomeAgentStage does before the replies leave: one transaction per `group` requests.
    std::size_t process(mip::HomeAgent& ha, mip::BindingStore* store = nullptr, std::size_t group = 1) {
        std::size_t accepted = 0;
        std::size_t in_group = 0;
        auto commit = [&]() {
            if (in_group == 0) return;
            if (store->write(changes_)) accepted += in_group;
            changes_.clear();
            in_group = 0;
        };
        for (std::size_t j = 0; j < count_; ++j) {
            auto out = ha.process({bytes_.data() + j * stride_, stride_}, from_[j], time_of(first_ + j));
            if (out.reply) reply_len_ = out.reply->len;
            const bool ok = out.reply && out.code == mip::reply_code::accepted;
            if (!store) {
                accepted += ok;
                continue;
            }
            if (!ok) continue;
            changes_.push_back({mip::StoreChange::PutBinding{{out.change.binding, mip::wall_time_of(out.change.binding.expires, ntp_offset)}}});
            changes_.push_back({mip::StoreChange::PutReplay{{out.home_address, *ha.replay_state(out.home_address)}}});
            if (++in_group == group) commit();
        }
        if (store) commit();
        return accepted;
    }

private:
    bool nat_;
    std::size_t stride_;
    std::vector<std::uint8_t> bytes_;
    std::vector<mip::HomeAgent::Received> from_;
    std::uint64_t first_ = 0;
    std::size_t count_ = 0;
    std::size_t reply_len_ = 0;
    std::vector<mip::StoreChange> changes_;
};

// Everything a child sends back: plain data, copied through a pipe.
struct RawResult {
    double keyed_pairs_rate = 0;   // two HMAC-MD5s with a context keyed once
    double created_pairs_rate = 0;  // two HMAC-MD5s, each with Mac::create under the MN's key
    double rekeyed_pairs_rate = 0;  // two HMAC-MD5s, one context re-keyed per MAC (what the HA does)
};
struct ThroughputResult {
    bool ok = false;
    std::size_t request_len = 0;
    std::size_t reply_len = 0;
    double first_registration_rate = 0;  // the pass that creates every binding
    double renewal_rate = 0;             // best round of renewals
    std::uint64_t failures = 0;
    RawResult raw;                       // best round of each reference
};
struct MemoryResult {
    bool ok = false;
    std::size_t bindings = 0;
    double elapsed_s = 0;
    std::int64_t config_input_bytes = 0;  // the Config vector the caller builds (transient)
    std::int64_t configured_bytes = 0;    // what the HomeAgent holds for N MNs, no bindings
    std::int64_t bound_bytes = 0;         // growth from registering all N
    std::int64_t configured_untrimmed_bytes = 0;
    std::int64_t bound_untrimmed_bytes = 0;
    std::size_t table_bytes = 0;          // BindingTable::memory_bytes()
    std::size_t retained_config_bytes = 0;  // capacity of Config::mobile_nodes kept after clear()
    double registration_rate = 0;         // process() only, first registration of each MN
};

// How many requests share one transaction in the group-commit rows: the shell's receive batch
// (node_config.hpp `batch`), after which it polls the stages, which commits.
constexpr std::size_t commit_group = 32;

struct PersistenceResult {
    bool ok = false;
    double off_rate = 0;          // the same loop without a store
    double single_rate = 0;       // SQLite WAL, synchronous=NORMAL, a transaction per request
    double normal_rate = 0;       // SQLite WAL, synchronous=NORMAL, group commit: safe against kill -9
    double full_rate = 0;         // SQLite WAL, synchronous=FULL, group commit: fsync per commit, safe against power loss
    std::uint64_t failures = 0;
    char error[160] = {};
};

template <class T, class F>
std::optional<T> in_child(F&& f) {
    static_assert(std::is_trivially_copyable_v<T>);
    std::fflush(stdout);
    std::fflush(stderr);
    int fds[2];
    if (pipe(fds) != 0) return std::nullopt;
    const pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return std::nullopt;
    }
    if (pid == 0) {
        close(fds[0]);
        const T result = f();
        const auto* p = reinterpret_cast<const char*>(&result);
        std::size_t done = 0;
        while (done < sizeof(T)) {
            const ssize_t n = write(fds[1], p + done, sizeof(T) - done);
            if (n <= 0) _exit(1);
            done += static_cast<std::size_t>(n);
        }
        _exit(0);
    }
    close(fds[1]);
    T result{};
    auto* p = reinterpret_cast<char*>(&result);
    std::size_t done = 0;
    while (done < sizeof(T)) {
        const ssize_t n = read(fds[0], p + done, sizeof(T) - done);
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
    }
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (done != sizeof(T) || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
    return result;
}

std::int64_t resident_bytes() {
    long pages_total = 0, pages_resident = 0;
    FILE* f = std::fopen("/proc/self/statm", "r");
    if (f == nullptr) return 0;
    const int n = std::fscanf(f, "%ld %ld", &pages_total, &pages_resident);
    std::fclose(f);
    return n == 2 ? static_cast<std::int64_t>(pages_resident) * sysconf(_SC_PAGESIZE) : 0;
}

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The two MACs of one registration with nothing around them: HMAC-MD5 over what the request's
// MHAE covers (everything before the authenticator) and over what the reply's covers.
RawResult measure_raw(const HaOptions& o, const std::vector<std::uint32_t>& order, std::size_t request_len, std::size_t reply_len) {
    RawResult r;
    std::vector<std::uint8_t> request(request_len - mip::hmac_md5_len, 0x5A);
    std::vector<std::uint8_t> reply(reply_len - mip::hmac_md5_len, 0xA5);
    std::array<std::uint8_t, mip::hmac_md5_len> tag{};
    const auto duration = std::chrono::milliseconds(o.milliseconds);

    // Floor: one context keyed once (OpenSSL keeps the ipad/opad states), two MACs a pair.
    const auto k0 = key_for(0);
    auto mac = crypto::Mac::create(crypto::MacAlgorithm::HmacMd5, k0);
    if (!mac) return r;
    std::uint64_t pairs = 0;
    Clock::duration timed{};
    while (timed < duration) {
        const auto start = Clock::now();
        for (std::size_t j = 0; j < batch; ++j) {
            request[0] = static_cast<std::uint8_t>(j);
            (void)(*mac)->compute(request, tag);
            reply[0] = tag[0];
            (void)(*mac)->compute(reply, tag);
        }
        timed += Clock::now() - start;
        pairs += batch;
    }
    r.keyed_pairs_rate = static_cast<double>(pairs) / seconds(timed);

    // What mip::compute_authenticator does without a context: a new Mac under the MN's key per
    // message (the home agent did this before it kept one context).
    std::vector<std::array<std::uint8_t, key_len>> keys(batch);
    pairs = 0;
    timed = {};
    std::size_t first = 0;
    while (timed < duration) {
        for (std::size_t j = 0; j < batch; ++j) keys[j] = key_for(order[(first + j) % o.nodes]);
        first += batch;
        const auto start = Clock::now();
        for (std::size_t j = 0; j < batch; ++j) {
            request[0] = static_cast<std::uint8_t>(j);
            auto a = crypto::Mac::create(crypto::MacAlgorithm::HmacMd5, keys[j]);
            if (!a) return r;
            (void)(*a)->compute(request, tag);
            reply[0] = tag[0];
            auto b = crypto::Mac::create(crypto::MacAlgorithm::HmacMd5, keys[j]);
            if (!b) return r;
            (void)(*b)->compute(reply, tag);
        }
        timed += Clock::now() - start;
        pairs += batch;
    }
    r.created_pairs_rate = static_cast<double>(pairs) / seconds(timed);

    // What the home agent does: one context, re-keyed under each MN's key per message.
    auto shared = crypto::Mac::create(crypto::MacAlgorithm::HmacMd5, {});
    if (!shared) return r;
    pairs = 0;
    timed = {};
    while (timed < duration) {
        for (std::size_t j = 0; j < batch; ++j) keys[j] = key_for(order[(first + j) % o.nodes]);
        first += batch;
        const auto start = Clock::now();
        for (std::size_t j = 0; j < batch; ++j) {
            request[0] = static_cast<std::uint8_t>(j);
            (void)((*shared)->rekey(keys[j]) && (*shared)->compute(request, tag));
            reply[0] = tag[0];
            (void)((*shared)->rekey(keys[j]) && (*shared)->compute(reply, tag));
        }
        timed += Clock::now() - start;
        pairs += batch;
    }
    r.rekeyed_pairs_rate = static_cast<double>(pairs) / seconds(timed);
    return r;
}

ThroughputResult measure_ha(const HaOptions& o) {
    ThroughputResult r;
    crypto::KeystreamRandom random;
    mip::HomeAgent ha(make_config(o.nodes), random);
    RequestBatch requests(o.nat);
    const auto order = shuffled(o.nodes);
    r.request_len = requests.request_len();
    std::uint64_t next = 0;
    Clock::duration timed{};
    auto run_batch = [&]() -> bool {
        const std::size_t count = batch;
        if (!requests.build(next, count, order)) return false;
        const auto start = Clock::now();
        const std::size_t accepted = requests.process(ha);
        timed += Clock::now() - start;
        r.failures += count - accepted;
        next += count;
        return true;
    };
    // One pass over every MN creates its binding (the table grows as it goes).
    while (next < o.nodes)
        if (!run_batch()) return r;
    r.first_registration_rate = static_cast<double>(next) / seconds(timed);
    r.reply_len = requests.reply_len();
    // Then renewals, the steady state, alternating with the raw reference: interference from
    // other load only ever slows a round down, and both sides get the same chances.
    for (int round = 0; round < o.rounds; ++round) {
        const std::uint64_t begin = next;
        timed = {};
        while (timed < std::chrono::milliseconds(o.milliseconds))
            if (!run_batch()) return r;
        r.renewal_rate = std::max(r.renewal_rate, static_cast<double>(next - begin) / seconds(timed));
        const RawResult raw = measure_raw(o, order, r.request_len, r.reply_len);
        r.raw.keyed_pairs_rate = std::max(r.raw.keyed_pairs_rate, raw.keyed_pairs_rate);
        r.raw.created_pairs_rate = std::max(r.raw.created_pairs_rate, raw.created_pairs_rate);
        r.raw.rekeyed_pairs_rate = std::max(r.raw.rekeyed_pairs_rate, raw.rekeyed_pairs_rate);
    }
    r.ok = r.failures == 0;
    return r;
}

// Registrations/s with each store setting; small batches, so that a slow fsync per commit
// still finishes a round near its time budget.
PersistenceResult measure_persistence(const HaOptions& o, const std::string& dir) {
    PersistenceResult r;
    enum class Mode { Off, Single, Normal, Full };
    struct Run {
        Mode mode;
        std::string path;
        std::unique_ptr<mip::SqliteBindingStore> store;
        std::unique_ptr<mip::HomeAgent> ha;
        std::uint64_t next = 0;
    };
    crypto::KeystreamRandom random;
    const auto order = shuffled(o.nodes);
    std::vector<Run> runs;
    for (Mode m : {Mode::Off, Mode::Single, Mode::Normal, Mode::Full}) {
        Run run{m, {}, nullptr, std::make_unique<mip::HomeAgent>(make_config(o.nodes), random), 0};
        if (m != Mode::Off) {
            run.path = dir + "/mipsec-bench-ha-" + std::to_string(::getpid()) + (m == Mode::Full ? "-full.db" : m == Mode::Single ? "-single.db" : "-normal.db");
            auto opened = mip::SqliteBindingStore::open({run.path, m == Mode::Full});
            if (!opened) {
                std::snprintf(r.error, sizeof r.error, "cannot open %s: %s", run.path.c_str(), opened.error().message().c_str());
                return r;
            }
            run.store = std::move(opened->store);
        }
        runs.push_back(std::move(run));
    }
    constexpr std::size_t small_batch = 64;
    RequestBatch requests(o.nat);
    for (int round = 0; round < o.rounds; ++round) {
        for (auto& run : runs) {
            Clock::duration timed{};
            std::uint64_t done = 0;
            while (timed < std::chrono::milliseconds(o.milliseconds)) {
                if (!requests.build(run.next, small_batch, order)) return r;
                const auto start = Clock::now();
                const std::size_t accepted = requests.process(*run.ha, run.store.get(), run.mode == Mode::Single ? 1 : commit_group);
                timed += Clock::now() - start;
                r.failures += small_batch - accepted;
                run.next += small_batch;
                done += small_batch;
            }
            const double rate = static_cast<double>(done) / seconds(timed);
            double& best = run.mode == Mode::Off      ? r.off_rate
                           : run.mode == Mode::Single ? r.single_rate
                           : run.mode == Mode::Normal ? r.normal_rate
                                                      : r.full_rate;
            best = std::max(best, rate);
        }
    }
    for (auto& run : runs) {
        run.store.reset();
        if (run.path.empty()) continue;
        std::error_code ec;
        for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(run.path + suffix, ec);
    }
    r.ok = r.failures == 0;
    return r;
}

MemoryResult measure_memory(std::size_t n, bool nat) {
    MemoryResult r;
    r.bindings = n;
    const auto begin = Clock::now();
    // Scratch the measurement needs, allocated before the baseline so it is not counted.
    RequestBatch requests(nat);
    const auto order = shuffled(n);
    crypto::KeystreamRandom random;
    // OpenSSL loads its provider and method caches on first use: a one-off cost, not a
    // binding's, so pay it before the baseline.
    {
        mip::HomeAgent warm(make_config(1), random);
        if (!requests.build(0, 1, {0}) || requests.process(warm) != 1) return r;
    }
    // Pages the parent freed but malloc kept would otherwise be reused without showing up.
    malloc_trim(0);
    const std::int64_t base = resident_bytes();

    auto config = make_config(n);
    r.config_input_bytes = resident_bytes() - base;
    mip::HomeAgent ha(std::move(config), random);
    r.configured_untrimmed_bytes = resident_bytes() - base;
    malloc_trim(0);
    const std::int64_t configured = resident_bytes();
    r.configured_bytes = configured - base;
    r.retained_config_bytes = ha.config().mobile_nodes.capacity() * sizeof(mip::HomeAgent::MobileNodeConfig);

    Clock::duration timed{};
    std::uint64_t accepted = 0;
    for (std::uint64_t next = 0; next < n; next += batch) {
        const std::size_t count = std::min<std::uint64_t>(batch, n - next);
        if (!requests.build(next, count, order)) return r;
        const auto start = Clock::now();
        accepted += requests.process(ha);
        timed += Clock::now() - start;
    }
    r.registration_rate = static_cast<double>(n) / seconds(timed);
    r.bound_untrimmed_bytes = resident_bytes() - configured;
    malloc_trim(0);
    r.bound_bytes = resident_bytes() - configured;
    r.table_bytes = ha.bindings().memory_bytes();
    r.ok = accepted == n && ha.bindings().size() == n;
    r.elapsed_s = seconds(Clock::now() - begin);
    return r;
}

double per(std::int64_t bytes, std::size_t n) { return static_cast<double>(bytes) / static_cast<double>(n); }

// ---- `mipsec bench ha --flood` -----------------------------------------------------------

// What a flooder sends a home agent (RFC 5944 §3.8.2.1 order of checks): each class stops at a
// different check, so the cost of each is the work done before that check said no.
enum class FloodKind : std::uint8_t {
    Good,              // a mobile node's renewal: MHAE verified, accepted, reply authenticated
    Garbage,           // type 1, random bytes: stops at the length / extension scan
    BadChecksum,       // a well-formed request with a wrong UDP checksum (check 1)
    UnknownHome,       // a home address nobody configured (check 2)
    UnknownSpi,        // a configured home address, another SPI (check 2)
    BadAuthenticator,  // home address and SPI right, authenticator wrong: verified, at most one 131/s
    StaleReplay,       // an authentic request replayed with an old Identification: at most one 133/s
    Count_
};
constexpr std::size_t flood_kind_count = static_cast<std::size_t>(FloodKind::Count_);
constexpr std::array<const char*, flood_kind_count> flood_kind_names = {
    "good renewal", "random bytes (type 1)", "bad UDP checksum", "unknown home address",
    "unknown SPI", "bad authenticator (<= one 131/s)", "stale replay (<= one 133/s)"};
constexpr std::array<const char*, flood_kind_count> flood_kind_keys = {
    "good", "garbage", "bad_checksum", "unknown_home_address", "unknown_spi", "bad_authenticator", "stale_replay"};

/// A StageContext that counts what the stage sends and the log lines it writes.
class CountingContext final : public core::StageContext {
public:
    explicit CountingContext(core::BufferPool& pool)
        : pool_(pool), log_("bench", core::LogLevel::Info, [this](core::LogLevel, std::string_view, std::string_view) { ++log_lines; }) {}
    core::TimePoint now() const override { return now_; }
    core::PacketBuf allocate() override { return pool_.acquire(64); }
    void send_control(core::PacketBuf&&) override { ++sent; }
    void deliver_inward(core::PacketBuf&&) override {}
    void raise(core::ControlEvent) override {}
    core::Logger& log() override { return log_; }
    void set_now(core::TimePoint t) noexcept { now_ = t; }
    std::uint64_t sent = 0;
    std::uint64_t log_lines = 0;

private:
    core::BufferPool& pool_;
    core::Logger log_;
    core::TimePoint now_ = t0;
};

/// Whole IPv4/UDP packets for the home agent, built untimed, with the time each one is
/// processed at (an Identification only passes the replay check at its own time).
struct FloodPacket {
    std::vector<std::uint8_t> bytes;
    core::TimePoint at;
    FloodKind kind;
};

class FloodBuilder {
public:
    FloodBuilder(std::size_t nodes, const std::vector<std::uint32_t>& order) : nodes_(nodes), order_(order), rng_(5265) {}

    /// Registration number `g` (global, so Identifications keep increasing) of kind `kind`.
    bool build(FloodKind kind, std::uint64_t g, FloodPacket& out) {
        out.kind = kind;
        out.at = time_of(g);
        const std::size_t i = order_[static_cast<std::size_t>(g % order_.size())];
        // Spoofed sources: a different address for every bad packet, as from a botnet.
        const core::Ipv4Address spoofed{core::Ipv4Address::from_octets(100, 64, 0, 0).value + static_cast<std::uint32_t>(rng_() & 0x3FFFFF)};
        core::Endpoint from{kind == FloodKind::Good ? care_of_address(i) : spoofed, mip::registration_port};
        std::vector<std::uint8_t> payload;
        if (kind == FloodKind::Garbage) {
            payload.resize(1 + rng_() % 60);
            for (auto& b : payload) b = static_cast<std::uint8_t>(rng_());
            payload[0] = mip::message_type::registration_request;
        } else {
            mip::RegistrationRequest r;
            r.flags = mip::RegistrationRequestView::flag_d | mip::RegistrationRequestView::flag_t;
            r.lifetime = requested_lifetime;
            r.home_address = kind == FloodKind::UnknownHome ? core::Ipv4Address{home_address(nodes_ + (rng_() % 1000000)).value} : home_address(i);
            r.home_agent = ha_address;
            r.care_of_address = from.address;
            // A replay carries an Identification a minute older than the clock.
            r.identification = mip::ntp_time(kind == FloodKind::StaleReplay ? out.at - 60s : out.at, ntp_offset);
            const auto k = key_for(i);
            const std::uint32_t s = kind == FloodKind::UnknownSpi ? spi(i) + 0x100000 : spi(i);
            auto m = mip::build_request(r, {}, {s, k});
            if (!m) return false;
            payload.assign(m->bytes().begin(), m->bytes().end());
            if (kind == FloodKind::BadAuthenticator) payload.back() ^= 0x5A;
        }
        core::BufferPool pool(1, 2048);
        auto buf = pool.acquire(0);
        if (!mip::emit_udp_packet(buf, from, {ha_address, mip::registration_port}, 64, payload)) return false;
        out.bytes.assign(buf.bytes().begin(), buf.bytes().end());
        if (kind == FloodKind::BadChecksum) {
            // Wrong, and never 0 (which would mean "no checksum", RFC 768).
            auto* c = out.bytes.data() + core::Ipv4Header::len + 6;
            c[1] ^= 0x01;
            if (c[0] == 0 && c[1] == 0) c[1] = 0x02;
        }
        return true;
    }

private:
    std::size_t nodes_;
    const std::vector<std::uint32_t>& order_;
    std::mt19937 rng_;
};

struct FloodResult {
    bool ok = false;
    std::array<double, flood_kind_count> rate{};  // packets/s of each kind alone, best round
    // The mixed run: `flood_per_good` bad packets (all bad kinds in turn) per good renewal.
    double mixed_good_rate = 0;
    double mixed_bad_rate = 0;
    std::uint64_t mixed_good_sent = 0;
    std::uint64_t mixed_good_accepted = 0;
    std::uint64_t mixed_bad_sent = 0;
    std::uint64_t mixed_bad_counted = 0;  // requests_discarded + requests_rejected grew by this
    std::uint64_t mixed_log_lines = 0;
    double mixed_seconds = 0;  // simulated time the mixed run covered
};

FloodResult measure_flood(const HaFloodOptions& o) {
    FloodResult r;
    crypto::KeystreamRandom random;
    mip::HomeAgentStage::Config cfg;
    cfg.agent = make_config(o.nodes);
    mip::HomeAgentStage ha(std::move(cfg), random);
    core::BufferPool pool(64, 2048);
    CountingContext ctx(pool);
    const auto order = shuffled(o.nodes);
    FloodBuilder builder(o.nodes, order);
    std::uint64_t next = 0;
    std::vector<FloodPacket> packets(batch);

    // Runs the packets through the stage as the shell would (a pool buffer per packet).
    auto run = [&](std::size_t count, Clock::duration& timed) -> bool {
        const auto start = Clock::now();
        for (std::size_t j = 0; j < count; ++j) {
            auto buf = pool.acquire(64);
            if (!buf.put(packets[j].bytes.size())) return false;
            std::memcpy(buf.bytes().data(), packets[j].bytes.data(), packets[j].bytes.size());
            ctx.set_now(packets[j].at);
            (void)ha.decapsulate(buf, ctx);
        }
        timed += Clock::now() - start;
        return true;
    };
    // Every MN registers once first, so renewals and replays meet existing state.
    for (std::size_t j = 0; j < o.nodes; j += batch) {
        const std::size_t count = std::min<std::size_t>(batch, o.nodes - j);
        for (std::size_t k = 0; k < count; ++k)
            if (!builder.build(FloodKind::Good, next++, packets[k])) return r;
        Clock::duration ignored{};
        if (!run(count, ignored)) return r;
    }
    if (ha.agent().bindings().size() != o.nodes) return r;

    for (int round = 0; round < o.rounds; ++round) {
        for (std::size_t kind = 0; kind < flood_kind_count; ++kind) {
            Clock::duration timed{};
            std::uint64_t done = 0;
            while (timed < std::chrono::milliseconds(o.milliseconds)) {
                for (auto& p : packets)
                    if (!builder.build(static_cast<FloodKind>(kind), next++, p)) return r;
                if (!run(packets.size(), timed)) return r;
                done += packets.size();
            }
            r.rate[kind] = std::max(r.rate[kind], static_cast<double>(done) / seconds(timed));
        }
    }

    // The mixed run: bad kinds in turn, one good renewal after every `flood_per_good`.
    const auto c0 = ha.counters();
    const auto log0 = ctx.log_lines;
    const core::TimePoint sim_start = time_of(next);
    Clock::duration timed{};
    std::uint64_t good = 0, bad = 0;
    std::size_t bad_kind = 1;
    while (timed < std::chrono::milliseconds(o.milliseconds * o.rounds)) {
        for (std::size_t j = 0; j < packets.size(); ++j) {
            FloodKind kind = FloodKind::Good;
            if ((good + bad) % (o.flood_per_good + 1) != 0) {
                kind = static_cast<FloodKind>(bad_kind);
                bad_kind = bad_kind + 1 == flood_kind_count ? 1 : bad_kind + 1;
                ++bad;
            } else {
                ++good;
            }
            if (!builder.build(kind, next++, packets[j])) return r;
        }
        if (!run(packets.size(), timed)) return r;
    }
    const auto& c1 = ha.counters();
    r.mixed_good_sent = good;
    // Every good one is accepted: its reply was sent and it was not counted as a failure.
    r.mixed_bad_counted = (c1.requests_discarded - c0.requests_discarded) + (c1.requests_rejected - c0.requests_rejected);
    r.mixed_bad_sent = bad;
    r.mixed_good_accepted = (c1.requests - c0.requests) - r.mixed_bad_counted;
    r.mixed_good_rate = static_cast<double>(good) / seconds(timed);
    r.mixed_bad_rate = static_cast<double>(bad) / seconds(timed);
    r.mixed_log_lines = ctx.log_lines - log0;
    r.mixed_seconds = seconds(time_of(next) - sim_start);
    r.ok = r.mixed_good_accepted == good && r.mixed_bad_counted == bad && ha.agent().bindings().size() == o.nodes;
    return r;
}

}  // namespace

int run_ha(const HaOptions& options) {
    const auto tp = in_child<ThroughputResult>([&] { return measure_ha(options); });
    if (!tp || tp->request_len == 0 || tp->reply_len == 0 || tp->raw.keyed_pairs_rate == 0 || tp->raw.rekeyed_pairs_rate == 0 ||
        tp->raw.created_pairs_rate == 0) {
        std::fprintf(stderr, "mipsec bench ha: the throughput run failed\n");
        return 1;
    }
    const RawResult& raw = tp->raw;
    std::vector<MemoryResult> memory;
    for (auto n : options.memory_sizes) {
        auto m = in_child<MemoryResult>([&] { return measure_memory(n, options.nat); });
        if (!m) {
            std::fprintf(stderr, "mipsec bench ha: the memory run for %zu bindings failed\n", n);
            return 1;
        }
        memory.push_back(*m);
    }
    std::string state_dir = options.state_dir;
    if (state_dir.empty()) {
        std::error_code ec;
        state_dir = std::filesystem::temp_directory_path(ec).string();
        if (ec) state_dir = "/tmp";
    }
    const auto persisted = in_child<PersistenceResult>([&] { return measure_persistence(options, state_dir); });
    if (!persisted || persisted->off_rate == 0) {
        std::fprintf(stderr, "mipsec bench ha: the persistence run failed%s%s\n", persisted && persisted->error[0] ? ": " : "",
                     persisted ? persisted->error : "");
        return 1;
    }
    bool ok = tp->ok && persisted->ok;
    for (const auto& m : memory) ok = ok && m.ok;

    if (options.json) {
        nlohmann::json j;
        j["benchmark"] = "ha";
        j["mobile_nodes"] = options.nodes;
        j["nat"] = options.nat;
        j["ms"] = options.milliseconds;
        j["rounds"] = options.rounds;
        j["request_bytes"] = tp->request_len;
        j["reply_bytes"] = tp->reply_len;
        j["first_registrations_per_s"] = tp->first_registration_rate;
        j["renewals_per_s"] = tp->renewal_rate;
        j["failures"] = tp->failures;
        j["raw_hmac_md5_pairs_per_s"] = raw.keyed_pairs_rate;
        j["raw_hmac_md5_pairs_rekeyed_per_s"] = raw.rekeyed_pairs_rate;
        j["raw_hmac_md5_pairs_created_per_s"] = raw.created_pairs_rate;
        j["ratio_renewal_to_raw"] = tp->renewal_rate / raw.keyed_pairs_rate;
        j["ratio_renewal_to_raw_rekeyed"] = tp->renewal_rate / raw.rekeyed_pairs_rate;
        j["persistence"] = {
            {"state_dir", state_dir},
            {"off_registrations_per_s", persisted->off_rate},
            {"commit_group", commit_group},
            {"sqlite_wal_normal_transaction_per_request_registrations_per_s", persisted->single_rate},
            {"sqlite_wal_normal_registrations_per_s", persisted->normal_rate},
            {"sqlite_wal_full_registrations_per_s", persisted->full_rate},
            {"failures", persisted->failures},
        };
        j["memory"] = nlohmann::json::array();
        for (const auto& m : memory) {
            j["memory"].push_back({
                {"bindings", m.bindings},
                {"config_input_bytes_per_mn", per(m.config_input_bytes, m.bindings)},
                {"configured_bytes_per_mn", per(m.configured_bytes, m.bindings)},
                {"configured_untrimmed_bytes_per_mn", per(m.configured_untrimmed_bytes, m.bindings)},
                {"retained_config_bytes_per_mn", per(static_cast<std::int64_t>(m.retained_config_bytes), m.bindings)},
                {"bytes_per_binding", per(m.bound_bytes, m.bindings)},
                {"untrimmed_bytes_per_binding", per(m.bound_untrimmed_bytes, m.bindings)},
                {"table_bytes_per_binding", per(static_cast<std::int64_t>(m.table_bytes), m.bindings)},
                {"first_registrations_per_s", m.registration_rate},
                {"elapsed_s", m.elapsed_s},
                {"ok", m.ok},
            });
        }
        j["ok"] = ok;
        std::printf("%s\n", j.dump().c_str());
        return ok ? 0 : 1;
    }

    std::printf("HomeAgent registrations on one core: %zu mobile nodes, HMAC-MD5 MHAE, timestamp replay protection,%s\n"
                "request %zu B, reply %zu B; best of %d alternating HA/raw rounds of %d ms each\n",
                options.nodes, options.nat ? " RFC 3519 UDP tunnel request from behind a NAT," : " co-located CoA, no NAT,",
                tp->request_len, tp->reply_len, options.rounds, options.milliseconds);
    std::printf("%-58s %12s %9s %9s\n", "", "per second", "us each", "HA/this");
    auto row = [&](const char* what, double rate, bool ratio) {
        std::printf("%-58s %12.0f %9.2f", what, rate, 1e6 / rate);
        if (ratio) std::printf(" %9.2f", tp->renewal_rate / rate);
        std::printf("\n");
    };
    row("HomeAgent::process, renewal (request -> accept reply)", tp->renewal_rate, false);
    row("HomeAgent::process, first registration (binding added)", tp->first_registration_rate, false);
    row("raw HMAC-MD5 x2 (request + reply), context keyed once", raw.keyed_pairs_rate, true);
    row("raw HMAC-MD5 x2, one context re-keyed per MAC (as the HA does)", raw.rekeyed_pairs_rate, true);
    row("raw HMAC-MD5 x2, Mac::create per MAC (the HA before)", raw.created_pairs_rate, true);
    if (tp->failures != 0) std::printf("!! %llu registrations were not accepted\n", static_cast<unsigned long long>(tp->failures));

    std::printf("\nPersistence (state_file): SQLite in WAL mode, file in %s; group commit = one transaction per %zu\n"
                "requests (a receive batch), as the stage does; best of %d alternating rounds of %d ms\n",
                state_dir.c_str(), commit_group, options.rounds, options.milliseconds);
    std::printf("%-58s %12s %9s %9s\n", "", "per second", "us each", "vs off");
    auto prow = [&](const char* what, double rate) {
        std::printf("%-58s %12.0f %9.2f %9.2f\n", what, rate, 1e6 / rate, rate / persisted->off_rate);
    };
    prow("persistence off (no state_file)", persisted->off_rate);
    prow("SQLite WAL, NORMAL, one transaction per request", persisted->single_rate);
    prow("SQLite WAL, NORMAL, group commit (kill -9 safe; default)", persisted->normal_rate);
    prow("SQLite WAL, FULL, group commit (power-loss safe)", persisted->full_rate);
    if (persisted->failures != 0)
        std::printf("!! %llu registrations were not accepted or not stored\n", static_cast<unsigned long long>(persisted->failures));

    std::printf("\nResident memory, one fresh process per size (RSS from /proc/self/statm after malloc_trim)\n");
    std::printf("%10s | %12s %12s %12s | %12s %12s | %12s %7s\n", "bindings", "config B/MN", "HA B/MN", "kept cfg B",
                "RSS B/bind", "table B/bind", "first reg/s", "s");
    for (const auto& m : memory) {
        std::printf("%10zu | %12.1f %12.1f %12.1f | %12.1f %12.1f | %12.0f %7.1f%s\n", m.bindings, per(m.config_input_bytes, m.bindings),
                    per(m.configured_bytes, m.bindings), per(static_cast<std::int64_t>(m.retained_config_bytes), m.bindings),
                    per(m.bound_bytes, m.bindings), per(static_cast<std::int64_t>(m.table_bytes), m.bindings), m.registration_rate,
                    m.elapsed_s, m.ok ? "" : "  !! not all accepted");
    }
    std::printf("config B/MN:  the HomeAgent::Config the caller builds (MobileNodeConfig + key), freed once handed over\n"
                "HA B/MN:      resident growth after constructing the HomeAgent with N MNs and dropping the Config:\n"
                "              per-MN SA state (hash-map node, heap-allocated key) plus \"kept cfg B\"\n"
                "kept cfg B:   capacity of Config::mobile_nodes the HomeAgent keeps after clear() (part of HA B/MN)\n"
                "RSS B/bind:   resident growth from registering all N MNs: the binding itself, nothing else\n"
                "table B/bind: BindingTable::memory_bytes() (records + index + expiry heap, by capacity)\n"
                "first reg/s:  HomeAgent::process() while all N register once in shuffled order (table growing)\n");
    return ok ? 0 : 1;
}

int run_ha_flood(const HaFloodOptions& options) {
    const auto fr = in_child<FloodResult>([&] { return measure_flood(options); });
    if (!fr) {
        std::fprintf(stderr, "mipsec bench ha --flood: the run failed\n");
        return 1;
    }
    const double good = fr->rate[0];
    if (options.json) {
        nlohmann::json j;
        j["benchmark"] = "ha_flood";
        j["mobile_nodes"] = options.nodes;
        j["ms"] = options.milliseconds;
        j["rounds"] = options.rounds;
        for (std::size_t k = 0; k < flood_kind_count; ++k) {
            j["per_s"][flood_kind_keys[k]] = fr->rate[k];
            j["cost_vs_good"][flood_kind_keys[k]] = fr->rate[k] > 0 ? good / fr->rate[k] : 0.0;
        }
        j["mixed"] = {{"flood_per_good", options.flood_per_good}, {"good_per_s", fr->mixed_good_rate}, {"bad_per_s", fr->mixed_bad_rate},
                      {"good_sent", fr->mixed_good_sent}, {"good_accepted", fr->mixed_good_accepted}, {"bad_sent", fr->mixed_bad_sent},
                      {"bad_counted", fr->mixed_bad_counted}, {"log_lines", fr->mixed_log_lines}, {"simulated_s", fr->mixed_seconds}};
        j["ok"] = fr->ok;
        std::printf("%s\n", j.dump().c_str());
        return fr->ok ? 0 : 1;
    }
    std::printf("HomeAgentStage under a registration flood, one core: %zu mobile nodes bound, whole IPv4/UDP packets\n"
                "through decapsulate() (UDP checksum, core checks, reply built and sent); best of %d rounds of %d ms\n",
                options.nodes, options.rounds, options.milliseconds);
    std::printf("%-34s %12s %9s %14s\n", "", "per second", "us each", "cost vs good");
    for (std::size_t k = 0; k < flood_kind_count; ++k)
        std::printf("%-34s %12.0f %9.2f %14.2f\n", flood_kind_names[k], fr->rate[k], 1e6 / fr->rate[k], good / fr->rate[k]);
    std::printf("\nMixed: %zu bad packets (the bad kinds in turn, spoofed sources) per good renewal\n", options.flood_per_good);
    std::printf("  good renewals %llu sent, %llu accepted (%.0f/s); bad %llu sent, %llu counted (%.0f/s)\n",
                static_cast<unsigned long long>(fr->mixed_good_sent), static_cast<unsigned long long>(fr->mixed_good_accepted),
                fr->mixed_good_rate, static_cast<unsigned long long>(fr->mixed_bad_sent),
                static_cast<unsigned long long>(fr->mixed_bad_counted), fr->mixed_bad_rate);
    std::printf("  log lines written: %llu over %.1f simulated seconds\n", static_cast<unsigned long long>(fr->mixed_log_lines),
                fr->mixed_seconds);
    if (!fr->ok) std::printf("!! a good registration was lost or a bad packet went uncounted\n");
    return fr->ok ? 0 : 1;
}

}  // namespace mipsec::bench
