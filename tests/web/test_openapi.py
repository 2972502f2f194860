"""The OpenAPI document at `/api/openapi.json` is a valid OpenAPI 3 document, and a property-based run of it
(schemathesis, positive and negative data) against the module's real server with an admin token finds no
server error (5xx) and no response that breaks the schema it documents.

Kept short for CI: a few examples per operation (`EXAMPLES`, times $CLAWNSOLE_SOAK when set, which also lets
Hypothesis pick new data each run instead of the same derandomised data)."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.web.conftest import Api, TokenMaker

SOAK = int(os.environ.get("CLAWNSOLE_SOAK") or 0)
EXAMPLES = 6 * max(SOAK, 1)
# Routes a generated request cannot use: the event stream never ends by itself.
UNBOUNDED = r"^/api/v1/events$"


def test_the_openapi_document_validates(client: httpx.Client) -> None:
    document = client.get("/api/openapi.json").json()
    validate(document)  # raises, naming the part of the document that is not valid OpenAPI
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for path in ("/api/v1/queues/{queue}/items", "/api/v1/items/{item_id}/release", "/api/v1/events"):
        assert path in paths


def _explore(operation: Any, mode: GenerationMode, secret: str) -> None:
    """Hypothesis-generated requests of one operation (positive or negative data), each checked."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not SOAK,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        if isinstance(case.body, dict) and "wait" in case.body:
            # A claim may wait up to 30 s for an item: generated ones do not wait (the rest is kept).
            case.body = case.body | {"wait": 0}
        case.call_and_validate(
            headers={"Authorization": f"Bearer {secret}"},
            checks=[not_a_server_error, response_schema_conformance],
            timeout=30,
        )

    run()


def _can_be_wrong(operation: Any) -> bool:
    """Whether negative data exists for an operation: a body or a query to break, or a path parameter that is
    not text (a path segment is text whatever is sent, so Hypothesis would search in vain)."""
    if len(operation.body) or len(operation.query) or len(operation.headers):
        return True
    return any(p.definition.get("schema", {}).get("type") != "string" for p in operation.path_parameters)


# pytest-timeout's limit (pyproject) is for a run of the default size; a soak run is that many times longer.
@pytest.mark.timeout(180 * max(SOAK, 1))
def test_no_generated_request_gets_a_server_error_or_an_answer_outside_its_schema(api: Api, token: TokenMaker) -> None:
    admin = token("schemathesis", ["admin"])
    schema = schemathesis.openapi.from_url(f"{api.url}/api/openapi.json").exclude(path_regex=UNBOUNDED)
    failures: list[str] = []
    explored = 0
    # One operation after another in one test (schemathesis' own pytest plugin does not run on pytest 9), every
    # failure collected, so one run reports them all.
    for result in schema.get_all_operations():
        operation = result.ok()
        explored += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if mode is GenerationMode.NEGATIVE and not _can_be_wrong(operation):
                continue
            try:
                _explore(operation, mode, admin)
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, operation.label  # nothing of it could be made wrong
            except Exception as failure:
                failures.append(f"{operation.label} ({mode.value} data): {failure}")
    assert explored > 30
    assert not failures, "\n\n".join(failures)
