"""Shared fixtures: the imram binary beside the module, the project's test data, and a small
trained world (a synthetic dataset, a text-IMRAM K=3 model with a global head, an index), made
once per session with the command line, against whose output the module is checked."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def binary():
    return os.environ.get("IMRAM_BINARY", str(ROOT / "build" / "imram"))


def run_imram(*args, check=True):
    """Runs the imram binary; returns its stdout. Fails the test with stderr when it fails."""
    done = subprocess.run([binary(), *map(str, args)], capture_output=True, text=True)
    if check and done.returncode != 0:
        pytest.fail(f"imram {' '.join(map(str, args))} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def run_json(*args):
    return json.loads(run_imram(*args).strip().splitlines()[-1])


def assert_same_numbers(ours, theirs, tolerance=1e-9, where="$"):
    """The same keys and values, numbers within `tolerance` (JSON prints them rounded)."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and sorted(ours) == sorted(theirs), f"{where}: {sorted(ours)} != {sorted(theirs)}"
        for key in theirs:
            assert_same_numbers(ours[key], theirs[key], tolerance, f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same_numbers(a, b, tolerance, f"{where}[{i}]")
    elif isinstance(theirs, (int, float)) and not isinstance(theirs, bool):
        assert ours == pytest.approx(theirs, abs=tolerance), where
    else:
        assert ours == theirs, where


@pytest.fixture(scope="session")
def testdata():
    return Path(os.environ.get("IMRAM_TESTDATA", ROOT / "tests" / "testdata"))


class World:
    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.model = root / "run" / "best"
        self.headed = root / "headed"
        self.index = root / "index"

    def test_images(self):
        return np.load(self.data / "test_ims.npy")

    def test_captions(self):
        return (self.data / "test_caps.txt").read_text().splitlines()


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    w = World(root)
    run_imram("synth", "--out", w.data, "--seed", 5, "--train", 20, "--dev", 10, "--test", 10,
              "--regions", 8, "--feat-dim", 16)
    run_imram("train", "--quiet", "--data", w.data, "--out", root / "run", "--mode", "text", "--steps", 3,
              "--embed-size", 16, "--word-dim", 8, "--batch-size", 10, "--epochs", 1, "--seed", 3)
    run_imram("train-global", "--quiet", "--model", w.model, "--data", w.data, "--out", w.headed,
              "--epochs", 1, "--val-split", "none")
    run_imram("index", "build", "--quiet", "--model", w.headed, "--data", w.data, "--split", "test",
              "--out", w.index)
    return w
