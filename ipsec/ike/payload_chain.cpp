// SPDX-License-Identifier: MIT
#include "ipsec/ike/payload_chain.hpp"

#include "ipsec/ike/errc.hpp"

namespace mipsec::ipsec::ike {

std::optional<ChainEntry> PayloadIterator::next() noexcept {
    if (error_ || next_type_ == 0) return std::nullopt;
    auto rest = bytes_.subspan(offset_);
    if (count_ >= limit_) {
        error_ = Errc::TooManyPayloads;
        return std::nullopt;
    }
    if (rest.size() < GenericPayloadView::header_len) {
        error_ = Errc::Truncated;
        return std::nullopt;
    }
    std::size_t length = core::load_be16(rest.data() + 2);
    if (length < GenericPayloadView::header_len) {
        error_ = Errc::InvalidLength;
        return std::nullopt;
    }
    if (length > rest.size()) {
        error_ = Errc::PayloadPastEnd;
        return std::nullopt;
    }
    auto view = GenericPayloadView::check(rest.first(length));
    ChainEntry entry{next_type_, offset_, *view};
    next_type_ = view->next_payload();
    offset_ += length;
    ++count_;
    return entry;
}

}  // namespace mipsec::ipsec::ike
