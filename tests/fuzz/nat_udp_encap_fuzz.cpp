// SPDX-License-Identifier: MIT
// Arbitrary bytes as an inbound packet for nat.udp_encap; must never crash or misbehave.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/buffer_pool.hpp"
#include "core/detached_stage_context.hpp"
#include "nat/udp_encap_stage.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static mipsec::core::BufferPool pool(4, 70000);
    mipsec::core::DetachedStageContext ctx(pool);
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
