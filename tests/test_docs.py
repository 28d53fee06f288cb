"""Tests of the documentation: the MkDocs site builds with ``--strict``, every ```python block of
docs/ and README.md runs, and the README stays a short front page whose links lead somewhere.

A code block opts out of running with ``<!-- skip-run: reason -->`` on the nearest non-blank line
before its fence; keep that for blocks that need a GPU, ``torchrun`` or a long training. Other
fences (bash, console, toml, text) are never run. Each block runs alone, in a fresh Python process
whose working directory is a temporary folder, so a block must not depend on another.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SKIP_MARK = "<!-- skip-run"
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>`{3,})(?P<lang>[\w+-]*)[^`]*$")
BLOCK_TIMEOUT_S = 180
README_MAX_LINES = 300


@dataclass(frozen=True)
class CodeBlock:
    """A fenced code block: its file, the line of its opening fence (1-based), language and text."""

    path: Path
    line: int
    lang: str
    code: str
    skipped: bool

    @property
    def where(self) -> str:
        return f"{_shown(self.path)}:{self.line}"


def _shown(path: Path) -> Path:
    """``path`` relative to the repository root when it lies inside it."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def code_blocks(path: Path) -> list[CodeBlock]:
    """Return every fenced code block of the Markdown file ``path``, in order.

    A fence closes on a line of at least as many backticks at the same indentation; the block's
    text is dedented by the fence's indentation. An unclosed fence is an error naming the line.
    """
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, ticks, lang = match["indent"], match["ticks"], match["lang"].lower()
        start, body = i, []
        previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        i += 1
        while i < len(lines) and not (lines[i].startswith(indent) and lines[i].strip().startswith(ticks)
                                      and set(lines[i].strip()) == {"`"}):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        if i == len(lines):
            raise AssertionError(f"{_shown(path)}:{start + 1}: the code fence opened here is never closed")
        blocks.append(CodeBlock(path, start + 1, lang, "\n".join(body) + "\n", previous.startswith(SKIP_MARK)))
        i += 1
    return blocks


PYTHON_BLOCKS = [b for path in DOC_FILES for b in code_blocks(path) if b.lang in ("python", "py")]


def test_the_parser_finds_fences_markers_and_lines(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("intro\n\n```python\nx = 1\n```\n\n<!-- skip-run: needs a GPU -->\n\n```python\nimport cuda\n"
                    "```\n\n- a list item\n\n    ```bash\n    echo hi\n    ```\n\n````python\n```\n````\n")
    blocks = code_blocks(page)
    assert [(b.line, b.lang, b.code, b.skipped) for b in blocks] == [
        (3, "python", "x = 1\n", False), (9, "python", "import cuda\n", True), (15, "bash", "echo hi\n", False),
        (19, "python", "```\n", False)]
    page.write_text("```python\nx = 1\n")
    with pytest.raises(AssertionError, match="page.md:1: the code fence opened here is never closed"):
        code_blocks(page)


def test_the_docs_have_python_blocks_and_skip_few():
    assert len(PYTHON_BLOCKS) >= 10, [b.where for b in PYTHON_BLOCKS]
    skipped = [b.where for b in PYTHON_BLOCKS if b.skipped]
    assert len(skipped) <= len(PYTHON_BLOCKS) // 3, skipped


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1", NO_MKDOCS_2_WARNING="1")
    return env


@pytest.mark.timeout(BLOCK_TIMEOUT_S + 30)
@pytest.mark.parametrize("block", [b for b in PYTHON_BLOCKS if not b.skipped], ids=lambda b: b.where)
def test_python_block_runs(block: CodeBlock, tmp_path):
    script = tmp_path / "block.py"
    script.write_text(block.code)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=BLOCK_TIMEOUT_S, env=_env())
    assert result.returncode == 0, (f"{block.where}: the ```python block starting here failed "
                                    f"(exit {result.returncode}):\n{result.stderr[-4000:]}")


@pytest.mark.timeout(120)
def test_the_site_builds_strictly(tmp_path):
    assert importlib.util.find_spec("mkdocs") is not None, (
        "mkdocs is not installed: `make test` installs it; by hand: pip install -e '.[docs]'")
    for plugin in ("material", "mkdocstrings", "mkdocstrings_handlers.python"):
        assert importlib.util.find_spec(plugin) is not None, f"{plugin} is not installed: pip install -e '.[docs]'"
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site),
                             "--config-file", str(ROOT / "mkdocs.yml")], cwd=ROOT, capture_output=True, text=True,
                            timeout=110, env=_env())
    assert result.returncode == 0, result.stderr[-6000:]
    assert (site / "index.html").is_file()
    api = (site / "reference" / "models" / "index.html").read_text()
    assert "get_distributed_model" in api and "Perceiver" in api  # the API pages are made from the docstrings


def test_readme_is_a_short_front_page_with_working_links():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    assert "make demo" in text and "make test" in text and "make docs" in text
    links = re.findall(r"\]\((docs/[^)#\s]+)(?:#[^)]*)?\)", text)
    assert links, "the README links into the docs pages"
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert not missing, f"README.md links to missing files: {missing}"
