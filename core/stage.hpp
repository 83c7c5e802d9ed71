// SPDX-License-Identifier: MIT
#pragma once
// Stage: one layer of the stack (IP-in-IP, ESP, UDP encapsulation, ...). Every stage takes a
// whole IPv4 packet and returns a whole IPv4 packet, in place in the same PacketBuf; that one
// invariant lets stages compose in any order the configuration names.
//   encapsulate: one layer outward (inner packet -> packet carrying it)
//   decapsulate: one layer inward
//   on_event:    control events raised by other stages or the shell, after the current packet
//   poll:        timers; returns the next deadline (time is passed in through the context)
// Stages never read a clock, touch a socket or throw on the packet path.
#include <cstddef>
#include <optional>
#include <string_view>

#include "core/aead_offload.hpp"
#include "core/drop_reason.hpp"
#include "core/events.hpp"
#include "core/logger.hpp"
#include "core/packet_buf.hpp"
#include "core/status.hpp"
#include "core/time.hpp"

namespace mipsec::core {

/// What a stage did with a packet. Pass: the packet belongs to this layer, which wrapped or
/// unwrapped it (or deliberately let it through, as a mobile node at home does). NotMine: the
/// packet is not this layer's business and is handed on untouched; a packet that every stage
/// calls NotMine was never the node's (the shell leaves it to the kernel), which no stage has to
/// signal by leaving bytes unchanged. Consumed: control traffic taken. Drop: counted with a reason.
enum class Action : std::uint8_t { Pass, NotMine, Consumed, Drop };

struct Verdict {
    Action action = Action::Pass;
    DropReason reason = DropReason::None;
    static constexpr Verdict pass() noexcept { return {Action::Pass}; }
    static constexpr Verdict not_mine() noexcept { return {Action::NotMine}; }
    static constexpr Verdict consumed() noexcept { return {Action::Consumed}; }  // control traffic taken
    static constexpr Verdict drop(DropReason r) noexcept { return {Action::Drop, r}; }
    constexpr bool passed() const noexcept { return action == Action::Pass; }
    constexpr bool unclaimed() const noexcept { return action == Action::NotMine; }
    /// The packet is still in flight: a layer took it (Pass) or it went by untouched (NotMine).
    constexpr bool continues() const noexcept { return action == Action::Pass || action == Action::NotMine; }
};

/// What a stage may ask of the pipeline around it. The pipeline gives each stage its own
/// context, which knows the stage's position: control packets a stage sends are wrapped by
/// the stages below it only, and packets it delivers inward are unwrapped by those above.
class StageContext {
public:
    virtual TimePoint now() const = 0;
    /// A buffer with headroom for every stage below this one; invalid if the pool is empty.
    virtual PacketBuf allocate() = 0;
    /// Sends a whole IPv4 packet outward from this stage's position (IKE, registrations,
    /// keepalives, ICMP replies).
    virtual void send_control(PacketBuf&& packet) = 0;
    /// Hands a whole IPv4 packet inward from this stage's position, toward the TUN device.
    virtual void deliver_inward(PacketBuf&& packet) = 0;
    /// Queues an event for every stage and the shell, delivered after the current packet.
    virtual void raise(ControlEvent event) = 0;
    virtual Logger& log() = 0;
    /// This stage's index in its pipeline (0 = innermost), which RaisedEvent::origin uses: a
    /// stage tells events from the layers below it (origin > position()) from those above.
    virtual std::size_t position() const { return 0; }
    /// True while this stage may leave an AEAD seal in PacketMeta::aead_seal for the
    /// data-path thread (core/aead_offload.hpp): a user packet on its way out, the node running
    /// several workers, and only stages that leave payloads alone below. Never for control
    /// packets: those leave from the pipeline as they are.
    virtual bool may_defer_seal() const { return false; }
    /// Where this stage publishes inbound AEAD keys for the data-path threads to open ESP
    /// with before the stages run; null where nothing opens early (one worker, or a stage
    /// below reads or changes payloads, so what arrives is not this layer's ESP as sent).
    virtual AeadOffload* aead_offload() { return nullptr; }

protected:
    ~StageContext() = default;
};

class Stage {
public:
    virtual ~Stage() = default;
    /// The config type name, "module.thing".
    virtual std::string_view name() const noexcept = 0;
    /// Bytes this stage may push in front of a packet.
    virtual std::size_t headroom() const noexcept = 0;
    /// Bytes this stage may put behind a packet.
    virtual std::size_t tailroom() const noexcept { return 0; }
    /// Bytes this stage adds, in the state it is in now, to the user packets it wraps, with
    /// padding at its worst (RFC 5265 §5.2): 0 while it passes them unchanged (dormant, at
    /// home, delivering through a foreign agent). The node checks outbound packets against the
    /// outer MTU minus the sum (core::MtuGuard), recomputed after every event, so a stage
    /// whose overhead changes raises an event when it does (SaInstalled, RegistrationChanged,
    /// AccessModeChanged). By default all it may add.
    virtual std::size_t overhead() const noexcept { return headroom() + tailroom(); }
    /// The least overhead() of any state in which this stage's configuration carries user
    /// data: the TUN MTU is sized for the lightest stack, so that no access mode is limited by
    /// a heavier one (RFC 5265 §5.2). By default all it may add.
    virtual std::size_t least_overhead() const noexcept { return headroom() + tailroom(); }
    /// True when this stage may make every stage below it pass user data unchanged (RFC 5265
    /// detection raising AccessModeChanged Inside): those stages then add nothing to the
    /// lightest stack.
    virtual bool may_idle_layers_below() const noexcept { return false; }
    /// True when this stage only puts headers in front of what it wraps and takes them off what
    /// it unwraps, never reading or changing the bytes behind them (no checksum over them, no
    /// copy, no holding the packet back): a layer above may then leave its AEAD work to the
    /// data-path thread (core/aead_offload.hpp). By default false, the safe answer.
    virtual bool leaves_payload_alone() const noexcept { return false; }
    virtual Verdict encapsulate(PacketBuf& packet, StageContext& ctx) = 0;
    virtual Verdict decapsulate(PacketBuf& packet, StageContext& ctx) = 0;
    virtual void on_event(const RaisedEvent&, StageContext&) {}
    virtual std::optional<TimePoint> poll(StageContext&) { return std::nullopt; }
    /// The node is stopping: tell peers what ends with it (IKE Delete payloads), through
    /// ctx.send_control(), still delivered before the sockets close.
    virtual void shutdown(StageContext&) {}
    /// Describes stage-specific state (SAs, bindings, registration) for `mipsec status`.
    virtual void report(StatusSink&) const {}
};

}  // namespace mipsec::core
