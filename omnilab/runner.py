"""Running an experiment: validate, start its stack, run it, record it, tear down.

The order matters. Everything that depends only on the user's input (the file, the
class, the params, the runtime, the binaries, the GPUs) is checked before anything
starts, so bad input costs nothing and leaves nothing behind. From the moment a run is
recorded, every way out (success, an exception in the experiment, Ctrl-C, SIGTERM) goes
through the same teardown and ends with the record updated.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import psycopg

from omnilab import artifacts, environment
from omnilab.artifacts import ArtifactError, ArtifactStore
from omnilab.config import Settings, get_settings
from omnilab.context import RunContext, scan_artifacts
from omnilab.errors import OmnilabError, UsageError
from omnilab.experiment import Experiment, Params
from omnilab.fork import Fork, declared_seeds
from omnilab.gpu import GpuPolicy
from omnilab.host import host_name
from omnilab.invoke import experiment_logger, invoke
from omnilab.isolation import check_isolation
from omnilab.loader import LoadedExperiment, code_sha256, resolve
from omnilab.params import as_json, validate
from omnilab.procs import process_start_time
from omnilab.progress import Reporter, default_reporter
from omnilab.recorded import Run
from omnilab.resources import approx_size
from omnilab.resources import check as check_resources
from omnilab.services.promotable import Promotable, check_promotes
from omnilab.stack import Stack
from omnilab.subreaper import ProcessScope
from omnilab.subreaper import describe as describe_ended
from omnilab.tracking.chart_cache import ChartCache
from omnilab.tracking.metrics import MetricBuffer
from omnilab.tracking.records import ArtifactRecord, RunRecord, check_name_and_tags
from omnilab.tracking.store import TrackingStore

if TYPE_CHECKING:
    from omnilab.isolation.container import ContainerIsolation


class Terminated(BaseException):
    """SIGTERM, turned into an exception so that teardown runs as for Ctrl-C."""


def new_run_id() -> str:
    return uuid.uuid4().hex


# -- output capture ---------------------------------------------------------------------


class _Tee(io.TextIOBase):
    """Writes to the terminal and to the run's log file."""

    def __init__(self, stream: TextIO, log: TextIO) -> None:
        self._stream = stream
        self._log = log

    def write(self, text: str) -> int:
        self._stream.write(text)
        self._log.write(text)
        return len(text)

    def flush(self) -> None:
        self._stream.flush()
        self._log.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()


@contextlib.contextmanager
def _captured_output(path: Path) -> Iterator[_Tee]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Line-buffered: a line printed is in the log at once, for whoever follows it live
    # (the API's and the web page's log streams), not when 8 KiB have gathered.
    with open(path, "a", buffering=1, encoding="utf-8", errors="replace") as log:
        out, err = sys.stdout, sys.stderr
        tee_err = _Tee(err, log)
        sys.stdout, sys.stderr = _Tee(out, log), tee_err
        try:
            yield tee_err
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = out, err


# -- signals ----------------------------------------------------------------------------


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_exception() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` in the main thread for the run's duration."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _shielded(
    reporter: Reporter, note: str = "  still tearing down; the stack will be removed before exit"
) -> Iterator[None]:
    """Teardown must finish: a second Ctrl-C or SIGTERM waits until it has."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def remember(signum: int, frame: Any) -> None:
        if not received:
            reporter.note(note)
        received.append(signum)

    previous = {s: signal.signal(s, remember) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- the run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOptions:
    """How :func:`run_with` runs an experiment.

    The first fields are the choices :func:`run` (``omnilab.run``) offers its users; the
    last four are set only by omnilab's own entry points:

    - ``from_cli``: ``params`` are the command line's ``-p`` values (errors name them so);
    - ``run_id``: a run the tracking store already holds (the HTTP API records a run
      when it is queued, and a worker runs it later): its record is updated, not
      inserted;
    - ``store``: an open tracking store to record into (a worker's, opened ahead of its
      run); its owner closes it;
    - ``stop_reason``: why a SIGTERM came, asked when one does (a worker's: a
      cancellation requested through the API), recorded as the run's error in place of
      "interrupted by SIGTERM": the outcome a reader first sees is then the final one.
    """

    runtime: str | None = None
    keep: bool = False
    gpu: GpuPolicy | None = None
    reporter: Reporter | None = None
    settings: Settings | None = None
    promote: bool = False
    on_conflict: str = "fail"
    isolation: str | None = None
    name: str | None = None
    tags: tuple[str, ...] = ()
    fork: bool = True
    from_cli: bool = False
    run_id: str | None = None
    store: TrackingStore | None = None
    stop_reason: Callable[[], str | None] | None = None


def run(
    experiment: type[Experiment] | str,
    params: Mapping[str, Any] | Params | None = None,
    *,
    runtime: str | None = None,
    keep: bool = False,
    gpu: GpuPolicy | None = None,
    reporter: Reporter | None = None,
    settings: Settings | None = None,
    promote: bool = False,
    on_conflict: str = "fail",
    isolation: str | None = None,
    name: str | None = None,
    tags: Iterable[str] = (),
    fork: bool = True,
) -> Run:
    """Run ``experiment`` on a private stack and record it; returns the :class:`Run`.

    ``experiment`` is a class or a ``"file.py[:Class]"`` reference. Bad input raises a
    :class:`~omnilab.errors.UsageError` before anything starts. An exception inside the
    experiment does not raise: the run is returned with status ``failed`` and its
    traceback (see :meth:`Run.raise_for_status`). Ctrl-C tears the stack down, records
    the run as ``cancelled`` and re-raises.

    When the experiment declares ``promotes``, a succeeded run's stack data is kept for
    ``omnilab promote``; ``promote=True`` promotes it at once if ``accept(summary)``
    agrees (``run.promotion`` says how that went; it never raises for it).

    ``isolation`` ("host" or "container", default: the experiment's own) says where
    ``run`` executes; "container" needs the docker runtime (``auto`` then means docker).

    ``name`` and ``tags`` are stored with the run, to find it again by
    (``omnilab runs ls --tag baseline``, ``omnilab.runs(tag="baseline")``).

    When the experiment declares ``seeds``, its stack starts with a verified copy of
    those items of production (docs/fork.md); ``fork=False`` skips it (``--no-seed``).
    """
    options = RunOptions(
        runtime=runtime,
        keep=keep,
        gpu=gpu,
        reporter=reporter,
        settings=settings,
        promote=promote,
        on_conflict=on_conflict,
        isolation=isolation,
        name=name,
        tags=tuple([tags] if isinstance(tags, str) else tags),
        fork=fork,
    )
    return run_with(experiment, params, options)


def run_with(
    experiment: type[Experiment] | str,
    params: Mapping[str, Any] | Params | None,
    options: RunOptions,
) -> Run:
    """:func:`run`, for omnilab's own entry points (the CLI, a queue worker), which also
    set the fields of :class:`RunOptions` that users do not."""
    loaded = resolve(experiment)
    cls = loaded.cls
    values = validate(cls, params, from_cli=options.from_cli)
    name, tags = check_name_and_tags(options.name, options.tags)
    promotes = check_promotes(cls.promotes, cls.service_names(), cls.__name__)
    seeds = declared_seeds(cls, values) if options.fork else []
    resources = check_resources(cls.resources, cls.service_names(), cls.__name__)
    if options.promote:
        from omnilab.promote.flow import check_on_conflict

        check_on_conflict(options.on_conflict)
        if not promotes:
            raise UsageError(
                f"--promote: {cls.__name__} declares nothing to promote (its `promotes` is empty)"
            )
        if options.keep:
            raise UsageError("--promote and --keep: a stack kept running cannot be promoted")
    chosen = check_isolation(options.isolation or cls.isolation)
    settings = options.settings or get_settings()
    # A bad OMNILAB_ARTIFACTS_URL, or an S3 one without boto3, is refused here, not
    # found out once the run is over.
    artifact_store = artifacts.configured(settings)
    runtime = options.runtime
    if chosen == "container" and (runtime or settings.runtime) == "auto":
        runtime = "docker"  # the container runs on the stack's network
    reporter = options.reporter or default_reporter()
    run_id = options.run_id or new_run_id()
    run_dir = (Path(settings.runs_dir) / run_id).resolve()
    stack = Stack(
        *cls.services,
        runtime=runtime,
        keep=options.keep,
        gpu=cls.gpu if options.gpu is None else options.gpu,
        run_id=run_id,
        log_dir=run_dir / "logs",
        reporter=reporter,
        settings=settings,
        retain_data=bool(promotes) and not options.keep,
        resources=resources,
    )
    stack.prepare()
    isolated = None
    if chosen == "container":
        from omnilab.isolation.container import ContainerIsolation

        isolated = ContainerIsolation.prepare(
            stack, loaded.path, cls.__name__, as_json(values), run_dir
        )
    # Production holds every seed (asked read-only): the last check that could refuse
    # has passed, and nothing has started yet.
    # A fork that would not fit the stack's bounds (or, where the runtime enforces none,
    # the free space of the folder its data goes to) is refused here too.
    fork = (
        Fork.prepare(
            seeds,
            settings,
            reporter,
            bounds=stack.bounds,
            folder=None if stack.bounds else _data_folder(settings, stack),
        )
        if seeds
        else None
    )
    try:
        result = _execute(
            _Prepared(
                loaded,
                values,
                stack,
                run_dir,
                promotes,
                isolated,
                reporter,
                settings,
                name,
                tags,
                fork,
                artifact_store,
                options.stop_reason,
            ),
            recorded=options.run_id is not None,
            given_store=options.store,
        )
    finally:
        if fork is not None:
            fork.close()
    if options.promote and result.ok:
        from omnilab.promote.flow import promote_after_run

        result.promotion = promote_after_run(
            result, cls, on_conflict=options.on_conflict, settings=settings, reporter=reporter
        )
    return result


def _data_folder(settings: Settings, stack: Stack) -> Path:
    """Where the run's services keep their data with a runtime that enforces no bound:
    the data folder for a kept or retained stack, the temporary folder otherwise."""
    import tempfile

    if stack.keep or stack.retain_data:
        return Path(settings.data_dir).resolve()
    return Path(tempfile.gettempdir())


@dataclass(frozen=True)
class _Prepared:
    """A run that passed every check, with its stack prepared (nothing started yet)."""

    loaded: LoadedExperiment
    values: Params
    stack: Stack
    run_dir: Path
    promotes: list[Promotable]
    isolated: ContainerIsolation | None
    reporter: Reporter
    settings: Settings
    name: str | None
    tags: list[str]
    #: The seeds, checked against production; copied once the stack is up.
    fork: Fork | None = None
    #: Where the run's artifacts and log go when it ends; None: they stay in its folder.
    artifact_store: ArtifactStore | None = None
    #: RunOptions.stop_reason.
    stop_reason: Callable[[], str | None] | None = None


def _execute(prepared: _Prepared, *, recorded: bool, given_store: TrackingStore | None) -> Run:
    cls, path = prepared.loaded.cls, prepared.loaded.path
    values, stack, run_dir = prepared.values, prepared.stack, prepared.run_dir
    reporter, settings, isolated = prepared.reporter, prepared.settings, prepared.isolated
    run_id = stack.id
    began = time.monotonic()
    pid = os.getpid()
    env = environment.capture(path)
    env.update(pid=pid, pid_start=process_start_time(pid))
    env["isolation"] = isolated.describe() if isolated is not None else {"kind": "host"}
    record = RunRecord(
        id=run_id,
        experiment=cls.experiment_name(),
        source=prepared.loaded.ref,
        status="running",
        params=as_json(values),
        runtime=stack.runtime.name if stack.runtime else None,
        environment=env,
        git_commit=(env.get("git") or {}).get("commit"),
        owner=environment.owner(),
        run_dir=str(run_dir),
        created_at=datetime.now(UTC),
        started_at=datetime.now(UTC),
        name=prepared.name,
        tags=prepared.tags,
        code_sha256=_code_hash(path),
    )
    reporter.run_started(run_id, record.experiment)
    run_dir.mkdir(parents=True, exist_ok=True)

    status, summary, error = "failed", None, None
    interrupted: BaseException | None = None
    failure: OmnilabError | None = None
    timings: dict[str, float] = {}
    store: TrackingStore | None = None
    buffer: MetricBuffer | None = None
    scope = ProcessScope()  # what the experiment starts ends with its run
    with _sigterm_as_exception():
        try:
            if given_store is not None and not stack.service_specs and isolated is None:
                # Nothing to start and a store already open: a thread would only add
                # its start and the GIL's hand-over to the run's first line.
                store = _open_and_record(settings, record, recorded, given_store)
                stack.start()
            else:
                # The tracking store (an embedded PostgreSQL may need starting) opens
                # and records the run while the stack starts: neither waits for the other.
                with ThreadPoolExecutor(max_workers=1) as pool:
                    opening = pool.submit(_open_and_record, settings, record, recorded, given_store)
                    try:
                        if isolated is not None:
                            stack.start(on_open=lambda state: isolated.launch(stack, state))
                        else:
                            stack.start()
                    finally:
                        store = opening.result()
            timings["stack_start_s"] = stack.timings.get("start_s", 0.0)
            if prepared.fork is not None:
                forked = time.monotonic()
                seeds = prepared.fork.copy(stack)
                timings["fork_s"] = time.monotonic() - forked
                store.update_run(run_id, seeds=seeds)
            buffer = MetricBuffer(store.metric_writer(run_id))
            with _captured_output(run_dir / "logs" / "output.log") as err:
                ctx = RunContext(
                    run_id=run_id,
                    params=values,
                    stack=stack,
                    run_dir=run_dir,
                    metrics=buffer,
                    logger=experiment_logger(run_id, err),
                )
                reporter.experiment_running(record.experiment, buffer)
                t0 = time.monotonic()
                scope.open()
                try:
                    if isolated is not None:
                        status, summary, error = isolated.run(buffer)
                    else:
                        status, summary, error = invoke(cls, ctx)
                finally:
                    timings["experiment_s"] = time.monotonic() - t0
                    reporter.experiment_ended(record.experiment, timings["experiment_s"])
                status, summary, error = _bounds_checked(stack, isolated, status, summary, error)
        except OmnilabError as exc:
            error, failure = str(exc), exc
        except (KeyboardInterrupt, Terminated) as exc:
            status, interrupted = "cancelled", exc
            error = "interrupted by " + ("SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C")
            reporter.note(f"{error}: tearing down the stack")
            reason = prepared.stop_reason
            if isinstance(exc, Terminated) and reason is not None:
                with contextlib.suppress(Exception):  # the store away: the signal it is
                    error = reason() or error
        finally:
            if status != "succeeded":
                stack.retain_data = False  # only a succeeded run can be promoted
            with _shielded(reporter):
                _end_processes(scope, isolated, record, reporter)
                if isolated is not None:
                    isolated.remove()
                _finish(stack, buffer, run_dir, timings, began, reporter)
                target = prepared.artifact_store
                upload = _record_artifacts(store, target, run_id, run_dir, reporter)
    reporter.run_finished(run_id, status, timings.get("total_s"), error)
    if store is None:  # the store never opened: nothing recorded, the error is the story
        raise interrupted or failure or OmnilabError("the tracking store could not be opened")
    try:
        # A stop repeated meanwhile (the queue re-sends a cancellation until it is done)
        # must not cut the record of what happened short.
        with _shielded(reporter, "  still recording the run"):
            # The log last, once its last line (the outcome's) is written; the outcome
            # is recorded after it, so a run seen finished has its log in the store.
            kept = _upload_log(upload, run_id, run_dir, timings, reporter)
            store.update_run(
                run_id,
                status=status,
                summary=summary,
                error=error,
                timings=_rounded(timings),
                stack=_described(stack, prepared.promotes, status, settings),
                finished_at=datetime.now(UTC),
                **({"environment": record.environment} if _ENDED in record.environment else {}),
                **kept,
            )
            _keep_charts(store, run_id, reporter)
        if stack.retained_path is not None:
            _sweep_expired(store, reporter)
        result = Run.from_store(store, store.get_run(run_id), settings=settings)
    finally:
        if given_store is None:
            store.close()
    if interrupted is not None:
        raise interrupted
    return result


def _keep_charts(store: TrackingStore, run_id: str, reporter: Reporter) -> None:
    """The run's charts, reduced once now that its metrics are final, for every page
    that shows it (tracking/chart_cache.py). Without them a page computes them: a
    failure here costs a first view its time, never the run its record."""
    from omnilab.notebook.charts import CHART_WIDTH

    try:
        ChartCache(store).keep(run_id, CHART_WIDTH)
    except (psycopg.Error, OmnilabError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reporter.note(f"warning: the run's charts were not kept for its page: {reason}")


def _bounds_checked(
    stack: Stack,
    isolated: ContainerIsolation | None,
    status: str,
    summary: dict[str, Any] | None,
    error: str | None,
) -> tuple[str, dict[str, Any] | None, str | None]:
    """A run whose service, or whose experiment's own container, hit a resource bound
    failed, whatever the experiment made of it (a caught error, a reconnect, a fork it
    retried): the service lost data or state, the experiment processes it asked for. The
    bound goes last in the error, the line the CLI shows, after the experiment's own
    traceback."""
    hits = stack.bounds_hit() + (isolated.bounds_hit() if isolated is not None else [])
    if not hits:
        return status, summary, error
    return "failed", None, "\n".join([*([error] if error else []), *hits])


#: Where a run's record lists the processes its experiment left running, which omnilab
#: ended (pid, name, the signal it took).
_ENDED = "ended_processes"


def _end_processes(
    scope: ProcessScope,
    isolated: ContainerIsolation | None,
    record: RunRecord,
    reporter: Reporter,
) -> None:
    """End what the experiment left running (here, and inside its container: reported
    by it), before the stack it may be using goes; say so, and record it."""
    ended = scope.close() + (isolated.ended_processes if isolated is not None else [])
    if ended:
        reporter.note(describe_ended(ended))
        record.environment[_ENDED] = ended


def _described(
    stack: Stack, promotes: list[Promotable], status: str, settings: Settings
) -> dict[str, Any]:
    """The stack as recorded with the run; with where its data waits for promotion."""
    from omnilab.promote import retention

    described = stack.describe()
    if stack.retained_path is not None:
        described["data"] = retention.data_record(stack.retained_path, promotes, settings)
        stack.reporter.note(
            f"stack data kept for `omnilab promote {stack.id[:8]}` in {stack.retained_path}"
        )
    elif promotes and status == "succeeded":  # --keep: the stack itself is still up
        described["data"] = {"state": "live", "promotes": [p.to_dict() for p in promotes]}
    return described


def _sweep_expired(store: TrackingStore, reporter: Reporter) -> None:
    """Retained data past OMNILAB_RETENTION_DAYS goes when a new run retains its own."""
    from omnilab.promote import retention

    try:
        retention.sweep(store, reporter)
    except (OSError, OmnilabError) as exc:
        reporter.note(f"warning: could not remove expired stack data: {exc}")


def _code_hash(path: Path | None) -> str | None:
    """The experiment file's hash, recorded as the code the run ran (a queued run keeps
    the one it was queued against, which its worker checked)."""
    if path is None:
        return None
    try:
        return code_sha256(path)
    except OSError:  # removed since it was imported: the run goes on, unhashed
        return None


#: What a run already recorded (queued) gets when it starts; its submitter, creation
#: time and the moment a worker took it stay as they are.
_STARTED_FIELDS = {"source", "status", "params", "runtime", "environment", "git_commit", "run_dir"}


def _open_and_record(
    settings: Settings, record: RunRecord, recorded: bool, given: TrackingStore | None
) -> TrackingStore:
    store = given or TrackingStore.open(settings)
    try:
        if recorded:
            store.update_run(record.id, **record.model_dump(include=_STARTED_FIELDS))
        else:
            store.create_run(record)
    except BaseException:
        if given is None:
            store.close()
        raise
    return store


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in timings.items()}


def _finish(
    stack: Stack,
    buffer: MetricBuffer | None,
    run_dir: Path,
    timings: dict[str, float],
    began: float,
    reporter: Reporter,
) -> None:
    """Flush metrics, tear the stack down: whatever happened before."""
    if buffer is not None:
        unsent = buffer.close()
        if unsent:
            fallback = run_dir / "metrics-unsent.jsonl"
            with open(fallback, "w") as fh:
                for key, step, value, ts in unsent:
                    fh.write(json.dumps({"key": key, "step": step, "value": value, "ts": ts}))
                    fh.write("\n")
            reporter.note(
                f"warning: {len(unsent)} metrics could not be written to the tracking store "
                f"({'; '.join(buffer.errors)}); kept in {fallback}"
            )
    stack.close()
    timings["teardown_s"] = stack.timings.get("teardown_s", 0.0)
    timings["total_s"] = time.monotonic() - began


# -- artifacts and log into the artifact store ----------------------------------------------


@dataclass
class _Upload:
    """A run's files on their way to the artifact store, and how it went."""

    target: ArtifactStore
    began: float
    files: int = 0
    size: int = 0
    log: dict[str, Any] | None = None
    error: str | None = None


def _record_artifacts(
    store: TrackingStore | None,
    target: ArtifactStore | None,
    run_id: str,
    run_dir: Path,
    reporter: Reporter,
) -> _Upload | None:
    """Record the run's artifacts (path, size, sha256), uploading them first when a store
    is configured; a failed upload leaves the outcome as it is, and the files where they
    are. None when the files stay in the run's folder."""
    if store is None:
        return None
    if not store.holds_run(run_id):
        reporter.note(f"this attempt no longer holds the run: its files stay in {run_dir}")
        return None
    if target is None:
        store.record_artifacts(run_id, scan_artifacts(run_dir / "artifacts"))
        return None
    upload = _Upload(target, time.monotonic())
    files = artifacts.run_files(run_id, run_dir)
    if files:
        total = sum(path.stat().st_size for _, path in files)
        reporter.note(f"uploading {len(files)} artifact(s), {approx_size(total)}, to {target.url}")
    try:
        sent = target.put(files)
    except ArtifactError as exc:
        upload.error = str(exc)
        reporter.note(f"warning: {exc}; the run's files stay in {run_dir} on {host_name()}")
        store.record_artifacts(run_id, scan_artifacts(run_dir / "artifacts"))
        return upload
    prefix = f"{run_id}/artifacts/"
    store.record_artifacts(
        run_id,
        [ArtifactRecord(path=f.key[len(prefix) :], size=f.size, sha256=f.sha256) for f in sent],
    )
    upload.files, upload.size = len(sent), sum(f.size for f in sent)
    return upload


def _upload_log(
    upload: _Upload | None,
    run_id: str,
    run_dir: Path,
    timings: dict[str, float],
    reporter: Reporter,
) -> dict[str, Any]:
    """Upload the run's log after its artifacts; the run record's fields that say where
    they went (nothing when they stay in the run's folder)."""
    if upload is None:
        return {}
    log = run_dir / artifacts.LOG_PATH
    if upload.error is None and log.is_file():
        try:
            [sent] = upload.target.put([(artifacts.log_key(run_id), log)])
            upload.log = {"size": sent.size, "sha256": sent.sha256}
        except ArtifactError as exc:
            upload.error = str(exc)
            reporter.note(f"warning: {exc}; the run's files stay in {run_dir} on {host_name()}")
    timings["upload_s"] = time.monotonic() - upload.began
    if upload.error is not None:
        failed = {"error": upload.error, "local": str(run_dir), "host": host_name()}
        return {"artifacts_url": None, "artifacts_upload": failed}
    done = {
        "files": upload.files,
        "bytes": upload.size,
        "seconds": round(timings["upload_s"], 3),
        "log": upload.log,
    }
    return {"artifacts_url": upload.target.url, "artifacts_upload": done}
