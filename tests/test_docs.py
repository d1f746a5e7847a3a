"""The documentation holds together: every relative link in the README, DEVELOPERS.md, docs/, the
lab notebook and the model cards resolves (to a file, and to a heading where it names one), every
file of the repository they name exists (a moved script or module leaves no stale path behind),
and the README stays a front door whose test command is the one CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "DEVELOPERS.md", "reports/README.md", "docs/*.md", "experiments/*.md", "mimika/models/*.md",
         "mimika/models/detectors/*.md"]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
#: a file or folder of the repository, as the docs name it (`scripts/x.py`, mimika/prepare/crop.py, docs/)
REPO_PATH = re.compile(r"(?<![\w./-])((?:scripts|experiments|bench|docs|reports|tests|mimika)/[\w./-]*[\w/])")


def pages(root: Path = ROOT) -> list[Path]:
    return sorted(p for pattern in PAGES for p in root.glob(pattern))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and re.match(r"#{1,6} ", line):
            base = slug(line.lstrip("#"))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """The relative links of `page` that name no file, or no heading of the file they name."""
    bad = []
    for match in LINK.finditer(page.read_text()):
        target = match.group(1) or match.group(2)
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists() or root not in (dest, *dest.parents):
            bad.append(f"{page.relative_to(root)}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{page.relative_to(root)}: {target} (no such heading)")
    return bad


def missing_paths(page: Path, root: Path = ROOT) -> list[str]:
    """Files of the repository that `page` names and that do not exist (placeholders in capitals,
    such as mimika/models/NAME.md, and globs are not names)."""
    bad = []
    for path in sorted(set(REPO_PATH.findall(page.read_text()))):
        path = path.rstrip(".")
        if re.search(r"[A-Z]{3,}|\*", path):
            continue
        if not (root / path).exists():
            bad.append(f"{page.relative_to(root)}: {path}")
    return bad


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_named_exists(page):
    assert missing_paths(page) == []


def test_the_checks_see_a_broken_link_and_a_stale_path(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "here.py").write_text("")
    page = tmp_path / "docs" / "page.md"
    page.write_text("# A page\n\n## Its part\n\n[ok](page.md#its-part) [gone](gone.md) [no heading](#nowhere) "
                    "[web](https://example.org) `python scripts/here.py` `python scripts/moved.py`.\n")
    assert broken_links(page, tmp_path) == ["docs/page.md: gone.md (no such file)",
                                            "docs/page.md: #nowhere (no such heading)"]
    assert missing_paths(page, tmp_path) == ["docs/page.md: scripts/moved.py"]


def test_the_readme_is_a_front_door_and_its_test_command_is_the_one_ci_runs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in readme
    assert "mimika predict mimika/samples/astronaut.jpg --annotate out" in readme


def test_the_module_map_names_every_module():
    """docs/design.md is the one hand-written map: a module added or moved without it shows here
    (the generated facts, line counts and imports, are scripts/module_map.py's)."""
    design = (ROOT / "docs" / "design.md").read_text()
    package = ROOT / "mimika"
    unnamed = [str(f.relative_to(package)) for f in sorted(package.rglob("*.py"))
               if f"`{f.name}`" not in design and not (f.name == "__init__.py" and f"`{f.parent.name}/`" in design)]
    assert unnamed == []


def test_every_package_is_installed():
    """A non-editable install holds every sub-package (`pip install .` once lacked mimika.cli and
    mimika.prepare.images, so its `mimika` command failed)."""
    import fnmatch
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    root = Path(__file__).resolve().parents[1]
    include = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {str(p.parent.relative_to(root)).replace("/", ".") for p in (root / "mimika").rglob("__init__.py")}
    assert {"mimika.cli", "mimika.prepare.images"} <= packages
    left_out = [p for p in packages if not any(fnmatch.fnmatchcase(p, pattern) for pattern in include)]
    assert not left_out, f"packages a `pip install .` would leave out: {left_out}"
