"""A wall-clock sampling profiler for a service process started by a benchmark.

    python -m bench._sampler OUT.json -- serve alerts --port N

runs `hai` with these arguments in this interpreter while a thread samples every thread's
stack (`sys._current_frames`) every few milliseconds, and writes, every few seconds and at exit,
per thread: the samples, the innermost frames of our own code and the whole stacks most seen
(collapsed, as flame graph tools read them). No profiler to install; what a thread waits in
(a socket, a lock) shows as much as what it computes. SIGUSR1 ends a phase: its figures go to
OUT with the phase's number before `.json` and the counts start again (bench/burst.py sends it
when the burst starts and when it is over).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from types import FrameType

INTERVAL_S = float(os.environ.get("HAI_BENCH_SAMPLE_INTERVAL_S", "0.005"))
ROOT = str(Path(__file__).resolve().parent.parent)


def _frames(frame: FrameType | None) -> list[str]:
    out = []
    while frame is not None:
        code = frame.f_code
        name = code.co_filename
        short = name[len(ROOT) + 1:] if name.startswith(ROOT) else name.rsplit("/", 2)[-1]
        out.append(f"{short}:{code.co_name}:{frame.f_lineno}")
        frame = frame.f_back
    out.reverse()
    return out


class Sampler:
    """Samples every thread's stack; `dump()` writes the figures."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.phase = 0
        self.lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.stacks: dict[str, Counter[str]] = defaultdict(Counter)
        self.ours: dict[str, Counter[str]] = defaultdict(Counter)
        self.samples: Counter[str] = Counter()
        self.started = time.monotonic()

    def run(self) -> None:
        me = threading.get_ident()
        next_dump = time.monotonic() + 5
        while True:
            time.sleep(INTERVAL_S)
            names = {t.ident: t.name for t in threading.enumerate()}
            with self.lock:
                for ident, frame in sys._current_frames().items():
                    if ident == me:
                        continue
                    name = names.get(ident, str(ident))
                    stack = _frames(frame)
                    self.samples[name] += 1
                    self.stacks[name][";".join(stack)] += 1
                    own = [f for f in stack if f.startswith(("services/", "shared/"))]
                    self.ours[name][own[-1] if own else stack[-1]] += 1
            if time.monotonic() >= next_dump:
                self.dump()
                next_dump = time.monotonic() + 5

    def next_phase(self, *_: object) -> None:
        """Write this phase's figures to a file of its own and start counting again."""
        self.dump(self.out.with_suffix(f".{self.phase}.json"))
        with self.lock:
            self.phase += 1
            self._reset()

    def dump(self, out: Path | None = None) -> None:
        with self.lock:
            report = {
                "interval_s": INTERVAL_S, "seconds": round(time.monotonic() - self.started, 1),
                "threads": {
                    name: {"samples": n,
                           "innermost_own_frames": self.ours[name].most_common(25),
                           "stacks": self.stacks[name].most_common(40)}
                    for name, n in self.samples.most_common()},
            }
        (out or self.out).write_text(json.dumps(report, indent=1))


def main() -> None:
    out, rest = Path(sys.argv[1]), sys.argv[sys.argv.index("--") + 1:]
    sampler = Sampler(out)
    threading.Thread(target=sampler.run, name="bench-sampler", daemon=True).start()
    atexit.register(sampler.dump)
    signal.signal(signal.SIGUSR1, sampler.next_phase)
    from services.cli import main as hai

    sys.argv = ["hai", *rest]
    hai()


if __name__ == "__main__":
    main()
