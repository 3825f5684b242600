"""``secureai serve-api``: the REST evaluator (pipelines/rest/) on uvicorn.

:func:`register` adds the command to the ``secureai`` parser (pipelines/cli.py); ``python -m
pipelines.cli_serve serve-api ...`` runs it on its own. Errors are one line
(``secureai: error: ...``); the service binds 127.0.0.1 unless the config or ``--host`` says
otherwise, and serves HTTPS when ``tls`` is configured.
"""

from __future__ import annotations

import argparse
import logging
import ssl
import sys
from collections.abc import Sequence
from typing import Any

from pipelines.cli_base import EXIT_USAGE, run_cli, standalone_parser

DEFAULT_CONFIG = "configs/api.yml"


def _error(message: str) -> int:
    """One line and exit 2, printed here rather than raised as CLIError: ``cli.main``'s error
    handler imports the training stack (torch), which the lean API image does not have."""
    print(f"secureai: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def cmd_serve_api(args: argparse.Namespace) -> int:
    import uvicorn

    from morpheus_ext.feature_spec import SpecError
    from pipelines.rest import ApiConfigError, create_app, load_api_config

    try:
        config = load_api_config(args.config)
        updates: dict[str, Any] = {}
        if args.host:
            updates["host"] = args.host
        if args.port is not None:
            updates["port"] = args.port
        if updates:
            config = config.model_copy(update=updates)
        app = create_app(config)
    except (ApiConfigError, SpecError) as exc:
        return _error(str(exc).strip().splitlines()[0])
    for name in ("pipelines", "morpheus_ext"):
        logging.getLogger(name).setLevel(logging.INFO)
    tls: dict[str, Any] = {}
    if config.tls is not None:
        for path in (config.tls.certfile, config.tls.keyfile, config.tls.ca_certfile):
            if path is not None and not path.is_file():
                return _error(f"tls: file not found: {path}")
        tls = {
            "ssl_certfile": str(config.tls.certfile),
            "ssl_keyfile": str(config.tls.keyfile),
            "ssl_ca_certs": str(config.tls.ca_certfile) if config.tls.ca_certfile else None,
            "ssl_cert_reqs": ssl.CERT_REQUIRED if config.tls.require_client_cert else ssl.CERT_NONE,
        }
    scheme = "https" if tls else "http"
    print(
        f"secureai serve-api: {scheme}://{config.host}:{config.port} (engine "
        f"{config.inference.engine}, spec {config.spec}); docs at /docs, metrics at /metrics",
        flush=True,
    )
    try:
        uvicorn.run(
            app,
            host=config.host,
            port=config.port,
            log_level=args.log_level,
            limit_concurrency=config.limits.max_concurrent_requests,
            server_header=False,
            proxy_headers=False,
            **tls,
        )
    except OSError as exc:  # e.g. an address that cannot be bound
        return _error(f"cannot serve on {config.host}:{config.port}: {exc.strerror}")
    return 0


def register(sub: Any) -> None:
    """Add ``serve-api`` to the ``secureai`` subparsers."""
    p = sub.add_parser("serve-api", help="the REST evaluator: POST /v1/score, GET /v1/models")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--host", help="override `host` (default from the config: 127.0.0.1)")
    p.add_argument("--port", type=int, help="override `port`")
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level (access lines carry method, path and status, never events)",
    )
    p.set_defaults(func=cmd_serve_api)


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (``python -m pipelines.cli_serve``), with secureai's error handling."""
    return run_cli(standalone_parser(register), argv)


if __name__ == "__main__":
    sys.exit(main())
