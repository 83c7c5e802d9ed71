// SPDX-License-Identifier: MIT
#include "core/aead_offload.hpp"

#include <mutex>

namespace mipsec::core {

void AeadOffload::publish(const std::shared_ptr<const EspOpenKey>& key) {
    std::unique_lock lock(mutex_);
    keys_[key->spi] = key;
    // Removed SAs leave expired entries; clearing them every so often keeps the table at about
    // the number of live SAs without a scan per publish (a gateway publishes one per client SA).
    if (++publishes_ % 64 == 0) std::erase_if(keys_, [](const auto& entry) { return entry.second.expired(); });
}

std::shared_ptr<const EspOpenKey> AeadOffload::find(std::uint32_t spi) const {
    std::shared_lock lock(mutex_);
    auto it = keys_.find(spi);
    return it == keys_.end() ? nullptr : it->second.lock();
}

std::size_t AeadOffload::live() const {
    std::shared_lock lock(mutex_);
    std::size_t n = 0;
    for (const auto& [spi, key] : keys_) n += key.expired() ? 0 : 1;
    return n;
}

}  // namespace mipsec::core
