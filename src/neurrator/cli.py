"""Command line: a thin click layer; each command builds a config and calls one library function."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

from neurrator.errors import NeurratorError, escape_controls, shorten
from neurrator.io.progress import stderr_is_terminal

log = logging.getLogger("neurrator")


#: Third-party loggers that keep their own handlers (they do not propagate to the root logger).
_OWN_HANDLER_LOGGERS = ("transformers",)
#: Environment read by the libraries when they are imported (subprocesses such as Dask workers inherit it).
_QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}
#: Those variables as the process started (a later command in the same process undoes a quiet one).
_ENV_BEFORE = {key: os.environ.get(key) for key in _QUIET_ENV}


def _configure_output(*, debug: bool, quiet: bool) -> bool:
    """Set logging and every library's progress bars for this command; returns whether bars are shown.

    * ``--debug``: everything at DEBUG.
    * default: neurrator at INFO, other libraries at WARNING.
    * ``--quiet``: neurrator's warnings and errors, other libraries' errors only.

    Progress bars (neurrator's and the libraries': transformers' "Loading weights", huggingface_hub's
    downloads, sentence-transformers, tqdm) are shown only when stderr is a terminal and not ``--quiet``,
    so log files get no carriage-return bars; they get heartbeat lines instead (`neurrator.io.progress`).
    """
    bars = not quiet and stderr_is_terminal()
    own = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    others = logging.DEBUG if debug else (logging.ERROR if quiet else logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=others, handlers=[handler], force=True)
    logging.getLogger("neurrator").setLevel(own)
    logging.captureWarnings(True)
    os.environ["TRANSFORMERS_VERBOSITY"] = logging.getLevelName(others).lower()
    for name in _OWN_HANDLER_LOGGERS:
        logging.getLogger(name).setLevel(others)
    for key, value in _QUIET_ENV.items():  # set, or back to what the process started with
        if not bars:
            os.environ[key] = value
        elif _ENV_BEFORE[key] is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = _ENV_BEFORE[key]
    # the libraries read the environment at import; when already imported, tell them directly
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

        (enable_progress_bars if bars else disable_progress_bars)()
    if "transformers" in sys.modules:
        from transformers.utils import logging as tf_logging

        (tf_logging.enable_progress_bar if bars else tf_logging.disable_progress_bar)()
        tf_logging.set_verbosity(others)
    return bars


class _SafeFormatter(logging.Formatter):
    """Log records -> one line each, control characters escaped (messages quote untrusted names and texts)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return escape_controls(super().formatMessage(record).rstrip("\n"))


def _fail(message: str) -> None:
    click.echo(f"Error: {escape_controls(shorten(' '.join(message.split())))}", err=True)
    sys.exit(1)


def common(func: Callable[..., Any]) -> Callable[..., Any]:
    """--debug and --quiet on every command; user errors become one line and exit 1."""

    @click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
    @click.option("--quiet", "-q", is_flag=True, help=QUIET_HELP)
    @functools.wraps(func)
    def wrapper(*args: Any, debug: bool, quiet: bool, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        debug = debug or bool(ctx.obj and ctx.obj.get("debug"))
        quiet = quiet or bool(ctx.obj and ctx.obj.get("quiet"))
        bars = _configure_output(debug=debug, quiet=quiet)
        _react_to_sigint()
        try:
            return func(*args, progress=bars, **kwargs)
        except NeurratorError as err:
            if debug:
                raise
            _fail(str(err))
        except (OSError, ValueError) as err:
            if debug:
                raise
            where = getattr(err, "filename", None)
            _fail(f"{where}: {err.strerror}" if where and getattr(err, "strerror", None) else str(err))
        except KeyboardInterrupt:
            click.echo("Interrupted: no partial output was left (output files are written whole or not at all)",
                       err=True)
            sys.exit(INTERRUPTED)
        except MemoryError:
            if debug:
                raise
            _fail("out of memory: an input holds more than this machine can load (lower NEURRATOR_MAX_ARRAY_BYTES "
                  "to be told which file before anything is read)")
        except Exception as err:  # noqa: BLE001 - last line of defence: one line, no traceback
            if debug:
                raise
            _fail(f"internal error ({type(err).__name__}: {err}); rerun with --debug for the traceback")

    return wrapper


QUIET_HELP = "Only neurrator's warnings and errors: no progress bars, no library logging."
#: Exit code after Ctrl-C (SIGINT), as shells report a process ended by SIGINT (128 + 2).
INTERRUPTED = 130


def _react_to_sigint() -> None:
    """Ctrl-C / SIGINT raises KeyboardInterrupt even when the parent started us with SIGINT ignored
    (a shell script's background job): every command stops on SIGINT."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.option("--quiet", "-q", is_flag=True, help=QUIET_HELP)
@click.version_option(package_name="neurrator")
@click.pass_context
def main(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """neurrator: narrate in plain language what neurons in visual cortex encode.

    Progress bars appear only when stderr is a terminal (never in log files); a log file gets a heartbeat
    line every 30 s of a long loop, with the time left, and a line as each stage ends.
    """
    ctx.obj = {"debug": debug, "quiet": quiet}


def _defaults():
    from neurrator.config import NarrateConfig

    return NarrateConfig()


_D = _defaults()
_POSITIVE = click.IntRange(min=1)
# numpy's and torch's generators take seeds in [0, 2**32); check up front, not after reading the session.
_SEED = click.IntRange(0, 2**32 - 1)
_SECONDS = click.FloatRange(min=0, min_open=True)
TIMEOUT_HELP = ("Seconds to wait for a server to connect or send the next bytes (streamed files, the DANDI API, "
                "movie downloads); a timeout ends the run, it is not retried.")


def timeout_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--timeout", type=_SECONDS, default=_D.timeout, show_default=True, metavar="SECONDS",
                        help=TIMEOUT_HELP)(func)


def narrate_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options shared by `narrate` and `process` (one NarrateConfig each)."""
    options = [
        click.option("--stimulus", default=_D.stimulus, show_default=True,
                     help="Stimulus: its presentation table is intervals/STIMULUS_presentations, intervals/STIMULUS "
                          "(any table name) or the rows of a table whose stimulus_name is STIMULUS (Allen: "
                          "natural_movie_one, natural_movie_three, natural_scenes)."),
        click.option("--stimulus-kind", "stimulus_kind", type=click.Choice(["movie", "flashed_images"]), default=None,
                     help="movie (frames in order, whole repeats held out) or flashed_images (onset-aligned "
                          "response windows, whole images held out); default: natural_scenes is flashed_images, "
                          "other Allen movies are movies, any other table by its layout (blank rows or frames "
                          "not stepping through a movie: flashed images)."),
        click.option("--response-latency", "image_latency_s", type=click.FloatRange(min=0), default=_D.image_latency_s,
                     show_default=True, metavar="SECONDS",
                     help="Flashed images: the response window starts this long after each image onset."),
        click.option("--response-window", "image_window_s", type=_SECONDS, default=_D.image_window_s,
                     show_default=True, metavar="SECONDS",
                     help="Flashed images: the length of each response window; refused when longer than the time "
                          "to the next presentation (it would count the next image's response) unless "
                          "--allow-overlap."),
        click.option("--allow-overlap", is_flag=True, default=False,
                     help="Flashed images: accept a response window longer than the inter-onset interval."),
        click.option("--movie", type=click.Path(dir_okay=True), default=None,
                     help="Movie frames when the file has none: .npy/.npz/.h5, a multi-page .tif, a folder of images, "
                          "or a video (.mp4/.avi/.mov/.mkv/.webm, needs PyAV: pip install 'neurrator[video]'); "
                          "its frame count (and a video's frame rate) must match the presentations."),
        click.option("--backbone", default=_D.backbone, show_default=True,
                     help="Vision backbone id (tiny, llava, llava:FOLDER, open_clip:MODEL:TAG, efficientnet_lite0)."),
        click.option("--preprocessing", type=click.Choice(["pad", "crop"]), default=_D.preprocessing,
                     show_default=True, help="Pad frames to square (LLaVA-1.5) or centre-crop (llava-hf processor)."),
        click.option("--narrator", default=_D.narrator, show_default=True,
                     help="Narrator id (retrieval, tiny, llava, llava:FOLDER)."),
        click.option("--reference-narrator", default=_D.reference_narrator, show_default=True,
                     help="Generative narrator (tiny, llava) that writes the references from the true frames when "
                          "the session has no captions and --narrator is retrieval; it must read the backbone's "
                          "patch tokens (tiny with --backbone tiny, llava with --backbone llava)."),
        click.option("--encoder", type=click.Path(), default=None,
                     help="Reuse a trained encoder instead of training one: a checkpoint folder, or a neurrator "
                          "NWB file (its processing/neurrator/encoder)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=_D.device, show_default=True),
        click.option("--seed", type=_SEED, default=_D.seed, show_default=True, help="Random seed (0 to 2**32 - 1)."),
        click.option("--epochs", type=_POSITIVE, default=_D.train.max_epochs, show_default=True, help="Maximum training epochs."),
        click.option("--val-repeats", "n_val_repeats", type=_POSITIVE, default=_D.n_val_repeats, show_default=True,
                     help="Movie repeats held out for validation (early stopping)."),
        click.option("--test-repeats", "n_test_repeats", type=_POSITIVE, default=_D.n_test_repeats,
                     show_default=True, help="Movie repeats held out for testing (all reported scores); training "
                                             "needs at least one repeat besides validation and test."),
        click.option("--val-images", "n_val_images", type=_POSITIVE, default=_D.n_val_images, show_default=True,
                     help="Flashed images: images held out for validation (never trained on)."),
        click.option("--test-images", "n_test_images", type=_POSITIVE, default=_D.n_test_images, show_default=True,
                     help="Flashed images: unseen images held out for testing (never trained on)."),
        click.option("--linear-rank", type=_POSITIVE, default=_D.model.linear_rank, show_default=True,
                     help="Width of the encoder's ridge-like linear path (capped so its basis stays under 160 MB: "
                          "64 at 576 x 1024 targets)."),
        click.option("--offset-bins", type=int, default=_D.train.offset_bins, show_default=True,
                     help="Lag of the input window in bins (0 = centred on the frame)."),
        click.option("--narrations", "narrations_per_subset", type=_POSITIVE, default=_D.narrations_per_subset,
                     show_default=True, help="Held-out windows narrated per unit subset."),
        click.option("--no-quality-filter", is_flag=True, help="Keep units failing the Allen quality filter."),
        click.option("--no-neurration", is_flag=True, default=False,
                     help="Skip the single-neuron, group and scaling analyses (decode and narrate subsets only)."),
        click.option("--scaling-draws", type=_POSITIVE, default=_D.analyses.scaling_draws, show_default=True,
                     help="Random unit sets drawn per population size in the scaling analysis; each draw is decoded "
                     "and the draw is the unit of replication of its p and CI."),
        click.option("--null-pools", type=click.IntRange(min=4), default=_D.analyses.null_pools, show_default=True,
                     help="Size- and region-matched random unit pools re-decoded for the group nulls "
                     "(enrichment; Student's t on pools - 2 df)."),
        click.option("--predictions", type=click.Choice(["auto", "full", "compact", "compact-pca"]), default=_D.predictions,
                     show_default=True, help="Store predicted patches in full float32, or compact: coefficients in "
                     "the encoder's linear readout (compact) or in a PCA basis of the windows (compact-pca), every "
                     "window's error stored; auto: compact above 256 MB."),
        click.option("--predictions-rank", type=_POSITIVE, default=_D.predictions_rank, show_default=True,
                     help="Rank of the compact-pca predictions' basis."),
        click.option("--cache-dir", type=click.Path(), default=None, help="Cache for targets and streamed files."),
        timeout_option,
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _config(progress: bool, no_quality_filter: bool, no_neurration: bool = False, **kwargs: Any):
    from neurrator.config import NarrateConfig

    return NarrateConfig.from_options(progress=progress, quality_filter=not no_quality_filter,
                                      neurration=not no_neurration, **kwargs)


@contextlib.contextmanager
def _remove_created_folders_on_failure(folder: Path):
    """A failed run leaves no folder it created (only empty folders are ever removed)."""
    from neurrator.io.folders import CreatedDirs

    dirs = CreatedDirs()
    dirs.watch(folder)
    try:
        yield
    except BaseException:
        for removed in dirs.remove_empty():
            log.debug("removed the empty folder %s left by the failed run", removed)
        raise


@main.command(short_help="Narrate a session, or several as one pseudo-mouse.")
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option("--out", "out", required=True, type=click.Path(),
              help="Output .nwb file, or a folder for the DANDI layout (a folder for several sources).")
@narrate_options
@common
def narrate(sources: tuple[str, ...], out: str, progress: bool, **kwargs: Any) -> None:
    """Narrate one session: SOURCE is a path, dandi://DANDISET[@VERSION]/PATH or an https URL.

    Several SOURCEs of the same stimulus are one pseudo-mouse: one encoder over all their units, cell
    types pooled across sessions, and one derived file per session in the --out folder.
    """
    from neurrator.pipeline import narrate_session, narrate_sessions

    config = _config(progress, **kwargs)
    out_path = Path(out)
    with _remove_created_folders_on_failure(out_path.parent if out_path.suffix == ".nwb" else out_path):
        if len(sources) == 1:
            results = [narrate_session(sources[0], out=out_path, config=config)]
        else:
            results = narrate_sessions(list(sources), out=out_path, config=config)
    for i, result in enumerate(results):
        if len(results) > 1:
            click.echo(f"== session {i + 1} of {len(results)}: {result.session_label}")
        click.echo(result.summary())


@main.command(short_help="Run the pipeline on a simulated session, offline.")
@click.option("--out", "out", type=click.Path(), default="neurrator-demo", show_default=True, help="Output folder.")
@click.option("--seed", type=_SEED, default=0, show_default=True, help="Random seed (0 to 2**32 - 1).")
@common
def demo(out: str, seed: int, progress: bool) -> None:
    """Run the whole pipeline on the embedded simulated session with the offline tiny models."""
    from neurrator.pipeline import run_demo

    with _remove_created_folders_on_failure(Path(out)):
        result = run_demo(Path(out), seed=seed, progress=progress)
    click.echo(result.summary(examples=5))


@main.command(short_help="Print (and plot) the results in an annotated file.")
@click.argument("file", type=click.Path())
@click.option("--all", "show_all", is_flag=True, help="Every narration, not the first few per subset.")
@click.option("--plot", type=click.Path(), default=None, help="Also save fidelity vs population size as this PNG.")
@common
def show(file: str, show_all: bool, plot: str | None, progress: bool) -> None:
    """Print an annotated file: fidelity per subset (headline first), narrations, units by id.

    The fidelity table leads with the centred patch cosine and frame identification (top-1, top-5, within
    1 s), then narration similarity; the raw patch cosine comes last. Single units are named by unit id.
    """
    from neurrator.report.text import format_file, plot_fidelity

    click.echo(format_file(Path(file), show_all=show_all))
    if plot:
        click.echo(f"wrote {plot_fidelity(Path(file), Path(plot))}")


@main.command(short_help="Write a self-contained HTML report of a derived file.")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--out", type=click.Path(dir_okay=False), default=None,
              help="Where to write the page (default: FILE with .html, next to it).")
@common
def report(file: str, out: str | None, progress: bool) -> None:
    """Write one HTML page of FILE's results (figures embedded; opens from disk; no network)."""
    from neurrator.report.html import write_report

    click.echo(f"wrote {write_report(Path(file), Path(out) if out else None)}")


@main.command(short_help="Write a simulated session with known ground truth.")
@click.argument("out", type=click.Path())
@click.option("--units", type=_POSITIVE, default=None, help="Number of units (default: the simulator's).")
@click.option("--repeats", type=_POSITIVE, default=None, help="Movie repeats (default: the simulator's).")
@click.option("--seed", type=_SEED, default=0, show_default=True, help="Random seed (0 to 2**32 - 1).")
@click.option("--movie-seed", type=_SEED, default=0, show_default=True,
              help="Seed of the procedural movie (sessions with the same movie seed watch the same movie).")
@click.option("--movie-out", type=click.Path(), default=None, help="Also save the movie frames as .npy.")
@common
def simulate(out: str, units: int | None, repeats: int | None, seed: int, movie_seed: int, movie_out: str | None,
             progress: bool) -> None:
    """Write a simulated Allen-layout session with known ground truth to OUT (.nwb)."""
    from neurrator.data.splits import split_problem
    from neurrator.simulate import write_simulated_session

    kwargs: dict[str, Any] = {"seed": seed, "movie_seed": movie_seed, "movie_out": movie_out}
    if units is not None:
        kwargs["n_units"] = units
    if repeats is not None:
        kwargs["n_repeats"] = repeats
    write_simulated_session(Path(out), **kwargs)
    click.echo(f"wrote {out}")
    problem = None if repeats is None else split_problem(repeats, n_val=_D.n_val_repeats, n_test=_D.n_test_repeats)
    if problem is not None:
        click.echo(f"note: `neurrator narrate` with the default split will refuse it: {problem}", err=True)


@main.command(short_help="Convert spike counts per presentation + images to an NWB session.")
@click.argument("counts", type=click.Path(dir_okay=False))
@click.argument("images", type=click.Path())
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="The .nwb file to write.")
@click.option("--stimulus", default="natural_scenes", show_default=True, help="Name of the presentation table.")
@click.option("--region", default="unknown", show_default=True, help="Brain area of every unit (e.g. V4).")
@click.option("--window-s", type=_SECONDS, default=0.1, show_default=True, help="The source's counting window (s).")
@click.option("--latency-s", type=click.FloatRange(min=0), default=0.05, show_default=True,
              help="Made-up start of the counting window after each onset (s).")
@click.option("--interval-s", type=_SECONDS, default=0.5, show_default=True, help="Made-up onset-to-onset interval (s).")
@click.option("--seed", type=_SEED, default=0, show_default=True, help="Seed of the made-up order and spike times.")
@click.option("--subject-id", default=None, help="Subject id (with --species, --sex, --age: the NWB Subject).")
@click.option("--species", default=None, help="Latin binomial, e.g. 'Macaca mulatta'.")
@click.option("--sex", default="U", show_default=True, help="M, F, U or O.")
@click.option("--age", default=None, help="ISO 8601 duration, e.g. P5Y.")
@click.option("--session-id", default=None, help="Session id (default: the counts file's name).")
@common
def convert(counts: str, images: str, out: str, stimulus: str, region: str, window_s: float, latency_s: float,
            interval_s: float, seed: int, subject_id: str | None, species: str | None, sex: str, age: str | None,
            session_id: str | None, progress: bool) -> None:
    """Write COUNTS (.npy: units x images x repeats, NaN = not shown) and IMAGES (.zip or folder, in name
    order) as a flashed-image NWB session. The counts stay exact; presentation order, timing and the spike
    times inside each counting window are made up, and the file's notes say so (README: "Counts in")."""
    from neurrator.io.count_files import convert_counts
    from neurrator.io.counts import CountProtocol

    try:
        protocol = CountProtocol(window_s=window_s, latency_s=latency_s, interval_s=interval_s, seed=seed)
    except ValueError as err:
        raise NeurratorError(out, str(err)) from None
    subject = {k: v for k, v in (("subject_id", subject_id), ("species", species), ("sex", sex), ("age", age)) if v}
    path = convert_counts(Path(counts), Path(images), Path(out), protocol=protocol, stimulus=stimulus, region=region,
                          subject=subject if subject_id else None, session_id=session_id)
    click.echo(f"wrote {path} (counts exact; order, timing and spike times within each window made up: see its notes)")


@main.command(name="ls", short_help="List a dandiset's NWB assets with their sizes.")
@click.argument("dandiset")
@timeout_option
@common
def ls_command(dandiset: str, timeout: float, progress: bool) -> None:
    """List a dandiset's NWB assets with sizes (DANDISET: dandi://000021[@VERSION] or 000021)."""
    from neurrator.io.sources import list_assets

    for asset in list_assets(dandiset, timeout=timeout):
        click.echo(f"{asset.size:>15,d}  {escape_controls(asset.path)}")  # archive names are untrusted


@main.command(short_help="Narrate every session of a dandiset on Dask.")
@click.argument("dandiset")
@click.option("--out", "out", required=True, type=click.Path(), help="Output folder (DANDI layout).")
@click.option("--scheduler", default=None, help="Address of an existing Dask scheduler (default: a LocalCluster).")
@click.option("--workers", type=_POSITIVE, default=2, show_default=True, help="Workers of the LocalCluster.")
@click.option("--match", default=None, help="Only assets whose path contains this text.")
@narrate_options
@common
def process(dandiset: str, out: str, scheduler: str | None, workers: int, match: str | None, progress: bool,
            **kwargs: Any) -> None:
    """Narrate every matching session of a dandiset on Dask (resumable; failures listed at the end)."""
    from neurrator.process import process_dandiset

    report = process_dandiset(dandiset, out=Path(out), config=_config(progress, **kwargs), scheduler=scheduler,
                              workers=workers, match=match)
    click.echo(report.summary())
    if report.interrupted:
        sys.exit(INTERRUPTED)
    if report.failed:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
