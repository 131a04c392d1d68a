"""schemathesis against the service's own OpenAPI schema: no server errors, no response that breaks it."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import given
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from .fuzzing import count_case, fuzz_settings
from .service_fixtures import running_service

EXAMPLES = 50  # per operation in CI; IAMSIGN_FUZZ_EXAMPLES overrides it


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with running_service(
        tmp_path_factory.mktemp("schemathesis"), verification_rate_limit=10**9, failed_auth_rate_limit=10**9
    ) as svc:
        yield svc


def test_every_operation_against_the_schema(api):
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    headers = {"Authorization": f"Bearer {api.key}"}
    failures = []
    for op in operations:

        @given(case=op.as_strategy())
        @fuzz_settings(EXAMPLES)
        def check(case):
            count_case("schema")
            case.call_and_validate(
                base_url=api.url,
                headers=headers,
                timeout=30,
                checks=[not_a_server_error, response_schema_conformance],
            )

        try:
            check()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report
            failures.append(f"{op.label}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
