"""The `daedalus` command line. Only the agent's CLI modules wire concrete parts together.

Each command group lives in its own ``cli_*.py`` module; heavy libraries (torch, litellm,
langgraph) are imported inside command bodies so `daedalus --help` starts fast.
"""

from __future__ import annotations

import typer

from daedalus.agent import (
    cli_archive,
    cli_chat,
    cli_eval,
    cli_run,
    cli_sandbox,
    cli_serve,
    cli_tasks,
    cli_worker,
)

app = typer.Typer(
    name="daedalus",
    help="Daedalus: an autonomous design agent for compute kernels and architectures.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(cli_tasks.app, name="tasks")
app.add_typer(cli_archive.app, name="archive")
app.add_typer(cli_sandbox.app, name="sandbox")
app.add_typer(cli_worker.app, name="worker")
app.command("eval")(cli_eval.eval_command)
app.command("run")(cli_run.run_command)
app.command("chat")(cli_chat.chat_command)
app.command("serve")(cli_serve.serve_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
