"""The first load of the Hipper+ app, per file, raw and gzip-compressed; writes docs/screens/first-load.md.

Counts every JS module, although the passkey and push modules load only when used: an upper bound of the
first load (the CSS, the page and one language file included). The budget is 150 KB compressed
(tests/web/test_serving.py enforces it).

Run: .venv/bin/python bench/web/size.py
"""

from __future__ import annotations

import gzip
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "src" / "hipper" / "web"
OUT = ROOT / "docs" / "screens" / "first-load.md"


def main() -> None:
    files = [WEB / "index.html", WEB / "app.css", *sorted(WEB.glob("js/*.js")), WEB / "i18n" / "nl.json"]
    rows = [
        (path.relative_to(WEB).as_posix(), path.stat().st_size, len(gzip.compress(path.read_bytes(), 9)))
        for path in files
    ]
    raw = sum(row[1] for row in rows)
    packed = sum(row[2] for row in rows)
    lines = [
        "# Hipper+ first load",
        "",
        "Made by `bench/web/size.py` (gzip level 9, what a server or proxy would send compressed).",
        "",
        "| file | bytes | gzip |",
        "|---|---:|---:|",
        *(f"| `{name}` | {size} | {gz} |" for name, size, gz in rows),
        f"| **total** | **{raw}** | **{packed}** ({packed / 1024:.1f} KB of the 150 KB budget) |",
        "",
    ]
    # Keep the timing section bench/web/first_load.py adds after the table.
    previous = OUT.read_text() if OUT.exists() else ""
    timing = previous[previous.index("\n## ") :] if "\n## " in previous else ""
    OUT.write_text("\n".join(lines) + timing)
    print(f"first load: {raw} bytes, {packed} gzip -> {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
