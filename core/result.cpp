// SPDX-License-Identifier: MIT
#include "core/result.hpp"

namespace mipsec::core {
namespace {
class CoreCategory final : public std::error_category {
public:
    const char* name() const noexcept override { return "mipsec.core"; }
    std::string message(int ev) const override {
        switch (static_cast<Errc>(ev)) {
            case Errc::Truncated: return "truncated";
            case Errc::Malformed: return "malformed";
            case Errc::InvalidArgument: return "invalid argument";
            case Errc::Unsupported: return "unsupported";
            case Errc::NoBuffer: return "no buffer available";
            case Errc::NotFound: return "not found";
            case Errc::AlreadyExists: return "already exists";
        }
        return "unknown error";
    }
};
}  // namespace

const std::error_category& core_category() noexcept {
    static const CoreCategory category;
    return category;
}
}  // namespace mipsec::core
