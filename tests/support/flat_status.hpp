// SPDX-License-Identifier: MIT
#pragma once
#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.hpp"

namespace mipsec::test {

/// A StatusSink that flattens a report into "path.key" -> text, arrays as "name[i].key".
class FlatStatus final : public core::StatusSink {
public:
    void field(std::string_view key, std::uint64_t value) override { put(key, std::to_string(value)); }
    void field(std::string_view key, std::int64_t value) override { put(key, std::to_string(value)); }
    void field(std::string_view key, std::string_view value) override { put(key, std::string(value)); }
    void field(std::string_view key, bool value) override { put(key, value ? "true" : "false"); }
    using core::StatusSink::field;
    void begin_object(std::string_view key) override { path_.push_back({std::string(key), -1}); }
    void begin_array(std::string_view key) override { path_.push_back({std::string(key), -1}); }
    void begin_element() override {
        auto& top = path_.back();
        ++top.index;
        path_.push_back({"", -2});
    }
    void end() override {
        // An element closes itself; its array closes on the following end().
        path_.pop_back();
    }
    std::map<std::string, std::string> values;
    std::size_t count(std::string_view prefix) const {
        std::size_t n = 0;
        for (const auto& [k, v] : values)
            if (k.starts_with(prefix)) ++n;
        return n;
    }

private:
    struct Level {
        std::string name;
        int index;
    };
    void put(std::string_view key, std::string value) {
        std::string k;
        for (const auto& l : path_) {
            if (l.index == -2) continue;
            k += l.name;
            if (l.index >= 0) {
                k += '[';
                k += std::to_string(l.index);
                k += ']';
            }
            k += ".";
        }
        k += key;
        values[k] = std::move(value);
    }
    std::vector<Level> path_;
};

}  // namespace mipsec::test
