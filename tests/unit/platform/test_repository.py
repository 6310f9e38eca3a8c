"""The repository stands alone: a clone has no ../shared, so nothing may point there."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_no_tracked_file_refers_to_a_path_outside_the_repository() -> None:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    outside = "../" + "shared/"  # spelled apart so that this file does not name it
    offenders = [name for name in files
                 if (ROOT / name).is_file() and outside in (ROOT / name).read_text(errors="ignore")]
    assert offenders == []
    assert (ROOT / "docs" / "CONTRACT.md").is_file() and (ROOT / "docs" / "DOMAIN.md").is_file()
