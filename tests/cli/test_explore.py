"""``agentauthz explore`` without a browser: token gate, escaping, loopback, read-only, each view's answer."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

pytest.importorskip("starlette", reason="agentauthz explore needs the explore extra")

from starlette.testclient import TestClient

from agentauthz.cli._common import UsageError
from agentauthz.cli._explore import check_bind, new_token, serving
from agentauthz.cli._explore_app import COOKIE, create_app
from agentauthz.cli._main import main
from tests.cli.explorer_stores import (
    HOSTILE_EVENT,
    TOKEN,
    example_store,
    hostile_store,
    recorded_audit_log,
    tree_state,
)
from tests.strategies import markup_values

ROUTES = ["/", "/file?name=tools.cedar", "/audit", "/audit/event?file=0&line=1", "/who", "/health",
          "/static/explorer.js", "/static/explorer.css"]

REFUND = {"principal": 'User::"carol"', "action": 'Action::"issue_refund"',
          "resource": 'Tool::"issue_refund"',
          "context": '{"input": {"order_id": "o-1", "amount": 4200}}'}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return example_store(tmp_path / "policies")


@pytest.fixture
def audit(tmp_path: Path) -> Path:
    return recorded_audit_log(tmp_path / "audit.jsonl")


@pytest.fixture
def client(store: Path, audit: Path) -> TestClient:
    return TestClient(create_app(store, [audit], TOKEN))


def _get(client: TestClient, path: str, **params: str) -> str:
    response = client.get(path, params={**params, "token": TOKEN})
    assert response.status_code == 200, response.text
    return response.text


# -- the token ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ROUTES)
def test_every_route_answers_403_without_the_token(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 403
    assert "tools.cedar" not in response.text and "permit" not in response.text


@pytest.mark.parametrize("path", ROUTES)
def test_every_route_answers_403_with_a_wrong_token(client: TestClient, path: str) -> None:
    separator = "&" if "?" in path else "?"
    assert client.get(f"{path}{separator}token=wrong").status_code == 403
    client.cookies.set(COOKIE, "wrong")
    assert client.get(path).status_code == 403


def test_a_post_without_the_token_decides_nothing(client: TestClient) -> None:
    response = client.post("/", data=REFUND)
    assert response.status_code == 403
    assert "refund-finance-limit" not in response.text


def test_the_token_in_the_url_sets_a_strict_cookie_that_serves_later_requests(client: TestClient) -> None:
    response = client.get("/", params={"token": TOKEN})
    cookie = response.headers["set-cookie"]
    assert f"{COOKIE}={TOKEN}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    client.cookies.clear()
    client.cookies.set(COOKIE, TOKEN)
    assert client.get("/health").status_code == 200


def test_every_answer_carries_a_content_security_policy_and_no_referrer(client: TestClient) -> None:
    for response in (client.get("/"), client.get("/", params={"token": TOKEN})):
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-content-type-options"] == "nosniff"


def test_new_tokens_are_long_and_never_repeat() -> None:
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50 and all(len(token) >= 40 for token in tokens)


# -- loopback ---------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_addresses_are_accepted(host: str) -> None:
    check_bind(host, allow_remote=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", "10.0.0.1"])
def test_a_non_loopback_address_is_refused_unless_allowed(host: str) -> None:
    with pytest.raises(UsageError, match="not a loopback address"):
        check_bind(host, allow_remote=False)
    check_bind(host, allow_remote=True)


def test_the_command_refuses_a_non_loopback_bind_with_a_usage_error(
        store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", str(store), "--host", "0.0.0.0"]) == 2
    assert "--allow-remote" in capsys.readouterr().err


def test_the_command_refuses_a_missing_audit_file(store: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", str(store), "--audit", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_the_served_page_listens_on_loopback_and_needs_the_token(store: Path) -> None:
    with serving(store, [], TOKEN) as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith(f"/?token={TOKEN}")
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.status == 200 and "Test bench" in answer.read().decode()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url.split("?")[0], timeout=10)
        assert refused.value.code == 403


# -- escaping ---------------------------------------------------------------------------------


def test_markup_in_policies_entities_and_audit_lines_is_escaped_on_every_page(tmp_path: Path) -> None:
    root, audit = hostile_store(tmp_path / "hostile")
    client = TestClient(create_app(root, [audit], TOKEN))
    bench = client.post(f"/?token={TOKEN}", data={
        "principal": "User::\"<script>window.__pwned='principal'</script>\"",
        "action": "Action::\"</script><script>window.__pwned='action'</script>\"",
        "resource": 'Doc::"<i>d</i>"', "context": "{}"}).text
    pages = [bench,
             _get(client, "/file", name="policies.cedar", first="1", last="7"),
             _get(client, "/file", name="entities.json"),
             _get(client, "/audit"), _get(client, "/audit", replay="1"),
             _get(client, "/audit/event", file="0", line="1"),
             _get(client, "/who", user="User::\"<script>window.__pwned='principal'</script>\"",
                  action="Action::\"</script><script>window.__pwned='action'</script>\""),
             _get(client, "/health")]
    assert "ALLOW" in bench  # the hostile policy did decide
    for page in pages:
        assert "window.__pwned" in page  # the hostile text is there, as text
        for raw in ("<script>window", "<img src=x", "<svg", "<b onmouseover", "<i>"):
            assert raw not in page
    assert "&lt;script&gt;window.__pwned = &#34;comment&#34;&lt;/script&gt;" in pages[1]
    assert "&lt;img src=x onerror=window.__pwned=&#39;id&#39;&gt;" in bench


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(principal=markup_values, action=markup_values, reason=markup_values, error=markup_values)
def test_any_markup_in_an_audit_event_is_escaped_in_the_log_and_the_event_page(
        tmp_path: Path, principal: str, action: str, reason: str, error: str) -> None:
    log = tmp_path / "markup.jsonl"
    event = {**HOSTILE_EVENT, "principal": principal, "action": action, "reasons": [reason],
             "errors": [error]}
    log.write_text(json.dumps(event) + "\n" + principal + "\n", encoding="utf-8")
    client = TestClient(create_app(tmp_path, [log], TOKEN))
    for page in (_get(client, "/audit"), _get(client, "/audit", policy=reason),
                 _get(client, "/audit/event", file="0", line="1")):
        assert "<zz" not in page
        assert "&lt;zz" in page


def test_the_schema_data_of_the_bench_cannot_close_its_script_element(tmp_path: Path) -> None:
    root, audit = hostile_store(tmp_path / "hostile")
    page = _get(TestClient(create_app(root, [audit], TOKEN)), "/")
    data = page.split('id="schema-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and "\\u003c/script\\u003e" in data


def test_a_long_audit_log_lists_the_first_thousand_matching_events(tmp_path: Path) -> None:
    log = tmp_path / "long.jsonl"
    log.write_text((json.dumps(HOSTILE_EVENT) + "\n") * 1005, encoding="utf-8")
    page = _get(TestClient(create_app(tmp_path, [log], TOKEN)), "/audit")
    assert "1005 events, 1005 match, the first 1000 shown" in page
    assert page.count('<tr class="event') == 1000


# -- read-only ---------------------------------------------------------------------------------


def test_no_view_writes_to_the_store_or_the_audit_log(client: TestClient, store: Path, audit: Path) -> None:
    before, log_before = tree_state(store), audit.read_bytes()
    tools = (store / "tools.cedar").read_text(encoding="utf-8")
    client.post(f"/?token={TOKEN}", data={**REFUND, "scratch_file": "tools.cedar",
                                          "scratch_text": tools.replace("<= 5000", "<= 100")})
    for path in ROUTES:
        _get(client, path.split("?")[0], **dict(part.split("=") for part in path.partition("?")[2].split("&")
                                               if part))
    _get(client, "/audit", replay="1")
    _get(client, "/who", user='User::"carol"', action='Action::"issue_refund"')
    assert tree_state(store) == before and audit.read_bytes() == log_before


def test_only_files_of_the_store_are_served(client: TestClient, store: Path) -> None:
    (store.parent / "secret.txt").write_text("secret", encoding="utf-8")
    for name in ("../secret.txt", "/etc/passwd", "README.md", "ALLOW/search_by_employee.json", ""):
        response = client.get("/file", params={"name": name, "token": TOKEN})
        assert response.status_code == 404 and "secret" not in response.text.replace("secret.txt", "")
    assert "refund-finance-limit" in _get(client, "/file", name="tools.cedar")
    assert "acme" in _get(client, "/file", name="entities.json")


# -- test bench ---------------------------------------------------------------------------------


def test_the_bench_shows_the_decision_and_the_determining_policy_at_its_line(client: TestClient) -> None:
    page = client.post(f"/?token={TOKEN}", data=REFUND).text
    assert '<span class="decision allow">ALLOW</span>' in page
    assert 'data-policy="refund-finance-limit"' in page
    assert ">tools.cedar:31</a>" in page and "first=31&amp;last=37" in page
    assert 'id="elapsed"' in page


def test_the_bench_offers_the_schema_s_actions_entities_and_context_fields(client: TestClient) -> None:
    page = _get(client, "/")
    assert '<option value="Action::&#34;issue_refund&#34;"' in page
    assert 'value="User::&#34;carol&#34;" data-type="User"' in page
    assert "<code>context.input.amount</code></td><td>Long</td><td>required" in page
    assert "<code>context.session</code></td><td>Record</td><td>optional" in page
    assert "<code>context.session.seen</code>" not in page  # an optional attribute's insides are not listed


def test_a_scratch_edit_changes_the_decision_without_writing(client: TestClient, store: Path) -> None:
    tools = (store / "tools.cedar").read_text(encoding="utf-8")
    page = client.post(f"/?token={TOKEN}", data={
        **REFUND, "scratch_file": "tools.cedar", "scratch_text": tools.replace("<= 5000", "<= 100")}).text
    assert '<h3>Decision <span class="decision deny">DENY</span>' in page
    assert 'id="what-if"' in page and '<span class="decision allow">ALLOW</span>' in page
    assert (store / "tools.cedar").read_text(encoding="utf-8") == tools


def test_a_scratch_edit_that_does_not_parse_shows_the_problem_at_its_line(client: TestClient) -> None:
    page = client.post(f"/?token={TOKEN}", data={
        **REFUND, "scratch_file": "tools.cedar",
        "scratch_text": "permit(principal, action, resource)\nnonsense"}).text
    assert "No decision" in page and "tools.cedar:" in page


def test_a_scratch_edit_of_a_file_outside_the_store_is_refused(client: TestClient) -> None:
    page = client.post(f"/?token={TOKEN}", data={**REFUND, "scratch_file": "../other.cedar",
                                                 "scratch_text": "permit(principal, action, resource);"}).text
    assert "No decision" in page and "no such policy file in the store" in page


@pytest.mark.parametrize(("field", "value", "message"), [
    ("principal", "carol", "expected Cedar text"),
    ("context", "[1]", "expected a JSON object"),
    ("context", "{", "invalid JSON"),
    ("action", "", "pick an action"),
])
def test_an_unreadable_request_is_a_problem_not_a_decision(client: TestClient, field: str, value: str,
                                                           message: str) -> None:
    page = client.post(f"/?token={TOKEN}", data={**REFUND, field: value}).text
    assert "No decision" in page and message in page and 'class="decision' not in page.split('id="result"')[1]


def test_a_request_cedar_cannot_build_is_shown_as_a_denial_with_why(client: TestClient) -> None:
    page = client.post(f"/?token={TOKEN}", data={**REFUND, "context": "{}"}).text
    assert '<span class="decision deny">DENY</span>' in page and 'id="invalid"' in page


# -- audit log ------------------------------------------------------------------------------------


def test_the_audit_log_lists_every_event_and_the_stray_line(client: TestClient) -> None:
    page = _get(client, "/audit")
    assert page.count('<tr class="event') == 5
    assert "this line is no audit event" not in page and "not JSON" in page


@pytest.mark.parametrize(("params", "rows"), [
    ({"user": "carol"}, 2), ({"action": "search"}, 1), ({"decision": "allow"}, 3),
    ({"policy": "refund-finance-limit"}, 1), ({"since": "2026-05-28T21:00"}, 4),
    ({"since": "2026-05-28T21:00", "until": "2026-05-28T22:30"}, 2), ({"user": "nobody"}, 0),
])
def test_the_audit_log_filters_by_user_action_decision_policy_and_time(
        client: TestClient, params: dict[str, str], rows: int) -> None:
    assert _get(client, "/audit", **params).count('<tr class="event') == rows


def test_a_what_if_replay_marks_the_events_the_current_files_decide_differently(client: TestClient,
                                                                                store: Path) -> None:
    tools = (store / "tools.cedar").read_text(encoding="utf-8")
    (store / "tools.cedar").write_text(tools.replace("<= 5000", "<= 1000"), encoding="utf-8")
    page = _get(client, "/audit", replay="1")
    assert "<strong>1</strong> allow&rarr;deny" in page
    assert page.count('<tr class="event changed">') == 1
    assert '<td class="change">allow-&gt;deny</td>' in page


def test_an_opened_event_shows_its_determining_policy_in_the_current_files(client: TestClient) -> None:
    page = _get(client, "/audit/event", file="0", line="1")
    assert 'data-policy="refund-finance-limit"' in page and ">tools.cedar:31</a>" in page
    assert "&#34;amount&#34;: 4200" in page


def test_opening_an_event_that_does_not_exist_is_a_404(client: TestClient) -> None:
    assert client.get("/audit/event", params={"file": "3", "line": "1", "token": TOKEN}).status_code == 404


# -- who can do what --------------------------------------------------------------------------------


def test_who_lists_what_a_user_may_ever_do_and_who_may_call_a_tool(client: TestClient) -> None:
    page = _get(client, "/who", user='User::"carol"', action='Action::"issue_refund"')
    user_table = page.split('id="user-actions"')[1].split("</table>")[0]
    assert '<tr class="allow"><td><code>Action::&#34;issue_refund&#34;</code>' in user_table
    principals = page.split('id="action-principals"')[1].split("</table>")[0]
    assert '<tr class="allow"><td><code>User::&#34;carol&#34;</code>' in principals
    assert "never" in principals  # someone outside finance and support may never refund


def test_who_reports_the_cases_coverage_and_the_decision_table_per_policy(client: TestClient) -> None:
    page = _get(client, "/who")
    assert "42 of 42 cases pass" in page
    by_policy = page.split('id="by-policy"')[1].split("</table>")[0]
    assert "refund-finance-limit" in by_policy and "ALLOW/finance_refund_within_limit" in by_policy


# -- store health ------------------------------------------------------------------------------------


def test_store_health_lists_problems_with_links_to_their_lines(client: TestClient, store: Path) -> None:
    (store / "tools.cedar").write_text(
        (store / "tools.cedar").read_text(encoding="utf-8") + '\n@id("dead")\npermit(principal, action, '
        'resource) when { false };\n', encoding="utf-8")
    page = _get(client, "/health")
    assert "never-applies" in page and "<code>dead</code>" in page
    assert "/file?name=tools.cedar&amp;first=" in page


def test_store_health_of_a_store_that_does_not_load_shows_the_errors(client: TestClient, store: Path) -> None:
    (store / "broken.cedar").write_text("permit(principal, action, resource)\nwhen { nonsense",
                                        encoding="utf-8")
    page = _get(client, "/health")
    assert "Errors" in page and "broken.cedar:" in page
    assert "does not load" in page


# -- the command ----------------------------------------------------------------------------------------


def test_the_command_prints_a_loopback_url_with_a_token_that_opens_the_page(store: Path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "agentauthz", "explore", str(store)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("agentauthz explore: http://127.0.0.1:"), line + process.stderr.read()
        url = line.split(": ", 1)[1].strip()
        token = url.split("token=", 1)[1]
        assert len(token) >= 40
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert "Test bench" in answer.read().decode()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url.replace(token, "x" * len(token)), timeout=10)
        assert refused.value.code == 403
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_who_of_a_store_that_does_not_load_says_so_and_shows_no_permission(client: TestClient,
                                                                           store: Path) -> None:
    (store / "broken.cedar").write_text("permit(principal, action, resource)\nwhen { nonsense",
                                        encoding="utf-8")
    page = _get(client, "/who", user='User::"carol"', action='Action::"issue_refund"')
    assert "the store does not load" in page and "broken.cedar:" in page
    assert 'id="user-actions"' not in page and 'id="action-principals"' not in page


def test_without_the_extra_the_command_names_the_install_line(store: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import agentauthz.cli._explore as explore

    monkeypatch.setattr(explore, "EXTRA_MODULES", ("starlette", "no_such_module_of_the_explore_extra"))
    assert main(["explore", str(store)]) == 2
    assert "pip install 'agentauthz[explore]'" in capsys.readouterr().err
