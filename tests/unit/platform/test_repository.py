"""The repository stands alone: a clone has no ../shared, so nothing may point there."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
# a Markdown link's target: [text](target) or [text](target "title")
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)\s]*)?(?:\s+\"[^\"]*\")?\)")
# an absolute path into somebody's checkout or home (this machine's, or a developer's)
CHECKOUT_PATH = re.compile(r"(?:^|[^\w.~-])/(?:home|work|Users|mnt)/")


def tracked() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    return [ROOT / name for name in names if (ROOT / name).is_file()]


def test_no_tracked_file_refers_to_a_path_outside_the_repository() -> None:
    outside = "../" + "shared/"  # spelled apart so that this file does not name it
    offenders = [path.relative_to(ROOT) for path in tracked()
                 if outside in path.read_text(errors="ignore")]
    assert offenders == []
    assert (ROOT / "docs" / "CONTRACT.md").is_file() and (ROOT / "docs" / "DOMAIN.md").is_file()


def test_no_tracked_file_names_an_absolute_path_into_a_checkout_or_home() -> None:
    offenders = [f"{path.relative_to(ROOT)}:{n}" for path in tracked()
                 if path.suffix not in {".lock", ".js"}
                 for n, line in enumerate(path.read_text(errors="ignore").splitlines(), 1)
                 if CHECKOUT_PATH.search(line)]
    assert offenders == []


def test_every_relative_link_of_the_documentation_resolves_inside_the_repository() -> None:
    broken = []
    for path in tracked():
        if path.suffix != ".md":
            continue
        for target in LINK.findall(path.read_text(errors="ignore")):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            resolved = (path.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert broken == []
