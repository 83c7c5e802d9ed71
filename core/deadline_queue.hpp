// SPDX-License-Identifier: MIT
#pragma once
// DeadlineQueue: the next deadline of each of many owners (IKE sessions, tunnels, clients),
// so a core's poll() touches only the owners whose deadline has passed and reports the
// earliest remaining one without walking them all (STYLE.md: "poll returns the next deadline
// and touches only what expired").
//
// A binary min-heap of (deadline, key) plus a key -> heap position index, the same layout as
// the home agent's BindingTable timers: each key has at most one entry, so rescheduling and
// cancelling are O(log n) and the heap holds no stale entries; next() is O(1).
// Keys are small values (owner ids, addresses). Not thread-safe.
#include <cstddef>
#include <functional>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/time.hpp"

namespace mipsec::core {

template <class Key, class Hash = std::hash<Key>>
class DeadlineQueue {
public:
    std::size_t size() const noexcept { return heap_.size(); }
    bool empty() const noexcept { return heap_.empty(); }
    bool contains(const Key& key) const { return position_.count(key) != 0; }
    void reserve(std::size_t n) {
        heap_.reserve(n);
        position_.reserve(n);
    }

    /// Sets `key`'s deadline, replacing any earlier one; nullopt cancels it.
    void schedule(const Key& key, std::optional<TimePoint> at) {
        if (!at) {
            cancel(key);
            return;
        }
        auto it = position_.find(key);
        if (it == position_.end()) {
            position_.emplace(key, heap_.size());
            heap_.push_back({*at, key});
            sift_up(heap_.size() - 1);
            return;
        }
        const std::size_t pos = it->second;
        heap_[pos].at = *at;
        fix(pos);
    }
    /// Removes `key`'s deadline; false if it had none.
    bool cancel(const Key& key) {
        auto it = position_.find(key);
        if (it == position_.end()) return false;
        const std::size_t pos = it->second;
        position_.erase(it);
        if (pos + 1 == heap_.size()) {
            heap_.pop_back();
            return true;
        }
        heap_[pos] = std::move(heap_.back());
        heap_.pop_back();
        position_[heap_[pos].key] = pos;
        fix(pos);
        return true;
    }

    /// The earliest deadline, or nullopt when there is none.
    std::optional<TimePoint> next() const noexcept {
        if (heap_.empty()) return std::nullopt;
        return heap_.front().at;
    }
    std::optional<TimePoint> deadline_of(const Key& key) const {
        auto it = position_.find(key);
        if (it == position_.end()) return std::nullopt;
        return heap_[it->second].at;
    }
    /// Removes and returns the key with the earliest deadline if that deadline is <= now.
    /// The caller runs the key's timers and schedules it again if it still has one.
    std::optional<Key> pop_due(TimePoint now) {
        if (heap_.empty() || heap_.front().at > now) return std::nullopt;
        Key key = heap_.front().key;
        cancel(key);
        return key;
    }

private:
    struct Entry {
        TimePoint at;
        Key key;
    };
    void place(std::size_t pos, Entry e) {
        position_[e.key] = pos;
        heap_[pos] = std::move(e);
    }
    void sift_up(std::size_t pos) {
        Entry e = std::move(heap_[pos]);
        while (pos > 0) {
            const std::size_t parent = (pos - 1) / 2;
            if (!(e.at < heap_[parent].at)) break;
            place(pos, std::move(heap_[parent]));
            pos = parent;
        }
        place(pos, std::move(e));
    }
    void sift_down(std::size_t pos) {
        Entry e = std::move(heap_[pos]);
        const std::size_t n = heap_.size();
        for (;;) {
            std::size_t child = 2 * pos + 1;
            if (child >= n) break;
            if (child + 1 < n && heap_[child + 1].at < heap_[child].at) ++child;
            if (!(heap_[child].at < e.at)) break;
            place(pos, std::move(heap_[child]));
            pos = child;
        }
        place(pos, std::move(e));
    }
    void fix(std::size_t pos) {
        if (pos > 0 && heap_[pos].at < heap_[(pos - 1) / 2].at) {
            sift_up(pos);
        } else {
            sift_down(pos);
        }
    }

    std::vector<Entry> heap_;
    std::unordered_map<Key, std::size_t, Hash> position_;
};

}  // namespace mipsec::core
