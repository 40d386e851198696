"""``agentauthz explore`` in a real browser: headless Chromium (Debian's) driven by Playwright.

Each view is used as an author would: pick a request and see the determining
policy highlighted at its lines, try a scratch edit, filter the audit log and
run a what-if, see who may call a tool, read the store's health. A hostile store
and audit log (markup in policies, ids, attributes, audit lines) must render as
text: no script runs, and the browser never has to block one (the escaping
held, not only the Content-Security-Policy).

Screenshots go to a temporary folder, or to ``$AGENTAUTHZ_SCREENSHOTS`` (the
docs' images: ``AGENTAUTHZ_SCREENSHOTS=docs/images pytest tests/cli/test_explore_browser.py``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentauthz.cli._explore import serving
from tests.cli.explorer_stores import (
    HOSTILE_TEXTS,
    TOKEN,
    example_store,
    hostile_store,
    recorded_audit_log,
)

pytest.importorskip("starlette", reason="agentauthz explore needs the explore extra")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright (test extra)")

CHROMIUM = (os.environ.get("AGENTAUTHZ_CHROMIUM") or shutil.which("chromium")
            or shutil.which("chromium-browser"))
if CHROMIUM is None:
    pytest.skip("no chromium browser on this machine (.ci/run installs Debian's with apt): the explorer's "
                "browser tests are skipped", allow_module_level=True)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REFUND = 'Action::"issue_refund"'


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=FLAGS, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        yield context
        context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    page = browser.new_page()
    page.console_messages = []
    page.on("console", lambda message: page.console_messages.append(message.text))
    yield page
    page.close()


@pytest.fixture(scope="module")
def explorer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example store with the finance refund limit lowered to 1,000, and an audit log recorded before."""
    base = tmp_path_factory.mktemp("explorer")
    root = example_store(base / "policies")
    tools = (root / "tools.cedar").read_text(encoding="utf-8")
    (root / "tools.cedar").write_text(tools.replace("amount <= 5000", "amount <= 1000"), encoding="utf-8")
    audit = recorded_audit_log(base / "audit.jsonl")
    with serving(root, [audit], TOKEN) as url:
        yield url.split("?")[0].rstrip("/")


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("AGENTAUTHZ_SCREENSHOTS")
    return Path(folder) if folder else tmp_path_factory.mktemp("screenshots")


def _open(page: Any, base: str, path: str = "/") -> None:
    separator = "&" if "?" in path else "?"
    page.goto(f"{base}{path}{separator}token={TOKEN}")


def _submit(page: Any, selector: str) -> None:
    """Click what loads another page, and wait for it (``count()`` and the like do not wait)."""
    with page.expect_navigation():
        page.click(selector)


def _ask_refund(page: Any, base: str, amount: int) -> None:
    _open(page, base)
    page.select_option("#action", REFUND)
    page.fill("#principal", 'User::"carol"')
    page.fill("#resource", 'Tool::"issue_refund"')
    page.click("#fill-context")
    skeleton = page.input_value("#context")
    assert '"amount": 0' in skeleton and '"order_id": ""' in skeleton
    page.fill("#context", skeleton.replace('"amount": 0', f'"amount": {amount}').replace('""', '"o-7"'))


def test_bench_decides_and_highlights_the_determining_policy_at_its_lines(page: Any, explorer: str,
                                                                         shots: Path) -> None:
    _ask_refund(page, explorer, 800)
    assert page.locator('table.fields[data-action="Action::\\"issue_refund\\""]').is_visible()
    assert not page.locator('table.fields[data-action="Action::\\"read\\""]').is_visible()
    assert page.evaluate("[...document.querySelectorAll('#principals option')]"
                         ".every(o => o.disabled === (o.dataset.type !== 'User'))")
    _submit(page, "#decide")
    assert page.locator("#result h3 .decision").inner_text() == "ALLOW"
    determining = page.locator('.policy.determining[data-policy="refund-finance-limit"]')
    assert determining.locator(".line.hl").count() == 7
    assert determining.locator("a.location").inner_text() == "tools.cedar:31"
    assert page.locator("#elapsed").inner_text().endswith(" ms")
    page.screenshot(path=str(shots / "explorer-bench.png"), full_page=True)
    with page.expect_navigation():
        determining.locator("a.location").click()
    assert page.locator("#L31").get_attribute("class") == "line hl"
    assert page.locator("#L37").get_attribute("class") == "line hl"
    assert page.locator("#L30").get_attribute("class") == "line"
    page.screenshot(path=str(shots / "explorer-file.png"))


def test_bench_scratch_edit_changes_the_decision_and_says_what_the_files_decide(page: Any, explorer: str,
                                                                               shots: Path) -> None:
    _ask_refund(page, explorer, 800)
    page.click("details.scratch summary")
    page.select_option("#scratch-file", "tools.cedar")
    buffer = page.input_value("#scratch-text")
    assert '@id("refund-finance-limit")' in buffer
    page.fill("#scratch-text", buffer.replace("amount <= 1000", "amount <= 100"))
    _submit(page, "#decide")
    assert page.locator("#result h3 .decision").inner_text() == "DENY"
    assert "ALLOW" in page.locator("#what-if").inner_text()
    page.screenshot(path=str(shots / "explorer-scratch.png"), full_page=True)


def test_bench_shows_a_request_cedar_cannot_build_as_a_denial_with_why(page: Any, explorer: str) -> None:
    _ask_refund(page, explorer, 800)
    page.fill("#context", "{}")
    _submit(page, "#decide")
    assert page.locator("#result h3 .decision").inner_text() == "DENY"
    assert "context" in page.locator("#invalid").inner_text()


def test_audit_log_filters_and_replays_what_if(page: Any, explorer: str, shots: Path) -> None:
    _open(page, explorer, "/audit")
    assert page.locator("tr.event").count() == 5
    page.fill("#f-user", "carol")
    _submit(page, "#filter")
    assert page.locator("tr.event").count() == 2
    page.select_option("#f-decision", "allow")
    _submit(page, "#filter")
    assert page.locator("tr.event").count() == 1
    page.select_option("#f-decision", "")
    page.fill("#f-user", "")
    page.check("#f-replay")
    _submit(page, "#filter")
    assert "1 allow→deny" in page.locator("#replay-summary").inner_text()
    changed = page.locator("tr.event.changed")
    assert changed.count() == 1 and "allow->deny" in changed.inner_text()
    page.screenshot(path=str(shots / "explorer-audit.png"), full_page=True)
    with page.expect_navigation():
        changed.locator("a.open").click()
    assert page.locator('.policy.determining[data-policy="refund-finance-limit"] a.location').inner_text() \
        == "tools.cedar:31"
    assert '"amount": 4200' in page.locator("#event-json").inner_text()


def test_who_can_do_what_for_a_user_and_for_a_tool(page: Any, explorer: str, shots: Path) -> None:
    _open(page, explorer, "/who")
    page.select_option("#user", 'User::"carol"')
    _submit(page, "#show-user")
    refund_row = page.locator("#user-actions tr", has_text="issue_refund")
    assert refund_row.locator("td").nth(1).inner_text() == "yes"
    page.select_option("#tool", REFUND)
    _submit(page, "#show-action")
    assert page.locator("#user-actions").is_visible()  # the user's answer stays beside the tool's
    carol = page.locator("#action-principals tr", has_text='User::"carol"')
    assert carol.locator("td").nth(2).inner_text() == "yes"
    assert page.locator("#action-principals tr.deny").count() >= 1
    assert "cases pass" in page.locator("#cases-summary").inner_text()
    page.screenshot(path=str(shots / "explorer-who.png"))


def test_store_health_links_each_finding_to_its_line(page: Any, explorer: str, shots: Path) -> None:
    _open(page, explorer, "/health")
    assert "0 errors" in page.locator("#health-summary").inner_text()
    page.screenshot(path=str(shots / "explorer-health.png"), full_page=True)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root, audit = hostile_store(tmp_path_factory.mktemp("hostile") / "store")
    with serving(root, [audit], TOKEN) as url:
        yield url.split("?")[0].rstrip("/")


def test_a_hostile_store_and_audit_log_render_as_text_and_run_no_script(page: Any, hostile: str,
                                                                        shots: Path) -> None:
    seen = ""
    for path in ("/file?name=policies.cedar&first=1&last=9", "/file?name=entities.json", "/audit",
                 "/audit?replay=1", "/audit/event?file=0&line=1", "/health", "/who"):
        _open(page, hostile, path)
        assert page.evaluate("window.__pwned") is None, path
        seen += page.locator("main").inner_text()
    assert not [text for text in page.console_messages if "Content Security Policy" in text]
    _open(page, hostile)
    page.select_option("#action", index=1)
    page.fill("#principal", "User::\"<script>window.__pwned='principal'</script>\"")
    page.fill("#resource", 'Doc::"d"')
    _submit(page, "#decide")
    assert page.locator("#result h3 .decision").inner_text() == "ALLOW"
    assert page.evaluate("window.__pwned") is None
    seen += page.locator("main").inner_text()
    for text in HOSTILE_TEXTS:
        assert text in seen
    assert not [text for text in page.console_messages if "Content Security Policy" in text]
    page.screenshot(path=str(shots / "explorer-hostile.png"), full_page=True)
