"""Preflight: everything a run needs, checked before its Prefect flow starts, each problem one line.

The one way in for every command that starts work (``generate``, ``serve``):
a run that would fail on a bad input, a damaged dataset or a backend that is
not there fails here, in a second, with exit status 2 (3 for a backend), and
with nothing written, instead of minutes later with a traceback, a
half-written folder or a version of 100 % rejected rows.

Checked, in order:

1. the config file: a regular file, UTF-8, within its size limit, strict YAML
   (a key given twice is an error naming both lines), valid against the schema;
2. every file the config refers to and every step it names, by building the
   steps (a tool spec, a KG file, a plug-in's constructor);
3. the output location: a folder that can be written, or a path that can be
   created; not a file or under one, not on a kernel filesystem (``/proc``,
   ``/sys``, ``/dev``), free of ``%XX`` escapes Delta Lake would decode; an
   existing folder is a trajforge dataset (whose log and current files are
   whole) or holds nothing else; the run id and a killed run's staging;
4. the request cache's location;
5. every backend a run calls: its key variable set, and one cheap request
   (``GET base_url/models``) that tells refused from timed out from an HTTP
   error, and checks the model is served; a managed vLLM's executable;
6. Prefect: a configured ``PREFECT_API_URL`` answers, or the Prefect home can
   be created.

Export and report destinations use the same location checks
(``check_output_folder``, ``check_output_file``).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from schemas import (
    BackendConfig,
    BackendUnavailableError,
    ConfigError,
    InputError,
    RunConfig,
    load_config,
)

# Kernel filesystems: writable for root in places, never storage for a dataset.
PSEUDO_FILESYSTEMS = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "pstore", "bpf",
    "configfs", "fusectl", "mqueue", "hugetlbfs", "binfmt_misc", "autofs", "efivarfs", "rpc_pipefs", "nsfs",
    "selinuxfs"})
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
HEALTH_CHECK_TIMEOUT_S = 10.0  # at most; a backend's own timeout_s when shorter


def preflight(config_path: str | Path, out: str | None = None, seed: int | None = None, run_id: str | None = None,
              backends: bool = True, target_accepted: int | None = None) -> RunConfig:
    """The validated config of a run that can start; otherwise a one-line ``UserError``. Writes nothing."""
    if out is not None and not out.strip():
        raise ConfigError("--out: is empty; give a folder")
    # before the heavy imports: a bad config is quick
    config = load_config(config_path, seed=seed, output_dir=out, target_accepted=target_accepted)
    if not config.output_dir:
        raise ConfigError(f"{config_path}: output_dir: not set; give --out DIR")
    where = "--out" if out is not None else f"{config_path}: output_dir"
    check_output_folder(Path(config.output_dir), where)  # so is a bad output location
    from pipelines.flow import cache_path_for
    from pipelines.resume import check_claim
    from pipelines.steps import build_steps

    build_steps(config, str(config_path))
    root = check_dataset_location(config.output_dir, where)
    if run_id is not None:
        check_run_id(run_id)
        check_claim(root / "_staging" / run_id, run_id, config.config_hash())
    cache = cache_path_for(config, config.output_dir)
    if cache is not None:
        check_output_file(Path(cache), f"{config_path}: cache.path" if config.cache.path else "the request cache")
    if backends:
        check_backends(config, str(config_path))
        check_prefect()
    return config


# -- locations -----------------------------------------------------------------------------------------

def check_dataset_location(path: str | Path, what: str) -> Path:
    """A folder a run may commit to: a trajforge dataset whose log and current files are whole, or a new or empty folder."""
    from pipelines.store import OWN_FOLDERS, DatasetStore

    root = check_output_folder(Path(path), what)
    if root.is_dir():
        entries = sorted(os.listdir(root))
        store = DatasetStore(root)
        if store.exists():
            store.data_files(footers=True)  # a damaged table is never appended to
            if not store.versions():
                raise InputError(f"{what}: {path} holds a Delta table that trajforge did not write (no version has "
                                 "a trajforge manifest); choose another folder")
        elif not set(entries) <= OWN_FOLDERS:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise InputError(f"{what}: {path} is a folder with other files in it ({shown}) and no trajforge dataset; "
                             "give a new or empty folder, or a dataset's folder")
    return root


def check_output_folder(path: Path, what: str) -> Path:
    """``path`` as a folder that exists and can be written, or can be created; nothing is created."""
    _check_characters(path, what)
    if path.is_symlink() and not path.exists():
        raise InputError(f"{what}: {path} is a symbolic link to {os.readlink(path)}, which does not exist")
    resolved = path.resolve()
    _check_filesystem(path, resolved, what)
    if resolved.exists():
        if not resolved.is_dir():
            kind = "a file" if resolved.is_file() else "not a folder"
            raise InputError(f"{what}: {path} is {kind}; give a folder")
        _probe(resolved, path, what)
        return resolved
    _probe(_existing_ancestor(resolved, path, what), path, what)
    return resolved


def check_output_file(path: Path, what: str) -> Path:
    """``path`` as a file that can be written (replaced if it exists): not a folder, its folder creatable."""
    _check_characters(path, what)
    resolved = path.resolve()
    _check_filesystem(path, resolved, what)
    if resolved.is_dir():
        raise InputError(f"{what}: {path} is a folder; give a file name (e.g. {path / 'report.html'})")
    if resolved.exists() and not resolved.is_file():
        raise InputError(f"{what}: {path} is not a regular file")
    folder = resolved.parent
    if folder.exists():
        if not folder.is_dir():
            raise InputError(f"{what}: {path} lies under {folder}, which is a file")
        _probe(folder, path, what)
    else:
        _probe(_existing_ancestor(folder, path, what), path, what)
    return resolved


def _check_characters(path: Path, what: str) -> None:
    from pipelines.store import percent_escape

    text = str(path)
    if not text.strip():
        raise InputError(f"{what}: is empty; give a path")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise InputError(f"{what}: {text!r} holds a control character (a newline?); give a plain path")
    escape = percent_escape(path)
    if escape:
        raise InputError(f"{what}: {path} holds the escape {escape!r}, which Delta Lake decodes, so the table would "
                         "be read from another folder; rename it without '%'")


def _existing_ancestor(resolved: Path, path: Path, what: str) -> Path:
    """The nearest existing folder above ``resolved``; a file there means the path lies under a file."""
    for parent in resolved.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{what}: {path} lies under {parent}, which is a file")
            return parent
    raise InputError(f"{what}: {path}: no folder above it exists")  # unreachable on a working system: / exists


def _probe(folder: Path, path: Path, what: str) -> None:
    """Create and remove one file in ``folder``: the only honest test of writability (root passes every mode check)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".trajforge-probe-", dir=folder)
    except OSError as err:
        reason = "read-only filesystem" if err.errno == errno.EROFS else (err.strerror or str(err)).lower()
        raise InputError(f"{what}: cannot create anything in {folder} ({reason}); choose a writable place for {path}"
                         ) from None
    os.close(fd)
    os.unlink(name)


def _check_filesystem(path: Path, resolved: Path, what: str) -> None:
    mount, kind = filesystem_of(resolved)
    if kind in PSEUDO_FILESYSTEMS:
        raise InputError(f"{what}: {path} is on the kernel's {kind} filesystem (mounted at {mount}), not storage; "
                         "choose a folder on disk")


@lru_cache(maxsize=1)
def _mounts() -> tuple[tuple[str, str], ...]:
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return ()
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 3:  # mount points escape spaces and tabs as octal
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), parts[1])
            out.append((point, parts[2]))
    return tuple(out)


def filesystem_of(path: Path) -> tuple[str, str]:
    """(mount point, filesystem type) of the mount ``path`` is on (its nearest existing ancestor's); ('', '') unknown."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    real = os.path.realpath(probe)
    best = ("", "")
    for point, kind in _mounts():
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, kind)
    return best


def check_run_id(run_id: str) -> None:
    """A run id names a folder under ``_staging/``: letters, digits, '.', '_', '-', starting with a letter or digit."""
    if not RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise ConfigError(f"--run-id: {run_id!r} is not a valid run id (letters, digits, '.', '_', '-', starting "
                          "with a letter or digit, at most 128 characters)")


# -- backends --------------------------------------------------------------------------------------------

def check_backends(config: RunConfig, source: str = "config") -> None:
    """Every backend the run calls (by a role or a step), in config order."""
    used = set(config.model_users().values())
    for name, backend in config.backends.items():
        if name in used:
            check_backend(name, backend, source)


def check_backend(name: str, backend: BackendConfig, source: str = "config") -> None:
    where = f"{source}: backends.{name}"
    key = None
    if backend.api_key_env:
        key = os.environ.get(backend.api_key_env)
        if not key:
            state = "is empty" if key == "" else "is not set"
            raise ConfigError(f"{where}.api_key_env: the environment variable {backend.api_key_env} {state}")
    if backend.kind == "vllm":
        assert backend.vllm is not None  # the config validator sets it
        exe = backend.vllm.executable
        if shutil.which(exe) is None:
            raise InputError(f"{where}.vllm.executable: {exe!r} is not an executable file or a command on PATH")
        return  # the run starts this server itself and waits for its health
    probe_backend(name, backend.base_url or "", backend.model, key,
                  min(backend.timeout_s, HEALTH_CHECK_TIMEOUT_S))


def probe_backend(name: str, base_url: str, model: str, key: str | None, timeout_s: float) -> None:
    """One ``GET base_url/models``; any answer but a list that serves ``model`` is a ``BackendUnavailableError``."""
    import httpx

    from simulators.backends.failures import describe_connection_error

    url = base_url.rstrip("/") + "/models"
    who = f"backend {name!r} at {base_url}"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        reply = httpx.get(url, headers=headers, timeout=httpx.Timeout(timeout_s))
    except httpx.HTTPError as err:
        raise BackendUnavailableError(f"{who}: {describe_connection_error(err, timeout_s)}") from None
    if reply.status_code in (401, 403):
        raise BackendUnavailableError(f"{who}: refused the API key (HTTP {reply.status_code}); check its api_key_env")
    if reply.status_code == 404:
        return  # a server without the models list (some gateways): it answered, which is what can be checked
    if reply.status_code >= 400:
        raise BackendUnavailableError(f"{who}: answered HTTP {reply.status_code} to GET {url}: "
                                      f"{reply.text.strip()[:120] or reply.reason_phrase}")
    try:
        served = [m.get("id") for m in reply.json().get("data", []) if isinstance(m, dict)]
    except (ValueError, AttributeError):
        return  # not the OpenAI shape; the server is up
    if served and model not in served:
        shown = ", ".join(str(s) for s in served[:5]) + (", ..." if len(served) > 5 else "")
        raise BackendUnavailableError(f"{who}: does not serve model {model!r} (it serves: {shown})")


# -- Prefect -----------------------------------------------------------------------------------------------

def check_prefect() -> None:
    """A configured Prefect API answers; without one, the temporary server's home can be created."""
    import httpx
    from prefect.settings import get_current_settings

    from simulators.backends.failures import describe_connection_error

    settings = get_current_settings()
    api = settings.api.url
    if api:
        try:
            httpx.get(api.rstrip("/") + "/health", timeout=5).raise_for_status()
        except httpx.HTTPStatusError as err:
            raise BackendUnavailableError(f"PREFECT_API_URL {api}: answered HTTP {err.response.status_code} to "
                                          "/health") from None
        except httpx.HTTPError as err:
            raise BackendUnavailableError(f"PREFECT_API_URL {api}: {describe_connection_error(err, 5)}; start that "
                                          "server, or unset PREFECT_API_URL to use a temporary one") from None
        return
    check_output_folder(Path(settings.home).expanduser(), "PREFECT_HOME")
