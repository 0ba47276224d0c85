"""``python -m qctl.docgen [--check] [ROOT]``: write (or check) completions/ and man/."""

from __future__ import annotations

import sys
from pathlib import Path

from qctl.docgen.completions import SCRIPTS
from qctl.docgen.manpages import pages


def generated() -> dict[str, str]:
    files = {f"completions/{name}": make() for name, make in SCRIPTS.items()}
    files.update({f"man/{name}": text for name, text in pages().items()})
    return files


def main(argv: list[str]) -> int:
    check = "--check" in argv
    rest = [a for a in argv if a != "--check"]
    root = Path(rest[0]) if rest else Path.cwd()
    stale = []
    for rel, text in generated().items():
        path = root / rel
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(rel)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if check and stale:
        print("stale generated files: " + ", ".join(stale) + " — run dev/gen-docs", file=sys.stderr)
        return 1
    for rel in stale:
        print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
