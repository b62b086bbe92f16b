"""plot_sampling.py end to end, offline, on a tiny saved checkpoint: it
writes a valid PNG of the size it draws, and refuses bad settings."""

import subprocess
import sys

import pytest

from tests.lessons import REPO
from tests.twins import save_checkpoint
from tools.offline import offline_env

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(*args):
    return subprocess.run(
        [sys.executable, str(REPO / "plot_sampling.py"), *args],
        capture_output=True, text=True, timeout=600, cwd=REPO, env=offline_env(),
    )


def test_writes_a_png(tmp_path):
    (tmp_path / "tiny").mkdir()
    model = save_checkpoint(tmp_path / "tiny")
    out = tmp_path / "cuts.png"
    result = run("--model", str(model), "--output", str(out))
    assert result.returncode == 0, result.stderr
    data = out.read_bytes()
    assert data[:8] == PNG_SIGNATURE, "not a PNG file"
    assert data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1210, 935), (width, height)  # 11 x 8.5 inches at 110 dpi


@pytest.mark.parametrize(
    "args, message",
    [
        (["--top-p", "0"], "--top-p must be in (0, 1]"),
        (["--top-k", "0"], "--top-k must be at least 1"),
        (["--temperatures", "1", "0", "2"], "--temperatures must be numbers > 0"),
        (["--model", "/nonexistent/gpt2"], "no such folder: /nonexistent/gpt2"),
    ],
)
def test_bad_settings_are_refused(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
