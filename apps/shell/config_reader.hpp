// SPDX-License-Identifier: MIT
#pragma once
// ConfigReader: typed access to one JSON object of the configuration that knows its JSON
// pointer, so every error says where (/nodes/0/pipeline/1/remote), what is wrong and what is
// expected. Unknown keys are errors too: a typo must not silently fall back to a default.
//
// Secrets (PSKs, keys) may sit inline ("psk") or in a file beside the config ("psk_file"),
// so the main config can be world-readable and kept in version control. A relative file
// path is resolved against $CREDENTIALS_DIRECTORY (systemd LoadCredential=) when that is set,
// else against the config file's directory. A secret file must be a regular file no one but
// its owner can read or write (like ssh's private keys); one trailing newline is trimmed.
#include <cstdint>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/address.hpp"
#include "crypto/secret_bytes.hpp"

namespace mipsec::shell {

class ConfigError : public std::runtime_error {
public:
    ConfigError(std::string pointer, std::string problem, std::string expected);
    const std::string& pointer() const noexcept { return pointer_; }

private:
    std::string pointer_;
};

/// Where relative `*_file` secret paths are resolved.
struct SecretSources {
    std::string credentials_directory;  // first choice when set ($CREDENTIALS_DIRECTORY)
    std::string config_directory;       // else this; empty: the working directory
    /// $CREDENTIALS_DIRECTORY and the directory of `config_path`.
    static SecretSources from_environment(const std::string& config_path);
    std::string resolve(const std::string& path) const;
};

/// What reading secrets found; shared by a reader and the readers it makes.
struct SecretReads {
    SecretSources sources;
    std::vector<std::string> inline_pointers;  // "/pipeline/0/psk": secrets written in the config itself
    struct FromFile {
        std::string object_pointer;  // the object holding "<field>_file"
        std::string field;           // "psk", "key"
        std::string value;
    };
    std::vector<FromFile> from_files;
};

/// A secret file's content without one trailing newline. Throws std::runtime_error saying
/// what is wrong: missing, not a regular file, open to group or others ("chmod 600 it"), empty.
std::string read_secret_file(const std::string& path);

class ConfigReader {
public:
    /// `node` (and `secrets`, if given) must outlive the reader. Throws ConfigError if `node` is
    /// not an object. Without `secrets`, `*_file` paths resolve as SecretSources::from_environment("").
    ConfigReader(const nlohmann::json& node, std::string pointer, SecretReads* secrets = nullptr);

    const std::string& pointer() const noexcept { return pointer_; }
    std::string pointer_of(std::string_view key) const;
    bool has(std::string_view key) const;
    const nlohmann::json& raw(std::string_view key) const;

    std::string string(std::string_view key) const;
    std::optional<std::string> optional_string(std::string_view key) const;
    /// An integer in [min, max].
    std::int64_t integer(std::string_view key, std::int64_t min, std::int64_t max) const;
    std::int64_t integer_or(std::string_view key, std::int64_t fallback, std::int64_t min, std::int64_t max) const;
    double number_or(std::string_view key, double fallback, double min, double max) const;
    bool boolean_or(std::string_view key, bool fallback) const;
    core::Ipv4Address address(std::string_view key) const;
    std::optional<core::Ipv4Address> optional_address(std::string_view key) const;
    core::Ipv4Prefix prefix(std::string_view key) const;
    core::Endpoint endpoint(std::string_view key) const;
    std::vector<core::Ipv4Prefix> prefix_list(std::string_view key) const;  // absent => empty
    /// One of `choices`.
    std::string choice(std::string_view key, const std::vector<std::string>& choices) const;
    std::string choice_or(std::string_view key, const std::vector<std::string>& choices, std::string fallback) const;
    /// Hex string of exactly `len` bytes (or any length in [min_len, max_len]).
    std::vector<std::uint8_t> hex_bytes(std::string_view key, std::size_t min_len, std::size_t max_len) const;
    /// A secret given as exactly one of `key` (inline) or `key`_file (a file's content). The
    /// temporary copies made on the way are zeroed; only the returned secret holds it.
    crypto::SecretBytes secret_string(std::string_view key) const;
    /// A secret in hex (formats as hex_bytes), inline or from `key`_file.
    crypto::SecretBytes secret_hex_bytes(std::string_view key, std::size_t min_len, std::size_t max_len) const;
    /// "key_file" when the secret `key` comes from a file, else "key": where to point errors.
    std::string secret_key(std::string_view key) const;
    ConfigReader object(std::string_view key) const;
    std::optional<ConfigReader> optional_object(std::string_view key) const;
    /// The elements of an array of objects.
    std::vector<ConfigReader> objects(std::string_view key) const;

    /// Refuses any key not in `allowed` (call after reading, with every key the type knows).
    void only(const std::set<std::string, std::less<>>& allowed) const;
    [[noreturn]] void fail(std::string_view key, std::string problem, std::string expected) const;

private:
    const nlohmann::json& require(std::string_view key) const;
    std::vector<std::uint8_t> parse_hex(const std::string& text, std::string_view key, std::size_t min_len, std::size_t max_len) const;

    const nlohmann::json& node_;
    std::string pointer_;
    SecretReads* secrets_ = nullptr;
};

}  // namespace mipsec::shell
