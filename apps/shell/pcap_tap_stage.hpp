// SPDX-License-Identifier: MIT
#pragma once
#include <cstdio>
#include <memory>
#include <string>

#include "core/stage.hpp"

namespace mipsec::shell {

/// Writes every packet crossing its place in the pipeline, both directions, to a pcap file
/// (LINKTYPE_RAW: each record is an IPv4 packet), so any boundary between two stages can be
/// inspected with tshark. Adds no header; passes everything. Lives in the shell because it
/// does file I/O and reads the wall clock for record timestamps.
/// Config: {"type": "tap.pcap", "file": "/tmp/inner.pcap"}
class PcapTapStage final : public core::Stage {
public:
    /// Opens (truncates) the file and writes the pcap header; throws std::runtime_error.
    explicit PcapTapStage(const std::string& path);
    std::string_view name() const noexcept override { return "tap.pcap"; }
    std::size_t headroom() const noexcept override { return 0; }
    core::Verdict encapsulate(core::PacketBuf& packet, core::StageContext& ctx) override;
    core::Verdict decapsulate(core::PacketBuf& packet, core::StageContext& ctx) override;
    void report(core::StatusSink& out) const override;

private:
    void write(const core::PacketBuf& packet);
    struct Closer {
        void operator()(std::FILE* f) const noexcept { std::fclose(f); }
    };
    std::string path_;
    std::unique_ptr<std::FILE, Closer> file_;
    std::uint64_t records_ = 0;
    std::uint64_t write_errors_ = 0;
};

}  // namespace mipsec::shell
