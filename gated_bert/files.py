"""Writing files and folders so that a crash never leaves half of one behind; reading JSON objects with clear errors."""

import contextlib
import hashlib
import itertools
import json
import math
import os
import shutil

# Numbers the temporary names, so that a write started from a signal handler never collides with the one it
# interrupted.
_partial_numbers = itertools.count()


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success rename it onto `path`, on error delete it.

    The temporary name keeps `path`'s extension, since some writers
    (`model.save`, `np.savez`) choose their format by it. An `OSError` that
    names no file (a full disk, seen by `write`) is raised again naming `path`.
    """
    folder, name = os.path.split(os.fspath(path))
    tmp = os.path.join(folder, f".partial-{os.getpid()}-{next(_partial_numbers)}-{name}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(error, OSError) and error.errno is not None and error.filename is None:
            raise OSError(error.errno, f"{error.strerror} (while writing {path})", os.fspath(path)) from error
        raise


def _alive(pid):
    """Whether a process `pid` exists on this machine (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(folder):
    """Delete the temporary files and folders (`.partial-<pid>-...`) in `folder` that a killed process left
    behind: those whose process is gone, this one's excepted. Returns the names removed."""
    removed = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        pid = name.removeprefix(".partial-").split("-", 1)[0]
        if not name.startswith(".partial-") or not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        removed.append(name)
    return removed


@contextlib.contextmanager
def staged_folder(folder):
    """Yield a new temporary folder beside `folder`; on success it replaces `folder`, on error it is deleted."""
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".partial-{os.getpid()}-{next(_partial_numbers)}-{os.path.basename(folder)}")
    os.makedirs(tmp)
    try:
        yield tmp
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_of(paths):
    """Hex SHA-256 of the files' bytes, read in the order given (one file: that file's own digest)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(item) for item in value]
    return value


def json_text(payload):
    """`payload` as indented, standard JSON: NaN and infinities (which JSON lacks) become null, other objects
    their `str`."""
    return json.dumps(_finite_or_none(payload), indent=2, default=str, allow_nan=False)


def write_json_atomic(path, payload):
    """Write `payload` as `json_text`, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(json_text(payload) + "\n")


def read_json_object(path, what, error_type, missing_hint=""):
    """The JSON object stored in `path`.

    A missing or unreadable file, a folder, bytes that are not UTF-8, invalid
    JSON or a value that is not an object raises `error_type` with a message
    naming `what` (e.g. "config file") and the path; `missing_hint` is
    appended when the file is missing.
    """
    try:
        with open(path, "rb") as handle:
            values = json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError:
        raise error_type(f"{what} not found: {path}{missing_hint}") from None
    except IsADirectoryError:
        raise error_type(f"{what} {path} is a folder; pass a JSON file") from None
    except UnicodeDecodeError as error:
        raise error_type(f"{what} {path} is not JSON text: byte {error.start} (0x{error.object[error.start]:02x}) "
                         "is not UTF-8") from None  # the whole file was decoded at once: the offset is the file's
    except json.JSONDecodeError as error:
        raise error_type(f"{what} {path} is not valid JSON: {error}") from None
    except OSError as error:
        raise error_type(f"cannot read {what} {path}: {error.strerror or error}") from None
    if not isinstance(values, dict):
        raise error_type(f"{what} {path} must hold a JSON object, got {type(values).__name__}")
    return values
