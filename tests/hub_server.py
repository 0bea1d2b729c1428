"""A Hugging Face Hub-compatible HTTP server on 127.0.0.1, for the real ``huggingface_hub`` and ``datasets`` clients.

It implements the endpoints those clients call to push and to load a dataset,
with the Hub's status codes, error headers and response shapes, so the client
code under test is the one users run (pointed at it with ``HF_ENDPOINT``):

- ``POST /api/repos/create`` (409 when the repo exists);
- ``GET /api/{type}s/{repo}[/revision/{rev}]`` (repo info: sha, siblings);
- ``POST /api/{type}s/{repo}/preupload/{rev}``: every file is uploaded in "regular"
  mode (base64 inside the commit), so no LFS or Xet storage is needed; the
  answer carries the oid of a file already there, so unchanged files are skipped;
- ``POST /api/{type}s/{repo}/commit/{rev}``: the NDJSON commit (``file``,
  ``deletedFile``, ``deletedFolder``; ``lfsFile`` is refused);
- ``POST /api/{type}s/{repo}/tag/{rev}`` (409 when the tag exists) and ``GET .../refs``;
- ``GET /api/{type}s/{repo}/tree/{rev}[/{path}]`` and ``POST .../paths-info/{rev}``;
- ``HEAD``/``GET /{prefix}{repo}/resolve/{rev}/{path}`` (``X-Repo-Commit``, ``ETag``,
  ``Content-Length``, byte ranges);
- ``POST /api/validate-yaml``, ``GET /api/whoami-v2``, ``GET /api/agent-harnesses`` (the
  registry the client fetches, best effort, to name an AI agent it runs under: empty).

Writes need ``Authorization: Bearer <token>`` with the token the server was
made with (401 otherwise), and so do reads of a private repo (404, as the Hub
hides them). The server keeps no header values: it counts authorized and
unauthorized requests per endpoint, so a test can check that the token
arrived without the server holding a copy.

Runnable as a process too: ``python tests/hub_server.py --port P --token T``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

from loopback import LoopbackServer
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

TYPES = {"datasets": "dataset", "models": "model", "spaces": "space"}
RESOLVE_PREFIX = {"dataset": "datasets/", "model": "", "space": "spaces/"}


def blob_oid(data: bytes) -> str:
    """The git blob id of ``data``, which the Hub reports as a regular file's oid."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, bytes]
    date: str


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        oid = self.branches.get(revision) or self.tags.get(revision) or revision
        return self.commits.get(oid)


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class HubServer:
    """The state (repos, commits, tags) and the ASGI app; ``start()`` serves it on a free loopback port."""

    def __init__(self, token: str, port: int = 0) -> None:
        self._token = token
        self.port = port
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: Counter[tuple[str, str, bool]] = Counter()  # (method, endpoint, authorized) -> count
        self._lock = threading.Lock()
        self._commits = 0
        self._transport: _Transport | None = None

    # -- the HTTP side --------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __call__(self, scope, receive, send) -> None:
        request = Request(scope, receive)
        try:
            response = await self._dispatch(request)
        except HubError as err:
            headers = {"X-Error-Code": err.code} if err.code else {}
            headers["X-Error-Message"] = err.message
            response = JSONResponse({"error": err.message}, status_code=err.status, headers=headers)
        await response(scope, receive, send)

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization", "") == f"Bearer {self._token}"

    async def _dispatch(self, request: Request) -> Response:
        path = request.scope.get("raw_path", request.url.path.encode()).decode().split("?", 1)[0]
        method = request.method
        authorized = self._authorized(request)
        routes = [
            ("POST", r"/api/repos/create", self._create_repo),
            ("POST", r"/api/validate-yaml", self._validate_yaml),
            ("GET", r"/api/whoami-v2", self._whoami),
            ("GET", r"/api/agent-harnesses", self._agent_harnesses),
            ("POST", r"/api/(?P<t>\w+)/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>[^/]+)", self._preupload),
            ("POST", r"/api/(?P<t>\w+)/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>[^/]+)", self._commit),
            ("POST", r"/api/(?P<t>\w+)/(?P<repo>[^/]+/[^/]+)/tag/(?P<rev>[^/]+)", self._tag),
            ("GET", r"/api/(?P<t>\w+)/(?P<repo>[^/]+/[^/]+)/refs", self._refs),
            ("GET", r"/api/(?P<t>\w+)/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", self._tree),
            ("POST", r"/api/(?P<t>\w+)/(?P<repo>[^/]+/[^/]+)/paths-info/(?P<rev>[^/]+)", self._paths_info),
            ("GET", r"/api/(?P<t>\w+)/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?", self._info),
            ("HEAD", r"/(?:(?P<t>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)",
             self._resolve),
            ("GET", r"/(?:(?P<t>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)",
             self._resolve),
        ]
        for verb, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                name = handler.__name__.lstrip("_")
                with self._lock:
                    self.requests[(method, name, authorized)] += 1
                args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                return await handler(request, authorized, **args)
        with self._lock:
            self.requests[(method, f"unknown {path}", authorized)] += 1
        raise HubError(404, f"no such endpoint on the test Hub: {method} {path}")

    def _repo(self, t: str | None, repo: str, authorized: bool, write: bool = False) -> Repo:
        repo_type = TYPES.get(t or "models", t or "model")
        if write and not authorized:
            raise HubError(401, "Invalid credentials in Authorization header")
        found = self.repos.get((repo_type, repo))
        if found is None or (found.private and not authorized):
            raise HubError(404, "Repository not found", "RepoNotFound")
        return found

    @staticmethod
    def _commit_of(repo: Repo, rev: str) -> Commit:
        commit = repo.resolve(unquote(rev))
        if commit is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return commit

    async def _create_repo(self, request: Request, authorized: bool) -> Response:
        if not authorized:
            raise HubError(401, "Invalid credentials in Authorization header")
        body = await request.json()
        repo_type = body.get("type") or "model"
        repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        url = f"{self.url}/{RESOLVE_PREFIX[repo_type]}{repo_id}"
        with self._lock:
            if (repo_type, repo_id) in self.repos:  # the Hub's 409 names the repo too; the client reads it
                return JSONResponse({"error": "You already created this repo", "url": url}, status_code=409,
                                    headers={"X-Error-Message": "You already created this repo"})
            private = body.get("visibility") == "private" or bool(body.get("private"))
            repo = Repo(repo_id, repo_type, private)
            first = self._new_commit(repo, None, "initial commit", {".gitattributes": b"*.parquet filter=lfs\n"})
            repo.branches["main"] = first.oid
            self.repos[(repo_type, repo_id)] = repo
        return JSONResponse({"url": url, "name": repo_id, "id": repo_id})

    def _new_commit(self, repo: Repo, parent: str | None, message: str, files: dict[str, bytes]) -> Commit:
        self._commits += 1
        oid = hashlib.sha1(f"{repo.repo_id}:{parent}:{self._commits}:{message}".encode()).hexdigest()
        commit = Commit(oid, parent, message, files, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"))
        repo.commits[oid] = commit
        return commit

    async def _validate_yaml(self, request: Request, authorized: bool) -> Response:
        return JSONResponse({"errors": [], "warnings": []})

    async def _whoami(self, request: Request, authorized: bool) -> Response:
        if not authorized:
            raise HubError(401, "Invalid credentials in Authorization header")
        return JSONResponse({"type": "user", "name": "trajforge-test", "auth": {"type": "access_token"}})

    async def _agent_harnesses(self, request: Request, authorized: bool) -> Response:
        """The registry the client fetches to name the AI agent it runs under: none known here."""
        return JSONResponse({"standardEnvVars": [], "harnesses": {}})

    async def _info(self, request: Request, authorized: bool, t: str, repo: str, rev: str = "main") -> Response:
        found = self._repo(t, repo, authorized)
        commit = self._commit_of(found, rev)
        return JSONResponse({
            "_id": hashlib.sha1(repo.encode()).hexdigest()[:24], "id": repo, "author": repo.split("/")[0],
            "sha": commit.oid, "private": found.private, "disabled": False, "gated": False, "downloads": 0,
            "likes": 0, "tags": [], "lastModified": commit.date, "createdAt": commit.date,
            "siblings": [{"rfilename": p} for p in sorted(commit.files)]})

    async def _preupload(self, request: Request, authorized: bool, t: str, repo: str, rev: str) -> Response:
        found = self._repo(t, repo, authorized, write=True)
        existing = self._commit_of(found, rev).files
        files = (await request.json())["files"]
        return JSONResponse({"files": [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
             "oid": blob_oid(existing[f["path"]]) if f["path"] in existing else None} for f in files]})

    async def _commit(self, request: Request, authorized: bool, t: str, repo: str, rev: str) -> Response:
        found = self._repo(t, repo, authorized, write=True)
        branch = unquote(rev)
        if branch not in found.branches:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        lines = [json.loads(line) for line in (await request.body()).splitlines() if line.strip()]
        header = next((item["value"] for item in lines if item["key"] == "header"), {})
        with self._lock:
            parent = found.commits[found.branches[branch]]
            if header.get("parentCommit") and header["parentCommit"] != parent.oid:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(parent.files)
            for item in lines:
                key, value = item["key"], item["value"]
                if key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: b for p, b in files.items() if not p.startswith(prefix)}
                elif key == "lfsFile":
                    raise HubError(400, "this test Hub stores regular files only (it answered preupload 'regular')")
            commit = self._new_commit(found, parent.oid, header.get("summary", ""), files)
            found.branches[branch] = commit.oid
        url = f"{self.url}/{RESOLVE_PREFIX[found.repo_type]}{repo}/commit/{commit.oid}"
        return JSONResponse({"commitUrl": url, "commitOid": commit.oid, "pullRequestUrl": None})

    async def _tag(self, request: Request, authorized: bool, t: str, repo: str, rev: str) -> Response:
        found = self._repo(t, repo, authorized, write=True)
        commit = self._commit_of(found, rev)
        tag = (await request.json())["tag"]
        with self._lock:
            if tag in found.tags:
                raise HubError(409, f"Tag reference refs/tags/{tag} already exists")
            found.tags[tag] = commit.oid
        return JSONResponse({"name": tag, "ref": f"refs/tags/{tag}", "targetCommit": commit.oid})

    async def _refs(self, request: Request, authorized: bool, t: str, repo: str) -> Response:
        found = self._repo(t, repo, authorized)
        return JSONResponse({
            "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": o} for n, o in found.branches.items()],
            "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": o} for n, o in found.tags.items()],
            "converts": []})

    @staticmethod
    def _entries(files: dict[str, bytes], under: str, recursive: bool) -> list[dict]:
        prefix = under.strip("/") + "/" if under.strip("/") else ""
        out: dict[str, dict] = {}
        for path, data in sorted(files.items()):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                if recursive or depth == 1:
                    out.setdefault(folder, {"type": "directory", "path": folder, "size": 0,
                                            "oid": hashlib.sha1(folder.encode()).hexdigest()})
            if recursive or len(parts) == 1:
                out[path] = {"type": "file", "path": path, "size": len(data), "oid": blob_oid(data)}
        return list(out.values())

    async def _tree(self, request: Request, authorized: bool, t: str, repo: str, rev: str, path: str = "") -> Response:
        commit = self._commit_of(self._repo(t, repo, authorized), rev)
        entries = self._entries(commit.files, path, request.query_params.get("recursive", "").lower() in ("1", "true"))
        if path.strip("/") and not entries and path.strip("/") not in commit.files:
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        return JSONResponse(entries)

    async def _paths_info(self, request: Request, authorized: bool, t: str, repo: str, rev: str) -> Response:
        commit = self._commit_of(self._repo(t, repo, authorized), rev)
        if request.headers.get("content-type", "").startswith("application/json"):
            paths = (await request.json()).get("paths", [])
        else:
            paths = (await request.form()).getlist("paths")
        folders = {e["path"]: e for e in self._entries(commit.files, "", recursive=True) if e["type"] == "directory"}
        out = []
        for p in paths:
            p = p.strip("/")
            if p in commit.files:
                out.append({"type": "file", "path": p, "size": len(commit.files[p]), "oid": blob_oid(commit.files[p])})
            elif p in folders:
                out.append(folders[p])
        return JSONResponse(out)

    async def _resolve(self, request: Request, authorized: bool, repo: str, rev: str, path: str,
                       t: str | None = None) -> Response:
        found = self._repo(t or "models", repo, authorized)
        commit = self._commit_of(found, rev)
        if path not in commit.files:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        data = commit.files[path]
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{blob_oid(data)}"', "Accept-Ranges": "bytes"}
        status = 200
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", request.headers.get("range", ""))
        if match and data:
            start = int(match[1]) if match[1] else max(0, len(data) - int(match[2]))
            end = int(match[2]) if match[1] and match[2] else len(data) - 1
            end = min(end, len(data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start:end + 1], 206
        headers["Content-Length"] = str(len(data))
        return Response(b"" if request.method == "HEAD" else data, status_code=status, headers=headers)

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> HubServer:
        self._transport = _Transport(self, self.port).start()
        self.port = self._transport.port
        return self

    def stop(self) -> None:
        if self._transport is not None:
            self._transport.stop()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- for assertions -------------------------------------------------------
    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        commit = self.repos[(repo_type, repo_id)].resolve(revision)
        return dict(commit.files) if commit else {}

    def tags(self, repo_id: str, repo_type: str = "dataset") -> dict[str, str]:
        repo = self.repos.get((repo_type, repo_id))
        return dict(repo.tags) if repo else {}

    def unknown_requests(self) -> list[str]:
        return [endpoint for (_, endpoint, _), _ in self.requests.items() if endpoint.startswith("unknown")]


class _Transport(LoopbackServer):
    """loopback.py's uvicorn on a loopback socket in a thread, serving the Hub app instead of the OpenAI one."""

    def __init__(self, hub: HubServer, port: int) -> None:
        super().__init__(port=port)
        self._hub = hub

    def app(self):
        return self._hub


def load_from_hub(endpoint: str, repo_id: str, config: str, revision: str, tmp: Path,
                  token: str | None) -> dict[str, int]:
    """``datasets.load_dataset(repo_id, config, revision=revision)`` in a fresh process pointed at ``endpoint``,
    with an empty cache: rows per split. A failure raises AssertionError with the client's last error line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp / "hf-home-load"))
    if token:
        env["HF_TOKEN"] = token
    code = ("import json, sys, datasets; d = datasets.load_dataset(sys.argv[1], sys.argv[2], revision=sys.argv[3]); "
            "print(json.dumps({s: d[s].num_rows for s in d}))")
    run = subprocess.run([sys.executable, "-c", code, repo_id, config, revision], env=env, capture_output=True,
                         text=True, timeout=300)
    if run.returncode != 0:
        last = [line for line in run.stderr.strip().splitlines() if line.strip()]
        raise AssertionError(last[-1] if last else f"load_dataset exited {run.returncode}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--token", required=True)
    args = p.parse_args()
    server = HubServer(args.token, args.port).start()
    print(f"test Hub on {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
