"""The terminal side of `daedalus chat`: streamed Markdown replies, tool lines, confirmations.

The interactive session keeps a line history (readline, in ``.daedalus/chat_history``)
when stdin is a terminal; piped input works the same way without it, which is how the
tests drive it.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daedalus.agent.chat import ChatHooks, Turn, parse_answer

if TYPE_CHECKING:
    from rich.console import Console

    from daedalus.agent.chat import ChatSession

HELP = """commands: /help  /thread (this thread's id)  /history (the conversation so far)  /exit
Ask about runs and candidates ("why did the last candidate fail?"), ask for a variant
("fuse the two loops in the best candidate"), pin or ban ideas, or start a run."""
_ARG_CHARS = 60


class TerminalUI:
    """Renders one session's events on a rich console."""

    def __init__(self, console: Console, *, stream: bool = True) -> None:
        self.console = console
        self.stream = stream
        self._buffer = ""
        self._live: Any = None

    def hooks(self) -> ChatHooks:
        return ChatHooks(on_delta=self.delta if self.stream else None, on_reply_done=self.done,
                         on_tool=self.tool, on_status=self.status)

    def delta(self, text: str) -> None:
        from rich.live import Live
        from rich.markdown import Markdown

        self._buffer += text
        if self._live is None:
            self._live = Live(Markdown(self._buffer), console=self.console, refresh_per_second=8,
                              vertical_overflow="visible")
            self._live.start()
        else:
            self._live.update(Markdown(self._buffer))

    def done(self) -> None:
        if self._live is not None:
            from rich.markdown import Markdown

            self._live.update(Markdown(self._buffer))
            self._live.stop()
        self._live = None
        self._buffer = ""

    def tool(self, name: str, args: dict[str, Any], result: dict[str, Any]) -> None:
        shown = ", ".join(f"{k}={_short(v)}" for k, v in args.items())
        if "error" in result:
            outcome = f"[red]error:[/] {_escape(str(result['error'])[:200])}"
        elif result.get("declined"):
            outcome = "[yellow]declined[/]"
        else:
            outcome = "[green]ok[/]" + _headline(result)
        self.console.print(f"  [dim]tool[/] [bold]{name}[/]([dim]{_escape(shown)}[/]) {outcome}")

    def status(self, message: str) -> None:
        self.console.print(f"  [cyan]... {_escape(message)}[/]")

    def reply(self, turn: Turn) -> None:
        from rich.markdown import Markdown

        if not self.stream and turn.reply:
            self.console.print(Markdown(turn.reply))
        if turn.error:
            self.console.print(f"[red]error:[/] {_escape(turn.error)}")

    def show_pending(self, actions: list[dict[str, Any]]) -> None:
        from rich.panel import Panel
        from rich.syntax import Syntax

        for action in actions:
            self.console.print(Panel(_escape(action["summary"]), title="confirm", border_style="yellow"))
            if action.get("diff"):
                self.console.print(Syntax(action["diff"], "diff", word_wrap=True))

    def ask(self, actions: list[dict[str, Any]]) -> tuple[bool, str]:
        """The user's decision: yes, no, or anything else (a no, with that text as the reason)."""
        self.show_pending(actions)
        text = ""
        while not text:
            try:
                text = self.console.input("[bold yellow]go ahead?[/] [dim](yes / no / what to change)[/] ").strip()
            except (EOFError, KeyboardInterrupt):
                self.console.print()
                return False, "cancelled at the prompt"
        verdict = parse_answer(text)
        return (verdict is True, "" if verdict is not None else text)

    def history(self, messages: list[dict[str, Any]], *, limit: int = 20) -> None:
        from rich.markdown import Markdown

        shown = [m for m in messages if m.get("role") in ("user", "assistant") and m.get("content")]
        for message in shown[-limit:]:
            if message["role"] == "user":
                self.console.print(f"[bold green]you ›[/] {_escape(message['content'])}")
            else:
                self.console.print(Markdown(message["content"]))


def interactive(session: ChatSession, ui: TerminalUI, *, home: Path, resumed: bool) -> None:
    console = ui.console
    _history_file(home)
    console.print(f"[bold]daedalus chat[/] · thread [cyan]{session.thread_id}[/] · model "
                  f"{session.gateway.model}   [dim](/help for commands, /exit or Ctrl-D to leave)[/]")
    if resumed:
        ui.history(session.history())
    pending = session.pending()
    if pending:
        _settle(session, ui, session.answer(*ui.ask(pending)))
    while True:
        try:
            text = console.input("[bold green]you ›[/] ").strip()
        except EOFError:
            console.print()
            break
        except KeyboardInterrupt:
            console.print("\n[dim]Ctrl-D or /exit leaves[/]")
            continue
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/help":
            console.print(HELP)
            continue
        if text == "/thread":
            console.print(f"thread {session.thread_id}: resume with `daedalus chat --thread {session.thread_id}`")
            continue
        if text == "/history":
            ui.history(session.history(), limit=1000)
            continue
        try:
            _settle(session, ui, session.send(text))
        except KeyboardInterrupt:
            ui.done()
            console.print("\n[yellow]interrupted[/]: the thread keeps what was done so far")
    console.print(f"[dim]resume this thread with: daedalus chat --thread {session.thread_id}[/]")


def _settle(session: ChatSession, ui: TerminalUI, turn: Turn) -> None:
    """Show a turn, and keep asking while it waits for confirmations."""
    while True:
        ui.reply(turn)
        if not turn.pending:
            return
        turn = session.answer(*ui.ask(turn.pending))


def print_turn(turn: Turn, ui: TerminalUI, *, as_json: bool) -> None:
    """One-shot output: JSON for scripts, or the reply and how to answer a confirmation."""
    if as_json:
        sys.stdout.write(json.dumps(turn.as_dict(), default=str) + "\n")
        return
    ui.reply(turn)
    if turn.pending:
        ui.show_pending(turn.pending)
        ui.console.print(f"answer with: daedalus chat --thread {turn.thread_id} -m yes   (or -m no)")
    ui.console.print(f"[dim]thread {turn.thread_id}[/]")


def _history_file(home: Path) -> None:
    if not sys.stdin.isatty():
        return
    try:
        import atexit
        import readline
    except ImportError:  # not every platform has readline; history is a convenience
        return
    path = home / "chat_history"
    with contextlib.suppress(OSError):
        readline.read_history_file(path)
    readline.set_history_length(2000)
    atexit.register(readline.write_history_file, path)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _ARG_CHARS else text[: _ARG_CHARS - 3] + "..."


def _headline(result: dict[str, Any]) -> str:
    parts = [f"{k}={_short(result[k])}" for k in ("candidate", "run", "status", "speedup", "count")
             if result.get(k) is not None and not isinstance(result[k], dict | list)]
    return f" [dim]{_escape(', '.join(parts))}[/]" if parts else ""


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
