"""The NAB scorer in bench/ reproduces, to 0.1, the published scores of the three detectors whose
per-point results ship with the corpus: its figures for our detector mean something only then.

Run as the user runs it (``python bench/nab.py --nab PATH``), since tests import no bench code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NAB = Path(os.environ.get("NAB_PATH", ROOT.parent / "shared" / "datasets" / "nab"))
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


@pytest.mark.skipif(not (NAB / "results" / "final_results.json").exists(), reason=f"no NAB corpus at {NAB}")
def test_the_scorer_reproduces_the_published_scores_of_windowed_gaussian_numenta_and_context_ose() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "nab.py"), "--nab", str(NAB)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    published = json.loads((NAB / "results" / "final_results.json").read_text())
    lines = result.stdout.splitlines()
    assert lines[-1] == "reproduced"
    ours = {}
    for line in lines[:-1]:
        match = re.fullmatch(r"nab-reproduce detector=(\w+) (.*)", line)
        assert match, line
        ours[match[1]] = {key: float(value.split("/")[0])
                          for key, value in (pair.split("=") for pair in match[2].split())}
    assert set(ours) == {"windowedGaussian", "numenta", "contextOSE"}
    for detector, scores in ours.items():
        assert set(scores) == set(PROFILES)
        for profile in PROFILES:
            assert abs(scores[profile] - published[detector][profile]) < 0.1, (detector, profile, scores)
