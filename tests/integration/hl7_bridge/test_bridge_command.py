"""`hai hl7-bridge --if-enabled` (the Procfile's line) idles without HAI_HL7_ENABLED, so that
honcho keeps the rest of the topology running, and stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers import wait_until


def test_the_procfile_line_idles_when_the_bridge_is_not_enabled(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAI_")}
    env.update({"HAI_LOG_JSON": "1", "HAI_HL7_BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path}/b.db"})
    log = tmp_path / "bridge.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "shared.cli_main", "hl7-bridge", "--if-enabled"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        wait_until(lambda: "hl7.bridge_disabled" in log.read_text(), what="the bridge to say it is off",
                   timeout_s=30)
        assert proc.poll() is None  # still running
        assert not (tmp_path / "b.db").exists()  # and touching nothing
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
