// SPDX-License-Identifier: MIT
#include "mip/binding_store.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstdio>

#include "mip/security_association.hpp"

namespace mipsec::mip {

namespace {

class SqliteCategory final : public std::error_category {
public:
    const char* name() const noexcept override { return "sqlite"; }
    std::string message(int code) const override { return ::sqlite3_errstr(code); }
};

std::error_code sqlite_error(int rc) noexcept { return {rc & 0xFF, sqlite_category()}; }

bool is_corruption(std::error_code ec) noexcept {
    if (ec.category() != sqlite_category()) return ec == core::Errc::Malformed;
    // NOTADB: not a database at all; CORRUPT: a damaged one; ERROR: a database whose tables
    // are not ours (no such column); SCHEMA/FORMAT/RANGE: the same family.
    return ec.value() == SQLITE_NOTADB || ec.value() == SQLITE_CORRUPT || ec.value() == SQLITE_ERROR ||
           ec.value() == SQLITE_SCHEMA || ec.value() == SQLITE_FORMAT || ec.value() == SQLITE_RANGE;
}

constexpr std::int64_t never = -1;  // expires_ms of an infinite binding

// flags column (the binding's)
constexpr std::int64_t flag_reverse_tunnel = 1;
constexpr std::int64_t flag_broadcast = 2;
constexpr std::int64_t flag_half_bound = 4;
// replay_flags column
constexpr std::int64_t flag_nonce_valid = 1;
constexpr std::int64_t flag_ever_accepted = 2;

// One row per mobile node holding its replay state and, while `bound`, its binding: a
// registration rewrites one row (one B-tree page), not one in each of two tables. Replay
// state outlives the binding (a deregistered node's old requests stay refused).
constexpr const char* schema =
    "CREATE TABLE IF NOT EXISTS mobile_node("
    " home INTEGER PRIMARY KEY,"
    " last_accepted_id INTEGER NOT NULL DEFAULT 0, nonce INTEGER NOT NULL DEFAULT 0, replay_flags INTEGER NOT NULL DEFAULT 0,"
    " bound INTEGER NOT NULL DEFAULT 0, care_of INTEGER NOT NULL DEFAULT 0, udp_address INTEGER NOT NULL DEFAULT 0,"
    " udp_port INTEGER NOT NULL DEFAULT 0, expires_ms INTEGER NOT NULL DEFAULT 0, identification INTEGER NOT NULL DEFAULT 0,"
    " lifetime INTEGER NOT NULL DEFAULT 0, keepalive INTEGER NOT NULL DEFAULT 0, mode INTEGER NOT NULL DEFAULT 0,"
    " flags INTEGER NOT NULL DEFAULT 0);";

}  // namespace

const std::error_category& sqlite_category() noexcept {
    static const SqliteCategory category;
    return category;
}

std::optional<WallTime> wall_time_of(core::TimePoint t, core::Duration ntp_offset) noexcept {
    if (t == core::TimePoint::max()) return std::nullopt;
    const auto since_unix = t.time_since_epoch() + ntp_offset - std::chrono::seconds(ntp_unix_offset_s);
    return WallTime(std::chrono::duration_cast<WallTime::duration>(since_unix));
}

core::TimePoint time_point_of(std::optional<WallTime> wall, core::Duration ntp_offset) noexcept {
    if (!wall) return core::TimePoint::max();
    const auto since_epoch = std::chrono::duration_cast<core::Duration>(wall->time_since_epoch()) +
                             std::chrono::seconds(ntp_unix_offset_s) - ntp_offset;
    return core::TimePoint(since_epoch);
}

// --- MemoryBindingStore ---

core::Result<StoredState> MemoryBindingStore::load() {
    StoredState s;
    for (const auto& [_, b] : bindings_) s.bindings.push_back(b);
    for (const auto& [home, r] : replay_) s.replay.push_back({core::Ipv4Address{home}, r});
    return s;
}

core::Result<void> MemoryBindingStore::write(std::span<const StoreChange> changes) {
    for (const auto& c : changes) {
        if (const auto* put = std::get_if<StoreChange::PutBinding>(&c.what)) {
            bindings_[put->binding.binding.home_address.value] = put->binding;
        } else if (const auto* erase = std::get_if<StoreChange::EraseBinding>(&c.what)) {
            bindings_.erase(erase->home_address.value);
        } else if (const auto* replay = std::get_if<StoreChange::PutReplay>(&c.what)) {
            replay_[replay->replay.home_address.value] = replay->replay.state;
        }
    }
    ++writes_;
    return {};
}

// --- SqliteBindingStore ---

struct SqliteBindingStore::Handles {
    sqlite3* db = nullptr;
    sqlite3_stmt* put_binding = nullptr;
    sqlite3_stmt* erase_binding = nullptr;
    sqlite3_stmt* put_replay = nullptr;
    sqlite3_stmt* begin = nullptr;
    sqlite3_stmt* commit = nullptr;
    sqlite3_stmt* rollback = nullptr;
    ~Handles() {
        for (auto* s : {put_binding, erase_binding, put_replay, begin, commit, rollback}) ::sqlite3_finalize(s);
        ::sqlite3_close_v2(db);
    }
};

namespace {

std::error_code exec(sqlite3* db, const char* sql) {
    const int rc = ::sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
    return rc == SQLITE_OK ? std::error_code{} : sqlite_error(rc);
}

std::error_code prepare(sqlite3* db, const char* sql, sqlite3_stmt** out) {
    const int rc = ::sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, nullptr);
    return rc == SQLITE_OK ? std::error_code{} : sqlite_error(rc);
}

/// Runs a statement that returns no rows, then resets it for reuse.
std::error_code step_done(sqlite3_stmt* s) {
    const int rc = ::sqlite3_step(s);
    ::sqlite3_reset(s);
    ::sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? std::error_code{} : sqlite_error(rc);
}

std::int64_t as_i64(std::uint64_t v) noexcept { return std::bit_cast<std::int64_t>(v); }
std::uint64_t as_u64(std::int64_t v) noexcept { return std::bit_cast<std::uint64_t>(v); }

/// Opens the database and sets it up; any failure leaves nothing open.
core::Result<std::unique_ptr<sqlite3, int (*)(sqlite3*)>> open_database(const std::string& path, bool full_sync) {
    // Create the file ourselves so it is born 0600; SQLite gives its WAL file the same mode.
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return std::error_code(errno, std::generic_category());
    ::close(fd);
    sqlite3* raw = nullptr;
    const int rc = ::sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, nullptr);
    std::unique_ptr<sqlite3, int (*)(sqlite3*)> db(raw, ::sqlite3_close_v2);
    if (rc != SQLITE_OK) return sqlite_error(rc);
    ::sqlite3_extended_result_codes(db.get(), 0);
    // One home agent per file: the exclusive lock makes a second one fail at start (BUSY)
    // instead of both writing; the kernel drops the lock when a process dies, kill -9 too.
    // WAL: a commit appends to the log, readers never block it, a torn tail is ignored on
    // recovery. NORMAL syncs at checkpoints: a commit survives the process dying at once,
    // a power failure may lose the last ones but never corrupts (SQLite "WAL" documentation).
    if (auto ec = exec(db.get(), "PRAGMA locking_mode=EXCLUSIVE")) return ec;
    if (auto ec = exec(db.get(), "PRAGMA journal_mode=WAL")) return ec;
    if (auto ec = exec(db.get(), full_sync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL")) return ec;
    if (auto ec = exec(db.get(), schema)) return ec;
    // Take the write lock now, so a second agent on the same file fails here.
    if (auto ec = exec(db.get(), "BEGIN IMMEDIATE; COMMIT")) return ec;
    return db;
}

std::string moved_aside_name(const std::string& path) {
    const auto unix_s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    return path + ".corrupt-" + std::to_string(unix_s);
}

}  // namespace

SqliteBindingStore::SqliteBindingStore(std::unique_ptr<Handles> h) : h_(std::move(h)) {}
SqliteBindingStore::~SqliteBindingStore() = default;

core::Result<SqliteBindingStore::Opened> SqliteBindingStore::open(const Options& options) {
    Opened opened;
    auto attempt = [&]() -> core::Result<std::unique_ptr<SqliteBindingStore>> {
        auto db = open_database(options.path, options.full_sync);
        if (!db) return db.error();
        auto h = std::make_unique<Handles>();
        h->db = db->release();
        std::error_code ec;
        if (!ec) ec = prepare(h->db,
                              "INSERT INTO mobile_node(home, bound, care_of, udp_address, udp_port, expires_ms, identification,"
                              " lifetime, keepalive, mode, flags) VALUES(?1,1,?2,?3,?4,?5,?6,?7,?8,?9,?10)"
                              " ON CONFLICT(home) DO UPDATE SET bound=1, care_of=?2, udp_address=?3, udp_port=?4, expires_ms=?5,"
                              " identification=?6, lifetime=?7, keepalive=?8, mode=?9, flags=?10",
                              &h->put_binding);
        if (!ec) ec = prepare(h->db, "UPDATE mobile_node SET bound = 0 WHERE home = ?", &h->erase_binding);
        if (!ec) ec = prepare(h->db, "INSERT INTO mobile_node(home, last_accepted_id, nonce, replay_flags) VALUES(?1,?2,?3,?4)"
                              " ON CONFLICT(home) DO UPDATE SET last_accepted_id=?2, nonce=?3, replay_flags=?4", &h->put_replay);
        if (!ec) ec = prepare(h->db, "BEGIN IMMEDIATE", &h->begin);
        if (!ec) ec = prepare(h->db, "COMMIT", &h->commit);
        if (!ec) ec = prepare(h->db, "ROLLBACK", &h->rollback);
        if (ec) return ec;
        std::unique_ptr<SqliteBindingStore> store(new SqliteBindingStore(std::move(h)));
        // Read everything once now, so damage anywhere shows at start, not mid-run.
        if (auto state = store->load(); !state) return state.error();
        return store;
    };
    auto first = attempt();
    if (first) {
        opened.store = std::move(*first);
        return opened;
    }
    if (!is_corruption(first.error())) return first.error();
    // Not ours or damaged: keep it for a post-mortem, start empty. The WAL belongs to the
    // damaged file; a fresh database must not replay it.
    opened.was_corrupt = true;
    opened.corruption = first.error().message();
    opened.moved_aside = moved_aside_name(options.path);
    if (::rename(options.path.c_str(), opened.moved_aside.c_str()) != 0) return std::error_code(errno, std::generic_category());
    (void)::rename((options.path + "-wal").c_str(), (opened.moved_aside + "-wal").c_str());
    (void)::unlink((options.path + "-shm").c_str());
    auto second = attempt();
    if (!second) return second.error();
    opened.store = std::move(*second);
    return opened;
}

core::Result<StoredState> SqliteBindingStore::load() {
    StoredState state;
    sqlite3_stmt* s = nullptr;
    if (auto ec = prepare(h_->db,
                          "SELECT home, care_of, udp_address, udp_port, expires_ms, identification, lifetime, keepalive, mode, flags"
                          " FROM mobile_node WHERE bound = 1",
                          &s))
        return ec;
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> bindings(s, ::sqlite3_finalize);
    int rc;
    auto u32 = [&](int col) { return static_cast<std::uint32_t>(::sqlite3_column_int64(s, col)); };
    while ((rc = ::sqlite3_step(s)) == SQLITE_ROW) {
        StoredBinding sb;
        Binding& b = sb.binding;
        const std::int64_t mode = ::sqlite3_column_int64(s, 8);
        const std::int64_t port = ::sqlite3_column_int64(s, 3);
        const std::int64_t lifetime = ::sqlite3_column_int64(s, 6);
        const std::int64_t keepalive = ::sqlite3_column_int64(s, 7);
        // A row no version of ours writes means the file is not what it claims.
        if (mode < 0 || mode > 1 || port < 0 || port > 0xFFFF || lifetime < 0 || lifetime > 0xFFFF || keepalive < 0 ||
            keepalive > 0xFFFF)
            return core::Errc::Malformed;
        b.home_address = {u32(0)};
        b.care_of_address = {u32(1)};
        b.udp_endpoint = {core::Ipv4Address{u32(2)}, static_cast<std::uint16_t>(port)};
        const std::int64_t expires_ms = ::sqlite3_column_int64(s, 4);
        if (expires_ms != never) sb.expires = WallTime(std::chrono::milliseconds(expires_ms));
        b.identification = as_u64(::sqlite3_column_int64(s, 5));
        b.lifetime = static_cast<std::uint16_t>(lifetime);
        b.keepalive_interval = static_cast<std::uint16_t>(keepalive);
        b.mode = mode == 1 ? TunnelMode::Udp : TunnelMode::IpInIp;
        const std::int64_t flags = ::sqlite3_column_int64(s, 9);
        b.reverse_tunnel = (flags & flag_reverse_tunnel) != 0;
        b.broadcast = (flags & flag_broadcast) != 0;
        b.half_bound = (flags & flag_half_bound) != 0;
        state.bindings.push_back(sb);
    }
    if (rc != SQLITE_DONE) return sqlite_error(rc);
    bindings.reset();

    if (auto ec = prepare(h_->db, "SELECT home, last_accepted_id, nonce, replay_flags FROM mobile_node WHERE replay_flags != 0", &s)) return ec;
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> replay(s, ::sqlite3_finalize);
    while ((rc = ::sqlite3_step(s)) == SQLITE_ROW) {
        StoredReplay r;
        r.home_address = {u32(0)};
        r.state.last_accepted_id = as_u64(::sqlite3_column_int64(s, 1));
        r.state.nonce = u32(2);
        const std::int64_t flags = ::sqlite3_column_int64(s, 3);
        r.state.nonce_valid = (flags & flag_nonce_valid) != 0;
        r.state.ever_accepted = (flags & flag_ever_accepted) != 0;
        state.replay.push_back(r);
    }
    if (rc != SQLITE_DONE) return sqlite_error(rc);
    return state;
}

core::Result<void> SqliteBindingStore::write(std::span<const StoreChange> changes) {
    if (changes.empty()) return {};
    if (auto ec = step_done(h_->begin)) return ec;
    auto apply = [&](const StoreChange& c) -> std::error_code {
        if (const auto* put = std::get_if<StoreChange::PutBinding>(&c.what)) {
            const Binding& b = put->binding.binding;
            sqlite3_stmt* s = h_->put_binding;
            const std::int64_t expires_ms =
                put->binding.expires
                    ? std::chrono::duration_cast<std::chrono::milliseconds>(put->binding.expires->time_since_epoch()).count()
                    : never;
            const std::int64_t flags = (b.reverse_tunnel ? flag_reverse_tunnel : 0) | (b.broadcast ? flag_broadcast : 0) |
                                       (b.half_bound ? flag_half_bound : 0);
            ::sqlite3_bind_int64(s, 1, b.home_address.value);
            ::sqlite3_bind_int64(s, 2, b.care_of_address.value);
            ::sqlite3_bind_int64(s, 3, b.udp_endpoint.address.value);
            ::sqlite3_bind_int64(s, 4, b.udp_endpoint.port);
            ::sqlite3_bind_int64(s, 5, expires_ms);
            ::sqlite3_bind_int64(s, 6, as_i64(b.identification));
            ::sqlite3_bind_int64(s, 7, b.lifetime);
            ::sqlite3_bind_int64(s, 8, b.keepalive_interval);
            ::sqlite3_bind_int64(s, 9, b.mode == TunnelMode::Udp ? 1 : 0);
            ::sqlite3_bind_int64(s, 10, flags);
            return step_done(s);
        }
        if (const auto* erase = std::get_if<StoreChange::EraseBinding>(&c.what)) {
            ::sqlite3_bind_int64(h_->erase_binding, 1, erase->home_address.value);
            return step_done(h_->erase_binding);
        }
        const auto& r = std::get<StoreChange::PutReplay>(c.what).replay;
        sqlite3_stmt* s = h_->put_replay;
        ::sqlite3_bind_int64(s, 1, r.home_address.value);
        ::sqlite3_bind_int64(s, 2, as_i64(r.state.last_accepted_id));
        ::sqlite3_bind_int64(s, 3, r.state.nonce);
        ::sqlite3_bind_int64(s, 4, (r.state.nonce_valid ? flag_nonce_valid : 0) | (r.state.ever_accepted ? flag_ever_accepted : 0));
        return step_done(s);
    };
    for (const auto& c : changes) {
        if (auto ec = apply(c)) {
            (void)step_done(h_->rollback);
            return ec;
        }
    }
    if (auto ec = step_done(h_->commit)) {
        (void)step_done(h_->rollback);
        return ec;
    }
    return {};
}

std::string SqliteBindingStore::last_error() const { return ::sqlite3_errmsg(h_->db); }

}  // namespace mipsec::mip
