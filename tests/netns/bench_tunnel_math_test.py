# SPDX-License-Identifier: MIT
"""The arithmetic of tools/bench_tunnel.py, without root or namespaces: the search for the
highest loss-free UDP rate, medians over repetitions, CPU cores and Gbit/s per core, the
figures read from iperf3's JSON, the ratios and the issue's targets."""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import bench_tunnel as b  # noqa: E402


def link(capacity, sender_max=float("inf"), fail_above=None):
    """A fake path: loses 5 % above `capacity`, the sender offers at most `sender_max`,
    iperf3 fails (None) above `fail_above`. Records what it was asked."""
    asked = []

    def probe(rate):
        asked.append(rate)
        if fail_above is not None and rate > fail_above:
            return None, 0.0
        offered = min(rate, sender_max)
        return (0.0 if offered <= capacity else 5.0), offered
    return probe, asked


class Search(unittest.TestCase):
    def test_bisects_to_the_capacity_with_exactly_the_steps_given(self):
        probe, asked = link(1.3)
        best, trace = b.highest_lossless_rate(probe, 1.0, 8, 0.1)
        self.assertEqual(len(asked), 8)
        self.assertEqual(len(trace), 8)
        self.assertLessEqual(best, 1.3)
        self.assertGreater(best, 1.3 - 2.0 / 2 ** 6)  # the bracket [1, 2] halves 7 times
        self.assertEqual(asked[:3], [1.0, 2.0, 1.5])

    def test_doubles_while_loss_free(self):
        probe, asked = link(100.0)
        best, _ = b.highest_lossless_rate(probe, 0.5, 4, 0.1)
        self.assertEqual(asked, [0.5, 1.0, 2.0, 4.0])
        self.assertEqual(best, 4.0)

    def test_no_loss_free_rate_gives_zero(self):
        probe, asked = link(0.01)
        best, _ = b.highest_lossless_rate(probe, 1.0, 5, 0.1)
        self.assertEqual(best, 0.0)
        self.assertEqual(asked, [1.0, 0.5, 0.25, 0.125, 0.0625])

    def test_loss_threshold_is_inclusive(self):
        best, _ = b.highest_lossless_rate(lambda r: (0.1, r), 1.0, 1, 0.1)
        self.assertEqual(best, 1.0)
        best, _ = b.highest_lossless_rate(lambda r: (0.11, r), 1.0, 1, 0.1)
        self.assertEqual(best, 0.0)

    def test_a_failed_probe_counts_as_lossy(self):
        probe, asked = link(100.0, fail_above=3.0)
        best, trace = b.highest_lossless_rate(probe, 1.0, 4, 0.1)
        self.assertEqual(asked, [1.0, 2.0, 4.0, 3.0])
        self.assertEqual(best, 3.0)
        self.assertIsNone(trace[2][1])

    def test_a_sender_at_its_limit_caps_the_search_and_reports_what_it_offered(self):
        probe, asked = link(100.0, sender_max=1.5)
        best, _ = b.highest_lossless_rate(probe, 1.0, 4, 0.1)
        self.assertEqual(best, 1.5)  # never the 2.0 it was asked for
        self.assertEqual(asked, [1.0, 2.0, 1.5, 1.75])


class Maths(unittest.TestCase):
    def test_median_ignores_missing(self):
        self.assertEqual(b.median([3, None, 1, 2]), 2)
        self.assertEqual(b.median([1, 4]), 2.5)
        self.assertIsNone(b.median([None]))

    def test_ratio(self):
        self.assertAlmostEqual(b.ratio(3.0, 1.5), 2.0)
        self.assertIsNone(b.ratio(1.0, 0))
        self.assertIsNone(b.ratio(None, 1.0))

    def test_per_core_uses_the_busier_process(self):
        self.assertAlmostEqual(b.cpu_cores(2.5, 5.0), 0.5)
        self.assertIsNone(b.cpu_cores(1.0, 0))
        # 1 Gbit/s with the busier process at 4 of 5 s: 0.8 cores -> 1.25 Gbit/s per core
        self.assertAlmostEqual(b.per_core(1.0, {"cli": 4.0, "gw": 2.0}, 5.0), 1.25)
        self.assertIsNone(b.per_core(1.0, {}, 5.0))

    def test_iperf_figures(self):
        tcp = {"end": {"sum_sent": {"bits_per_second": 2.1e9, "retransmits": 7}, "sum_received": {"bits_per_second": 2.0e9}}}
        self.assertEqual(b.iperf_figures(tcp, False), {"gbps": 2.0, "retransmits": 7})
        udp = {"end": {"sum_sent": {"bits_per_second": 1e9}, "sum_received": {"bits_per_second": 0.9e9, "lost_percent": 10.0}}}
        self.assertEqual(b.iperf_figures(udp, True), {"gbps": 0.9, "offered_gbps": 1.0, "loss_percent": 10.0})
        self.assertIn("error", b.iperf_figures({"error": "unable to connect"}, False))
        self.assertIn("error", b.iperf_figures({"end": {}}, True))

    def test_tun_queue_drops_sums_every_tun_interfaces_tx_dropped(self):
        ip_json = ('[{"ifname": "vpn0", "stats64": {"rx": {"dropped": 9}, "tx": {"packets": 10, "dropped": 27715}}},'
                   ' {"ifname": "xha0", "stats64": {"tx": {"dropped": 3}}}, {"ifname": "mip0"}]')
        self.assertEqual(b.tun_queue_drops(ip_json), 27718)
        self.assertEqual(b.tun_queue_drops(""), 0)  # no TUN interface: ip prints nothing
        self.assertEqual(b.tun_queue_drops("not json"), 0)

    def test_summary_medians_and_failures(self):
        reps = [{"gbps": 1.0, "cpu_s": {"cli": 1.0}, "cores": 0.2, "gbps_per_core": 5.0, "retransmits": 3, "drops": 0},
                {"gbps": 3.0, "cpu_s": {"cli": 3.0}, "cores": 0.6, "gbps_per_core": 5.0, "retransmits": 9, "drops": 2},
                {"gbps": 2.0, "cpu_s": {"cli": 2.0}, "cores": 0.4, "gbps_per_core": 5.0, "retransmits": 5, "drops": 1},
                {"error": "timed out"}]
        s = b.summarise({"mipsec": {"tcp1_up": reps}})["mipsec"]["tcp1_up"]
        self.assertEqual((s["gbps"], s["cpu_s"], s["cores"], s["retransmits"], s["drops"]), (2.0, {"cli": 2.0}, 0.4, 5, 1))
        self.assertEqual((s["reps"], s["failed"]), (3, 1))

    def test_summary_of_a_udp_search_that_found_no_loss_free_rate(self):
        # run_variant gives such a search {"gbps": 0.0} and nothing else.
        reps = [{"gbps": 0.33, "cpu_s": {"cli": 0.4, "gw": 0.7}, "cores": 0.2, "gbps_per_core": 1.5, "drops": 0},
                {"gbps": 0.0}]
        s = b.summarise({"mipsec": {"udp_up": reps}})["mipsec"]["udp_up"]
        self.assertEqual((s["gbps"], s["cpu_s"], s["reps"]), (0.165, {"cli": 0.4, "gw": 0.7}, 2))

    def test_ratios_and_targets(self):
        def fig(gbps, pc):
            return {"gbps": gbps, "gbps_per_core": pc}
        summary = {"mipsec": {"tcp1_up": fig(2.0, 2.0), "tcp1_down": fig(2.0, 1.0)},
                   "wireguard": {"tcp1_up": fig(0.5, 0.4), "tcp1_down": fig(0.5, 0.5)},
                   "strongswan": {"tcp1_up": fig(0.4, 0.3)},
                   "fullstack": {"tcp1_up": fig(1.2, 1.0), "tcp1_down": fig(0.5, 0.5)},
                   "mipsec2": {"tcp1_up": fig(3.0, 1.0)}}
        rs = {(what, test): (tp, pc) for what, test, tp, pc in b.ratios(summary)}
        self.assertEqual(rs[("mipsec VPN / wireguard-go", "tcp1_up")], (4.0, 5.0))
        self.assertEqual(rs[("RFC 5265 stack / mipsec VPN", "tcp1_down")], (0.25, 0.5))
        self.assertEqual(rs[("mipsec VPN / strongSwan", "tcp1_down")], (None, None))
        self.assertEqual(rs[("mipsec 2 workers / 1 worker", "tcp1_up")], (1.5, 0.5))
        met = [m for _, m in b.targets(summary)]
        # up: 2.0 >= 1.44 yes; 2.0 >= 5 x 0.4 yes; 1.2 >= 1.0 yes. down: 1.0 >= 1.8 no; 1.0 >= 2.5 no; 0.5 >= 1.0 no.
        self.assertEqual(met, [True, True, True, False, False, False])
        self.assertEqual([m for _, m in b.targets({})], [None, None])
        # The stack with UDP tunnels is judged beside the default one, each against the VPN.
        summary["fullstack-udp"] = {"tcp1_up": fig(1.5, 1.0)}
        rs = {(what, test): (tp, pc) for what, test, tp, pc in b.ratios(summary)}
        self.assertEqual(rs[("RFC 5265 UDP tunnels / VPN", "tcp1_up")], (0.75, 0.5))
        udp = [(text, m) for text, m in b.targets(summary) if "UDP tunnels" in text]
        self.assertEqual(udp, [("RFC 5265 stack, UDP tunnels, TCP x1 up: 0.75 x the VPN's throughput >= 0.5", True)])


    def test_table_names_skipped_and_stopped_variants(self):
        summary = b.summarise({"mipsec": {"tcp1_up": [{"gbps": 1.5, "cpu_s": {"cli": 1.0, "gw": 2.0}, "cores": 0.4,
                                                       "gbps_per_core": 3.75, "retransmits": 0, "drops": 0, "tun_drops": 12}]}})
        text = b.table(summary, {"mipsec": "tunnel did not come up in repetition 2", "wireguard": "wg not installed"})
        self.assertIn("mipsec VPN           stopped: tunnel did not come up in repetition 2", text)
        self.assertIn("mipsec VPN           TCP x1 up           1.50    0.40     3.75", text)
        self.assertIn("wireguard-go         skipped: wg not installed", text)
        self.assertIn("      0      0     12  cli 1.0 gw 2.0", text)


if __name__ == "__main__":
    unittest.main()
