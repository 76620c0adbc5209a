"""Redraw docs/report.png: a screenshot of a Snakemake report in headless Chromium.

    snakemake --report report.html
    python docs/report_screenshot.py report.html docs/report.png

Opens the report (Debian's chromium and chromium-driver, no network), shows the whole-slide
category with one slide's detections, and saves the window (1400x1000 px) as PNG.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from report_browser import SHOW_RESULT_JS, browser_paths, open_driver  # noqa: E402

SHOWN = "slide_000.png"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", type=Path)
    p.add_argument("png", type=Path)
    a = p.parse_args()
    paths = browser_paths()
    if paths is None:
        sys.exit("report_screenshot: install Debian's chromium and chromium-driver first")
    from selenium.webdriver.support.ui import WebDriverWait

    driver = open_driver(paths)
    try:
        driver.get(a.report.resolve().as_uri())
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.execute_script("return typeof app !== 'undefined'"))
        shown = next(r for r in driver.execute_script("return Object.keys(results)")
                     if r.endswith(SHOWN))
        driver.execute_script("app.showCategory('Whole slides')")
        driver.execute_script(SHOW_RESULT_JS, shown)
        wait.until(lambda d: d.execute_script(
            "return Array.from(document.images).some(i => i.complete && i.naturalWidth > 0)"))
        driver.save_screenshot(str(a.png))
    finally:
        driver.quit()
    print(f"{a.report} -> {a.png}")


if __name__ == "__main__":
    main()
