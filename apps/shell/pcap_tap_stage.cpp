// SPDX-License-Identifier: MIT
#include "apps/shell/pcap_tap_stage.hpp"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "apps/shell/stage_factory.hpp"

namespace mipsec::shell {

namespace {
constexpr std::uint32_t linktype_raw = 101;
constexpr std::uint32_t snaplen = 65535;

void put32(std::uint8_t* p, std::uint32_t v) { std::memcpy(p, &v, 4); }  // pcap uses host order
void put16(std::uint8_t* p, std::uint16_t v) { std::memcpy(p, &v, 2); }
}  // namespace

PcapTapStage::PcapTapStage(const std::string& path) : path_(path), file_(std::fopen(path.c_str(), "wb")) {
    if (!file_) throw std::runtime_error("cannot open pcap file " + path + ": " + std::strerror(errno));
    std::uint8_t header[24];
    put32(header, 0xa1b2c3d4);
    put16(header + 4, 2);
    put16(header + 6, 4);
    put32(header + 8, 0);
    put32(header + 12, 0);
    put32(header + 16, snaplen);
    put32(header + 20, linktype_raw);
    if (std::fwrite(header, sizeof header, 1, file_.get()) != 1 || std::fflush(file_.get()) != 0)
        throw std::runtime_error("cannot write pcap file " + path + ": " + std::strerror(errno));
}

void PcapTapStage::write(const core::PacketBuf& packet) {
    auto now = std::chrono::system_clock::now().time_since_epoch();
    auto usec = std::chrono::duration_cast<std::chrono::microseconds>(now).count();
    std::uint8_t record[16];
    auto len = static_cast<std::uint32_t>(packet.size());
    put32(record, static_cast<std::uint32_t>(usec / 1000000));
    put32(record + 4, static_cast<std::uint32_t>(usec % 1000000));
    put32(record + 8, std::min(len, snaplen));
    put32(record + 12, len);
    // Flushed per record: a tap is a debugging aid and must be complete even after a crash.
    if (std::fwrite(record, sizeof record, 1, file_.get()) != 1 ||
        std::fwrite(packet.data(), 1, std::min(len, snaplen), file_.get()) != std::min(len, snaplen) ||
        std::fflush(file_.get()) != 0) {
        ++write_errors_;
        return;
    }
    ++records_;
}

core::Verdict PcapTapStage::encapsulate(core::PacketBuf& packet, core::StageContext&) {
    write(packet);
    return core::Verdict::not_mine();
}

core::Verdict PcapTapStage::decapsulate(core::PacketBuf& packet, core::StageContext&) {
    write(packet);
    return core::Verdict::not_mine();
}

void PcapTapStage::report(core::StatusSink& out) const {
    out.field("file", path_);
    out.field("records", records_);
    out.field("write_errors", write_errors_);
}

namespace {
std::unique_ptr<core::Stage> build_pcap(const ConfigReader& c, const StageBuildContext& ctx) {
    c.only({"type", "file"});
    auto file = c.string("file");
    if (file.empty()) c.fail("file", "is empty", "a file path");
    if (ctx.dry_run) return nullptr;
    try {
        return std::make_unique<PcapTapStage>(file);
    } catch (const std::runtime_error& e) {
        c.fail("file", e.what(), "a writable path");
    }
}
}  // namespace

void add_tap_stage_types(std::vector<StageType>& out) {
    out.push_back({"tap.pcap", "writes the packets crossing this point to a pcap file", build_pcap});
}

}  // namespace mipsec::shell
