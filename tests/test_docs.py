"""The README is for users and short; every docs page is linked from it; links resolve; the code
the pages mark as tested runs as written."""

import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO

README = REPO / "README.md"
PAGES = sorted((REPO / "docs").rglob("*.md"))
TESTED = "<!-- tested: the docs test runs this block -->"


def links(page: Path) -> list[str]:
    """Relative link and image targets of a markdown page (web addresses and anchors left out)."""
    targets = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+://", t) and not t.startswith("#")]


def test_the_readme_is_short_and_links_every_docs_page():
    assert len(README.read_text().splitlines()) <= 250
    linked = {(REPO / t).resolve() for t in links(README)}
    assert PAGES and [p.relative_to(REPO).as_posix() for p in PAGES if p.resolve() not in linked] == []


def test_every_link_resolves():
    broken = [
        f"{page.relative_to(REPO)}: {target}"
        for page in [README, *PAGES]
        for target in links(page)
        if target and not (page.parent / target).exists()
    ]
    assert broken == []


def marked_blocks() -> list[tuple[Path, str]]:
    """(page, code) of every fenced block right after the TESTED marker."""
    found = []
    for page in [README, *PAGES]:
        for match in re.finditer(re.escape(TESTED) + r"\n```(\w+)\n(.*?)```", page.read_text(), re.S):
            found.append((page, match.group(1), match.group(2)))
    return found


def test_the_pages_mark_their_quick_commands():
    marked = {page.name for page, _, _ in marked_blocks()}
    assert {"README.md", "stories-and-memory.md", "evaluation.md"} <= marked


def test_the_marked_commands_run_as_written(tmp_path):
    """Each marked block runs in a fresh folder holding the examples, as a user would type it."""
    bin_dir = str(Path(sys.executable).parent)
    for page, language, code in marked_blocks():
        work = tmp_path / f"{page.stem}-{abs(hash(code))}"
        work.mkdir()
        (work / "examples").symlink_to(REPO / "examples")
        assert language == "bash", f"{page.name}: only bash blocks can be marked as tested"
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
        result = subprocess.run(
            ["bash", "-e", "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"{page.name}:\n{code}\n{result.stderr[-2000:]}"


def test_the_readme_python_example_runs_as_written(tmp_path, monkeypatch):
    code = re.search(r"## Python API\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(REPO / "examples")
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "run-py" / "story.mp4").is_file()
