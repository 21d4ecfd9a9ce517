"""Schemathesis against the running gateway: whatever the OpenAPI document allows — and what it
does not (negative data) — is answered without a server error, every refusal is a problem
document, and an OTP sent after the fuzzing is delivered and shown within seconds.

The OTP comes from another tenant: the fuzzing saves whatever rules the schema allows for its
own tenant (holds and blocks of everything included), which rightly stop that tenant's mail."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.core.result import Ok

from libs.database import open_pool
from libs.templates import put_template
from libs.tenants import create_tenant
from services.ingest.problems import PROBLEM_JSON
from tests.e2e.conftest import Topology

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 100
"""About 7,000 requests over the document's 70 operations (~2.5 min here): `make test` must stay
under 20 minutes on 2 cores."""
DELIVERED_WITHIN_SECONDS = 10.0


async def tenant_with_otp_template(topology: Topology) -> str:
    """The API key of a new tenant that has an ``otp`` template."""
    pool = await open_pool(topology.settings, size=1)
    try:
        tenant, api_key = await create_tenant(
            pool, f"fuzz-{uuid.uuid4().hex[:6]}", ["example.test"], dev_mode=True
        )
        await put_template(pool, tenant.id, "otp", "Code {{ code }}", None, "{{ code }}")
    finally:
        await pool.close()
    return api_key


@pytest.fixture(scope="module")
async def fuzz_tenant(topology: Topology) -> AsyncIterator[str]:
    """A tenant of the fuzz run's own, and its API key."""
    yield await tenant_with_otp_template(topology)


def test_any_request_is_answered_without_a_server_error(
    topology: Topology, fuzz_tenant: str
) -> None:
    schema = schemathesis.openapi.from_url(f"{topology.settings.public_url}/openapi.json")
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), "every operation of the document can be fuzzed"
    assert {op.path for op in operations} >= {"/v1/messages", "/v1/messages/batch"}
    for operation in operations:
        cases = st.one_of(*(operation.as_strategy(generation_mode=mode) for mode in GenerationMode))

        @given(case=cases)
        @settings(
            deadline=None,
            max_examples=EXAMPLES_PER_OPERATION,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def answered_without_a_server_error(case: Case[Any]) -> None:
            response = case.call(headers={"Authorization": f"Bearer {fuzz_tenant}"}, timeout=30)
            assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
            if response.status_code >= 400:
                assert response.headers["content-type"] == [PROBLEM_JSON], response.text[:500]
                problem: dict[str, Any] = response.json()
                assert problem["status"] == response.status_code
                assert problem["code"]

        answered_without_a_server_error()


async def test_after_the_fuzzing_an_otp_is_delivered_within_seconds(
    topology: Topology, fuzz_tenant: str
) -> None:
    api_key = await tenant_with_otp_template(topology)
    accepted = await topology.send(
        api_key,
        {
            "from": "Acme <login@example.test>",
            "to": f"success+{uuid.uuid4().hex[:8]}@simulator.sendarix.test",
            "template": "otp",
            "data": {"code": "123456"},
            "category": "otp",
        },
    )
    await topology.settled(api_key, accepted["id"], "delivered", timeout=DELIVERED_WITHIN_SECONDS)
