"""GET /v1/openapi.json is valid OpenAPI 3.1, and requests generated from it get no 5xx."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from asset_admin import Tenant, make_tenant
from conftest import RunningServer, start_server
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.schemas import OpenApiSchema

ADMIN_TOKEN = "schema-admin-token"
MAX_EXAMPLES = 30
OPERATIONS = {
    ("POST", "/v1/assets"),
    ("GET", "/v1/assets"),
    ("GET", "/v1/assets/{asset_id}"),
    ("DELETE", "/v1/assets/{asset_id}"),
    ("POST", "/v1/accounts/{account_id}/top-ups"),
}


@dataclass(frozen=True)
class Target:
    server: RunningServer
    tenant: Tenant

    @property
    def schema_url(self) -> str:
        return f"{self.server.origin}/v1/openapi.json"


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    server = start_server(
        tmp_path_factory.mktemp("schema") / "data", "--assets", "--max-size", "1000000", "--admin-token", ADMIN_TOKEN
    )
    try:
        yield Target(server, make_tenant(server.upload_dir, "fuzzed"))
    finally:
        server.stop()


@pytest.fixture(scope="module")
def schema(target: Target) -> OpenApiSchema:
    return schemathesis.openapi.from_url(target.schema_url, config=schemathesis.Config(), timeout=10)


def test_openapi_document_is_valid_openapi_3_1_with_the_five_operations(target: Target, schema: OpenApiSchema) -> None:
    response = httpx.get(target.schema_url, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert document["openapi"].startswith("3.1.")
    # Raises on any violation of the OpenAPI 3.1 meta-schema.
    schema.validate()
    operations = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert operations == OPERATIONS
    loaded = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    assert loaded == OPERATIONS


def run_operation(target: Target, schema: OpenApiSchema, method: str, path: str, fill: Callable[[Any], None]) -> int:
    """Fuzz one operation with positive and negative cases; fails on the first 5xx."""
    operation = schema[path][method]
    strategy = st.one_of(
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )
    calls = 0
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN if 'top-ups' in path else target.tenant.key}"}

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, real=st.booleans())
    def check(case: Any, real: bool) -> None:
        nonlocal calls
        if real:
            fill(case)
        response = case.call(base_url=target.server.origin, headers=headers, timeout=10)
        calls += 1
        case.validate_response(response, checks=[not_a_server_error])

    check()
    return calls


def fill_project(target: Target) -> Callable[[Any], None]:
    """Point half the cases at the tenant's real project, so they get past the 404."""

    def fill(case: Any) -> None:
        if isinstance(case.body, dict) and "project_id" in case.body:
            case.body["project_id"] = target.tenant.project_id
        if isinstance(case.query, dict):
            case.query["project_id"] = target.tenant.project_id

    return fill


def fill_account(target: Target) -> Callable[[Any], None]:
    def fill(case: Any) -> None:
        case.path_parameters = {**(case.path_parameters or {}), "account_id": target.tenant.account_id}

    return fill


def fill_nothing(case: Any) -> None:
    return None


@pytest.mark.timeout(120)
def test_no_generated_request_gets_a_server_error(target: Target, schema: OpenApiSchema) -> None:
    started = time.monotonic()
    fills: dict[tuple[str, str], Callable[[Any], None]] = {
        ("POST", "/v1/assets"): fill_project(target),
        ("GET", "/v1/assets"): fill_project(target),
        ("GET", "/v1/assets/{asset_id}"): fill_nothing,
        ("DELETE", "/v1/assets/{asset_id}"): fill_nothing,
        ("POST", "/v1/accounts/{account_id}/top-ups"): fill_account(target),
    }
    for method, path in sorted(OPERATIONS):
        calls = run_operation(target, schema, method, path, fills[(method, path)])
        assert calls > 0, f"{method} {path} was never called"
    assert time.monotonic() - started < 90
