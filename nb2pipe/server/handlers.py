"""The REST handlers under ``/nb2pipe/api/`` (documented in ``docs/server-api.md``).

Every handler is an ``APIHandler`` (JSON errors, XSRF checks on unsafe methods as the server is configured), is
``@tornado.web.authenticated`` and checks jupyter_server's authorizer for the ``nb2pipe`` resource (``read`` for
GET, ``write`` for POST/PUT, ``execute``-like actions are writes). Paths go through :func:`resolve_inside`.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler

from ..converter import convert
from ..errors import Nb2PipeError
from ..notebook import parse_notebook
from ..runstore import HOME_ENV, RunStore, StoreError
from .analysis import analyze_json, error_json
from .launcher import KINDS, Launcher
from .paths import relative_to_root, resolve_inside
from .runs import executed_notebook, list_runs, show_run
from .schedules import CommandError, add_args, for_panel, run_cli

AUTH_RESOURCE = "nb2pipe"


def store_home(root: str | Path) -> Path:
    """The run store the server reads and its runs write: ``$NB2PIPE_HOME``, else ``ROOT/.nb2pipe``."""
    env = os.environ.get(HOME_ENV)
    return Path(env).absolute() if env else Path(root).resolve() / ".nb2pipe"


class Nb2PipeHandler(APIHandler):
    """Common plumbing: the server root, the launcher, the run store, JSON bodies."""

    auth_resource = AUTH_RESOURCE

    @property
    def root(self) -> Path:
        return Path(self.settings["server_root_dir"]).resolve()

    @property
    def launcher(self) -> Launcher:
        launcher: Launcher = self.settings["nb2pipe_launcher"]
        return launcher

    def open_store(self) -> RunStore | None:
        """The run store, or None when nothing has run yet (the panel then lists only this server's launches)."""
        try:
            return RunStore(self.launcher.home, create=False)
        except StoreError:
            return None

    def find_run(self, run_id: str) -> dict[str, Any]:
        """One run (an id, a unique prefix or a launch id) as ``show_run`` answers; 404 when nobody knows it."""
        store = self.open_store()
        try:
            run = show_run(store, self.launcher, run_id)
        finally:
            if store is not None:
                store.close()
        if run is None:
            raise tornado.web.HTTPError(404, f"no run {run_id}")
        return run

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            raise tornado.web.HTTPError(400, "the body is not JSON") from None
        if not isinstance(data, dict):
            raise tornado.web.HTTPError(400, "the body must be a JSON object")
        return data

    def notebook_path(self, relative: str | None) -> Path:
        path = resolve_inside(self.root, relative, kind="path")
        if path.suffix != ".ipynb" or not path.is_file():
            raise tornado.web.HTTPError(400, f"not a notebook: {relative}")
        return path

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data, default=repr))


def _analyze_bytes(raw: bytes, relative: str) -> dict[str, Any]:
    """Analyse notebook bytes named by their path relative to the root (so messages never show server paths)."""
    try:
        nb = parse_notebook(raw, relative)
    except Nb2PipeError as exc:
        return {"ok": False, "errors": [error_json(exc)], "stages": [], "edges": [], "cells": [], "warnings": []}
    return analyze_json(nb)


class AnalyzeHandler(Nb2PipeHandler):
    """``GET ?path=`` analyses the saved file; ``POST {path, notebook}`` analyses unsaved content (live view)."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        path = self.notebook_path(self.get_query_argument("path", None))
        relative = relative_to_root(self.root, path)

        result = await asyncio.get_running_loop().run_in_executor(None, _analyze_bytes, path.read_bytes(), relative)
        self.reply({"path": relative, **result})

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.body()
        relative = str(body.get("path") or "")
        resolve_inside(self.root, relative, must_exist=False, kind="path")
        content = body.get("notebook")
        if not isinstance(content, dict):
            raise tornado.web.HTTPError(400, "'notebook' must be the notebook's JSON object")
        raw = json.dumps(content).encode()
        result = await asyncio.get_running_loop().run_in_executor(None, _analyze_bytes, raw, relative)
        self.reply({"path": relative, **result})


class ExportHandler(Nb2PipeHandler):
    """``POST {path, output}``: write the pipeline package (``nb2pipe convert PATH -o OUTPUT``)."""

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.body()
        path = self.notebook_path(body.get("path"))
        output = resolve_inside(self.root, str(body.get("output") or "pipelines"), must_exist=False, kind="output")

        def work() -> tuple[int, dict[str, Any]]:
            try:
                result = convert(path, output)
            except Nb2PipeError as exc:
                return 400, {"ok": False, "errors": [error_json(exc)]}
            return 200, {
                "ok": True,
                "pipeline": result.analysis.name,
                "directory": relative_to_root(self.root, result.directory),
                "written": result.report.written,
                "removed": result.report.removed,
                "stages": result.analysis.rendered.versions,
            }

        status, data = await asyncio.get_running_loop().run_in_executor(None, work)
        self.reply(data, status)


class RunsHandler(Nb2PipeHandler):
    """``GET``: recent runs. ``POST {kind, path, parameters}``: start a pipeline run or a tracked job (202 + id)."""

    @tornado.web.authenticated
    @authorized
    def get(self) -> None:
        try:
            limit = max(1, min(500, int(self.get_query_argument("limit", "50"))))
        except ValueError:
            raise tornado.web.HTTPError(400, "limit must be a number") from None
        target = self.get_query_argument("path", None)
        aliases: tuple[str, ...] = ()
        if target:
            absolute = resolve_inside(self.root, target, must_exist=False)
            target, aliases = relative_to_root(self.root, absolute), (str(absolute),)
        store = self.open_store()
        try:
            self.reply({"runs": list_runs(store, self.launcher, limit=limit, target=target, aliases=aliases)})
        finally:
            if store is not None:
                store.close()

    @tornado.web.authenticated
    @authorized
    def post(self) -> None:
        body = self.body()
        kind = body.get("kind", "pipeline")
        if kind not in KINDS:
            raise tornado.web.HTTPError(400, f"kind must be one of {', '.join(KINDS)}")
        path = self.notebook_path(body.get("path"))
        parameters = body.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise tornado.web.HTTPError(400, "parameters must be an object")
        launch = self.launcher.start(kind, relative_to_root(self.root, path), parameters)
        self.reply(launch.as_json(), 202)


class RunHandler(Nb2PipeHandler):
    """``GET /runs/ID``: one run, from the store and from what this server knows of its process."""

    @tornado.web.authenticated
    @authorized
    def get(self, run_id: str) -> None:
        self.reply(self.find_run(run_id))


class NotebookHandler(Nb2PipeHandler):
    """``GET /runs/ID/notebook``: the run's executed notebook (nbformat JSON, outputs included), read-only.

    The run folder is hidden from the contents manager (``.nb2pipe/runs/ID``), so the sidebar reads the notebook
    here and shows it in a read-only notebook view. Only a file the run store names as the run's executed notebook
    is served, and only from inside the server root or the run store folder.
    """

    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        run = self.find_run(run_id)
        path = executed_notebook(run, self.launcher)
        if path is None:
            raise tornado.web.HTTPError(404, f"run {run['id']} has no executed notebook")
        raw = await asyncio.get_running_loop().run_in_executor(None, path.read_bytes)
        try:
            notebook = json.loads(raw)
        except ValueError:
            raise tornado.web.HTTPError(409, f"run {run['id']}: the executed notebook is not readable JSON") from None
        self.reply(notebook)


class CancelHandler(Nb2PipeHandler):
    """``POST /runs/ID/cancel``: stop a run this server started (SIGTERM to its process group)."""

    @tornado.web.authenticated
    @authorized
    def post(self, run_id: str) -> None:
        if not self.launcher.cancel(run_id):
            raise tornado.web.HTTPError(409, f"run {run_id} is not running here")
        self.reply({"id": run_id, "cancel_requested": True}, 202)


class SchedulesHandler(Nb2PipeHandler):
    """``GET``: list schedules. ``POST {name, path, cron, parameters, ...}``: add one."""

    async def cli(self, args: list[str], status: int = 200) -> None:
        try:
            self.reply(await run_cli(args, cwd=self.root, home=self.launcher.home), status)
        except CommandError as exc:
            raise tornado.web.HTTPError(exc.code, exc.message) from None

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        path = self.get_query_argument("path", None)
        if path:
            path = relative_to_root(self.root, resolve_inside(self.root, path, must_exist=False))
        try:
            schedules = await run_cli(["schedule", "list", "--json"], cwd=self.root, home=self.launcher.home)
        except CommandError as exc:
            raise tornado.web.HTTPError(exc.code, exc.message) from None
        store = self.open_store()
        try:
            self.reply(for_panel(schedules, self.root, store, path))
        finally:
            if store is not None:
                store.close()

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.body()
        if not body.get("name") or not body.get("cron"):
            raise tornado.web.HTTPError(400, "a schedule needs a name and a cron expression")
        target = relative_to_root(self.root, resolve_inside(self.root, body.get("path"), kind="path"))
        await self.cli(add_args(body, target), 201)
        host = self.settings.get("nb2pipe_scheduler")
        if host is not None:
            host.ensure_started()  # the first schedule: start the loop this server hosts


class ScheduleHandler(SchedulesHandler):
    """``GET /schedules/NAME``; ``POST /schedules/NAME/pause|resume``; ``DELETE /schedules/NAME``."""

    @tornado.web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        await self.cli(["schedule", "show", name, "--json"])

    @tornado.web.authenticated
    @authorized
    async def post(self, name: str, verb: str | None = None) -> None:
        """Pause or resume; the answer is the command's line (``output``) and the schedule as it now is."""
        if verb is None:
            raise tornado.web.HTTPError(405, "POST /schedules/NAME/pause or /resume")
        try:
            said = await run_cli(["schedule", verb, name], cwd=self.root, home=self.launcher.home)
            shown = await run_cli(["schedule", "show", name, "--json"], cwd=self.root, home=self.launcher.home)
        except CommandError as exc:
            raise tornado.web.HTTPError(exc.code, exc.message) from None
        host = self.settings.get("nb2pipe_scheduler")
        if host is not None and verb == "resume":
            host.ensure_started()
        self.reply({**(shown if isinstance(shown, dict) else {}), **(said if isinstance(said, dict) else {})})

    @tornado.web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        await self.cli(["schedule", "rm", name])


def handlers(base_url: str) -> list[tuple[str, type[APIHandler]]]:
    """URL patterns of the API under the server's base URL."""
    api = base_url.rstrip("/") + "/nb2pipe/api"
    name = r"([A-Za-z0-9._-]+)"
    return [
        (f"{api}/analyze", AnalyzeHandler),
        (f"{api}/export", ExportHandler),
        (f"{api}/runs", RunsHandler),
        (f"{api}/runs/{name}", RunHandler),
        (f"{api}/runs/{name}/cancel", CancelHandler),
        (f"{api}/runs/{name}/notebook", NotebookHandler),
        (f"{api}/schedules", SchedulesHandler),
        (f"{api}/schedules/{name}", ScheduleHandler),
        (f"{api}/schedules/{name}/(pause|resume)", ScheduleHandler),
    ]
