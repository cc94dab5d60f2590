"""Where a key's files live, as the ledger reaches them: a local folder or an object store.

Both give the same five operations: read, write (whole files, never torn), create-if-absent (the one atomic step
a lease needs: `O_EXCL`-like on a folder, a conditional put on S3, GCS and Azure), list and delete. Paths are
relative to the key's root, with `/` separators.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any, Protocol


class Blobs(Protocol):
    """A key's files, wherever they live."""

    where: str

    async def read(self, rel: str) -> bytes | None: ...

    async def write(self, rel: str, data: bytes) -> None: ...

    async def create(self, rel: str, data: bytes) -> bool: ...

    async def list(self, prefix: str = "") -> list[str]: ...

    async def delete(self, rel: str) -> None: ...

    async def folders(self) -> list[str]: ...


def atomic_write(dest: Path, data: bytes) -> None:
    """Replace `dest` with `data` through a temporary file, fsync and rename: never a torn file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, dest)
    fsync_dir(dest.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Folder:
    """A key's files in a local folder: atomic writes, and create-if-absent through a hard link."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = str(root)

    async def read(self, rel: str) -> bytes | None:
        path = self.root / rel
        return path.read_bytes() if path.is_file() else None

    async def write(self, rel: str, data: bytes) -> None:
        atomic_write(self.root / rel, data)

    async def create(self, rel: str, data: bytes) -> bool:
        """Write `rel` only if it does not exist, with its whole content at once (a link never half-exists)."""
        dest = self.root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_bytes(data)
        try:
            os.link(tmp, dest)
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        fsync_dir(dest.parent)
        return True

    async def list(self, prefix: str = "") -> list[str]:
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return []
        found = (p for p in base.rglob("*") if p.is_file() and not p.is_symlink())
        return sorted(p.relative_to(self.root).as_posix() for p in found if not _temporary(p.name))

    async def delete(self, rel: str) -> None:
        (self.root / rel).unlink(missing_ok=True)

    async def folders(self) -> list[str]:
        """The names of the folders right under the root."""
        return sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []


def _temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


class Objects:
    """A key's files in an object store (obstore, as Flyte's storage layer uses it): a key prefix in a bucket."""

    def __init__(self, store: Any, prefix: str, where: str) -> None:
        self.store, self.prefix, self.where = store, prefix.strip("/"), where

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    async def read(self, rel: str) -> bytes | None:
        import obstore

        def get() -> bytes | None:
            try:
                return bytes(obstore.get(self.store, self._key(rel)).bytes())
            except FileNotFoundError:
                return None

        return await asyncio.to_thread(get)

    async def write(self, rel: str, data: bytes) -> None:
        import obstore

        await asyncio.to_thread(obstore.put, self.store, self._key(rel), data)

    async def create(self, rel: str, data: bytes) -> bool:
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            await asyncio.to_thread(obstore.put, self.store, self._key(rel), data, mode="create")
        except (AlreadyExistsError, PreconditionError):
            return False
        return True

    async def list(self, prefix: str = "") -> list[str]:
        import obstore

        def listed() -> list[str]:
            found = obstore.list(self.store, prefix=self._key(prefix) if prefix else self.prefix or None).collect()
            return sorted(o["path"].removeprefix(self.prefix).lstrip("/") for o in found)

        return await asyncio.to_thread(listed)

    async def delete(self, rel: str) -> None:
        import obstore

        await asyncio.to_thread(obstore.delete, self.store, self._key(rel))

    async def folders(self) -> list[str]:
        """The names of the "folders" (common prefixes) right under the prefix."""
        import obstore

        def listed() -> list[str]:
            found = obstore.list_with_delimiter(self.store, prefix=f"{self.prefix}/" if self.prefix else None)
            return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in found["common_prefixes"])

        return await asyncio.to_thread(listed)


def object_store(uri: str) -> Objects:
    """The object store behind `uri` (s3://, gs://, abfs://), configured as Flyte configures its storage, with
    conditional puts enabled where the store needs them named (S3)."""
    import flyte.storage
    from obstore.store import from_url

    fs: Any = flyte.storage.get_underlying_filesystem(path=uri)
    bucket, prefix = fs._split_path(uri)  # obstore's fsspec store, as flyte.storage itself uses it
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    config = dict(fs._config or {})
    if protocol == "s3":
        config["conditional_put"] = "etag"
    store = from_url(
        url=f"{protocol}://{bucket}",
        config=config,
        client_options=fs._client_options,
        retry_config=fs._retry_config,
        credential_provider=fs._credential_provider,
        **fs._config_kwargs,
    )
    return Objects(store, prefix, uri)
