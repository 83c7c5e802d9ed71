// SPDX-License-Identifier: MIT
#include "crypto/aead_contexts.hpp"

#include <algorithm>

namespace mipsec::crypto {

Aead* AeadContexts::get(const std::shared_ptr<const Aead>& key) {
    if (!key) return nullptr;
    ++tick_;
    // A worker meets one or a few keys per batch: the first entry is almost always the one.
    for (auto& e : entries_) {
        if (e.key == key) {
            e.used = tick_;
            return e.own.get();
        }
    }
    auto own = key->clone();
    if (!own) return nullptr;
    ++clones_;
    if (entries_.size() >= capacity_) {
        auto oldest = std::min_element(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) { return a.used < b.used; });
        *oldest = Entry{key, std::move(own), tick_};
        return oldest->own.get();
    }
    entries_.push_back(Entry{key, std::move(own), tick_});
    return entries_.back().own.get();
}

void AeadContexts::sweep() {
    // use_count() 1: this entry holds the only reference, and nobody can make another from it.
    std::erase_if(entries_, [](const Entry& e) { return e.key.use_count() == 1; });
}

}  // namespace mipsec::crypto
