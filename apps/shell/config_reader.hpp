// SPDX-License-Identifier: MIT
#pragma once
// ConfigReader: typed access to one JSON object of the configuration that knows its JSON
// pointer, so every error says where (/nodes/0/pipeline/1/remote), what is wrong and what is
// expected. Unknown keys are errors too: a typo must not silently fall back to a default.
#include <cstdint>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/address.hpp"

namespace mipsec::shell {

class ConfigError : public std::runtime_error {
public:
    ConfigError(std::string pointer, std::string problem, std::string expected);
    const std::string& pointer() const noexcept { return pointer_; }

private:
    std::string pointer_;
};

class ConfigReader {
public:
    /// `node` must outlive the reader. Throws ConfigError if it is not an object.
    ConfigReader(const nlohmann::json& node, std::string pointer);

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
    ConfigReader object(std::string_view key) const;
    std::optional<ConfigReader> optional_object(std::string_view key) const;
    /// The elements of an array of objects.
    std::vector<ConfigReader> objects(std::string_view key) const;

    /// Refuses any key not in `allowed` (call after reading, with every key the type knows).
    void only(const std::set<std::string, std::less<>>& allowed) const;
    [[noreturn]] void fail(std::string_view key, std::string problem, std::string expected) const;

private:
    const nlohmann::json& require(std::string_view key) const;

    const nlohmann::json& node_;
    std::string pointer_;
};

}  // namespace mipsec::shell
