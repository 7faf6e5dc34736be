"""The first load of the Hipper+ app, per file, raw and as the exchange sends it (Brotli, gzip for browsers
without it: hipper/api/web.py compresses with the same settings); writes docs/screens/first-load.md.

Counts every JS module, although the passkey and push modules load only when used: an upper bound of the
first load (the CSS, the page and one language file included). The budget is 150 KB compressed
(tests/web/test_serving.py enforces it).

Run: .venv/bin/python bench/web/size.py
"""

from __future__ import annotations

from pathlib import Path

from hipper.api.web import Asset

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "src" / "hipper" / "web"
OUT = ROOT / "docs" / "screens" / "first-load.md"


def main() -> None:
    files = [WEB / "index.html", WEB / "app.css", *sorted(WEB.glob("js/*.js")), WEB / "i18n" / "nl.json"]
    rows = []
    for path in files:
        asset = Asset.of(path.read_bytes(), "text/plain")
        rows.append((path.relative_to(WEB).as_posix(), len(asset.raw), len(asset.gzip), len(asset.brotli)))
    raw = sum(row[1] for row in rows)
    packed = sum(row[2] for row in rows)
    squeezed = sum(row[3] for row in rows)
    lines = [
        "# Hipper+ first load",
        "",
        "Made by `bench/web/size.py`: each file as the exchange sends it (`hipper/api/web.py` compresses every "
        "text file once, Brotli quality 11 and gzip level 9, and answers with what Accept-Encoding prefers).",
        "",
        "| file | bytes | gzip | brotli |",
        "|---|---:|---:|---:|",
        *(f"| `{name}` | {size} | {gz} | {br} |" for name, size, gz, br in rows),
        f"| **total** | **{raw}** | **{packed}** | **{squeezed}** ({squeezed / 1024:.1f} KB; budget 60 KB) |",
        "",
    ]
    # Keep the timing section bench/web/first_load.py adds after the table.
    previous = OUT.read_text() if OUT.exists() else ""
    timing = previous[previous.index("\n## ") :] if "\n## " in previous else ""
    OUT.write_text("\n".join(lines) + timing)
    print(f"first load: {raw} bytes, {packed} gzip, {squeezed} brotli -> {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
