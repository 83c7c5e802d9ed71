// SPDX-License-Identifier: MIT
#pragma once
// ExchangeTable: the exchanges of one IKE SA by Message ID, and what keeps them reliable and
// replay-safe over UDP (RFC 2408 §3.1, RFC 2409 §5.5 and Appendix B, as strongSwan runs them):
//   * each exchange keeps the last message received and the last sent, so a repeated request
//     is answered with the identical reply, never a recomputed one;
//   * Message IDs seen are remembered (the last `max_seen_mids`) so a replayed one is refused,
//     and fresh_message_id() never reuses one;
//   * finished exchanges stay (the last `max_finished`) to answer retransmissions, then go;
//   * retransmission: the identical bytes after timeout x base^n, `retransmits` times, then
//     the exchange gives up (tick()).
// The task of an exchange (Quick Mode, Mode Config) rides along; the table never looks at it.
// Not thread-safe. References to exchanges stay valid while others are opened (a deque).
#include <cstddef>
#include <cstdint>
#include <deque>
#include <variant>
#include <vector>

#include "core/time.hpp"
#include "crypto/random.hpp"
#include "ipsec/ike/message.hpp"
#include "ipsec/ike/mode_config.hpp"
#include "ipsec/ike/quick_mode.hpp"
#include "ipsec/ike/session_config.hpp"

namespace mipsec::ipsec::ike {

class ExchangeTable {
public:
    static constexpr std::size_t max_seen_mids = 512;
    static constexpr std::size_t max_finished = 8;

    struct Exchange {
        std::uint32_t message_id = 0;
        std::variant<std::monostate, QuickMode, ModeConfig> task;
        bool we_initiated = false;
        Bytes last_received;
        Bytes last_sent;
        bool last_sent_is_reply = false;
        bool awaiting = false;  // a message from the peer is due; retransmit last_sent
        unsigned retransmits = 0;
        core::TimePoint next_retransmit{};
        bool finished = false;
    };

    Exchange* find(std::uint32_t mid) noexcept;
    Exchange& open(std::uint32_t mid);
    /// Forgets the oldest finished exchanges beyond `max_finished` (Main Mode's, M-ID 0, stays);
    /// their M-IDs, whose IV chains can go too. The M-IDs stay seen.
    std::vector<std::uint32_t> prune();

    /// A Message ID not zero, not seen, not in use; remembered as seen.
    std::uint32_t fresh_message_id(crypto::Random& random);
    bool seen(std::uint32_t mid) const noexcept;
    void remember(std::uint32_t mid);

    /// Our message of `ex` went out at `now`: wait for the answer.
    static void arm(Exchange& ex, core::TimePoint now, const RetransmitPolicy& policy) noexcept;
    enum class Timer : std::uint8_t { Wait, Resend, GiveUp };
    /// An exchange awaiting an answer at `now`: resend last_sent now (counted, next deadline
    /// set), give up (the exchange is finished), or wait until next_retransmit.
    static Timer tick(Exchange& ex, core::TimePoint now, const RetransmitPolicy& policy) noexcept;

    std::deque<Exchange>& all() noexcept { return exchanges_; }
    const std::deque<Exchange>& all() const noexcept { return exchanges_; }

private:
    std::deque<Exchange> exchanges_;
    std::deque<std::uint32_t> seen_mids_;
};

}  // namespace mipsec::ipsec::ike
