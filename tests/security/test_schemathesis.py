"""Every operation of every service's OpenAPI, fuzzed by schemathesis with an admin token:
never a 5xx, and every answer (status, content type, body) is one the OpenAPI documents.

Valid inputs (positive mode) and invalid ones (negative mode) are both generated. The
operations are driven through Hypothesis directly rather than `@schema.parametrize()`:
schemathesis's lazy pytest fixture loader does not work with the pytest this repo pins.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

from tests.helpers import auth, start_service, test_settings

MAX_EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 10}

# A schema-valid request may still be refused with a 422 naming the field: an opaque cursor
# that is not one of ours, a GTIN no model has, an implant date in the future, a silence that
# ends before it starts. The contract calls those bad input; the default check would not.
CONFIG = SchemathesisConfig.from_dict({
    "checks": {
        "positive_data_acceptance": {
            "expected-statuses": ["2XX", "401", "403", "404", "409", "422"],
        },
    },
})


def _fuzz(operation, mode: GenerationMode, headers: dict[str, str]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES[mode], deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    def run(case) -> None:
        case.call_and_validate(headers=headers)

    run()


@pytest.mark.parametrize("name", ["inventory", "scheduling", "alerts"])
def test_every_operation_answers_as_its_openapi_says(name, tmp_path):
    harness = start_service(name, test_settings(tmp_path))
    schema = schemathesis.openapi.from_asgi("/openapi.json", harness.client.app, config=CONFIG)
    headers = auth("admin", sub="fuzzer")
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(operation, mode, headers)
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, operation.label  # nothing to negate
            except BaseException as exc:  # noqa: BLE001 - schemathesis raises an ExceptionGroup
                if isinstance(exc, KeyboardInterrupt):
                    raise
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
