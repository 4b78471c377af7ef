"""The problem responses an adapter answers itself (an unreadable request, a failure of the adapter,
a response over the cloud's limit), the same on every cloud.

:func:`nubes.core.app.problem_response` needs the :class:`~nubes.Request` it answers (for
``instance``); an adapter often has none, so :func:`adapter_problem` leaves ``instance`` out unless
one is given. (``core.app.problem_response`` could take ``request=None`` and absorb this.)
"""

from __future__ import annotations

from nubes.core import encoding
from nubes.core.request import Request
from nubes.core.response import Response
from nubes.errors import HTTPError


def adapter_problem(status: int, detail: str, request_id: str, *, title: str | None = None,
                    request: Request | None = None) -> Response:
    """An RFC 9457 ``application/problem+json`` response with ``request_id`` in its body and in
    ``x-nubes-request-id``; ``instance`` is ``request``'s path when there is a request to name."""
    body = HTTPError(status, detail, title=title).problem()
    if request is not None:
        body["instance"] = request.path
    body["request_id"] = request_id
    return Response(encoding.dumps(body), status, {"x-nubes-request-id": request_id}, "application/problem+json")
