"""``omnilab images build``: make the images of the catalog on this engine.

An image is rebuilt only when it is missing, when its recipe (the files of its
``dockerfiles/`` folder, and the binary it copies in, by content) changed since it was
built, when the base it was built on was replaced, or with ``force``. Builds run with the
host's network, so a Debian mirror on the host's own loopback (an air-gapped site's) is
reachable from ``apt-get``. One build at a time per machine: a second ``omnilab images
build`` waits for the first.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omnilab.errors import UsageError
from omnilab.runtimes.docker import engine, labels
from omnilab.runtimes.docker.images import recipes, wheels
from omnilab.runtimes.docker.images.debian_base import FINGERPRINT, ImageBuildError, build_base
from omnilab.runtimes.docker.images.recipes import BASE, ImageSpec

if TYPE_CHECKING:
    import docker

    from omnilab.progress import Reporter

#: Seconds a build may stay silent (apt-get downloading a large package) before the
#: engine connection is considered lost.
BUILD_TIMEOUT = 3600


@dataclass
class ImageStatus:
    spec: ImageSpec
    image_id: str | None = None
    size_mib: float | None = None
    created: str | None = None
    #: Why the present image should be rebuilt, or None when it is current.
    stale: str | None = None
    #: What happened in this build: "built", "cached", or None when only inspected.
    action: str | None = None
    seconds: float | None = None

    @property
    def present(self) -> bool:
        return self.image_id is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "tag": self.spec.tag,
            "service": self.spec.service,
            "present": self.present,
            "id": self.image_id,
            "size_mib": self.size_mib,
            "created": self.created,
            "stale": self.stale,
            "action": self.action,
            "seconds": None if self.seconds is None else round(self.seconds, 1),
            "description": self.spec.description,
        }


def fingerprint(spec: ImageSpec) -> str:
    """A hash of everything that goes into ``spec``'s build context."""
    if spec.is_base:
        return FINGERPRINT
    digest = hashlib.sha256()
    for name, path in sorted(recipes.context_files(spec).items()):
        if name == spec.binary:
            # A server binary (about 100 MB): its hash, computed once per file version.
            stat = path.stat()
            content = _file_hash(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
            digest.update(b"binary\0" + name.encode() + b"\0" + content.encode() + b"\0")
            continue
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    if spec.wheels:
        # A changed omnilab (or dependency) must rebuild an image that installs it.
        digest.update(wheels.source_fingerprint().encode())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=8)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def status(client: docker.DockerClient, spec: ImageSpec) -> ImageStatus:
    image = engine.local_image(client, spec.tag)
    if image is None:
        return ImageStatus(spec)
    found = ImageStatus(
        spec,
        image_id=image.id,
        size_mib=round(image.attrs.get("Size", 0) / 2**20, 1),
        created=image.attrs.get("Created", "")[:19],
    )
    image_labels = image.labels or {}
    try:
        wanted = fingerprint(spec)
    except Exception:
        wanted = None  # no recipe here: nothing to compare with
    if wanted is not None and image_labels.get(labels.RECIPE) != wanted:
        found.stale = "its recipe changed since it was built"
    elif not spec.is_base and not (spec.wheels and wheels.base_override()):
        base = engine.local_image(client, BASE.tag)
        if base is not None and image_labels.get(labels.BASE_ID) != base.id:
            found.stale = f"it was built on an older {BASE.tag}"
    return found


@contextlib.contextmanager
def _machine_lock(reporter: Reporter) -> Iterator[None]:
    path = Path.home() / ".cache" / "omnilab" / "images.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            reporter.note("images: waiting for another `omnilab images build` to finish")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build(
    names: Sequence[str | ImageSpec] | None,
    reporter: Reporter,
    *,
    force: bool = False,
    verbose: bool = False,
    binary: Path | None = None,
) -> list[ImageStatus]:
    """Build ``names`` (default: the default set) and what they need; returns each one's
    status, with ``action`` saying whether it was built or found current.

    Besides the catalog's names, a caller may give specs of its own (the tests' stand-in
    images): they are built on the same base, the same way, without being in the catalog.

    ``binary`` is the program for the one named image that takes one (Qdrant's server:
    ``--binary``). Without it such an image's service finds the program itself; in the
    default set, an image whose program cannot be found is left out, and said so.
    """
    specs = recipes.select(names)
    asked = {n if isinstance(n, str) else n.name for n in names or ()}
    if binary is not None:
        takers = [s for s in specs if s.binary is not None and s.name in asked]
        if len(takers) != 1:
            choices = ", ".join(s.name for s in recipes.catalog().values() if s.binary)
            raise UsageError(f"--binary goes with one image that is built from one: {choices}")
        specs = [replace(s, binary_path=binary) if s is takers[0] else s for s in specs]
    client = engine.connect()
    for spec in [s for s in specs if s.binary is not None]:
        try:
            recipes.binary_source(spec)  # the right program: refused before any build
        except UsageError as exc:
            if spec.name in asked:
                raise
            specs.remove(spec)
            have = status(client, spec)
            why = str(exc).removeprefix(f"{spec.name}: ")
            kept = f"; keeping {spec.tag}" if have.present else ""
            reporter.note(f"  {spec.name}: not built ({why}){kept}")
    if any(not s.is_base for s in specs) and BASE not in specs:
        specs.insert(0, BASE)
    if not force:
        # Everything current: nothing to wait for. Another build holding the machine's
        # lock (of other images) would otherwise hold this caller for minutes.
        found = [status(client, spec) for spec in specs]
        if all(f.present and not f.stale for f in found):
            for spec, current in zip(specs, found, strict=True):
                reporter.note(f"  {spec.name}: {spec.tag} is current (cached)")
                current.action = "cached"
            return found
    results: list[ImageStatus] = []
    with _machine_lock(reporter):
        for spec in specs:
            # --force rebuilds what was asked for; a base pulled in as a dependency is
            # only rebuilt when missing.
            forced = force and (not names or spec.name in asked)
            results.append(_build_one(client, spec, reporter, forced, verbose))
    return results


def _build_one(
    client: docker.DockerClient, spec: ImageSpec, reporter: Reporter, force: bool, verbose: bool
) -> ImageStatus:
    current = status(client, spec)
    if current.present and not current.stale and not force:
        reporter.note(f"  {spec.name}: {spec.tag} is current (cached)")
        current.action = "cached"
        return current
    why = "forced" if force and current.present else (current.stale or "missing")
    reporter.note(f"  {spec.name}: building {spec.tag} ({why})")
    began = time.monotonic()
    if spec.is_base:
        build_base(client, spec, reporter, verbose)
    else:
        _docker_build(client, spec, reporter, force, verbose)
    done = status(client, spec)
    done.action, done.seconds = "built", time.monotonic() - began
    return done


def _docker_build(
    client: docker.DockerClient, spec: ImageSpec, reporter: Reporter, nocache: bool, verbose: bool
) -> None:
    base = engine.local_image(client, BASE.tag)
    assert base is not None, "the base is built first"
    files = recipes.context_files(spec)
    with tempfile.TemporaryDirectory(prefix="image-context-") as tmp:
        for name, source in files.items():
            target = Path(tmp) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            if target.suffix == ".sh" or target.name == spec.binary:
                target.chmod(0o755)  # a wheel's data files may have lost the mode
        if spec.wheels:
            wheels.build_wheelhouse(Path(tmp) / "wheels", reporter)
        stream = client.api.build(
            path=tmp,
            tag=spec.tag,
            rm=True,
            forcerm=True,
            pull=False,
            nocache=nocache,
            network_mode="host",
            buildargs=_build_args(spec),
            labels={
                labels.IMAGE: spec.name,
                labels.RECIPE: fingerprint(spec),
                labels.BASE_ID: base.id,
            },
            decode=True,
            timeout=BUILD_TIMEOUT,
        )
        _follow(stream, spec, reporter, verbose)
    reporter.note(f"  {spec.name}: built {spec.tag}")


def _build_args(spec: ImageSpec) -> dict[str, str] | None:
    """``BASE`` for the images that take one (a CUDA base on GPU hosts)."""
    override = wheels.base_override() if spec.wheels else None
    return {"BASE": override} if override else None


#: Seconds of suppressed output after which the latest line is shown, as a heartbeat.
HEARTBEAT = 10.0


def _short_line(line: str, width: int = 100) -> str:
    line = " ".join(line.split())
    return line if len(line) <= width else line[: width - 1] + "…"


#: ``Step 3/9 : RUN apt-get ...``: the classic builder's steps, which a bar counts.
_STEP = re.compile(r"Step (\d+)/(\d+) :")


def _follow(stream: Any, spec: ImageSpec, reporter: Reporter, verbose: bool) -> None:
    """Show the build's steps (everything with ``verbose``, else each step and the
    latest line now and then, so a long apt-get shows it is alive: lines in a log, a bar
    on a terminal); raise on the build's error."""
    tail: list[str] = []
    shown = time.monotonic()
    with reporter.task(spec.name, None, "steps", every=None) as steps:
        for chunk in stream:
            if "error" in chunk:
                raise ImageBuildError(
                    f"{spec.name}: building {spec.tag} failed: {chunk['error'].strip()}; "
                    "last lines:\n" + "\n".join(f"    {t}" for t in tail[-20:])
                )
            text = chunk.get("stream", "")
            for line in text.splitlines():
                line = line.rstrip()
                if not line:
                    continue
                tail = [*tail[-39:], line]
                step = _STEP.match(line)
                if step:
                    steps.update(completed=int(step[1]) - 1, total=int(step[2]))
                if verbose:
                    reporter.note(f"    {line}")
                elif line.startswith("Step ") or time.monotonic() - shown > HEARTBEAT:
                    steps.describe(_short_line(line))
                    shown = time.monotonic()
        if steps.total:
            steps.update(completed=steps.total)
