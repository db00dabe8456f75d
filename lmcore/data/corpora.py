"""Real text corpora by name, downloaded once, checksum-verified and cached, like torchvision
(chapters 3, 4 and 9 use Tiny Shakespeare).

``load_text("tinyshakespeare")`` returns the text.  The first call looks for the file in the cache
directory (``$LMCORE_CACHE``, default ``~/.cache/lmcore``), then in local folders listed in
``$LMCORE_LOCAL_DATA`` (a path list, for offline machines), and only then downloads it.  Every copy
is checked against the registry's sha256 before it is used or cached, and written atomically, so
a partial or corrupted file is never used.  Any local text file works too: ``load_text(path)``.

Names and paths are never ambiguous: a registered name (``"toy"``, ``"tinyshakespeare"``) always
means the registry, whatever files the working directory holds; a file is read only when given
as a path: a ``pathlib.Path`` (or other ``os.PathLike``), or a string with a directory separator or
a file suffix (``"./toy"``, ``"data/input.txt"``, ``"notes.txt"``).  Any other string is an unknown
corpus name, an error that lists the known ones.
"""
from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .._checks import check_key
from .._io import atomic_write, sha256_file

__all__ = ["CorpusInfo", "CORPORA", "cache_dir", "fetch_corpus", "load_text", "available"]


@dataclass(frozen=True)
class CorpusInfo:
    """Where a corpus lives and how to recognise the right file."""

    url: str
    sha256: str
    size: int
    filename: str
    description: str = ""


CORPORA: dict[str, CorpusInfo] = {
    "tinyshakespeare": CorpusInfo(
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        size=1_115_394,
        filename="tinyshakespeare.txt",
        description="40,000 lines of Shakespeare's plays (Karpathy's char-rnn corpus), 1.1 MB",
    ),
}


def cache_dir() -> Path:
    """The directory lmcore caches corpora and trained models in (``$LMCORE_CACHE``)."""
    env = os.environ.get("LMCORE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lmcore"


def _info(name: str) -> CorpusInfo:
    hint = f" (a file {name!r} exists here: pass './{name}' to read it)" if isinstance(name, str) \
        and Path(name).is_file() else ""
    return check_key("name", name, CORPORA, "unknown corpus {value!r}; known corpora: {known} (and 'toy' for "
                     "load_text). To use your own text, pass a path such as './my.txt' or a pathlib.Path" + hint)


def _is_path(text: str) -> bool:
    """True when the string ``text`` is written as a path (a directory separator or a file suffix);
    registered names never are."""
    if text == "toy" or text in CORPORA:
        return False
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return any(sep in text for sep in separators) or Path(text).suffix != ""


def available(name: str) -> bool:
    """True when ``name`` can be loaded without the network (cached or in ``$LMCORE_LOCAL_DATA``)."""
    info = _info(name)
    cached = cache_dir() / "corpora" / info.filename
    return _verified(cached, info) or _local_copy(info) is not None


def _verified(path: Path, info: CorpusInfo) -> bool:
    return path.is_file() and path.stat().st_size == info.size and sha256_file(path) == info.sha256


def _local_copy(info: CorpusInfo) -> Path | None:
    for folder in filter(None, os.environ.get("LMCORE_LOCAL_DATA", "").split(os.pathsep)):
        candidate = Path(folder).expanduser() / info.filename
        if _verified(candidate, info):
            return candidate
    return None


def fetch_corpus(name: str, url: str | None = None, timeout: float = 30.0) -> Path:
    """Return the path of the verified cached copy of corpus ``name``, downloading it if needed.

    ``url`` overrides the registry's address (tests use a ``file://`` URL).  Raises
    ``ConnectionError`` when offline and ``ValueError`` when the downloaded bytes do not match
    the checksum; in both cases nothing is written to the cache.
    """
    info = _info(name)
    target = cache_dir() / "corpora" / info.filename
    if _verified(target, info):
        return target
    local = _local_copy(info)
    if local is not None:
        with open(local, "rb") as src, atomic_write(target) as dst:
            shutil.copyfileobj(src, dst)
        return target
    source = url or info.url
    try:
        with urllib.request.urlopen(source, timeout=timeout) as response:
            data = response.read(info.size + 1)
    except (urllib.error.URLError, OSError) as e:
        raise ConnectionError(
            f"could not download corpus {name!r} from {source} ({e}). If this machine is offline, "
            f"download {info.url} elsewhere and either pass its path to load_text(), put it at "
            f"{target}, or set LMCORE_LOCAL_DATA to the folder holding {info.filename}."
        ) from e
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    if len(data) != info.size or digest != info.sha256:
        raise ValueError(
            f"downloaded corpus {name!r} from {source} is corrupt or has changed: got {len(data)} "
            f"bytes with sha256 {digest}, expected {info.size} bytes with sha256 {info.sha256}. "
            "It was not cached; try again or pass a local copy's path to load_text()."
        )
    with atomic_write(target) as f:
        f.write(data)
    return target


def load_text(name_or_path: str | os.PathLike, url: str | None = None) -> str:
    """The text of a registered corpus (by name), the toy language's training split (``"toy"``),
    or a local UTF-8 text file (by path: see the module docstring for which strings are paths).

    A registered name is never read from a file of that name in the working directory.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path must be a corpus name or a path, got {type(name_or_path).__name__}")
    if not isinstance(name_or_path, str) or _is_path(name_or_path):   # a Path object is always a path
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no such text file: {str(name_or_path)!r}")
        return path.read_text(encoding="utf-8")
    if name_or_path == "toy":
        from .toy import toy_corpus

        return toy_corpus("train")
    _info(name_or_path)       # an unknown name is an error here, whatever files exist
    return fetch_corpus(name_or_path, url=url).read_text(encoding="utf-8")
