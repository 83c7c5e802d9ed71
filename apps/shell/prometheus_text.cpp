// SPDX-License-Identifier: MIT
#include "apps/shell/prometheus_text.hpp"

#include <cinttypes>
#include <cstdio>
#include <map>
#include <set>
#include <utility>
#include <vector>

namespace mipsec::shell {

namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

// HELP text escapes backslash and line feed (but not quotes).
std::string help_escape(std::string_view text) {
    std::string out;
    for (char c : text) {
        if (c == '\\') out += "\\\\";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

// Families keep their first-seen order; a family's samples are written together, as the
// format requires.
class Exposition {
public:
    void add(const std::string& name, const char* type, const std::string& help, const Labels& labels, const nlohmann::json& value) {
        std::string number;
        if (value.is_boolean()) number = value.get<bool>() ? "1" : "0";
        else if (value.is_number_unsigned()) number = std::to_string(value.get<std::uint64_t>());
        else if (value.is_number_integer()) number = std::to_string(value.get<std::int64_t>());
        else if (value.is_number_float()) number = value.dump();
        else return;
        auto [it, inserted] = index_.try_emplace(name, families_.size());
        if (inserted) families_.push_back({name, type, help, {}});
        auto& family = families_[it->second];
        std::string line = name;
        if (!labels.empty()) {
            line += '{';
            for (std::size_t i = 0; i < labels.size(); ++i) {
                if (i != 0) line += ',';
                line += labels[i].first + "=\"" + prometheus_label_escape(labels[i].second) + "\"";
            }
            line += '}';
        }
        family.samples.push_back(line + " " + number);
    }
    std::string text() const {
        std::string out;
        for (const auto& f : families_) {
            out += "# HELP " + f.name + " " + help_escape(f.help) + "\n";
            out += "# TYPE " + f.name + " " + f.type + "\n";
            for (const auto& s : f.samples) out += s + "\n";
        }
        return out;
    }

private:
    struct Family {
        std::string name, type, help;
        std::vector<std::string> samples;
    };
    std::vector<Family> families_;
    std::map<std::string, std::size_t> index_;
};

// Metric and label names: [a-zA-Z_][a-zA-Z0-9_]*, runs of anything else become one '_'.
std::string sanitize(std::string_view text) {
    std::string out;
    for (char c : text) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
        if (ok) out += c;
        else if (!out.empty() && out.back() != '_') out += '_';
    }
    while (!out.empty() && out.back() == '_') out.pop_back();
    if (out.empty() || (out[0] >= '0' && out[0] <= '9')) out.insert(0, "_");
    return out;
}

// A label name is unique in a sample: a state field named like an outer label ("type")
// gets a "field_" prefix instead of a second value.
void add_label(Labels& labels, std::string name, std::string value) {
    auto taken = [&](const std::string& n) {
        for (const auto& l : labels)
            if (l.first == n) return true;
        return false;
    };
    while (taken(name)) name = "field_" + name;
    labels.emplace_back(std::move(name), std::move(value));
}

Labels with(Labels labels, std::string name, std::string value) {
    labels.emplace_back(std::move(name), std::move(value));
    return labels;
}

const nlohmann::json* find(const nlohmann::json& j, const char* key) {
    if (!j.is_object()) return nullptr;
    auto it = j.find(key);
    return it == j.end() ? nullptr : &*it;
}

void counter(Exposition& e, const std::string& name, const std::string& help, const Labels& labels, const nlohmann::json& obj, const char* key) {
    if (const auto* v = find(obj, key)) e.add(name, "counter", help, labels, *v);
}
void gauge(Exposition& e, const std::string& name, const std::string& help, const Labels& labels, const nlohmann::json& obj, const char* key) {
    if (const auto* v = find(obj, key)) e.add(name, "gauge", help, labels, *v);
}

void failures(Exposition& e, const std::string& name, const std::string& help, const Labels& labels, const nlohmann::json& obj) {
    const auto* f = find(obj, "tx_failures");
    if (f == nullptr || !f->is_object()) return;
    for (const auto& [reason, count] : f->items()) e.add(name, "counter", help, with(labels, "reason", reason), count);
}

// --- A stage's own state: names from the field path, units and counter-ness from the key.

// Fields that count events outside a "counters" object.
const std::set<std::string, std::less<>> counter_fields = {
    "packets", "bytes", "packets_in", "packets_out", "bytes_in", "bytes_out", "drops", "auth_failures", "replay_drops",
    "dummies_sent", "outbound_fallbacks", "ike_received", "ike_sent", "keepalives_received", "sessions_started", "sa_installs",
    "ike_reauthentications", "ike_dropped_malformed", "ike_dropped_unknown_sa", "ike_dropped_half_open", "child_sas_refused"};
// Numbers that identify an element rather than measure it.
const std::set<std::string, std::less<>> identifying_numbers = {"spi", "spi_in", "spi_out", "session"};
// Objects whose numbers are all event counters.
const std::set<std::string, std::less<>> counter_objects = {"counters", "ike_counters"};

// "lifetime_left_s" -> "lifetime_left_seconds"; "bytes_in" -> "in_bytes"; "bytes" stays.
std::string with_unit(std::string key) {
    if (key.size() > 2 && key.ends_with("_s")) return key.substr(0, key.size() - 2) + "_seconds";
    for (const char* unit : {"bytes", "packets"}) {
        const std::string prefix = std::string(unit) + "_";
        if (key.starts_with(prefix)) return key.substr(prefix.size()) + "_" + unit;
    }
    return key;
}

struct StateWalk {
    Exposition& e;
    std::string type;  // "ipsec.esp_tunnel"

    // An object inside the state (an SA, a binding, a client): its strings and identifying
    // numbers label its samples and those of everything nested in it (a gateway client's
    // CHILD_SAs carry the client's remote address). At the top, strings go on `_info`.
    void walk(const nlohmann::json& obj, const std::string& prefix, Labels labels, bool counters, bool top) {
        Labels info = labels;
        bool any_info = false;
        for (const auto& [key, value] : obj.items()) {
            if (value.is_string()) {
                add_label(top ? info : labels, sanitize(key), value.get<std::string>());
                any_info = any_info || top;
            } else if (value.is_number_unsigned() && identifying_numbers.contains(key)) {
                char text[24];
                std::snprintf(text, sizeof text, key.starts_with("spi") ? "0x%08" PRIx64 : "%" PRIu64, value.get<std::uint64_t>());
                add_label(labels, sanitize(key), text);
            }
        }
        for (const auto& [key, value] : obj.items()) {
            const std::string path = prefix + "_" + sanitize(key);
            if (value.is_object()) {
                // A "counters" object adds no word to its fields' names, only counter-ness.
                const bool counting = counter_objects.contains(key);
                walk(value, counting ? prefix : path, labels, counters || counting, false);
            } else if (value.is_array()) {
                for (const auto& element : value)
                    if (element.is_object()) walk(element, path, labels, counters, false);
            } else if ((value.is_number() && !identifying_numbers.contains(key)) || value.is_boolean()) {
                sample(key, value, path, labels, counters);
            }
        }
        if (any_info) e.add(prefix + "_info", "gauge", "Settings and state of the " + type + " stage, as labels", info, 1);
    }

    void sample(const std::string& key, const nlohmann::json& value, const std::string& path, const Labels& labels, bool in_counters) {
        const bool is_counter = !value.is_boolean() && (in_counters || counter_fields.contains(key));
        const std::string base = path.substr(0, path.size() - sanitize(key).size()) + sanitize(with_unit(key));
        if (is_counter) {
            e.add(base + "_total", "counter", "Count of " + key + " (" + type + " stage state)", labels, value);
        } else {
            // A gauge must not end in _total ("clients_total" is how many clients there are now).
            std::string name = base.ends_with("_total") ? base.substr(0, base.size() - 6) : base;
            e.add(name, "gauge", "Current " + key + " (" + type + " stage state)", labels, value);
        }
    }
};

void node_metrics(Exposition& e, const nlohmann::json& n) {
    const auto* name = find(n, "name");
    if (name == nullptr || !name->is_string()) return;
    const Labels node{{"node", name->get<std::string>()}};
    gauge(e, "mipsec_node_uptime_seconds", "Seconds since the node started", node, n, "uptime_s");

    for (const char* kind : {"tun", "link"}) {
        const auto* d = find(n, kind);
        if (d == nullptr || !d->is_object()) continue;
        const auto* dev = find(*d, "name");
        const Labels l = with(node, "device", dev != nullptr && dev->is_string() ? dev->get<std::string>() : kind);
        const std::string p = std::string("mipsec_") + kind + "_";
        gauge(e, p + "mtu_bytes", "MTU of the inner device", l, *d, "mtu");
        counter(e, p + "rx_packets_total", "Packets read from the inner device", l, *d, "rx_packets");
        counter(e, p + "tx_packets_total", "Packets written to the inner device", l, *d, "tx_packets");
        counter(e, p + "rx_errors_total", "Read errors on the inner device", l, *d, "rx_errors");
        counter(e, p + "tx_errors_total", "Write errors on the inner device", l, *d, "tx_errors");
        counter(e, p + "left_to_kernel_packets_total", "Packets on the served link that the pipeline left to the kernel", l, *d, "left_to_kernel");
        failures(e, p + "tx_failures_total", "Writes to the inner device that failed, by reason", l, *d);
        // The MTU guard (RFC 1191 answers for the stack active now, RFC 5265 §5.2 overheads).
        gauge(e, p + "active_mtu_bytes", "Largest inner packet the active stack carries without fragmenting", l, *d, "active_mtu");
        gauge(e, p + "stack_overhead_bytes", "Bytes the active stack adds to each inner packet", l, *d, "stack_overhead");
        if (const auto* tb = find(*d, "too_big"); tb != nullptr && tb->is_object()) {
            counter(e, p + "too_big_dropped_total", "DF packets too big for the active stack, dropped", l, *tb, "dropped");
            counter(e, p + "too_big_icmp_sent_total", "ICMP fragmentation-needed answers written into the device", l, *tb, "icmp_frag_needed_sent");
            counter(e, p + "too_big_icmp_rate_limited_total", "Answers withheld by the rate limit", l, *tb, "icmp_rate_limited");
            counter(e, p + "too_big_not_answerable_total", "Too-big packets never answered (ICMP errors, non-first fragments)", l, *tb, "not_answerable");
            counter(e, p + "too_big_sent_for_fragmentation_total", "Too-big packets without DF, sent on to be fragmented outside", l, *tb, "sent_for_fragmentation");
        }
        if (const auto* o = find(*d, "offload"); o != nullptr && o->is_object()) {
            counter(e, p + "offload_rx_super_packets_total", "Super-packets (TSO/USO) read from the TUN device", l, *o, "rx_super_packets");
            counter(e, p + "offload_rx_segments_total", "Packets cut from the super-packets read", l, *o, "rx_segments");
            counter(e, p + "offload_tx_super_packets_total", "Super-packets of merged TCP segments written to the TUN device", l, *o, "tx_super_packets");
            counter(e, p + "offload_tx_coalesced_packets_total", "Packets merged into the super-packets written", l, *o, "tx_coalesced");
            if (const auto* drops = find(*o, "drops"); drops != nullptr && drops->is_object())
                for (const auto& [reason, count] : drops->items())
                    e.add(p + "offload_drops_total", "counter", "Super-packets read or segments to merge that were dropped, by reason", with(l, "reason", reason), count);
        }
    }

    if (const auto* t = find(n, "transport")) {
        if (const auto* socks = find(*t, "sockets"); socks != nullptr && socks->is_array()) {
            for (const auto& s : *socks) {
                std::string socket;
                if (const auto* port = find(s, "udp_port")) socket = "udp/" + port->dump();
                else if (const auto* proto = find(s, "raw_protocol")) socket = "raw/" + proto->dump();
                else continue;
                const Labels l = with(node, "socket", socket);
                counter(e, "mipsec_socket_rx_packets_total", "Outer packets received on the socket", l, s, "rx_packets");
                counter(e, "mipsec_socket_tx_packets_total", "Outer packets sent from the socket", l, s, "tx_packets");
                counter(e, "mipsec_socket_rx_errors_total", "Receive errors on the socket", l, s, "rx_errors");
                counter(e, "mipsec_socket_tx_errors_total", "Send errors on the socket", l, s, "tx_errors");
                counter(e, "mipsec_socket_rx_overflows_total", "Datagrams the kernel dropped for a full receive buffer", l, s, "rx_overflows");
                gauge(e, "mipsec_socket_receive_buffer_bytes", "Receive buffer the kernel granted", l, s, "receive_buffer");
                gauge(e, "mipsec_socket_send_buffer_bytes", "Send buffer the kernel granted", l, s, "send_buffer");
                failures(e, "mipsec_socket_tx_failures_total", "Sends that failed, by reason", l, s);
                gauge(e, "mipsec_socket_gso_enabled", "1 while sends use UDP segmentation offload (UDP_SEGMENT)", l, s, "gso");
                counter(e, "mipsec_socket_gso_sends_total", "Sends that carried several datagrams as one (UDP_SEGMENT)", l, s, "gso_sends");
                counter(e, "mipsec_socket_gso_segments_total", "Datagrams carried by those sends", l, s, "gso_segments");
                counter(e, "mipsec_socket_gso_fallbacks_total", "Segmented sends the kernel refused, resent one datagram each", l, s, "gso_fallbacks");
                gauge(e, "mipsec_socket_gro_enabled", "1 while receives take coalesced datagrams (UDP_GRO)", l, s, "gro");
                counter(e, "mipsec_socket_gro_receives_total", "Coalesced datagrams received (UDP_GRO)", l, s, "gro_receives");
                counter(e, "mipsec_socket_gro_segments_total", "Datagrams split out of coalesced receives", l, s, "gro_segments");
            }
        }
        counter(e, "mipsec_transport_unroutable_packets_total", "Outer packets no socket could send", node, *t, "unroutable");
        counter(e, "mipsec_transport_inbound_unclaimed_packets_total", "Outer packets no stage claimed", node, *t, "inbound_unclaimed");
        counter(e, "mipsec_transport_outbound_unclaimed_packets_total", "Inner packets no stage claimed", node, *t, "outbound_unclaimed");
        if (const auto* pmtu = find(*t, "path_mtu"); pmtu != nullptr && pmtu->is_array())
            for (const auto& p : *pmtu)
                if (const auto* dst = find(p, "destination"); dst != nullptr && dst->is_string())
                    gauge(e, "mipsec_path_mtu_bytes", "Path MTU learned towards a destination", with(node, "destination", dst->get<std::string>()), p, "mtu");
    }

    if (const auto* p = find(n, "pool")) {
        gauge(e, "mipsec_pool_buffers", "Packet buffers in the pool", node, *p, "buffers");
        gauge(e, "mipsec_pool_buffers_available", "Packet buffers free now", node, *p, "available");
        counter(e, "mipsec_pool_exhausted_total", "Times a buffer was wanted and none was free", node, *p, "exhausted");
        counter(e, "mipsec_pool_backpressure_pauses_total", "Times reading stopped for want of buffers", node, *p, "backpressure_pauses");
    }
    // Per data-path thread (pool.workers): whether a second thread pulls its weight.
    if (const auto* workers = find(n, "workers"); workers != nullptr && workers->is_array()) {
        for (const auto& w : *workers) {
            const auto* thread = find(w, "thread");
            if (thread == nullptr || !thread->is_string()) continue;
            const Labels l = with(node, "thread", thread->get<std::string>());
            counter(e, "mipsec_worker_runs_total", "Times the data-path thread ran its loop", l, w, "runs");
            counter(e, "mipsec_worker_batches_total", "Batches the data-path thread passed through the stages", l, w, "batches");
            counter(e, "mipsec_worker_packets_total", "Packets the data-path thread passed through the stages", l, w, "packets");
            counter(e, "mipsec_worker_backpressure_pauses_total", "Times the thread stopped reading for want of buffers", l, w, "backpressure_pauses");
            if (const auto* wp = find(w, "pool"); wp != nullptr && wp->is_object()) {
                gauge(e, "mipsec_worker_pool_buffers_available", "Packet buffers free now in the thread's own pool", l, *wp, "available");
                counter(e, "mipsec_worker_pool_exhausted_total", "Times the thread wanted a buffer and its pool had none", l, *wp, "exhausted");
            }
        }
    }

    const auto* pipeline = find(n, "pipeline");
    if (pipeline == nullptr || !pipeline->is_array()) return;
    for (std::size_t i = 0; i < pipeline->size(); ++i) {
        const auto& s = (*pipeline)[i];
        const auto* type = find(s, "type");
        if (type == nullptr || !type->is_string()) continue;
        const Labels l = with(with(node, "stage", std::to_string(i)), "type", type->get<std::string>());
        counter(e, "mipsec_stage_encapsulated_packets_total", "Packets the stage passed outward", l, s, "encapsulated");
        counter(e, "mipsec_stage_decapsulated_packets_total", "Packets the stage passed inward", l, s, "decapsulated");
        counter(e, "mipsec_stage_not_mine_packets_total", "Packets the stage left to the next one as not its own", l, s, "not_mine");
        counter(e, "mipsec_stage_consumed_packets_total", "Control packets the stage took", l, s, "consumed");
        counter(e, "mipsec_stage_control_sent_packets_total", "Control packets the stage sent", l, s, "control_sent");
        counter(e, "mipsec_stage_dropped_packets_total", "Packets the stage dropped", l, s, "dropped");
        if (const auto* drops = find(s, "drops"); drops != nullptr && drops->is_object())
            for (const auto& [reason, count] : drops->items())
                e.add("mipsec_stage_drops_total", "counter", "Packets the stage dropped, by reason", with(l, "reason", reason), count);
        if (const auto* state = find(s, "state"); state != nullptr && state->is_object())
            StateWalk{e, type->get<std::string>()}.walk(*state, "mipsec_" + sanitize(type->get<std::string>()), l, false, true);
    }
}

// The HTTP metrics listener's own counters, so a refused or failed scrape is not silent.
void metrics_listener_metrics(Exposition& e, const nlohmann::json& m) {
    if (const auto* requests = find(m, "requests"); requests != nullptr && requests->is_object())
        for (const auto& [code, count] : requests->items())
            e.add("mipsec_metrics_requests_total", "counter", "HTTP requests the metrics listener answered, by response code", {{"code", code}}, count);
    counter(e, "mipsec_metrics_connections_accepted_total", "Connections the metrics listener accepted", {}, m, "connections_accepted");
    counter(e, "mipsec_metrics_connections_rejected_total", "Connections closed on accept because max_connections were open", {}, m, "connections_rejected");
    counter(e, "mipsec_metrics_connections_timed_out_total", "Connections closed because no whole request arrived in time", {}, m, "connections_timed_out");
    counter(e, "mipsec_metrics_connections_aborted_total", "Connections the client closed before sending a whole request", {}, m, "connections_aborted");
    gauge(e, "mipsec_metrics_connections_open", "Connections to the metrics listener open now", {}, m, "connections_open");
    counter(e, "mipsec_metrics_write_errors_total", "Responses the metrics listener could not write", {}, m, "write_errors");
    counter(e, "mipsec_metrics_accept_errors_total", "Failed accepts on the metrics listener (out of descriptors or memory)", {}, m, "accept_errors");
}

}  // namespace

std::string prometheus_label_escape(std::string_view value) {
    std::string out;
    for (char c : value) {
        if (c == '\\') out += "\\\\";
        else if (c == '"') out += "\\\"";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

std::string prometheus_text(const nlohmann::json& status) {
    Exposition e;
    if (const auto* nodes = find(status, "nodes"); nodes != nullptr && nodes->is_array())
        for (const auto& n : *nodes) node_metrics(e, n);
    if (const auto* m = find(status, "metrics_listener"); m != nullptr && m->is_object()) metrics_listener_metrics(e, *m);
    return e.text();
}

}  // namespace mipsec::shell
