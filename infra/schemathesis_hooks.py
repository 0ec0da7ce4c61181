"""Schemathesis hooks for infra/schemathesis.sh (loaded via SCHEMATHESIS_HOOKS).

`auth_is_refused`: for the runs with a missing, malformed, expired or
wrongly signed token, every answer of an /api route must be 401 or 403
(with the documented error body, checked by response_schema_conformance).
Enabled only where --checks names it.
"""

import schemathesis


@schemathesis.check
def auth_is_refused(ctx, response, case):
    if not case.path.startswith("/api/"):
        return None
    # The coverage phase also probes undocumented methods (TRACE, ...): no
    # route, so the gateway's 404, as in API Gateway; not an auth question.
    if case.method.upper() != case.operation.method.upper():
        return None
    if response.status_code not in (401, 403):
        raise AssertionError(
            f"{case.method} {case.formatted_path}: expected 401/403 without a valid token, "
            f"got {response.status_code}"
        )
    return None
