"""The review web app through Starlette's TestClient: every page and JSON endpoint on a
real read-only SQLite archive, the token and Host guard, read-only enforcement, escaping."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from daedalus.archive import store
from daedalus.archive.db import Archive, open_archive
from daedalus.archive.errors import ArchiveError, SchemaError
from daedalus.archive.web import create_app, open_readonly, views
from tests.review_data import CPU_FP, IMG, PAYLOAD, SCRIPT, Built, build, kernel_code

TOKEN = "t0k3n-for-the-tests-only"
LOCAL = "http://127.0.0.1"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(f"sqlite:///{tmp_path_factory.mktemp('web') / 'a.db'}")


@pytest.fixture(scope="module")
def ro(built: Built) -> Iterator[Archive]:
    archive = open_readonly(built.url)
    yield archive
    archive.close()


@pytest.fixture(scope="module")
def client(ro: Archive) -> TestClient:
    return TestClient(create_app(ro), base_url=LOCAL)


def ok(client: TestClient, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.text[:500])
    return response.text


def test_runs_overview_and_filters(client: TestClient, built: Built) -> None:
    page = ok(client, "/")
    for text in (
        built.kernel_run,
        built.arch_run,
        "swish_scale",
        "mqar",
        "$0.0123",
        "16 / 40 iterations",
    ):
        assert text in page
    assert f'href="/candidates/{built.ids["best"]}"' in page  # best score links to the best
    assert built.arch_run not in ok(client, "/?backend=cuda")
    assert built.kernel_run not in ok(client, "/?status=finished")
    assert built.kernel_run not in ok(client, "/?q=mqa")
    bad = client.get("/?status=bogus")
    assert bad.status_code == 400 and "Fix:" in bad.text


def test_run_page_draws_every_panel(client: TestClient, built: Built) -> None:
    page = ok(client, f"/runs/{built.kernel_run}")
    assert page.count('<circle class="pt"') >= 3  # best-score markers, each linked to
    assert f'<a href="/candidates/{built.ids["best"]}"><circle class="pt"' in page  # its record
    assert re.search(r'<polyline class="line" points="[\d. ,]+"', page)
    assert 'class="st-ok"' in page and 'class="st-compile_error"' in page  # statuses over time
    assert 'class="cell"' in page and "approach" in page  # MAP-Elites grid
    assert "Single-objective run" in page
    assert "folded" in page and f'href="/candidates/{built.ids["seed"]}"' in page  # lineage
    assert "fusing sigmoid and mul pays off" in page  # lessons
    assert "data-live" in page  # a running run whose process (this one) is alive
    arch = ok(client, f"/runs/{built.arch_run}")
    assert "Pareto front" in arch and "3 non-dominated of 5" in arch
    for cid in built.front:
        assert f'<a href="/candidates/{cid}"><circle class="pt"' in arch
    assert "data-live" not in arch  # finished


def test_big_runs_load_panels_separately(
    client: TestClient, built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "INLINE_LIMIT", 0)
    page = ok(client, f"/runs/{built.arch_run}")
    for name in views.PANELS:
        assert f'data-panel="/runs/{built.arch_run}/panels/{name}"' in page
    assert '<circle class="pt"' not in page
    fragment = ok(client, f"/runs/{built.arch_run}/panels/pareto")
    assert "<html" not in fragment and '<circle class="pt"' in fragment
    full = ok(client, f"/runs/{built.arch_run}/panels/lineage?full=1")
    assert "<html" in full and "Lineage of the best candidates" in full
    assert client.get(f"/runs/{built.arch_run}/panels/nope").status_code == 404


def test_candidate_listing_filters_and_paging(client: TestClient, built: Built) -> None:
    page = ok(client, f"/runs/{built.kernel_run}/candidates?limit=5")
    assert page.count("<tr>") == 5 + 1
    nxt = re.search(r'<a class="next" href="([^"]+)"', page)
    assert nxt is not None and "cursor=" in nxt.group(1)
    second = ok(client, nxt.group(1).replace("&amp;", "&"))
    assert second.count("<tr>") == 5 + 1 and second != page
    cuda = ok(client, f"/runs/{built.kernel_run}/candidates?backend=cuda")
    assert cuda.count("<tr>") == 4 + 1
    failed = ok(client, "/candidates?task=swish_scale&status=compile_error")
    assert f'title="{built.ids["bad"]}"' in failed and f'title="{built.ids["best"]}"' not in failed
    found = ok(client, "/candidates?q=design+c")
    assert (
        f'title="{built.ids["arch_c"]}"' in found and f'title="{built.ids["arch_a"]}"' not in found
    )
    by_score = ok(client, f"/runs/{built.arch_run}/candidates?order=score")
    assert by_score.index(f'title="{built.ids["arch_c"]}"') < by_score.index(
        f'title="{built.ids["arch_e"]}"'
    )
    fp = store.fingerprint_hash(CPU_FP)
    assert built.ids["bad"][:8] in ok(client, f"/candidates?fingerprint={fp[:4]}")
    assert client.get("/candidates?cursor=garbage").status_code == 400


def test_candidate_page(client: TestClient, built: Built) -> None:
    page = ok(client, f"/candidates/{built.ids['best'][:10]}")
    assert 'class="hl"' in page  # highlighted code
    assert "Diff against its parent" in page and "+2</span>" in page and "−2</span>" in page
    assert "variant 11" in page and "variant 12" in page
    for text in (
        "cand_ms",
        "speedup",
        "Test GPU 1",
        "cuda",
        "run 12",
        "Prompt sent to the proposer",
    ):
        assert text in page
    assert "folded" in page  # the lineage chain above it
    against = ok(client, f"/candidates/{built.ids['best']}?against={built.ids['seed']}")
    assert "Diff against candidate" in against and "+2</span>" in against
    bad = ok(client, f"/candidates/{built.ids['bad']}")
    assert "SyntaxError: invalid syntax" in bad and "Traceback" in bad
    assert "Not evaluated yet" in ok(client, f"/candidates/{built.ids['pending']}")
    dup = ok(client, f"/candidates/{built.ids['dup']}")
    assert f'href="/candidates/{built.ids["seed"]}"' in dup and "never evaluated twice" in dup
    seed = ok(client, f"/candidates/{built.ids['seed']}")
    assert "No parent to compare with" in seed
    missing = client.get("/candidates/ffffffffffff")
    assert missing.status_code == 404 and "Fix:" in missing.text


def test_hardware_page(client: TestClient) -> None:
    page = ok(client, "/hardware")
    assert store.fingerprint_hash(CPU_FP) in page and "Test CPU 9000" in page


def test_json_endpoints(client: TestClient, built: Built) -> None:
    runs = client.get("/api/runs").json()
    assert {r["id"] for r in runs} == {built.kernel_run, built.arch_run}
    assert [r["id"] for r in client.get("/api/runs?backend=cuda").json()] == [built.kernel_run]
    summary = client.get(f"/api/runs/{built.kernel_run[:6]}").json()
    assert summary["counts"]["ok"] == 13 and summary["live"] is True and summary["version"]
    history = client.get(f"/api/runs/{built.arch_run}/history").json()
    assert {p["id"] for p in history["pareto"]["front"]} == built.front
    assert history["pareto"]["objectives"] == {"accuracy": "max", "params": "min"}
    page = client.get(f"/api/runs/{built.kernel_run}/candidates?limit=3").json()
    assert len(page["items"]) == 3 and page["cursor"]
    rest = client.get(
        f"/api/runs/{built.kernel_run}/candidates?limit=50&cursor={page['cursor']}"
    ).json()
    assert len(rest["items"]) == 14 and rest["cursor"] is None
    cand = client.get(f"/api/candidates/{built.ids['best']}").json()
    assert cand["code"].startswith("import torch") and cand["evaluation"]["backend"] == "cuda"
    assert cand["lineage"][-1] == built.ids["seed"] and cand["children"] == [built.ids["pending"]]
    assert client.get("/api/hardware").json()[0]["evaluations"] >= 1
    missing = client.get("/api/runs/zzzz")
    assert missing.status_code == 404 and "Fix:" in missing.json()["error"]
    assert client.get("/api/candidates?limit=0").status_code == 400


def test_live_pages_follow_the_archive(client: TestClient, built: Built, tmp_path: Path) -> None:
    before = client.get(f"/api/runs/{built.kernel_run}").json()["version"]
    with open_archive(built.url) as rw, rw.session() as s:
        c = store.add_candidate(
            s,
            run_id=built.kernel_run,
            code=kernel_code(300),
            code_hash="live",
            parent_id=built.ids["best"],
        )
        store.record_evaluation(s, candidate_id=c.id, status="ok", correct=True, score=7.5)
    after = client.get(f"/api/runs/{built.kernel_run}").json()
    assert after["version"] != before and after["counts"]["ok"] == 14
    page = ok(client, f"/runs/{built.kernel_run}")
    assert "7.5" in page  # the cached panels were recomputed for the new version
    assert client.get(f"/api/candidates/{built.ids['pending']}").json()["live"] is True


def test_guard_read_only_methods_and_loopback_hosts(client: TestClient) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        response = client.request(method, "/api/runs")
        assert response.status_code == 405 and "read-only" in response.text
    evil = client.get("/", headers={"host": "evil.example:8000"})
    assert evil.status_code == 400 and "Fix:" in evil.text
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
        assert client.get("/", headers={"host": host}).status_code == 200
    response = client.get("/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/docs").status_code == 404 and client.get("/openapi.json").status_code == 404


def test_every_asset_is_local(client: TestClient, built: Built) -> None:
    for url in ("/", f"/runs/{built.kernel_run}", f"/candidates/{built.ids['best']}", "/hardware"):
        page = ok(client, url)
        for ref in re.findall(r'(?:src|href)="([^"]*)"', page):
            assert ref.startswith(("/", "#")), (url, ref)
        assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")


def test_token_guard(ro: Archive, built: Built) -> None:
    client = TestClient(create_app(ro, token=TOKEN), base_url="http://review.example.org")
    for url in ("/", f"/runs/{built.kernel_run}", "/api/runs", "/static/style.css", "/hardware"):
        response = client.get(url)
        assert response.status_code == 401 and "Fix:" in response.text, url
    assert (
        client.get("/", headers={"authorization": "Bearer wrong-token-wrong-token"}).status_code
        == 401
    )
    assert client.get("/api/runs", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/api/runs", headers={"x-daedalus-token": TOKEN}).status_code == 200
    assert client.get("/?token=nope", follow_redirects=False).status_code == 401
    hop = client.get(f"/runs/{built.kernel_run}?token={TOKEN}&x=1", follow_redirects=False)
    assert hop.status_code == 303 and hop.headers["location"] == f"/runs/{built.kernel_run}?x=1"
    assert (
        "HttpOnly" in hop.headers["set-cookie"] and "SameSite=Strict" in hop.headers["set-cookie"]
    )
    client.cookies.clear()
    client.cookies.set("daedalus_token", TOKEN)
    assert client.get(f"/runs/{built.kernel_run}").status_code == 200
    with pytest.raises(ValueError, match="at least 16"):
        create_app(ro, token="short")


def test_escaping_in_the_html(tmp_path: Path) -> None:
    built = build(f"sqlite:///{tmp_path / 'x.db'}", hostile=True)
    with open_readonly(built.url) as ro:
        client = TestClient(create_app(ro), base_url=LOCAL)
        urls = [
            "/",
            f"/runs/{built.kernel_run}",
            f"/runs/{built.arch_run}",
            "/hardware",
            f"/candidates/{built.ids['bad']}",
            f"/candidates/{built.ids['best']}",
            f"/candidates/{built.ids['arch_a']}",
            f"/runs/{built.kernel_run}/candidates",
            f"/candidates?q={SCRIPT}",
        ]
        for url in urls:
            page = ok(client, url)
            assert SCRIPT not in page and IMG not in page and "<svg onload" not in page, url
        page = ok(client, f"/candidates/{built.ids['bad']}")
        assert "&lt;script&gt;window.__pwned" in page
        api = client.get(f"/api/candidates/{built.ids['bad']}").json()
        assert PAYLOAD in api["description"]  # JSON carries the text as it is; only HTML escapes


def test_readonly_archive_refuses_writes(built: Built, ro: Archive) -> None:
    with pytest.raises(OperationalError, match=r"readonly|read-only"), ro.session() as s:
        store.create_run(s, task="nope")
    with ro.session(readonly=True) as s:
        assert store.latest_run(s, task="nope") is None


def test_open_readonly_errors(tmp_path: Path, built: Built) -> None:
    with pytest.raises(ArchiveError, match="no archive"):
        open_readonly(f"sqlite:///{tmp_path / 'missing.db'}")
    assert not (tmp_path / "missing.db").exists()
    sqlite3.connect(tmp_path / "plain.db").execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(ArchiveError, match="not a Daedalus archive"):
        open_readonly(f"sqlite:///{tmp_path / 'plain.db'}")
    old = tmp_path / "old.db"
    build(f"sqlite:///{old}", chain=1)
    con = sqlite3.connect(old)
    con.execute("UPDATE alembic_version SET version_num = '0000'")
    con.commit()
    con.close()
    with pytest.raises(SchemaError, match="Fix:"):
        open_readonly(f"sqlite:///{old}")
