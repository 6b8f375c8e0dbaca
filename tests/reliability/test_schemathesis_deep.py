"""The whole API from its OpenAPI schema with many more examples per operation than the
service suite's run (SHOPLM_SCHEMATHESIS_DEEP_EXAMPLES, default 200): no request, however
malformed, gets a 5xx. Same app as tests/api/test_schemathesis.py (SQLite store, admin key)."""

from __future__ import annotations

import os
from collections import Counter

from hypothesis import HealthCheck, settings

from tests.api.conftest import ADMIN
from tests.api.test_schemathesis import schema
from tests.reliability.conftest import report

DEEP = int(os.environ.get("SHOPLM_SCHEMATHESIS_DEEP_EXAMPLES", "200"))
CALLS: Counter = Counter()
STATUSES: Counter = Counter()


@schema.parametrize()
@settings(max_examples=DEEP, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_with_many_examples(case):
    response = case.call(headers={"X-API-Key": ADMIN})
    CALLS[case.operation.label] += 1
    STATUSES[response.status_code] += 1
    report("schemathesis", {"max_examples_per_operation": DEEP, "requests": sum(CALLS.values()),
                            "operations": len(CALLS), "statuses": {str(k): v for k, v in sorted(STATUSES.items())}})
    assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text}"
