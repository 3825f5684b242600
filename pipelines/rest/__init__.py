"""The REST evaluator (FastAPI): ``create_app(config)``; run it with ``secureai serve-api``.

See :mod:`pipelines.rest.app` for the endpoints and docs/operations.md for running it. This
package never imports torch (the API image is lean).
"""

from __future__ import annotations

from pipelines.rest.app import create_app
from pipelines.rest.config import ApiConfig, ApiConfigError, load_api_config

__all__ = ["ApiConfig", "ApiConfigError", "create_app", "load_api_config"]
