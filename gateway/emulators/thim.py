"""The IMDS double: THIM's VCEK chain endpoint, over plain HTTP on loopback like the real IMDS.

Accepts the THIM JSON document to publish (e.g. ``SimulatedAmd.thim_bundle()``). Guarantees the real
endpoint's behaviour as far as clients can see it: ``GET /metadata/THIM/amd/certification``
answers ``{"vcekCert","tcbm","certificateChain","cacheControl"}`` only when the request carries
``Metadata: true``; without it, 400 with IMDS's error JSON; requests that came through a proxy
(``X-Forwarded-For``) are refused as IMDS refuses them. Never: serves anything else.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

THIM_PATH = "/metadata/THIM/amd/certification"


def thim_app(document: bytes) -> Starlette:
    async def certification(request: Request) -> Response:
        if request.headers.get("Metadata", "").lower() != "true":
            return _imds_error("Bad request. Required metadata header not specified")
        if "X-Forwarded-For" in request.headers:
            return _imds_error("Bad request. Proxied requests are not allowed")
        return Response(document, media_type="application/json")

    return Starlette(routes=[Route(THIM_PATH, certification, methods=["GET"])])


def _imds_error(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)
