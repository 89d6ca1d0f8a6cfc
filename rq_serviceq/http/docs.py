"""``/docs`` (Swagger UI) served from the package, so the page works with no internet.

FastAPI's own ``/docs`` loads Swagger UI's script and style from a CDN and its
favicon from fastapi.tiangolo.com: offline, or behind a proxy that blocks them,
it is a blank page.  ``fastapi-offline`` ships Swagger UI 5's files (version 4,
as in ``swagger-ui-bundle``, refuses the OpenAPI 3.1 schema FastAPI writes);
they are mounted at ``/docs/assets`` and the page points there.  The online
validator badge is turned off: it would ask validator.swagger.io about the schema.

ReDoc is not served: its bundle loads a logo from a CDN, and Swagger UI covers
what it shows.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
# No online validator: Swagger UI would otherwise send the schema's URL to validator.swagger.io.
SWAGGER_PARAMETERS = {"validatorUrl": None}


def serve_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and its assets (``/docs/assets/...``) from the installed package.

    ``app`` is made with ``docs_url=None``, so FastAPI's CDN page is not there to shadow this one.
    """
    if not (ASSETS_DIR / "swagger-ui-bundle.js").is_file():
        raise RuntimeError(
            f"fastapi-offline's Swagger UI files are missing from {ASSETS_DIR}: reinstall fastapi-offline"
        )
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return docs_page(app, request.scope.get("root_path", "").rstrip("/"))


def docs_page(app: FastAPI, root: str) -> HTMLResponse:
    """Swagger UI's page, every URL in it on this server (under ``root``, the app's root path behind a proxy)."""
    return get_swagger_ui_html(
        openapi_url=f"{root}{app.openapi_url}",
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
        oauth2_redirect_url=None,  # the token is a bearer header: no OAuth2 flow to come back from
        swagger_ui_parameters=SWAGGER_PARAMETERS,
    )
