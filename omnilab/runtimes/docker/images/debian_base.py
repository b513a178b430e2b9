"""The base every omnilab image starts from: Debian made with debootstrap, imported
into the engine with ``docker import``. No registry is involved, only a Debian mirror
(``OMNILAB_DEBIAN_MIRROR``, which an air-gapped site points at its own mirror).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omnilab.errors import OmnilabError, UsageError
from omnilab.runtimes.docker import labels
from omnilab.services.base import DEBIAN_SUITE

if TYPE_CHECKING:
    import docker

    from omnilab.progress import Reporter
    from omnilab.runtimes.docker.images.recipes import ImageSpec

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
#: Changing what the base contains changes this, which marks images built on an older
#: base as stale.
FINGERPRINT = f"debootstrap-{DEBIAN_SUITE}-minbase-v1"

#: debootstrap's per-package lines: counted, not printed.
_PER_PACKAGE = re.compile(
    r"^I: ((Retrieving|Validating) \S+ \S+|(Extracting|Unpacking|Configuring) [\w.+:-]+\.\.\.)$"
)

_APT_CONF = """\
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
"""
# As in Debian's slim images: documentation and translations are not installed.
_DPKG_NODOC = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""
# Package scripts must not try to start services inside an image build.
_POLICY_RC = "#!/bin/sh\nexit 101\n"


class ImageBuildError(OmnilabError):
    """An image could not be built; the message holds the last lines of the build."""


def mirrors() -> tuple[str, str]:
    mirror = os.environ.get("OMNILAB_DEBIAN_MIRROR") or DEFAULT_MIRROR
    security = os.environ.get("OMNILAB_DEBIAN_SECURITY_MIRROR", DEFAULT_SECURITY_MIRROR)
    return mirror.rstrip("/"), security.rstrip("/")


def _check_tools() -> str:
    debootstrap = shutil.which("debootstrap") or (
        "/usr/sbin/debootstrap" if Path("/usr/sbin/debootstrap").exists() else None
    )
    if debootstrap is None:
        raise UsageError(
            "building the base image needs debootstrap, which is not installed "
            "(apt-get install debootstrap)"
        )
    if os.geteuid() != 0:
        raise UsageError(
            "building the base image needs root (debootstrap creates device files and "
            "owns files as other users): run `sudo omnilab images build base` once"
        )
    return debootstrap


def _finish_rootfs(root: Path, mirror: str, security: str) -> None:
    """Make the fresh system a good base: sources, apt and dpkg defaults, no caches."""
    suites = [f"deb {mirror} {DEBIAN_SUITE} main", f"deb {mirror} {DEBIAN_SUITE}-updates main"]
    if security:
        suites.append(f"deb {security} {DEBIAN_SUITE}-security main")
    (root / "etc/apt/sources.list").write_text("\n".join(suites) + "\n")
    (root / "etc/apt/apt.conf.d/90omnilab").write_text(_APT_CONF)
    (root / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/dpkg/dpkg.cfg.d/90omnilab-nodoc").write_text(_DPKG_NODOC)
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text(_POLICY_RC)
    policy.chmod(0o755)
    for folder in (
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "usr/share/man",
        "usr/share/info",
    ):
        path = root / folder
        if path.is_dir():
            for child in path.iterdir():
                if child.is_file() or child.is_symlink():
                    child.unlink()
                elif child.name != "partial":
                    shutil.rmtree(child)
    for doc in (root / "usr/share/doc").glob("*"):
        if doc.is_dir():
            for item in doc.iterdir():
                if item.name != "copyright":
                    if item.is_dir() and not item.is_symlink():
                        shutil.rmtree(item)
                    else:
                        item.unlink()
    locale = root / "usr/share/locale"
    if locale.is_dir():
        for item in locale.iterdir():
            if item.name != "locale.alias":
                shutil.rmtree(item) if item.is_dir() else item.unlink()
    for stale in ("etc/hostname", "etc/resolv.conf"):
        (root / stale).unlink(missing_ok=True)


def _debootstrap(
    debootstrap: str, root: Path, mirror: str, reporter: Reporter, verbose: bool
) -> None:
    cache = Path.home() / ".cache" / "omnilab" / "debootstrap"
    cache.mkdir(parents=True, exist_ok=True)
    argv = [
        debootstrap,
        "--variant=minbase",
        f"--cache-dir={cache}",
        DEBIAN_SUITE,
        str(root),
        mirror,
    ]
    tail: list[str] = []
    counted = 0
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail = [*tail[-29:], line]
        if _PER_PACKAGE.match(line):
            counted += 1
            if verbose:
                reporter.note(f"    {line}")
            continue
        reporter.note(f"    {line}" + (f" ({counted} package steps so far)" if counted else ""))
    if proc.wait() != 0:
        raise ImageBuildError(
            f"debootstrap failed with exit status {proc.returncode} (mirror {mirror}); "
            "last lines:\n" + "\n".join(f"    {t}" for t in tail)
        )


def build_base(
    client: docker.DockerClient, spec: ImageSpec, reporter: Reporter, verbose: bool
) -> Any:
    """debootstrap a minimal Debian and import it as ``spec.tag``; returns the image."""
    debootstrap = _check_tools()
    mirror, security = mirrors()
    began = time.monotonic()
    reporter.note(f"  {spec.name}: debootstrap --variant=minbase {DEBIAN_SUITE} from {mirror}")
    with tempfile.TemporaryDirectory(prefix="debootstrap-") as tmp:
        root = Path(tmp) / "rootfs"
        _debootstrap(debootstrap, root, mirror, reporter, verbose)
        _finish_rootfs(root, mirror, security)
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(root), "-cf", str(tarball), "."],
            check=True,
            capture_output=True,
        )
        reporter.note(f"  {spec.name}: docker import ({tarball.stat().st_size / 2**20:.0f} MiB)")
        repository, _, tag = spec.tag.partition(":")
        client.api.import_image_from_file(
            str(tarball),
            repository=repository,
            tag=tag,
            changes=[
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "ENV LANG=C.UTF-8",
                'CMD ["bash"]',
                f"LABEL {labels.IMAGE}={spec.name} {labels.RECIPE}={FINGERPRINT}",
            ],
        )
    image = client.images.get(spec.tag)
    reporter.note(f"  {spec.name}: built {spec.tag} in {time.monotonic() - began:.0f}s")
    return image
