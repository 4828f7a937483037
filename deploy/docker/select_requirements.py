"""Write the part of requirements.lock that one workspace member needs at run time.

    python select_requirements.py REPO_ROOT NAME [NAME ...] > requirements.txt

The lock (`uv export --all-packages --all-groups`) holds every package of the
workspace with its hashes and, in `# via` comments, who needs it. A package is
selected when one of the packages it is there for is selected, starting from
the names given (workspace members, with the members they depend on, or
locked packages such as the build backend `hatchling`). A `via` that
names a workspace member counts only if that member's [project] dependencies
list the package: dev groups (pytest, hypothesis, ...) stay out of images.

Stdlib only: it runs in the image's build stage with a bare Python.
With `--folders` first, it prints instead the folders of the workspace
members to install, one a line.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    match = _NAME.match(spec.strip())
    if match is None:
        raise ValueError(f"cannot read a package name from {spec!r}")
    return normalize(match.group(1))


def workspace_members(root: Path) -> dict[str, tuple[Path, set[str]]]:
    """Member name -> (its folder, the normalized names of its run-time dependencies)."""
    members: dict[str, tuple[Path, set[str]]] = {}
    for pyproject in sorted(
        [*root.glob("packages/*/pyproject.toml"), *root.glob("services/*/pyproject.toml")]
    ):
        project = tomllib.loads(pyproject.read_text())["project"]
        deps = {requirement_name(d) for d in project.get("dependencies", [])}
        members[normalize(project["name"])] = (pyproject.parent, deps)
    return members


def parse_lock(text: str) -> list[tuple[str, str, set[str]]]:
    """(name, the requirement's lines, the names it is there for) per locked package."""
    entries: list[tuple[str, str, set[str]]] = []
    lines: list[str] = []
    via: set[str] = set()
    name = ""
    in_via = False

    def flush() -> None:
        if name:
            entries.append((name, "\n".join(lines), set(via)))

    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            flush()
            name, lines, via, in_via = requirement_name(line), [line], set(), False
        elif line.strip().startswith("--hash"):
            lines.append(line)
        elif line.strip().startswith("# via"):
            rest = line.strip()[len("# via") :].strip()
            if rest:
                via.add(normalize(rest))
            in_via = not rest
        elif in_via and line.strip().startswith("#"):
            via.add(normalize(line.strip().lstrip("#").strip()))
    flush()
    return entries


def select(root: Path, wanted: list[str]) -> tuple[list[str], list[str]]:
    """(the selected requirement blocks, the workspace members to install)."""
    members = workspace_members(root)
    chosen_members: set[str] = set()
    entries = parse_lock((root / "requirements.lock").read_text())
    locked = {name for name, _, _ in entries}
    chosen: set[str] = {normalize(w) for w in wanted if normalize(w) in locked}
    todo = [normalize(w) for w in wanted if normalize(w) not in locked]
    while todo:
        member = todo.pop()
        if member in chosen_members:
            continue
        if member not in members:
            raise SystemExit(f"{member} is neither a workspace member nor locked")
        chosen_members.add(member)
        todo.extend(d for d in members[member][1] if d in members)

    changed = True
    while changed:
        changed = False
        for name, _, via in entries:
            if name in chosen:
                continue
            for parent in via:
                if parent in members:
                    needed = parent in chosen_members and name in members[parent][1]
                else:
                    needed = parent in chosen
                if needed:
                    chosen.add(name)
                    changed = True
                    break
    blocks = [block for name, block, _ in entries if name in chosen]
    folders = sorted(str(members[m][0].relative_to(root)) for m in chosen_members)
    return blocks, folders


def main(argv: list[str]) -> int:
    folders_only = argv[1:2] == ["--folders"]
    args = argv[2:] if folders_only else argv[1:]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    blocks, folders = select(Path(args[0]), args[1:])
    sys.stdout.write("\n".join(folders if folders_only else blocks) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
