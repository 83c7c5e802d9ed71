// SPDX-License-Identifier: MIT
// Arbitrary bytes as an inbound packet for nat.udp_encap; must never crash or misbehave.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/buffer_pool.hpp"
#include "nat/udp_encap_stage.hpp"

namespace {
class Ctx final : public mipsec::core::StageContext {
public:
    explicit Ctx(mipsec::core::BufferPool& pool) : pool_(pool), log_(mipsec::core::null_logger()) {}
    mipsec::core::TimePoint now() const override { return {}; }
    mipsec::core::PacketBuf allocate() override { return pool_.acquire(64); }
    void send_control(mipsec::core::PacketBuf&&) override {}
    void deliver_inward(mipsec::core::PacketBuf&&) override {}
    void raise(mipsec::core::ControlEvent) override {}
    mipsec::core::Logger& log() override { return log_; }

private:
    mipsec::core::BufferPool& pool_;
    mipsec::core::Logger log_;
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static mipsec::core::BufferPool pool(4, 70000);
    Ctx ctx(pool);
    mipsec::nat::UdpEncapStage stage({});
    auto buf = pool.acquire(64);
    if (!buf.resize(std::min<std::size_t>(size, 65535))) return 0;
    std::memcpy(buf.data(), data, buf.size());
    auto v = stage.decapsulate(buf, ctx);
    if (v.passed()) {
        // Whatever passed must still be a packet the next stage can wrap back.
        (void)stage.encapsulate(buf, ctx);
    }
    return 0;
}
