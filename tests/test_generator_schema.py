"""Property-based run of the generator's OpenAPI spec (schemathesis strategies, in process
over ASGI): valid and invalid requests for every operation; no answer is a server error
and every answer matches the spec (status, content type, body schema).

schemathesis' OpenAPI loader is imported with the module, not first inside the fixture:
CPython 3.11.7 can fail compiling a module imported deep in a call stack ("AST
constructor recursion depth mismatch"), which once broke this test's setup in CI.

Hypothesis drives schemathesis' strategies directly (``as_strategy``) rather than its
pytest plugin, whose fixture support reads pytest internals that pytest 9 no longer has.
"""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi import schemas as _openapi_schemas  # noqa: F401
from schemathesis.specs.openapi.checks import positive_data_acceptance

from gbsynth.generator.app import create_app
from gbsynth.generator.models import ModelHolder
from gbsynth.generator.service import Limits
from gbsynth.trainer.testing import make_tiny_checkpoint

MAX_SECONDS = 2.0  # short songs keep a hundred sampled songs within seconds
EXAMPLES = 40  # per operation and mode


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    make_tiny_checkpoint(folder, step=1)
    holder = ModelHolder(folder)
    assert holder.refresh()
    # Enough places that the fuzzer's requests are never refused for load.
    # The untrained tiny model may write very fast; the write-density stop (a 500, tested in
    # test_generator_api) is not what this test is about.
    limits = Limits(workers=2, queue=64, max_seconds=MAX_SECONDS, max_events_per_second=1e12)
    app = create_app(holder, limits)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def operations(schema):
    found = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in found} >= {
        "POST /v1/songs", "GET /v1/songs/{seed}.{fmt}", "GET /healthz",
    }  # fmt: skip
    return found


@pytest.mark.parametrize(
    "mode",
    [
        # Known open bug: in the full suite one valid request sometimes never answers
        # (read timeout after 120 s); alone the test passes. Not yet found which one.
        pytest.param(GenerationMode.POSITIVE, marks=pytest.mark.xfail(strict=False)),
        GenerationMode.NEGATIVE,
    ],
)
def test_no_server_errors_and_answers_match_the_spec(schema, mode):
    seen: Counter[tuple[str, int]] = Counter()
    for operation in operations(schema):
        if mode is GenerationMode.NEGATIVE and not (
            list(operation.iter_parameters()) or len(operation.body)
        ):
            continue  # nothing to get wrong (GET /healthz)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            # no shrinking: each example samples a song, so shrinking a failure takes minutes
            phases=[Phase.explicit, Phase.generate],
        )
        def check(case):
            response = case.call(timeout=120)  # a song on a loaded machine
            seen[(case.operation.label, response.status_code)] += 1
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:300]}"
            )
            if mode is GenerationMode.POSITIVE:
                # Some valid-looking bodies are rightly refused with 422: JSON Schema cannot
                # say that a prime must be a readable file, in time order, and shorter than
                # the song. Every other check applies.
                case.validate_response(response, excluded_checks=[positive_data_acceptance])

        check()
    # The run did reach the songs: sampled ones, and refused ones when the input was wrong.
    if mode is GenerationMode.POSITIVE:
        assert seen[("POST /v1/songs", 200)] > 5 and seen[("GET /v1/songs/{seed}.{fmt}", 200)] > 5
    else:
        assert seen[("POST /v1/songs", 422)] > 5 and seen[("GET /v1/songs/{seed}.{fmt}", 422)] > 5
    print(sorted(seen.items()))
