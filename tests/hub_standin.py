"""A small in-memory stand-in for the Hugging Face Hub HTTP API, bound to 127.0.0.1 on an ephemeral port.

Why: publishing must be tested through the real ``huggingface_hub.HfApi`` code path (routes, payload encoding,
README YAML validation, LFS batch protocol) without ever touching the network. The routes and payloads below
were taken from huggingface_hub 2.4's ``hf_api.py``, ``_commit_api.py`` and ``lfs.py``:

* ``POST /api/repos/create``                         create_repo (409 when it exists, as the Hub does)
* ``GET  /api/{type}s/{repo}[/revision/{rev}]``      repo_info (create_commit calls it when nothing changed)
* ``GET  /api/{type}s/{repo}/tree/{rev}[/{path}]``   list_repo_tree (``recursive`` query flag)
* ``POST /api/{type}s/{repo}/paths-info/{rev}``      get_paths_info (form-encoded ``paths``)
* ``POST /api/validate-yaml``                        README metadata check done by create_commit
* ``POST /api/{type}s/{repo}/preupload/{rev}``       upload mode per file (regular / lfs) and remote oid
* ``POST /{prefix}{repo}.git/info/lfs/objects/batch`` LFS batch (basic transfer; clients must disable Xet)
* ``PUT  /lfs-upload/{oid}``                         the "presigned" upload URL handed out by the batch call
* ``POST /{prefix}{repo}.git/info/lfs/objects/verify``
* ``POST /api/{type}s/{repo}/commit/{rev}``          ndjson commit (file / lfsFile / deletedFile / deletedFolder)

Like the real Hub, a new repo starts with one commit holding ``.gitattributes``. Faults can be injected per route
(``fail_next`` queues statuses, ``fail_always`` makes a route fail permanently); every request is recorded with
whether it carried the expected ``Authorization: Bearer`` token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

_TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class StoredFile:
    content: bytes
    lfs: bool

    def tree_entry(self, path: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "path": path, "size": len(self.content)}
        if self.lfs:
            sha256 = hashlib.sha256(self.content).hexdigest()
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(self.content)}\n"
            entry["oid"] = git_blob_sha1(pointer.encode())
            entry["lfs"] = {"oid": sha256, "size": len(self.content), "pointerSize": len(pointer)}
        else:
            entry["oid"] = git_blob_sha1(self.content)
        return entry


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    files: dict[str, StoredFile] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def head(self) -> str:
        return self.commits[-1]["oid"]


@dataclass
class RequestRecord:
    method: str
    path: str
    route: str
    status: int
    auth_ok: bool | None  # None for routes that do not take the token (presigned upload URLs)


class HubStandIn:
    """In-memory Hub. Use as a context manager; ``endpoint`` is the base URL to hand to ``HfApi``."""

    def __init__(
        self,
        expected_token: str | None = None,
        lfs_suffixes: tuple[str, ...] = (".safetensors", ".bin"),
        lfs_min_size: int = 10 * 1024 * 1024,
    ) -> None:
        self.expected_token = expected_token
        self.lfs_suffixes = lfs_suffixes
        self.lfs_min_size = lfs_min_size
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_store: dict[str, bytes] = {}
        self.requests: list[RequestRecord] = []
        self.bodies: list[bytes] = []
        self.fail_next: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.fail_always: dict[str, int] = {}
        self.lose_response: dict[str, int] = {}  # route -> count: apply the request, then answer 502 anyway
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> "HubStandIn":
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "stand-in not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # ---------------------------------------------------------------- test helpers
    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def stored_files(self, repo_id: str, repo_type: str = "model") -> dict[str, bytes]:
        return {p: f.content for p, f in self.repo(repo_id, repo_type).files.items()}

    def routes_hit(self, route: str) -> list[RequestRecord]:
        return [r for r in self.requests if r.route == route]

    def inject(self, route: str, *statuses: int, retry_after: str | None = None) -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self.fail_next.setdefault(route, []).extend((s, headers) for s in statuses)

    def lose_next_response(self, route: str, count: int = 1) -> None:
        """Simulate a request that succeeds server-side but whose response never reaches the client."""
        self.lose_response[route] = self.lose_response.get(route, 0) + count

    # ---------------------------------------------------------------- internals used by the handler
    def _next_fault(self, route: str) -> tuple[int, dict[str, str]] | None:
        with self.lock:
            if route in self.fail_always:
                return self.fail_always[route], {}
            queue = self.fail_next.get(route)
            if queue:
                return queue.pop(0)
        return None

    def _is_lfs(self, path: str, size: int) -> bool:
        return size > 0 and (path.endswith(self.lfs_suffixes) or size >= self.lfs_min_size)

    def _new_commit(self, repo: Repo, summary: str, changes: list[str]) -> str:
        seed = f"{repo.repo_type}/{repo.repo_id}/{len(repo.commits)}/{summary}/{changes}".encode()
        oid = hashlib.sha1(seed).hexdigest()
        repo.commits.append({"oid": oid, "summary": summary, "changes": changes})
        return oid


class _Reply(Exception):
    """Raised inside a route to answer with an error status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def _make_handler(hub: HubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output quiet
            return

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_PUT(self) -> None:
            self._dispatch("PUT")

        # ------------------------------------------------------------ plumbing
        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        def _auth_ok(self) -> bool:
            if hub.expected_token is None:
                return True
            return self.headers.get("Authorization") == f"Bearer {hub.expected_token}"

        def _dispatch(self, method: str) -> None:
            url = urllib.parse.urlsplit(self.path)
            body = self._read_body()
            with hub.lock:
                hub.bodies.append(body)
            route, handler, args = _route(method, url.path)
            auth_ok: bool | None = None if route == "lfs-upload" else self._auth_ok()
            status, reply, headers = 404, {"error": f"no route {method} {url.path}"}, {}
            try:
                if handler is None:
                    raise _Reply(404, {"error": f"no route {method} {url.path}"})
                if auth_ok is False:
                    raise _Reply(401, {"error": "Invalid credentials in Authorization header"})
                fault = hub._next_fault(route)
                if fault is not None:
                    raise _Reply(fault[0], {"error": f"injected {fault[0]}"}, fault[1])
                query = urllib.parse.parse_qs(url.query)
                status, reply = 200, handler(hub, *args, body=body, query=query, headers=self.headers)
                with hub.lock:
                    if hub.lose_response.get(route, 0) > 0:
                        hub.lose_response[route] -= 1
                        raise _Reply(502, {"error": "bad gateway (response lost after the request was applied)"})
            except _Reply as r:
                status, reply, headers = r.status, r.body, r.headers
            with hub.lock:
                hub.requests.append(RequestRecord(method, url.path, route, status, auth_ok))
            self._send(status, reply, headers)

    return Handler


# -------------------------------------------------------------------- routing
def _route(method: str, path: str) -> tuple[str, Any, tuple]:
    parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
    if method == "POST" and parts == ["api", "repos", "create"]:
        return "create", _create_repo, ()
    if method == "POST" and parts == ["api", "validate-yaml"]:
        return "validate-yaml", _validate_yaml, ()
    if method == "PUT" and len(parts) == 2 and parts[0] == "lfs-upload":
        return "lfs-upload", _lfs_upload, (parts[1],)
    if len(parts) >= 3 and parts[0] == "api" and parts[1] in ("models", "datasets", "spaces"):
        repo_type, repo_id, rest = parts[1][:-1], f"{parts[2]}/{parts[3]}" if len(parts) > 3 else "", parts[4:]
        if method == "GET" and not rest:
            return "repo-info", _repo_info, (repo_type, repo_id)
        if method == "GET" and rest[:1] == ["revision"]:
            return "repo-info", _repo_info, (repo_type, repo_id)
        if method == "GET" and rest[:1] == ["tree"] and len(rest) >= 2:
            return "tree", _tree, (repo_type, repo_id, "/".join(rest[2:]))
        if method == "POST" and rest[:1] == ["paths-info"]:
            return "paths-info", _paths_info, (repo_type, repo_id)
        if method == "POST" and rest[:1] == ["preupload"]:
            return "preupload", _preupload, (repo_type, repo_id)
        if method == "POST" and rest[:1] == ["commit"]:
            return "commit", _commit, (repo_type, repo_id)
    if method == "POST" and path.endswith((".git/info/lfs/objects/batch", ".git/info/lfs/objects/verify")):
        repo_type = "model"
        if parts[0] in ("datasets", "spaces"):
            repo_type, parts = parts[0][:-1], parts[1:]
        repo_id = f"{parts[0]}/{parts[1].removesuffix('.git')}"
        if path.endswith("/batch"):
            return "lfs-batch", _lfs_batch, (repo_type, repo_id)
        return "lfs-verify", _lfs_verify, (repo_type, repo_id)
    return "unknown", None, ()


def _get_repo(hub: HubStandIn, repo_type: str, repo_id: str) -> Repo:
    repo = hub.repos.get((repo_type, repo_id))
    if repo is None:
        raise _Reply(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
    return repo


# -------------------------------------------------------------------- route implementations
def _create_repo(hub: HubStandIn, *, body: bytes, **_: Any) -> dict[str, Any]:
    payload = json.loads(body)
    repo_type = payload.get("type") or "model"
    repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
    url = f"{hub.endpoint}/{_TYPE_PREFIX[repo_type]}{repo_id}"
    with hub.lock:
        if (repo_type, repo_id) in hub.repos:
            raise _Reply(409, {"error": "You already created this repo", "url": url})
        repo = Repo(repo_id, repo_type, files={".gitattributes": StoredFile(_GITATTRIBUTES, lfs=False)})
        hub._new_commit(repo, "initial commit", [".gitattributes"])
        hub.repos[(repo_type, repo_id)] = repo
    return {"url": url, "name": repo_id}


def _repo_info(hub: HubStandIn, repo_type: str, repo_id: str, **_: Any) -> dict[str, Any]:
    with hub.lock:
        repo = _get_repo(hub, repo_type, repo_id)
        return {"id": repo_id, "sha": repo.head, "siblings": [{"rfilename": p} for p in sorted(repo.files)]}


def _tree(hub: HubStandIn, repo_type: str, repo_id: str, sub: str, *, query: dict, **_: Any) -> list[dict]:
    recursive = query.get("recursive", ["False"])[0].lower() == "true"
    prefix = f"{sub.strip('/')}/" if sub else ""
    with hub.lock:
        repo = _get_repo(hub, repo_type, repo_id)
        entries: dict[str, dict[str, Any]] = {}
        for path, stored in sorted(repo.files.items()):
            if not path.startswith(prefix):
                continue
            rel_parts = path[len(prefix) :].split("/")
            for depth in range(1, len(rel_parts)):  # folders on the way down
                folder = prefix + "/".join(rel_parts[:depth])
                if recursive or depth == 1:
                    entries.setdefault(
                        folder, {"type": "directory", "path": folder, "oid": git_blob_sha1(folder.encode())}
                    )
            if recursive or len(rel_parts) == 1:
                entries[path] = stored.tree_entry(path)
        return list(entries.values())


def _paths_info(hub: HubStandIn, repo_type: str, repo_id: str, *, body: bytes, **_: Any) -> list[dict]:
    wanted = urllib.parse.parse_qs(body.decode()).get("paths", [])
    with hub.lock:
        repo = _get_repo(hub, repo_type, repo_id)
        return [repo.files[p].tree_entry(p) for p in wanted if p in repo.files]


def _validate_yaml(hub: HubStandIn, *, body: bytes, **_: Any) -> dict[str, Any]:
    content = json.loads(body)["content"]
    if not content.startswith("---\n"):
        return {"warnings": [{"message": "empty or missing yaml metadata in repo card"}]}
    try:
        meta = yaml.safe_load(content[4:].split("\n---\n", 1)[0])
    except yaml.YAMLError as e:
        raise _Reply(400, {"errors": [{"message": f"invalid yaml: {e}"}]}) from e
    if not isinstance(meta, dict):
        raise _Reply(400, {"errors": [{"message": "metadata must be a mapping"}]})
    if "model-index" in meta and not isinstance(meta["model-index"], list):
        raise _Reply(400, {"errors": [{"message": "model-index must be a list"}]})
    return {"warnings": []}


def _preupload(hub: HubStandIn, repo_type: str, repo_id: str, *, body: bytes, **_: Any) -> dict[str, Any]:
    files = json.loads(body)["files"]
    out = []
    with hub.lock:
        repo = _get_repo(hub, repo_type, repo_id)
        for f in files:
            lfs = hub._is_lfs(f["path"], f["size"])
            existing = repo.files.get(f["path"])
            oid = None
            if existing is not None:
                oid = hashlib.sha256(existing.content).hexdigest() if existing.lfs else git_blob_sha1(existing.content)
            out.append(
                {"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid}
            )
    return {"files": out}


def _lfs_batch(hub: HubStandIn, repo_type: str, repo_id: str, *, body: bytes, **_: Any) -> dict[str, Any]:
    payload = json.loads(body)
    if payload.get("operation") != "upload" or "basic" not in payload.get("transfers", []):
        raise _Reply(422, {"message": "stand-in supports basic LFS upload only"})
    prefix = _TYPE_PREFIX[repo_type]
    objects = []
    with hub.lock:
        _get_repo(hub, repo_type, repo_id)
        for obj in payload["objects"]:
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in hub.lfs_store:
                entry["actions"] = {
                    "upload": {"href": f"{hub.endpoint}/lfs-upload/{obj['oid']}"},
                    "verify": {"href": f"{hub.endpoint}/{prefix}{repo_id}.git/info/lfs/objects/verify"},
                }
            objects.append(entry)
    return {"transfer": "basic", "objects": objects}


def _lfs_upload(hub: HubStandIn, oid: str, *, body: bytes, **_: Any) -> dict[str, Any]:
    if hashlib.sha256(body).hexdigest() != oid:
        raise _Reply(400, {"error": "sha256 mismatch"})
    with hub.lock:
        hub.lfs_store[oid] = body
    return {}


def _lfs_verify(hub: HubStandIn, repo_type: str, repo_id: str, *, body: bytes, **_: Any) -> dict[str, Any]:
    payload = json.loads(body)
    stored = hub.lfs_store.get(payload["oid"])
    if stored is None or len(stored) != payload["size"]:
        raise _Reply(404, {"error": "object not uploaded"})
    return {}


def _commit(hub: HubStandIn, repo_type: str, repo_id: str, *, body: bytes, headers: Any, **_: Any) -> dict[str, Any]:
    if headers.get("Content-Type") != "application/x-ndjson":
        raise _Reply(400, {"error": "commit payload must be ndjson"})
    lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
    if not lines or lines[0].get("key") != "header":
        raise _Reply(400, {"error": "first ndjson line must be the header"})
    summary = lines[0]["value"]["summary"]
    with hub.lock:
        repo = _get_repo(hub, repo_type, repo_id)
        files = dict(repo.files)
        changes = []
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            path = value["path"]
            if key == "file":
                files[path] = StoredFile(base64.b64decode(value["content"]), lfs=False)
            elif key == "lfsFile":
                if value["oid"] not in hub.lfs_store:
                    raise _Reply(422, {"error": f"LFS object {value['oid']} for {path} was never uploaded"})
                files[path] = StoredFile(hub.lfs_store[value["oid"]], lfs=True)
            elif key == "deletedFile":
                if path not in files:
                    raise _Reply(
                        404, {"error": "A file with this name doesn't exist"}, {"X-Error-Code": "EntryNotFound"}
                    )
                del files[path]
            elif key == "deletedFolder":
                files = {p: f for p, f in files.items() if not p.startswith(path.rstrip("/") + "/")}
            else:
                raise _Reply(400, {"error": f"unknown ndjson key {key!r}"})
            changes.append(f"{key}:{path}")
        repo.files = files
        oid = hub._new_commit(repo, summary, changes)
    url = f"{hub.endpoint}/{_TYPE_PREFIX[repo_type]}{repo_id}/commit/{oid}"
    return {"commitUrl": url, "commitOid": oid, "pullRequestUrl": None}
