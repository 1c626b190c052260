"""A full-page screenshot of the report in headless Chromium: `python -m b12lab.report.screenshot PAGE PNG`.

Playwright for Python drives Debian's chromium package (`/usr/bin/chromium`, or the chromium setting, B12LAB_CHROMIUM); no browser
is downloaded (`playwright install` is never needed). Playwright is a test-time dependency (the `test` extra):
`make report-screenshot` installs it with the rest.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from b12lab.common.settings import load_settings

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 900}


def chromium_path() -> str | None:
    configured = load_settings().chromium
    if configured:
        return str(configured)
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def launch(playwright):
    """A headless Chromium browser from Debian's package (raises FileNotFoundError when there is none)."""
    executable = chromium_path()
    if executable is None:
        raise FileNotFoundError("chromium not found: apt-get install chromium (or set B12LAB_CHROMIUM)")
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)


def screenshot(page_path: Path, png_path: Path) -> Path:
    from playwright.sync_api import sync_playwright

    page_path, png_path = Path(page_path), Path(png_path)
    if not page_path.exists():
        raise FileNotFoundError(f"no report at {page_path}: run `make run` first")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            page.screenshot(path=str(png_path), full_page=True)
        finally:
            browser.close()
    return png_path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m b12lab.report.screenshot REPORT.html SCREENSHOT.png", file=sys.stderr)
        return 2
    try:
        written = screenshot(Path(args[0]), Path(args[1]))
    except FileNotFoundError as error:
        print(f"report-screenshot: {error}", file=sys.stderr)
        return 1
    print(f"screenshot: {written.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
