"""Open a Snakemake report in headless Chromium (Debian's chromium and chromium-driver) the way
a reader does, and collect what was shown: the sections of its menu, and for every result,
whether its image or page loaded. The browser gets no network: every address resolves to
nothing and the proxy is a closed local port."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                 "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
                 "--disable-dev-shm-usage")

SHOW_RESULT_JS = """
const path = arguments[0];
const kind = getResultMimeType(path) === "text/html" ? "html" : "img";
app.setView({content: kind, contentPath: results[path].data_uri, resultPath: path});
return kind;
"""
"""What a result's view button does (snakemake's result_view_button.js): show it."""

SHOWN_IMAGE_JS = """
const uri = results[arguments[0]].data_uri;
const img = Array.from(document.images).find(i => i.getAttribute("src") === uri);
return img && img.complete ? img.naturalWidth : -1;
"""

SHOWN_FRAME_JS = """
const uri = results[arguments[0]].data_uri;
return Array.from(document.querySelectorAll("iframe")).find(f => f.getAttribute("src") === uri)
    || null;
"""

FRAME_IMAGES_JS = """
const imgs = Array.from(document.images);
if (document.readyState !== "complete" || imgs.some(i => !i.complete)) return null;
return {text: document.body.innerText, widths: imgs.map(i => i.naturalWidth)};
"""


def browser_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver) when both are installed, else None."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


@dataclass
class ReportView:
    """What the browser showed: the menu's text, the report's categories and, per result
    path, the naturalWidth of each image it showed (a page's: of every image inside it), and
    each page's text."""

    menu_text: str
    categories: list[str]
    results: dict[str, list[int]] = field(default_factory=dict)
    page_text: dict[str, str] = field(default_factory=dict)


def open_driver(paths: tuple[str, str]):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = paths[0]
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(paths[1]), options=options)


def view_report(report: Path, screenshots: Path, paths: tuple[str, str]) -> ReportView:
    """Load ``report``, read its menu, show every result and check it loaded; screenshots of
    the start page and of each shown result go to ``screenshots`` (PNG)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver = open_driver(paths)
    try:
        driver.get(report.resolve().as_uri())
        wait = WebDriverWait(driver, 60, poll_frequency=0.2)
        wait.until(lambda d: d.execute_script(
            "return typeof app !== 'undefined' && document.body.innerText.length > 0"))
        driver.save_screenshot(str(screenshots / "start.png"))
        view = ReportView(driver.find_element("id", "app").text,
                          driver.execute_script("return Object.keys(categories)"))
        for k, path in enumerate(driver.execute_script("return Object.keys(results)")):
            view.results[path] = show(driver, wait, path, view)
            driver.save_screenshot(str(screenshots / f"result-{k:02d}.png"))
        return view
    finally:
        driver.quit()


def show(driver, wait, path: str, view: ReportView) -> list[int]:
    """Show one result as its view button does; the naturalWidth of what loaded."""
    kind = driver.execute_script(SHOW_RESULT_JS, path)
    if kind == "img":
        return wait.until(lambda d: _loaded(d.execute_script(SHOWN_IMAGE_JS, path)))
    frame = wait.until(lambda d: d.execute_script(SHOWN_FRAME_JS, path))
    driver.switch_to.frame(frame)
    try:
        shown = wait.until(lambda d: d.execute_script(FRAME_IMAGES_JS))
    finally:
        driver.switch_to.default_content()
    view.page_text[path] = shown["text"]
    return shown["widths"]


def _loaded(width: int) -> list[int] | bool:
    """A polled image width: False (keep waiting) until the image is complete, then [width]
    (0 for an image that failed to load)."""
    return False if width < 0 else [width]
