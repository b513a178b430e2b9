"""Schemathesis hooks for the API tests (loaded through SCHEMATHESIS_HOOKS).

The log endpoint follows a run until it ends; runs queued during fuzzing never start (no
worker runs), so it is asked with ``follow=false``: what the log holds now, then the end.
"""

import schemathesis


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if case.method == "GET" and case.path.endswith("/logs"):
        case.query = {**(case.query or {}), "follow": "false"}
