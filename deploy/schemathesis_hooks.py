"""Schemathesis hooks of deploy/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

Schemathesis sometimes sends generated headers with the names of the ones only the HTTP
transport sets (`Transfer-Encoding: Y`, say). The HTTP server library (hyper) answers a
malformed one with a bare 400 before the service sees the request, so such a case tests the
library's framing, not the API: these headers are dropped before each call.
"""

import schemathesis

TRANSPORT_HEADERS = {
    "connection", "content-length", "expect", "host", "te", "trailer", "transfer-encoding",
    "upgrade",
}


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    for name in list(case.headers or {}):
        if name.lower() in TRANSPORT_HEADERS:
            del case.headers[name]
