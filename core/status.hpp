// SPDX-License-Identifier: MIT
#pragma once
// StatusSink: how a stage or control plane describes its state (SAs, bindings, timers) for
// `mipsec status` without core depending on a JSON library. The shell implements it.
#include <cstdint>
#include <string_view>

namespace mipsec::core {

class StatusSink {
public:
    virtual void field(std::string_view key, std::uint64_t value) = 0;
    virtual void field(std::string_view key, std::int64_t value) = 0;
    virtual void field(std::string_view key, std::string_view value) = 0;
    virtual void field(std::string_view key, bool value) = 0;
    void field(std::string_view key, const char* value) { field(key, std::string_view(value)); }
    void field(std::string_view key, int value) { field(key, static_cast<std::int64_t>(value)); }
    void field(std::string_view key, unsigned value) { field(key, static_cast<std::uint64_t>(value)); }
    /// Nested object under key; close with end().
    virtual void begin_object(std::string_view key) = 0;
    /// An array under key whose elements are objects opened with begin_element().
    virtual void begin_array(std::string_view key) = 0;
    virtual void begin_element() = 0;
    virtual void end() = 0;

protected:
    ~StatusSink() = default;
};

}  // namespace mipsec::core
