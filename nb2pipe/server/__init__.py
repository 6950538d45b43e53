"""The Jupyter server extension: nb2pipe's REST API under ``/nb2pipe/api/`` for the JupyterLab Pipeline sidebar.

Enabled on install by ``jupyter-config/jupyter_server_config.d/nb2pipe.json`` (``nb2pipe.server: true``), which the
wheel ships as shared data, as the JupyterLab extension template does.
"""

from __future__ import annotations

from typing import Any

__all__ = ["_jupyter_server_extension_points", "_load_jupyter_server_extension"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nb2pipe.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Register the handlers, the launcher that runs and jobs are started with, and the hosted scheduler."""
    from .handlers import handlers, store_home
    from .launcher import Launcher
    from .scheduling import SchedulerHost, enabled, standbys

    web_app = serverapp.web_app
    root = web_app.settings["server_root_dir"]
    home = store_home(root)
    web_app.settings["nb2pipe_launcher"] = Launcher(root, home)
    host = SchedulerHost(home, enabled=enabled(serverapp), standbys=standbys(serverapp), log=serverapp.log)
    web_app.settings["nb2pipe_scheduler"] = host
    host.ensure_started()
    web_app.add_handlers(".*$", handlers(web_app.settings["base_url"]))
    serverapp.log.info("nb2pipe: API at %snb2pipe/api/", web_app.settings["base_url"])
