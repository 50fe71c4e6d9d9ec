"""The fork server's bookkeeping for one child: captured output, the result pipe, and the
answer sent back to the parent. Pure Python, no torch: kept apart from the server loop."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULT_CAP = 8 * 1024 * 1024  # bytes on the result pipe before the child is treated as a flood
FINAL_EVENT = b'"event": "result"'  # the harness's last message (also after a task error)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@dataclass
class Child:
    req_id: Any
    pid: int
    pidfd: int
    fds: dict[str, int]  # "out" / "res" -> read end, removed at EOF
    workdir: Path
    started: float
    deadline: float
    output_cap: int
    flood_limit: int
    head: bytearray = field(default_factory=bytearray)
    tail: bytearray = field(default_factory=bytearray)
    out_total: int = 0
    res: bytearray = field(default_factory=bytearray)
    status: int | None = None
    exited_at: float = 0.0
    timed_out: bool = False
    flooded: bool = False
    reported: bool = False  # the final result event may have arrived (checked in answer)
    closing: bool = False  # killed because the sandbox closed, not for anything it did

    def add_output(self, data: bytes) -> bool:
        """Keep the head and the tail of stdout+stderr; True once past the flood limit."""
        self.out_total += len(data)
        half = self.output_cap // 2
        if len(self.head) < half:
            take = half - len(self.head)
            self.head += data[:take]
            data = data[take:]
        self.tail = (self.tail + data)[-half:]
        return self.out_total > self.flood_limit

    def add_result(self, data: bytes) -> bool:
        """Buffer result-pipe bytes; True if the pipe is being flooded."""
        if len(self.res) + len(data) > RESULT_CAP:
            return True
        self.res += data
        tail = self.res[-(len(data) + len(FINAL_EVENT)) :]  # the marker may straddle reads
        self.reported = self.reported or FINAL_EVENT in tail
        return False

    def answer(self) -> dict[str, Any]:
        """The message for the parent: the harness's events plus how the process ended."""
        msg: dict[str, Any] = {"id": self.req_id, "result": None, "stage": "", "isolation": {},
                               "timed_out": self.timed_out, "flooded": self.flooded,
                               "duration_s": (self.exited_at or time.monotonic()) - self.started}
        for line in bytes(self.res).splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # only the harness should write here; ignore anything else
            kind = event.get("event") if isinstance(event, dict) else None
            if kind == "stage":
                msg["stage"] = event.get("stage", "")
            elif kind == "isolation":
                msg["isolation"] = event.get("isolation", {})
            elif kind == "result":
                msg["result"] = event.get("result")
            elif kind == "task_error":
                msg["task_error"] = event.get("message", "")
        status = self.status or 0
        if os.WIFSIGNALED(status):
            msg["signal"] = os.WTERMSIG(status)
        elif os.WIFEXITED(status):
            msg["exit_code"] = os.WEXITSTATUS(status)
        logs = self.head.decode(errors="replace")
        dropped = self.out_total - len(self.head) - len(self.tail)
        if dropped > 0:
            logs += f"\n[... {dropped} bytes of output dropped ...]\n"
        msg["logs"] = logs + self.tail.decode(errors="replace")
        if self.closing and msg["result"] is None:  # no verdict on the candidate: say why
            msg["sandbox_error"] = ("the sandbox was closed while this candidate ran, so it was "
                                    "stopped, not judged")
        return msg
