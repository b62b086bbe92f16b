"""Build a folder of Mojo source into a package (.mojopkg) once per content.

MAX 25.7 can take the source folder itself in Graph(custom_extensions=...),
but it then runs the Mojo compiler again for every graph it builds. The
course builds the package once with the `mojo` command that came with MAX
(pip's mojo-compiler wheel), names it after a hash of the sources, and
hands the package to every graph: an unchanged kernel is never rebuilt,
and an edited one is a new package.

A compile error comes back as MojoBuildError, whose message is Mojo's own
"file.mojo:line:col: error: ..." lines: the learner's file, line and message.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BUILD_DIR = Path(tempfile.gettempdir()) / ".gpt2-course-mojo"


class MojoBuildError(RuntimeError):
    """The Mojo compiler refused the sources: the message holds its error lines."""


def mojo_command() -> str:
    """The `mojo` that came with MAX, next to this Python, else the one on PATH."""
    here = Path(sys.executable).parent / "mojo"
    found = str(here) if here.exists() else shutil.which("mojo")
    if found is None:
        raise MojoBuildError("the `mojo` command is not installed: `pip install -r requirements.txt` brings it with max")
    return found


def placeholders(folder: Path) -> dict[Path, list[int]]:
    """The skeleton's open Mojo TODOs: the lines that hold only `pass`, by file (none in finished code)."""
    found = {}
    for path in sorted(Path(folder).rglob("*.mojo")):
        lines = [n for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip() == "pass"]
        if lines:
            found[path] = lines
    return found


def source_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.mojo")):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def error_lines(output: str) -> str:
    """Mojo's error lines and the source lines it quotes, without its notes on the standard library."""
    lines = output.strip().splitlines()
    errors = [i for i, line in enumerate(lines) if ": error:" in line]
    if not errors:
        return output.strip()[-2000:]
    kept = []
    for i in errors[:5]:
        kept.extend(lines[i : i + 3])  # the error, the source line, the caret under it
    return "\n".join(kept)


def build_package(folder: Path | str) -> Path:
    """The .mojopkg of folder (a Mojo package: it has an __init__.mojo), built if need be."""
    folder = Path(folder).resolve()
    if not (folder / "__init__.mojo").exists():
        raise MojoBuildError(f"{folder} is not a Mojo package: it has no __init__.mojo")
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    package = BUILD_DIR / f"{folder.name}-{source_hash(folder)}.mojopkg"
    if package.exists():
        return package
    partial = package.with_name(f"{package.stem}.{os.getpid()}.partial.mojopkg")
    done = subprocess.run([mojo_command(), "package", str(folder), "-o", str(partial)],
                          capture_output=True, text=True)
    if done.returncode != 0 or not partial.exists():
        partial.unlink(missing_ok=True)
        raise MojoBuildError(f"Mojo could not build {folder.name}:\n{error_lines(done.stdout + done.stderr)}")
    partial.replace(package)  # another process building the same sources writes the same bytes
    return package
