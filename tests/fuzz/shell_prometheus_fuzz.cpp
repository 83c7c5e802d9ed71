// SPDX-License-Identifier: MIT
// `mipsec status --format prometheus`: the control socket's JSON answer rendered as Prometheus
// text. Whatever JSON arrives (another version's answer, a truncated or hostile one), the
// renderer must not throw or crash, and every line it writes must be one a scraper parses:
// "# HELP"/"# TYPE" comments or `name{label="value",...} value`, label values escaped
// (exposition format 0.0.4), so a string from the status can never start a line of its own.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "apps/shell/prometheus_text.hpp"

namespace {

void require(bool ok) {
    if (!ok) std::abort();
}

bool name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; }
bool name_char(char c) { return name_start(c) || (c >= '0' && c <= '9'); }

// Index just past a metric or label name at `at`, or npos.
std::size_t skip_name(std::string_view line, std::size_t at) {
    if (at >= line.size() || !name_start(line[at])) return std::string_view::npos;
    while (at < line.size() && name_char(line[at])) ++at;
    return at;
}

void check_sample(std::string_view line) {
    std::size_t at = skip_name(line, 0);
    require(at != std::string_view::npos);
    if (at < line.size() && line[at] == '{') {
        ++at;
        while (at < line.size() && line[at] != '}') {
            at = skip_name(line, at);
            require(at != std::string_view::npos && at + 1 < line.size() && line[at] == '=' && line[at + 1] == '"');
            at += 2;
            while (at < line.size() && line[at] != '"') {
                if (line[at] == '\\') {
                    require(at + 1 < line.size() && (line[at + 1] == '\\' || line[at + 1] == '"' || line[at + 1] == 'n'));
                    ++at;
                }
                ++at;
            }
            require(at < line.size());  // the closing quote
            ++at;
            if (at < line.size() && line[at] == ',') ++at;
        }
        require(at < line.size());  // the closing brace
        ++at;
    }
    require(at < line.size() && line[at] == ' ');
    const std::string_view value = line.substr(at + 1);
    require(!value.empty() && value.find(' ') == std::string_view::npos);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto status = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
    if (status.is_discarded()) return 0;
    const std::string text = mipsec::shell::prometheus_text(status);
    if (text.empty()) return 0;
    require(text.back() == '\n');
    std::string_view rest(text);
    while (!rest.empty()) {
        const auto end = rest.find('\n');
        const std::string_view line = rest.substr(0, end);
        rest.remove_prefix(end + 1);
        if (line.starts_with("#")) {
            require(line.starts_with("# HELP ") || line.starts_with("# TYPE "));
            continue;
        }
        check_sample(line);
    }
    return 0;
}
