// SPDX-License-Identifier: MIT
#include "apps/shell/config_reader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace mipsec::shell {

namespace {
std::string escape_pointer_token(std::string_view key) {
    std::string out;
    for (char c : key) {
        if (c == '~') out += "~0";
        else if (c == '/') out += "~1";
        else out += c;
    }
    return out;
}
std::string describe(const nlohmann::json& v) {
    std::string s = v.dump();
    if (s.size() > 60) s = s.substr(0, 57) + "...";
    return s;
}
}  // namespace

ConfigError::ConfigError(std::string pointer, std::string problem, std::string expected)
    : std::runtime_error((pointer.empty() ? std::string("/") : pointer) + ": " + problem +
                         (expected.empty() ? "" : "; expected " + expected)),
      pointer_(std::move(pointer)) {}

SecretSources SecretSources::from_environment(const std::string& config_path) {
    SecretSources s;
    if (const char* dir = std::getenv("CREDENTIALS_DIRECTORY"); dir != nullptr) s.credentials_directory = dir;
    if (auto slash = config_path.rfind('/'); slash != std::string::npos) s.config_directory = slash == 0 ? "/" : config_path.substr(0, slash);
    return s;
}

std::string SecretSources::resolve(const std::string& path) const {
    if (path.starts_with('/')) return path;
    const std::string& base = credentials_directory.empty() ? config_directory : credentials_directory;
    if (base.empty()) return path;
    return base.ends_with('/') ? base + path : base + "/" + path;
}

std::string read_secret_file(const std::string& path) {
    // Open first, then check the descriptor: the mode we judge is the file we read.
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer (forever, in
    // `mipsec check`); it is refused below as not a regular file. Regular files ignore it.
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) throw std::runtime_error("cannot open \"" + path + "\": " + std::strerror(errno));
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st{};
    if (::fstat(fd, &st) != 0) throw std::runtime_error("cannot stat \"" + path + "\": " + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) throw std::runtime_error("\"" + path + "\" is not a regular file");
    const unsigned mode = st.st_mode & 07777;
    if ((mode & 077) != 0) {
        char octal[8];
        std::snprintf(octal, sizeof octal, "%04o", mode);
        const char* who = (mode & S_IROTH) != 0 ? "is readable by others" : (mode & S_IRGRP) != 0 ? "is readable by its group" : "can be written by group or others";
        throw std::runtime_error("key file \"" + path + "\" " + who + " (mode " + octal + "): chmod 600 it");
    }
    // Sized once from the file so growing never leaves a copy behind; the buffer is zeroed.
    std::string content;
    content.reserve(static_cast<std::size_t>(std::min<off_t>(st.st_size, 64 * 1024)) + 1);
    char buf[4096];
    struct BufferWiper {
        char* b;
        std::size_t n;
        ~BufferWiper() { crypto::secure_wipe(std::span(reinterpret_cast<std::uint8_t*>(b), n)); }
    } buffer_wiper{buf, sizeof buf};
    for (;;) {
        auto n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw std::runtime_error("cannot read \"" + path + "\": " + std::strerror(errno));
        if (n == 0) break;
        content.append(buf, static_cast<std::size_t>(n));
        if (content.size() > 64 * 1024) throw std::runtime_error("\"" + path + "\" is larger than 64 KiB; a key file holds one key");
    }
    if (content.ends_with('\n')) content.pop_back();
    if (content.empty()) throw std::runtime_error("\"" + path + "\" is empty");
    return content;
}

ConfigReader::ConfigReader(const nlohmann::json& node, std::string pointer, SecretReads* secrets)
    : node_(node), pointer_(std::move(pointer)), secrets_(secrets) {
    if (!node_.is_object()) throw ConfigError(pointer_, "is " + describe(node_), "an object");
}

std::string ConfigReader::pointer_of(std::string_view key) const { return pointer_ + "/" + escape_pointer_token(key); }

bool ConfigReader::has(std::string_view key) const { return node_.contains(key); }

void ConfigReader::fail(std::string_view key, std::string problem, std::string expected) const {
    throw ConfigError(key.empty() ? pointer_ : pointer_of(key), std::move(problem), std::move(expected));
}

const nlohmann::json& ConfigReader::require(std::string_view key) const {
    auto it = node_.find(key);
    if (it == node_.end()) fail(key, "is missing", "");
    return *it;
}

const nlohmann::json& ConfigReader::raw(std::string_view key) const { return require(key); }

std::string ConfigReader::string(std::string_view key) const {
    const auto& v = require(key);
    if (!v.is_string()) fail(key, "is " + describe(v), "a string");
    return v.get<std::string>();
}

std::optional<std::string> ConfigReader::optional_string(std::string_view key) const {
    if (!has(key)) return std::nullopt;
    return string(key);
}

std::int64_t ConfigReader::integer(std::string_view key, std::int64_t min, std::int64_t max) const {
    const auto& v = require(key);
    if (!v.is_number_integer()) fail(key, "is " + describe(v), "an integer from " + std::to_string(min) + " to " + std::to_string(max));
    // Unsigned values above INT64_MAX are out of every range we accept.
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))
        fail(key, "is " + describe(v), "an integer from " + std::to_string(min) + " to " + std::to_string(max));
    auto n = v.get<std::int64_t>();
    if (n < min || n > max) fail(key, "is " + std::to_string(n) + ", out of range", "an integer from " + std::to_string(min) + " to " + std::to_string(max));
    return n;
}

std::int64_t ConfigReader::integer_or(std::string_view key, std::int64_t fallback, std::int64_t min, std::int64_t max) const {
    return has(key) ? integer(key, min, max) : fallback;
}

double ConfigReader::number_or(std::string_view key, double fallback, double min, double max) const {
    if (!has(key)) return fallback;
    const auto& v = require(key);
    if (!v.is_number()) fail(key, "is " + describe(v), "a number");
    double d = v.get<double>();
    if (!(d >= min && d <= max)) fail(key, "is " + describe(v) + ", out of range", "a number from " + std::to_string(min) + " to " + std::to_string(max));
    return d;
}

bool ConfigReader::boolean_or(std::string_view key, bool fallback) const {
    if (!has(key)) return fallback;
    const auto& v = require(key);
    if (!v.is_boolean()) fail(key, "is " + describe(v), "true or false");
    return v.get<bool>();
}

core::Ipv4Address ConfigReader::address(std::string_view key) const {
    auto text = string(key);
    auto a = core::Ipv4Address::parse(text);
    if (!a) fail(key, "\"" + text + "\" is not an IPv4 address", "a dotted quad like \"192.0.2.1\"");
    return *a;
}

std::optional<core::Ipv4Address> ConfigReader::optional_address(std::string_view key) const {
    if (!has(key)) return std::nullopt;
    return address(key);
}

core::Ipv4Prefix ConfigReader::prefix(std::string_view key) const {
    auto text = string(key);
    auto p = core::Ipv4Prefix::parse(text);
    if (!p) fail(key, "\"" + text + "\" is not an IPv4 prefix", "address/length like \"10.1.0.1/24\"");
    return *p;
}

core::Endpoint ConfigReader::endpoint(std::string_view key) const {
    auto text = string(key);
    auto e = core::Endpoint::parse(text);
    if (!e) fail(key, "\"" + text + "\" is not an endpoint", "address:port like \"192.0.2.1:4500\"");
    return *e;
}

std::vector<core::Ipv4Prefix> ConfigReader::prefix_list(std::string_view key) const {
    std::vector<core::Ipv4Prefix> out;
    if (!has(key)) return out;
    const auto& v = require(key);
    if (!v.is_array()) fail(key, "is " + describe(v), "an array of prefixes like [\"10.1.0.0/16\"]");
    for (std::size_t i = 0; i < v.size(); ++i) {
        auto where = pointer_of(key) + "/" + std::to_string(i);
        if (!v[i].is_string()) throw ConfigError(where, "is " + describe(v[i]), "a prefix string like \"10.1.0.0/16\"");
        auto p = core::Ipv4Prefix::parse(v[i].get<std::string>());
        if (!p) throw ConfigError(where, describe(v[i]) + " is not an IPv4 prefix", "address/length like \"10.1.0.0/16\"");
        out.push_back(*p);
    }
    return out;
}

std::string ConfigReader::choice(std::string_view key, const std::vector<std::string>& choices) const {
    auto text = string(key);
    for (const auto& c : choices)
        if (c == text) return text;
    std::string list;
    for (const auto& c : choices) list += (list.empty() ? "" : ", ") + ("\"" + c + "\"");
    fail(key, "\"" + text + "\" is not known", "one of " + list);
}

std::string ConfigReader::choice_or(std::string_view key, const std::vector<std::string>& choices, std::string fallback) const {
    return has(key) ? choice(key, choices) : fallback;
}

std::vector<std::uint8_t> ConfigReader::hex_bytes(std::string_view key, std::size_t min_len, std::size_t max_len) const {
    return parse_hex(string(key), key, min_len, max_len);
}

std::vector<std::uint8_t> ConfigReader::parse_hex(const std::string& text, std::string_view key, std::size_t min_len, std::size_t max_len) const {
    std::string expected = min_len == max_len ? "hex for exactly " + std::to_string(min_len) + " bytes (" + std::to_string(2 * min_len) + " hex digits)"
                                              : "hex for " + std::to_string(min_len) + " to " + std::to_string(max_len) + " bytes";
    std::vector<std::uint8_t> out;
    out.reserve(text.size() / 2 + 1);  // never regrown: a secret's bytes are not left in a freed block
    int high = -1;
    for (char c : text) {
        if (c == ':' || c == ' ') continue;
        if (!std::isxdigit(static_cast<unsigned char>(c))) fail(key, "contains a character that is not a hex digit", expected);
        int v = std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : (std::tolower(static_cast<unsigned char>(c)) - 'a' + 10);
        if (high < 0) {
            high = v;
        } else {
            out.push_back(static_cast<std::uint8_t>(high << 4 | v));
            high = -1;
        }
    }
    // The value is secret: report lengths only, never the digits.
    if (high >= 0) fail(key, "has an odd number of hex digits", expected);
    if (out.size() < min_len || out.size() > max_len) fail(key, "holds " + std::to_string(out.size()) + " bytes", expected);
    return out;
}

std::string ConfigReader::secret_key(std::string_view key) const {
    const std::string file_key = std::string(key) + "_file";
    return has(file_key) ? file_key : std::string(key);
}

namespace {
void wipe_string(std::string& text) {
    crypto::secure_wipe(std::span(reinterpret_cast<std::uint8_t*>(text.data()), text.size()));
}
crypto::SecretBytes secret_of(std::string& text) {
    crypto::SecretBytes out(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
    wipe_string(text);
    return out;
}
}  // namespace

crypto::SecretBytes ConfigReader::secret_string(std::string_view key) const {
    const std::string file_key = std::string(key) + "_file";
    if (has(key) && has(file_key))
        fail(file_key, "is given together with \"" + std::string(key) + "\"", "either \"" + std::string(key) + "\" (inline) or \"" + file_key + "\" (a file), not both");
    if (!has(key) && !has(file_key))
        fail(key, "is missing", "\"" + std::string(key) + "\" (inline) or \"" + file_key + "\" (a file holding it)");
    if (!has(file_key)) {
        auto value = string(key);
        if (secrets_ != nullptr) secrets_->inline_pointers.push_back(pointer_of(key));
        return secret_of(value);
    }
    auto path = string(file_key);
    if (path.empty()) fail(file_key, "is empty", "the path of a file holding the secret");
    const SecretSources fallback = SecretSources::from_environment("");
    const auto resolved = (secrets_ != nullptr ? secrets_->sources : fallback).resolve(path);
    std::string value;
    try {
        value = read_secret_file(resolved);
    } catch (const std::runtime_error& e) {
        fail(file_key, e.what(), "a file only its owner can read (chmod 600); relative paths are taken from $CREDENTIALS_DIRECTORY if set, else the config file's directory");
    }
    if (secrets_ != nullptr) secrets_->from_files.push_back({pointer_, std::string(key), value});
    return secret_of(value);
}

crypto::SecretBytes ConfigReader::secret_hex_bytes(std::string_view key, std::size_t min_len, std::size_t max_len) const {
    auto secret = secret_string(key);
    std::string text(reinterpret_cast<const char*>(secret.span().data()), secret.size());
    auto bytes = parse_hex(text, secret_key(key), min_len, max_len);  // on a ConfigError the process exits
    wipe_string(text);
    crypto::SecretBytes out(bytes);
    crypto::secure_wipe(bytes);
    return out;
}

ConfigReader ConfigReader::object(std::string_view key) const { return ConfigReader(require(key), pointer_of(key), secrets_); }

std::optional<ConfigReader> ConfigReader::optional_object(std::string_view key) const {
    if (!has(key)) return std::nullopt;
    return object(key);
}

std::vector<ConfigReader> ConfigReader::objects(std::string_view key) const {
    const auto& v = require(key);
    if (!v.is_array()) fail(key, "is " + describe(v), "an array of objects");
    std::vector<ConfigReader> out;
    for (std::size_t i = 0; i < v.size(); ++i) out.emplace_back(v[i], pointer_of(key) + "/" + std::to_string(i), secrets_);
    return out;
}

void ConfigReader::only(const std::set<std::string, std::less<>>& allowed) const {
    for (const auto& [key, value] : node_.items()) {
        if (allowed.contains(key)) continue;
        std::string list;
        for (const auto& k : allowed) list += (list.empty() ? "" : ", ") + k;
        fail(key, "is not a known setting here", "one of: " + list);
    }
}

}  // namespace mipsec::shell
