"""The README is a short landing page, and every relative link in it and in docs/ points at a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))

SETUP_COMMANDS = (
    "python -m pip install -e . && cubebench run",
    'python -m pip install -e ".[dev]" && bash scripts/check.sh',
)

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def relative_links(text: str) -> list[str]:
    """The targets of the Markdown links and images in ``text`` that are relative paths (code is skipped)."""
    prose = _CODE_SPAN.sub("", _FENCE.sub("", text))
    targets = [m.group(1) for m in _LINK.finditer(prose)]
    return [t for t in targets if not re.match(r"^([a-z][a-z0-9+.-]*:|#|/)", t, re.IGNORECASE)]


def test_relative_links_finds_links_and_skips_code() -> None:
    text = "[a](docs/x.md#y) ![f](img.png) [w](https://x.org) [h](#top)\n`[c](no.md)`\n```\n[d](no.md)\n```\n"
    assert relative_links(text) == ["docs/x.md#y", "img.png"]


def test_readme_is_a_short_landing_page() -> None:
    assert README.stat().st_size <= 10240, "README.md is the landing page: at most 10 KB; move detail into docs/"


def test_readme_has_both_setup_commands() -> None:
    text = README.read_text()
    for command in SETUP_COMMANDS:
        assert command in text
    assert f"```bash\n{SETUP_COMMANDS[1]}\n```" in text  # CI greps for the test command in a bash block


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    missing = []
    for target in relative_links(page.read_text()):
        path = target.split("#", 1)[0].split("?", 1)[0]
        if path and not (page.parent / path).exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_every_page_is_in_the_nav() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    for page in PAGES:
        assert str(page.relative_to(DOCS)) in config, f"{page.relative_to(DOCS)} is not in mkdocs.yml's nav"
