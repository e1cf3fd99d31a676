"""The audit receiver, killed once right after its first line is on disk, before it answers.

Test-only fault injection, kept out of the production command: ``python crashing_receiver.py
LOG PORT MARKER`` serves like ``regwatch audit-receiver`` (the secret from REGWATCH_WEBHOOK_SECRET)
and exits with status 3 after the first write if MARKER does not exist yet (then creates it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from parsers.mlflow_webhook import canonical_record
from pipeline.receiver import AuditLog, Receiver, make_server
from regwatch.logging import configure


def main() -> None:
    log, port, marker = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])

    def crash_once(delivery_id: str) -> None:
        if not marker.exists():
            marker.write_text(delivery_id)
            os._exit(3)  # written, never answered

    configure("INFO", json=True)
    receiver = Receiver(AuditLog(log), os.environ["REGWATCH_WEBHOOK_SECRET"], canonical_record,
                        after_write=crash_once)
    make_server(receiver, "127.0.0.1", port, log_level="info").run()


if __name__ == "__main__":
    main()
