"""``python -m quantlab.servers.runner``: an alias of ``python -m quantlab.runner``.

The runner lives in the workflow layer (it is an MCP client of the broker and
reads the assets hub); this alias only lets it be started by the same module path
as the other servers. Nothing here imports upward: ``__main__`` runs the runner's
module with :mod:`runpy`.
"""
