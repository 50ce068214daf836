"""Reading the commands the README, docs/ and the conf/ headers show, for the tests that run them as written
(test_documented_commands.py: `python train.py`; test_documented_tools.py: the benches and `python -m` tools)."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "conf").rglob("*.yaml"))]


def documented_commands(start: str, files=DOCS) -> list[tuple[str, int, str]]:
    """(file, line, the text after the regex `start`) in file order: continuation lines joined, a trailing
    comment, (note) or the end of an inline `code` span cut off. In YAML files only comment lines count."""
    out = []
    for f in files:
        lines, i = f.read_text().splitlines(), 0
        strip = (lambda s: re.sub(r"^\s*#\s?", "", s)) if f.suffix == ".yaml" else (lambda s: s)
        while i < len(lines):
            if f.suffix == ".yaml" and not lines[i].lstrip().startswith("#"):
                i += 1
                continue
            line = strip(lines[i])
            m = re.search(start, line)
            if m:
                cmd, first = line[m.end():], i
                while cmd.rstrip().endswith("\\") and i + 1 < len(lines):
                    i += 1
                    cmd = cmd.rstrip()[:-1] + " " + strip(lines[i]).strip()
                cmd = re.split(r"\s{2,}#|\s+#\s", cmd.split("`")[0])[0]       # a trailing comment
                cmd = re.sub(r"\s+\(.*$", "", cmd).strip()                      # a trailing (note)
                out.append((str(f.relative_to(REPO)), first + 1, cmd))
            i += 1
    return out


def shell_vars(f: Path) -> dict[str, str]:
    """VAR="..." assignments in a doc (docs/pretraining.md's $COMMON), continuation lines joined, and each
    `for VAR in A B C` loop's first value (the command in the loop is tested once, with that value)."""
    text = re.sub(r"\\\n\s*", " ", f.read_text())
    found = {k: v for k, v in re.findall(r'^([A-Z_]+)="([^"]*)"', text, flags=re.M)}
    found.update({k: v.split()[0] for k, v in re.findall(r"\bfor (\w+) in ([^;]+);", text)})
    return found


def expand(cmd: str, f: Path) -> str:
    """The command with the doc's shell variables replaced by their values, longest names first."""
    for var, value in sorted(shell_vars(f).items(), key=lambda kv: -len(kv[0])):
        cmd = cmd.replace(f"${var}", value)
    return cmd
