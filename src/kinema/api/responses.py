"""The JSON response every route renders with."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse


class TolerantJSONResponse(JSONResponse):
    """JSON as FastAPI renders it, except that text which is not valid Unicode (a lone surrogate
    in a row stored before such input was refused) is sent escaped instead of failing the read."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")
