"""The review web app (``daedalus serve``): read-only, server-rendered, local assets only."""

from daedalus.archive.web.app import create_app
from daedalus.archive.web.readonly import open_readonly

__all__ = ["create_app", "open_readonly"]
