# SPDX-License-Identifier: MIT
"""mipsec lab: declarative scenarios (JSON) built in network namespaces with netns_lab, run
along a timeline, reported as JSON and Markdown. Entry point: `mipsec lab`, which runs
`python3 -m lab` from this directory's parent."""
import os
import sys

# netns_lab and roaming_lab live beside this package (tools/ in the source tree, the lab's
# parent directory when installed).
_here = os.path.dirname(os.path.abspath(__file__))
if os.path.dirname(_here) not in sys.path:
    sys.path.insert(0, os.path.dirname(_here))

SCENARIO_DIR = os.path.join(_here, "scenarios")
