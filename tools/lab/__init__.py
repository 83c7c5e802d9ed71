# SPDX-License-Identifier: MIT
"""mipsec lab: one library for everything this project runs in network namespaces.
netns (namespaces, veth links, bridges, NAT boxes, processes, clean-up on every exit path),
strongswan (charon with kernel-libipsec), roaming (streams, moves) and full_stack (the RFC 5265
stack the throughput benchmark measures) are its building blocks; scenario, runner, capture and
report turn a declarative scenario (JSON) into a run along a timeline, reported as JSON and
Markdown. Entry point: `mipsec lab`, which runs this directory with Python."""
import os

_here = os.path.dirname(os.path.abspath(__file__))
SCENARIO_DIR = os.path.join(_here, "scenarios")
