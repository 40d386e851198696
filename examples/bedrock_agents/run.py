"""Invoke the example action-group Lambda locally with the sample events: `make demo`.

Each file of events/ is a Bedrock Agents Lambda input event; its name ends in
``_allowed`` or ``_denied``, the outcome the policies must give. The runner
calls ``lambda_function.lambda_handler`` as the Lambda runtime would and prints
what the agent gets back (a refusal names only the decision's id) and, from the
audit event with that id, why; it exits 1 if an outcome differs from the file name.

    python examples/bedrock_agents/run.py [events/<name>.json ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import lambda_function  # noqa: E402 (the module sits beside this script)
from lambda_function import lambda_handler  # noqa: E402

import agentauthz as az  # noqa: E402

AUDIT = az.MemorySink()
lambda_function.authz.audit_sinks = (AUDIT,)  # what an operator reads in CloudWatch Logs


def outcome(response: dict[str, Any]) -> tuple[bool, str]:
    """Whether the agent got a result (not a refusal), and the body it reads."""
    answer = response["response"]
    if "functionResponse" in answer:
        function_response = answer["functionResponse"]
        body = function_response["responseBody"]["TEXT"]["body"]
        return "responseState" not in function_response, body
    body = answer["responseBody"]["application/json"]["body"]
    return answer["httpStatusCode"] < 400, f"HTTP {answer['httpStatusCode']} {body}"


def describe(event: dict[str, Any]) -> str:
    operation = event.get("function") or f"{event.get('httpMethod')} {event.get('apiPath')}"
    user = (event.get("sessionAttributes") or {}).get("userId", "<no user>")
    return f"{user} -> {event['actionGroup']}/{operation}"


def why(body: str) -> str:
    """What the audit event of a refusal says: found by the decision id the agent read."""
    event = next((e for e in AUDIT.events if e.decision_id and e.decision_id in body), None)
    if event is None:
        return ""
    if event.reasons:
        return f"policies {', '.join(event.reasons)}"
    return "; ".join(event.errors) or "no policy permits it"


def run(paths: list[Path]) -> int:
    mismatches = 0
    for path in paths:
        event = json.loads(path.read_text(encoding="utf-8"))
        AUDIT.clear()
        allowed, body = outcome(lambda_handler(event, None))
        expected = not path.stem.endswith("_denied")
        mark = "" if allowed == expected else "   <-- UNEXPECTED"
        mismatches += allowed != expected
        print(f"  {'ALLOW' if allowed else 'DENY '}  {path.stem}: {describe(event)}{mark}")
        print(f"         agent reads: {body}")
        if not allowed:
            print(f"         audit says:  {why(body)}")
    return 1 if mismatches else 0


def main(argv: list[str]) -> int:
    paths = [Path(arg) for arg in argv] or sorted((HERE / "events").glob("*.json"))
    print("Bedrock Agents action-group Lambda, authorized by agentauthz (policies/).")
    print("Each sample event is what Bedrock sends the Lambda when the agent calls a function")
    print("(assistant-tools) or an API operation (assistant-api). The end user is the userId")
    print("session attribute, which the application sets server-side; events that name a user")
    print("only in the input text, the prompt session attributes or the parameters (where the")
    print("model or an injection could write it) have no user and are refused. Per event: the")
    print("outcome, what the agent reads back, and for a refusal what the audit event says.\n")
    return run(paths)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
