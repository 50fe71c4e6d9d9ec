"""`daedalus chat`: talk with the agent about runs and candidates, and steer the next designs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    from daedalus.agent.chat import ChatSession, Turn


def chat_command(
    message: str = typer.Option(None, "--message", "-m", help="Send one message, print the reply and exit."),
    thread: str = typer.Option(None, "--thread", "-t", help="Resume a thread by id (prefix ok)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Approve evaluations and runs without asking."),
    as_json: bool = typer.Option(False, "--json", help="With -m: print one JSON object (reply, tool calls, pending confirmation)."),
    list_threads: bool = typer.Option(False, "--list", help="List the chat threads of this directory."),
    model: str = typer.Option(None, "--model", help="litellm model string, e.g. openai/gpt-4o (or DAEDALUS_MODEL)."),
    api_base: str = typer.Option(None, "--api-base", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1."),
) -> None:
    """Chat with the agent: review runs, explain failures, refine candidates, steer runs."""
    home = Path.cwd() / ".daedalus"
    if list_threads:
        _list(home, as_json)
        return
    if as_json and message is None:
        _fail("--json needs a message: daedalus chat -m \"MESSAGE\" --json")
    if message is not None and not message.strip():
        _fail("the message is empty: pass the text after -m")

    from rich.console import Console

    from daedalus.agent.chat import ChatSession
    from daedalus.agent.chat_threads import ThreadError
    from daedalus.agent.chat_ui import TerminalUI, interactive, print_turn
    from daedalus.archive.db import open_archive
    from daedalus.archive.errors import ArchiveError
    from daedalus.tools.llm import LLMConfig, LLMGateway, LLMUnavailable

    try:
        llm = LLMConfig.from_env(model=model, api_base=api_base)
    except LLMUnavailable as exc:
        _fail(f"daedalus chat needs an LLM. {_capital(str(exc))}")
    try:
        LLMGateway(llm).check()  # before anything is created under .daedalus/
    except LLMUnavailable as exc:
        _fail(f"daedalus chat needs a working LLM: {exc}")
    ui = TerminalUI(Console(highlight=False), stream=not as_json)
    try:
        archive = open_archive()
        session = ChatSession(archive=archive, home=home, llm=llm, thread_id=thread,
                              auto_approve=yes, hooks=ui.hooks())
    except (ThreadError, ArchiveError, LLMUnavailable) as exc:
        _fail(str(exc))
    with session:
        if message is None:
            interactive(session, ui, home=home, resumed=thread is not None)
            return
        turn = _one_shot(session, message, yes)
        print_turn(turn, ui, as_json=as_json)
    if turn.error:
        raise typer.Exit(1)


def _one_shot(session: ChatSession, message: str, yes: bool) -> Turn:
    """Send one message. On a thread waiting for a confirmation, the message answers it."""
    from daedalus.agent.chat import Turn, parse_answer

    if not session.pending():
        return session.send(message)
    verdict = parse_answer(message)
    # An explicit no wins over --yes; --yes with other text approves and then sends the text.
    approve = verdict is True or (yes and verdict is None)
    first = session.answer(approve, "" if approve or verdict is False else message)
    if not (yes and verdict is None) or first.pending:
        return first
    # --yes with a real message: approve what waited, then send the message itself.
    second = session.send(message)
    return Turn(thread_id=second.thread_id, reply="\n\n".join(t for t in (first.reply, second.reply) if t),
                tool_calls=first.tool_calls + second.tool_calls, pending=second.pending,
                error=second.error, cost_usd=first.cost_usd + second.cost_usd)


def _list(home: Path, as_json: bool) -> None:
    from daedalus.agent.chat_threads import list_threads

    threads = list_threads(home)
    if as_json:
        typer.echo(json.dumps([t.as_dict() for t in threads]))
        return
    if not threads:
        typer.echo(f"no chat threads under {home} yet; start one with `daedalus chat`")
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table("thread", "created", "last active", "messages", "last message", box=None)
    for t in threads:
        preview = escape(t.preview) + (" [yellow](waiting for your yes)[/]" if t.waiting else "")
        table.add_row(t.id, t.created_at.replace("T", " ")[:16], t.updated_at.replace("T", " ")[:16],
                      str(t.messages), preview)
    Console().print(table)
    typer.echo("resume one with: daedalus chat --thread ID")


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(2)
