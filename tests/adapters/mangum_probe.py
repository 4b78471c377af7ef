"""What Mangum derives from an AWS event: the ASGI scope (plus the body) its app would see."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from nubes.adapters.aws.builders import LambdaContext


def mangum_scope(event: dict[str, Any], base_path: str = "/") -> dict[str, Any]:
    from mangum import Mangum

    captured: dict[str, Any] = {}

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        captured.update(scope)
        message = await receive()
        captured["body"] = message.get("body", b"")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        Mangum(asgi, lifespan="off", api_gateway_base_path=base_path)(copy.deepcopy(event), LambdaContext())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    return captured
