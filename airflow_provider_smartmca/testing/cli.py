"""``smartmca-emulator`` console script."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from airflow_provider_smartmca.testing.config import EmulatorError
from airflow_provider_smartmca.testing.server import Emulator

__all__ = ["DEFAULT_PORT", "main"]

#: Not 8080: that is Airflow 3's api-server port, and the emulator often runs beside
#: ``airflow standalone``.
DEFAULT_PORT = 8765


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smartmca-emulator", description="Run the SmartMCA API emulator.")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"TCP port, 0 for a random free one (default {DEFAULT_PORT})",
    )
    p.add_argument("--config", help="JSON or YAML configuration file")
    p.add_argument("--tls-cert", help="PEM certificate (serve HTTPS)")
    p.add_argument("--tls-key", help="PEM private key (serve HTTPS)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until Ctrl-C or SIGTERM.

    :param argv: arguments (defaults to ``sys.argv[1:]``).
    :returns: process exit code.
    """
    args = _parser().parse_args(argv)
    try:
        emu = Emulator(
            config=args.config, host=args.host, port=args.port, tls_cert=args.tls_cert, tls_key=args.tls_key
        )
        emu.start()
    except EmulatorError as exc:
        print(f"smartmca-emulator: error: {exc}", file=sys.stderr, flush=True)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"SmartMCA emulator listening on {emu.base_url}", flush=True)
    # /_emulator/ answers with the list of admin endpoints.
    print(f"API base: {emu.api_url}  (admin API: {emu.base_url}/_emulator/)")
    print("Accepted API keys:")
    for key, api_key in emu.config.keys.items():
        print(f"  {key}  [{api_key.name}]  scopes: {' '.join(sorted(api_key.scopes))}")
    first = next(iter(emu.config.keys), "<key>")
    insecure = "-k " if emu.scheme == "https" else ""
    print(f'Try: curl {insecure}-H "Authorization: Bearer {first}" {emu.api_url}/workflows', flush=True)
    try:
        while not stop.wait(0.5):
            if not emu.running:
                break
    finally:
        emu.stop()
        print("SmartMCA emulator stopped", flush=True)
    return 0
