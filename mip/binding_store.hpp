// SPDX-License-Identifier: MIT
#pragma once
// BindingStore: where a home agent keeps what must survive a restart — its mobility
// bindings (RFC 5944 §3.8.2) and, per mobile node, the replay state of §5.7 (the last
// accepted timestamp, or the nonce the next request must carry), so a request recorded
// before the restart cannot be replayed after it.
//
// The home agent core never touches a file: HomeAgentStage hands this interface what changed
// and loads it once at start. Expiries are stored as wall-clock time (not the monotonic clock,
// which restarts with the host), so a binding restored after downtime keeps only what is left
// of its lifetime, and one that ran out while the agent was down is not restored.
//
// MemoryBindingStore is for tests and benchmarks; SqliteBindingStore keeps a SQLite database
// in WAL mode: each write() is one transaction, durable against a crash of the process
// (kill -9) once write() returns; with `full_sync` also against a power failure.
// Not thread-safe.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <unordered_map>
#include <variant>
#include <vector>

#include "core/address.hpp"
#include "core/result.hpp"
#include "core/time.hpp"
#include "mip/binding_table.hpp"

namespace mipsec::mip {

using WallTime = std::chrono::system_clock::time_point;

/// Per mobile node, what RFC 5944 §5.7 replay protection remembers.
struct ReplayState {
    std::uint64_t last_accepted_id = 0;  // timestamps: the next must be greater
    std::uint32_t nonce = 0;             // nonces: the HA nonce the next request must carry
    bool nonce_valid = false;
    bool ever_accepted = false;
    bool operator==(const ReplayState&) const = default;
};

/// A binding as stored: `binding.expires` is meaningless here, `expires` says when it ends
/// (nullopt: never, a lifetime of 0xFFFF).
struct StoredBinding {
    Binding binding;
    std::optional<WallTime> expires;
};

struct StoredReplay {
    core::Ipv4Address home_address;
    ReplayState state;
};

/// One change; a write() of several is applied all or nothing.
struct StoreChange {
    struct PutBinding {
        StoredBinding binding;
    };
    struct EraseBinding {
        core::Ipv4Address home_address;
    };
    struct PutReplay {
        StoredReplay replay;
    };
    std::variant<PutBinding, EraseBinding, PutReplay> what;
};

struct StoredState {
    std::vector<StoredBinding> bindings;
    std::vector<StoredReplay> replay;
};

class BindingStore {
public:
    virtual ~BindingStore() = default;
    /// Everything stored, bindings already past their expiry included (the caller drops them).
    virtual core::Result<StoredState> load() = 0;
    /// Applies `changes` atomically; durable when it returns.
    virtual core::Result<void> write(std::span<const StoreChange> changes) = 0;
};

/// Wall time of a monotonic instant, given the NTP offset the home agent already uses for
/// timestamps (security_association.hpp). TimePoint::max() (infinite) maps to nullopt.
std::optional<WallTime> wall_time_of(core::TimePoint t, core::Duration ntp_offset) noexcept;
/// The reverse: a stored wall time as a monotonic instant of this run.
core::TimePoint time_point_of(std::optional<WallTime> wall, core::Duration ntp_offset) noexcept;

/// Keeps everything in memory; `writes()` counts transactions (tests, `mipsec bench ha`).
class MemoryBindingStore final : public BindingStore {
public:
    core::Result<StoredState> load() override;
    core::Result<void> write(std::span<const StoreChange> changes) override;
    std::size_t writes() const noexcept { return writes_; }
    std::size_t binding_count() const noexcept { return bindings_.size(); }

private:
    std::unordered_map<std::uint32_t, StoredBinding> bindings_;
    std::unordered_map<std::uint32_t, ReplayState> replay_;
    std::size_t writes_ = 0;
};

/// A SQLite database in WAL mode (see the header comment).
class SqliteBindingStore final : public BindingStore {
public:
    struct Options {
        std::string path;
        bool full_sync = false;  // fsync every commit (synchronous=FULL), not only at checkpoints
    };
    /// What open() found.
    struct Opened {
        std::unique_ptr<SqliteBindingStore> store;
        // The file existed but was not a readable state database: it was moved to
        // `moved_aside` and the store starts empty.
        bool was_corrupt = false;
        std::string moved_aside;
        std::string corruption;  // SQLite's description
    };
    /// Opens or creates `path` (mode 0600). A corrupt file is moved aside, never fatal; an
    /// error is returned only when no store can be opened at all (directory missing,
    /// permissions, disk).
    static core::Result<Opened> open(const Options& options);
    ~SqliteBindingStore() override;
    SqliteBindingStore(const SqliteBindingStore&) = delete;
    SqliteBindingStore& operator=(const SqliteBindingStore&) = delete;

    core::Result<StoredState> load() override;
    core::Result<void> write(std::span<const StoreChange> changes) override;
    /// SQLite's message for the last failure (for logs).
    std::string last_error() const;

private:
    struct Handles;
    explicit SqliteBindingStore(std::unique_ptr<Handles> h);
    std::unique_ptr<Handles> h_;
};

/// The error category of SqliteBindingStore's codes (SQLite primary result codes).
const std::error_category& sqlite_category() noexcept;

}  // namespace mipsec::mip
