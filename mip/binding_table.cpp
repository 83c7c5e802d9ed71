// SPDX-License-Identifier: MIT
#include "mip/binding_table.hpp"

namespace mipsec::mip {

void BindingTable::reserve(std::size_t n) {
    records_.reserve(n);
    heap_.reserve(n);
    while (slots_.size() < 2 * n) grow();
}

std::size_t BindingTable::ideal(std::uint32_t key) const noexcept {
    // Fibonacci hashing: home addresses are often sequential, so spread them.
    return static_cast<std::size_t>((key * 0x9E3779B1u) >> shift_) & mask_;
}

std::size_t BindingTable::find_slot(std::uint32_t key) const noexcept {
    if (slots_.empty()) return 0;
    for (std::size_t i = ideal(key);; i = (i + 1) & mask_) {
        if (slots_[i].index == empty_slot) return slots_.size();
        if (slots_[i].key == key) return i;
    }
}

const Binding* BindingTable::find(core::Ipv4Address home) const noexcept {
    const std::size_t s = find_slot(home.value);
    return s < slots_.size() ? &records_[slots_[s].index].binding : nullptr;
}

Binding* BindingTable::find(core::Ipv4Address home) noexcept {
    const std::size_t s = find_slot(home.value);
    return s < slots_.size() ? &records_[slots_[s].index].binding : nullptr;
}

void BindingTable::grow() {
    const std::size_t capacity = slots_.empty() ? 16 : slots_.size() * 2;
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(capacity, Slot{});
    mask_ = capacity - 1;
    shift_ = 32;
    for (std::size_t c = capacity; c > 1; c >>= 1) --shift_;
    for (const Slot& s : old) {
        if (s.index == empty_slot) continue;
        std::size_t i = ideal(s.key);
        while (slots_[i].index != empty_slot) i = (i + 1) & mask_;
        slots_[i] = s;
    }
}

Binding& BindingTable::upsert(const Binding& b) {
    const std::size_t s = find_slot(b.home_address.value);
    if (s < slots_.size()) {
        const std::uint32_t index = slots_[s].index;
        records_[index].binding = b;
        fix(records_[index].heap_pos);
        return records_[index].binding;
    }
    if ((records_.size() + 1) * 2 > slots_.size()) grow();
    const auto index = static_cast<std::uint32_t>(records_.size());
    records_.push_back({b, 0});
    std::size_t i = ideal(b.home_address.value);
    while (slots_[i].index != empty_slot) i = (i + 1) & mask_;
    slots_[i] = {b.home_address.value, index};
    heap_.push_back(0);
    heap_set(heap_.size() - 1, index);
    sift_up(heap_.size() - 1);
    return records_[index].binding;
}

bool BindingTable::reschedule(core::Ipv4Address home, core::TimePoint expires) noexcept {
    const std::size_t s = find_slot(home.value);
    if (s >= slots_.size()) return false;
    Record& r = records_[slots_[s].index];
    r.binding.expires = expires;
    fix(r.heap_pos);
    return true;
}

bool BindingTable::erase(core::Ipv4Address home) noexcept {
    const std::size_t s = find_slot(home.value);
    if (s >= slots_.size()) return false;
    remove_at(slots_[s].index);
    return true;
}

void BindingTable::erase_slot(std::size_t hole) noexcept {
    // Backward-shift deletion keeps every probe chain unbroken without tombstones.
    slots_[hole].index = empty_slot;
    for (std::size_t j = (hole + 1) & mask_; slots_[j].index != empty_slot; j = (j + 1) & mask_) {
        const std::size_t k = ideal(slots_[j].key);
        // Move j into the hole unless its ideal slot lies cyclically in (hole, j].
        const bool stays = hole <= j ? (hole < k && k <= j) : (hole < k || k <= j);
        if (stays) continue;
        slots_[hole] = slots_[j];
        slots_[j].index = empty_slot;
        hole = j;
    }
}

void BindingTable::remove_at(std::uint32_t index) noexcept {
    erase_slot(find_slot(records_[index].binding.home_address.value));

    // Heap: move the last heap entry into this record's position.
    const std::size_t pos = records_[index].heap_pos;
    const std::uint32_t last_heap = heap_.back();
    heap_.pop_back();
    if (pos < heap_.size()) {
        heap_set(pos, last_heap);
        fix(pos);
    }

    // Records: swap-remove, then point the moved record's slot and heap entry at its new index.
    const auto last = static_cast<std::uint32_t>(records_.size() - 1);
    if (index != last) {
        records_[index] = records_[last];
        const std::size_t s = find_slot(records_[index].binding.home_address.value);
        slots_[s].index = index;
        heap_[records_[index].heap_pos] = index;
    }
    records_.pop_back();
}

void BindingTable::sift_up(std::size_t pos) noexcept {
    const std::uint32_t index = heap_[pos];
    while (pos > 0) {
        const std::size_t parent = (pos - 1) / 2;
        if (!before(index, heap_[parent])) break;
        heap_set(pos, heap_[parent]);
        pos = parent;
    }
    heap_set(pos, index);
}

void BindingTable::sift_down(std::size_t pos) noexcept {
    const std::uint32_t index = heap_[pos];
    const std::size_t n = heap_.size();
    for (;;) {
        std::size_t child = 2 * pos + 1;
        if (child >= n) break;
        if (child + 1 < n && before(heap_[child + 1], heap_[child])) ++child;
        if (!before(heap_[child], index)) break;
        heap_set(pos, heap_[child]);
        pos = child;
    }
    heap_set(pos, index);
}

void BindingTable::fix(std::size_t pos) noexcept {
    if (pos > 0 && before(heap_[pos], heap_[(pos - 1) / 2])) {
        sift_up(pos);
    } else {
        sift_down(pos);
    }
}

std::optional<core::TimePoint> BindingTable::next_expiry() const noexcept {
    if (heap_.empty()) return std::nullopt;
    const core::TimePoint t = records_[heap_[0]].binding.expires;
    if (t == core::TimePoint::max()) return std::nullopt;
    return t;
}

std::size_t BindingTable::memory_bytes() const noexcept {
    return records_.capacity() * sizeof(Record) + slots_.capacity() * sizeof(Slot) +
           heap_.capacity() * sizeof(std::uint32_t) + sizeof(*this);
}

}  // namespace mipsec::mip
