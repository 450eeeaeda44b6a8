"""Command line: a thin click layer; each command builds a config and calls one library function."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Any, Callable

import click

from neurrator.errors import NeurratorError

log = logging.getLogger("neurrator")


def _setup_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    logging.captureWarnings(True)


def _fail(message: str) -> None:
    click.echo(f"Error: {' '.join(message.split())}", err=True)
    sys.exit(1)


def common(func: Callable[..., Any]) -> Callable[..., Any]:
    """--debug and --quiet on every command; user errors become one line and exit 1."""

    @click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
    @click.option("--quiet", "-q", is_flag=True, help="No progress bars, warnings and errors only.")
    @functools.wraps(func)
    def wrapper(*args: Any, debug: bool, quiet: bool, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        debug = debug or bool(ctx.obj and ctx.obj.get("debug"))
        quiet = quiet or bool(ctx.obj and ctx.obj.get("quiet"))
        _setup_logging(debug, quiet)
        try:
            return func(*args, progress=not quiet, **kwargs)
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
            _fail("interrupted; nothing was written at the output path")
        except Exception as err:  # noqa: BLE001 - last line of defence: one line, no traceback
            if debug:
                raise
            _fail(f"internal error ({type(err).__name__}: {err}); rerun with --debug for the traceback")

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.version_option(package_name="neurrator")
@click.pass_context
def main(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """neurrator: narrate in plain language what neurons in visual cortex encode."""
    ctx.obj = {"debug": debug, "quiet": quiet}


def narrate_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options shared by `narrate` and `process` (one NarrateConfig each)."""
    options = [
        click.option("--stimulus", default="natural_movie_one", show_default=True, help="Movie stimulus name."),
        click.option("--movie", type=click.Path(dir_okay=True), default=None,
                     help="Movie frames (.npy/.npz, image stack or video) when the file has none."),
        click.option("--backbone", default="tiny", show_default=True, help="Vision backbone id (tiny, llava, open_clip:MODEL:TAG)."),
        click.option("--preprocessing", type=click.Choice(["pad", "crop"]), default="pad", show_default=True,
                     help="Pad frames to square (LLaVA-1.5) or centre-crop (llava-hf processor)."),
        click.option("--narrator", default="retrieval", show_default=True, help="Narrator id (retrieval, tiny, llava)."),
        click.option("--encoder", type=click.Path(), default=None, help="Reuse this encoder checkpoint folder."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--epochs", type=int, default=3, show_default=True, help="Maximum training epochs."),
        click.option("--linear-rank", type=int, default=256, show_default=True,
                     help="Width of the encoder's ridge-like linear path (use ~64 for 576 x 1024 targets)."),
        click.option("--offset-bins", type=int, default=0, show_default=True,
                     help="Lag of the input window in bins (0 = centred on the frame)."),
        click.option("--narrations", "narrations_per_subset", type=int, default=30, show_default=True,
                     help="Held-out windows narrated per unit subset."),
        click.option("--no-quality-filter", is_flag=True, help="Keep units failing the Allen quality filter."),
        click.option("--cache-dir", type=click.Path(), default=None, help="Cache for targets and streamed files."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _config(progress: bool, no_quality_filter: bool, **kwargs: Any):
    from neurrator.config import NarrateConfig

    return NarrateConfig(progress=progress, quality_filter=not no_quality_filter, **kwargs)


@main.command()
@click.argument("source")
@click.option("--out", "out", required=True, type=click.Path(), help="Output .nwb file, or a folder for the DANDI layout.")
@narrate_options
@common
def narrate(source: str, out: str, progress: bool, **kwargs: Any) -> None:
    """Narrate one session: SOURCE is a path, dandi://DANDISET[@VERSION]/PATH or an https URL."""
    from neurrator.pipeline import narrate_session

    result = narrate_session(source, out=Path(out), config=_config(progress, **kwargs))
    click.echo(result.summary())


@main.command()
@click.option("--out", "out", type=click.Path(), default="neurrator-demo", show_default=True, help="Output folder.")
@click.option("--seed", type=int, default=0, show_default=True)
@common
def demo(out: str, seed: int, progress: bool) -> None:
    """Run the whole pipeline on the embedded simulated session with the offline tiny models."""
    from neurrator.pipeline import run_demo

    result = run_demo(Path(out), seed=seed, progress=progress)
    click.echo(result.summary(examples=5))


@main.command()
@click.argument("file", type=click.Path())
@click.option("--all", "show_all", is_flag=True, help="Every narration, not the first few per subset.")
@click.option("--plot", type=click.Path(), default=None, help="Also save fidelity vs population size as this PNG.")
@common
def show(file: str, show_all: bool, plot: str | None, progress: bool) -> None:
    """Print the narrations, subsets, fidelity and validation scores of an annotated file."""
    from neurrator.report import format_file, plot_fidelity

    click.echo(format_file(Path(file), show_all=show_all))
    if plot:
        click.echo(f"wrote {plot_fidelity(Path(file), Path(plot))}")


@main.command()
@click.argument("out", type=click.Path())
@click.option("--units", type=int, default=None, help="Number of units (default: the simulator's).")
@click.option("--repeats", type=int, default=None, help="Movie repeats (default: the simulator's).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--movie-out", type=click.Path(), default=None, help="Also save the movie frames as .npy.")
@common
def simulate(out: str, units: int | None, repeats: int | None, seed: int, movie_out: str | None, progress: bool) -> None:
    """Write a simulated Allen-layout session with known ground truth to OUT (.nwb)."""
    from neurrator.simulate import write_simulated_session

    kwargs: dict[str, Any] = {"seed": seed, "movie_out": movie_out}
    if units is not None:
        kwargs["n_units"] = units
    if repeats is not None:
        kwargs["n_repeats"] = repeats
    write_simulated_session(Path(out), **kwargs)
    click.echo(f"wrote {out}")


@main.command(name="ls")
@click.argument("dandiset")
@common
def ls_command(dandiset: str, progress: bool) -> None:
    """List a dandiset's NWB assets with sizes (DANDISET: dandi://000021[@VERSION] or 000021)."""
    from neurrator.sources import list_assets

    for asset in list_assets(dandiset):
        click.echo(f"{asset.size:>15,d}  {asset.path}")


@main.command()
@click.argument("dandiset")
@click.option("--out", "out", required=True, type=click.Path(), help="Output folder (DANDI layout).")
@click.option("--scheduler", default=None, help="Address of an existing Dask scheduler (default: a LocalCluster).")
@click.option("--workers", type=int, default=2, show_default=True, help="Workers of the LocalCluster.")
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
    if report.failed:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
