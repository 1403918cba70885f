"""schemathesis against the node's /openapi.json: generated requests, good
and bad, never get a 5xx, every error has the documented shape, and every
answer conforms to the document (status codes, content types, bodies), and
bad input and bad keys are refused.

The operations are driven one by one with Hypothesis rather than through
schemathesis' pytest plugin, whose lazy fixture loader does not run on
pytest 9."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.integration.nodes import NodeProcess

ADMIN_KEY = "adminkey-for-schemathesis"


def check_operation(operation: Any, base_url: str) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases every run: a failure is reproducible
        suppress_health_check=list(HealthCheck),
    )
    def answer_is_documented(case: Any) -> None:
        response = case.call(base_url=base_url, headers={"X-API-Key": ADMIN_KEY}, timeout=10)
        assert response.status_code < 500, (case.method, case.formatted_path, response.text)
        if response.status_code >= 400:
            error = response.json()["error"]
            assert {"code", "type", "message", "field"} <= set(error), response.text
        # Rules the schema cannot state (run_at after 1970, delay or run_at
        # but not both, a queue's own limits) answer 400 naming the field, so
        # schema-valid data may be refused: that one check stays out.
        case.validate_response(response, excluded_checks=[positive_data_acceptance])

    answer_is_documented()


def test_every_route_answers_in_its_documented_shape(tmp_path: Path) -> None:
    # With a key configured, so that schemathesis' auth checks have teeth.
    node = NodeProcess(str(tmp_path), "--api-key", f"{ADMIN_KEY}:admin").start()
    try:
        base_url = f"http://{node.http}"
        schema = schemathesis.openapi.from_url(
            f"{base_url}/openapi.json", headers={"X-API-Key": ADMIN_KEY}
        )
        results = list(schema.get_all_operations())
        operations = [result.ok() for result in results if isinstance(result, Ok)]
        assert len(operations) == len(results)  # the document itself is valid
        assert len(operations) >= 30
        for operation in operations:
            check_operation(operation, base_url)
    finally:
        node.kill()
