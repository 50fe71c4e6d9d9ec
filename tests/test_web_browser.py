"""The review pages in real headless Chromium (Debian's, through Playwright), served by a
real uvicorn on 127.0.0.1: charts drawn, navigation, diffs, escaping, token, live refresh.

Skips with the reason when Playwright or /usr/bin/chromium is missing; fails instead when
DAEDALUS_REQUIRE_BROWSER=1 (CI). Screenshots land in artifacts/screenshots/.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from daedalus.archive import store
from daedalus.archive.db import open_archive
from daedalus.archive.web import create_app, open_readonly, views
from tests.review_data import build, kernel_code

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
TOKEN = "browser-test-token-1234"


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _missing()
    if reason is not None:
        if os.environ.get("DAEDALUS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"DAEDALUS_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@contextmanager
def serving(url: str, *, token: str | None = None) -> Iterator[str]:
    """The app on a real uvicorn bound to 127.0.0.1 (an OS-chosen port), in a thread."""
    import uvicorn

    archive = open_readonly(url)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(archive, token=token), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        archive.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    yield tab
    context.close()


def shot(tab: Any, name: str) -> None:
    tab.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_open_a_run_see_the_charts_click_to_a_candidate_and_its_diff(
    page: Any, tmp_path: Path
) -> None:
    built = build(f"sqlite:///{tmp_path / 'a.db'}")
    with serving(built.url) as base:
        page.goto(base + "/")
        page.click(f'a[href="/runs/{built.kernel_run}"]')
        page.wait_for_selector("figure.best svg circle.pt")
        assert page.locator("figure.best svg circle.pt").count() >= 3
        points = page.locator("figure.best svg polyline.line").get_attribute("points")
        assert points and len(points.split()) >= 3
        assert page.locator("figure.statuses svg rect").count() > 0
        assert page.locator("figure.grid svg rect.cell").count() >= 3
        assert page.locator("pre.tree a").count() >= 2
        box = page.locator("figure.best svg").bounding_box()
        assert box and box["width"] > 300 and box["height"] > 100  # really laid out
        shot(page, "run_page")
        page.click(f'table.list a[href="/candidates/{built.ids["best"]}"] >> nth=0')
        page.wait_for_selector("#diff")
        heading = page.locator("#diff h2").inner_text()
        assert "Diff against its parent" in heading and "+2" in heading
        diff = page.locator("#diff .hl").inner_text()
        assert "+        # variant 12" in diff and "-        # variant 11" in diff
        assert "Test GPU 1" in page.locator("#evaluation").inner_text()
        shot(page, "candidate_page")
        arch = f"{base}/runs/{built.arch_run}"
        page.goto(arch)
        page.wait_for_selector("figure.pareto svg circle.pt")
        assert page.locator("figure.pareto svg circle.pt").count() == 3
        assert page.locator("figure.pareto svg circle.faint").count() == 2
        shot(page, "pareto")


def test_big_run_panels_arrive_by_script(
    page: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = build(f"sqlite:///{tmp_path / 'a.db'}")
    monkeypatch.setattr(views, "INLINE_LIMIT", 0)
    with serving(built.url) as base:
        page.goto(f"{base}/runs/{built.arch_run}")
        page.wait_for_selector("#panel-progress figure.best svg circle.pt")
        page.wait_for_selector("#panel-pareto svg circle.pt")
        page.wait_for_selector("#panel-lineage pre.tree")
        assert page.locator("[data-panel]").count() == 0
        shot(page, "lazy_panels")


def test_archive_text_never_executes(page: Any, tmp_path: Path) -> None:
    built = build(f"sqlite:///{tmp_path / 'x.db'}", hostile=True)
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    urls = [
        "/",
        f"/runs/{built.kernel_run}",
        f"/runs/{built.arch_run}",
        f"/runs/{built.kernel_run}/candidates",
        f"/candidates/{built.ids['bad']}",
        f"/candidates/{built.ids['best']}",
        f"/candidates/{built.ids['arch_a']}",
        "/candidates?q=%3Cscript%3E",
        "/hardware",
    ]
    with serving(built.url) as base:
        for url in urls:
            page.goto(base + url)
            page.wait_for_load_state("networkidle")
            assert page.evaluate("typeof window.__pwned") == "undefined", url
            # No injected element exists at all (this catches an escaping bug even where
            # the Content-Security-Policy would have stopped the script from running).
            assert page.locator("img").count() == 0, url
            assert page.locator("script:not([src])").count() == 0, url
            assert page.locator("[onerror], [onload]").count() == 0, url
        page.goto(f"{base}/candidates/{built.ids['bad']}")
        text = page.locator("main").inner_text()
        assert "<script>window.__pwned = 'script'; alert(1)</script>" in text  # shown as text
        shot(page, "xss_candidate")
        page.goto(f"{base}/runs/{built.kernel_run}")
        assert "<img src=x onerror=" in page.locator("main").inner_text()
        shot(page, "xss_run")
    assert dialogs == []


def test_token_protected_server(page: Any, tmp_path: Path) -> None:
    built = build(f"sqlite:///{tmp_path / 'a.db'}", chain=3)
    with serving(built.url, token=TOKEN) as base:
        response = page.goto(base + "/")
        assert response.status == 401 and "needs its access token" in page.content()
        response = page.goto(f"{base}/?token={TOKEN}")
        assert response.status == 200 and page.url == base + "/"  # token moved to a cookie
        page.click(f'a[href="/runs/{built.kernel_run}"]')
        page.wait_for_selector("figure.best svg circle.pt")
        status = page.evaluate("fetch('/api/runs').then(r => r.status)")
        assert status == 200
        shot(page, "token_run_page")


def _wait(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_running_run_refreshes_live(page: Any, tmp_path: Path) -> None:
    built = build(f"sqlite:///{tmp_path / 'a.db'}", chain=3)
    with serving(built.url) as base:
        page.goto(f"{base}/runs/{built.kernel_run}")
        assert page.locator("body").get_attribute("data-live") == f"/api/runs/{built.kernel_run}"
        assert "42.5" not in page.locator("main").inner_text()
        with open_archive(built.url) as rw, rw.session() as s:  # the run makes progress
            c = store.add_candidate(
                s,
                run_id=built.kernel_run,
                code=kernel_code(42),
                code_hash="n",
                parent_id=built.ids["best"],
            )
            store.record_evaluation(s, candidate_id=c.id, status="ok", correct=True, score=42.5)
        _wait(lambda: "42.5" in page.locator("main").inner_text())
        assert page.locator("figure.best svg circle.pt").count() >= 1  # charts redrawn too
        assert "live" in page.locator("#livebadge").inner_text()
        shot(page, "live_refresh")
