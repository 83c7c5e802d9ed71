// SPDX-License-Identifier: MIT
// JSON -> tap.impair config (tap.pcap registers itself beside its file-writing stage).
#include <limits>

#include "apps/shell/stage_factory.hpp"
#include "core/impair_stage.hpp"

namespace mipsec::shell {

namespace {
constexpr const char* probability_expected = "a probability from 0 to 1";

double probability(const ConfigReader& c, std::string_view key, std::optional<double> fallback) {
    if (!c.has(key)) {
        if (fallback) return *fallback;
        c.fail(key, "is missing", probability_expected);
    }
    const auto& v = c.raw(key);
    if (!v.is_number()) c.fail(key, "is " + v.dump(), probability_expected);
    const double p = v.get<double>();
    if (!(p >= 0.0 && p <= 1.0)) c.fail(key, "is " + v.dump() + ", out of range", probability_expected);
    return p;
}

core::ImpairStage::Direction direction(const ConfigReader& c) {
    c.only({"loss", "burst", "duplicate", "reorder", "reorder_max_ms", "delay_ms", "jitter_ms", "corrupt", "queue"});
    core::ImpairStage::Direction d;
    d.loss = probability(c, "loss", 0.0);
    if (auto b = c.optional_object("burst")) {
        b->only({"p_good_bad", "p_bad_good", "loss_bad"});
        d.burst = core::ImpairStage::Burst{
            .p_good_bad = probability(*b, "p_good_bad", std::nullopt),
            .p_bad_good = probability(*b, "p_bad_good", std::nullopt),
            .loss_bad = probability(*b, "loss_bad", 1.0),
        };
    }
    d.duplicate = probability(c, "duplicate", 0.0);
    d.reorder = probability(c, "reorder", 0.0);
    d.corrupt = probability(c, "corrupt", 0.0);
    d.delay = std::chrono::milliseconds(c.integer_or("delay_ms", 0, 0, 60000));
    d.jitter = std::chrono::milliseconds(c.integer_or("jitter_ms", 0, 0, 60000));
    d.reorder_max = std::chrono::milliseconds(c.integer_or("reorder_max_ms", 100, 0, 60000));
    d.queue = static_cast<std::size_t>(c.integer_or("queue", 256, 1, 65536));
    return d;
}

std::unique_ptr<core::Stage> build_impair(const ConfigReader& c, const StageBuildContext&) {
    c.only({"type", "seed", "outbound", "inbound"});
    core::ImpairStage::Config cfg;
    cfg.seed = static_cast<std::uint64_t>(c.integer_or("seed", 0, 0, std::numeric_limits<std::int64_t>::max()));
    if (auto o = c.optional_object("outbound")) cfg.outbound = direction(*o);
    if (auto i = c.optional_object("inbound")) cfg.inbound = direction(*i);
    return std::make_unique<core::ImpairStage>(cfg);
}
}  // namespace

void add_impair_stage_types(std::vector<StageType>& out) {
    out.push_back({"tap.impair", "loses, duplicates, delays, reorders and corrupts packets from a seed, per direction", build_impair});
}

}  // namespace mipsec::shell
