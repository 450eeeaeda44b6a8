"""A run's configuration and a session's outline -> the models it needs, loaded and checked before any data.

Everything that can make a run fail without the data fails here, in seconds, with one line that names
the option to change: the repeat split (`check_split`), the encoder checkpoint, the backbone, the
narrator and the reference narrator (`load_models`). The pipeline calls them in this order:

1. open the source and read its outline (`outline_nwbfile`: repeat count, whether the file has
   captions, the Units table's spike-time resolution) - a few small tables, no spike times;
2. `check_split` on the repeat count;
3. `load_models(config, device=..., needs_reference=not outline.has_captions)`;
4. only then read the session (spike times, frames) and compute.

Why an outline instead of always loading the reference narrator: the reference narrator (``llava`` by
default) is needed only when the session has no captions and the narrator is ``retrieval``. Loading it
unconditionally would make every simulated session - the demo included, which has captions - need the
7B LLaVA weights, and would refuse the offline default configuration. Whether a file has captions is
one lookup (``processing/*/<stimulus>_captions``), so the pipeline asks the file first.

`CreatedDirs` records which output folders a run creates, so that a failed run removes the (empty)
folders it made and nothing else.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from neurrator.io.progress import library_bars
from neurrator.errors import NeurratorError
from neurrator.models.backbones import DEFAULT_LLAVA, TINY_VISION, load_backbone
from neurrator.models.checkpoint import load_checkpoint, load_encoder_nwb
from neurrator.models.embedder import load_sentence_embedder
from neurrator.models.narrators import load_narrator

__all__ = ["Models", "load_encoder", "load_models", "narrator_dim", "needs_reference"]

log = logging.getLogger(__name__)

#: Patch-token width of hub checkpoints whose config may not be in the local cache (CLIP ViT-L/14-336).
KNOWN_NARRATOR_DIMS = {"llava-hf/llava-1.5-7b-hf": 1024, "llava-hf/llava-1.5-13b-hf": 1024}


class Models(NamedTuple):
    """Every model a run needs, loaded and checked against each other.

    Attributes
    ----------
    backbone
        `neurrator.models.backbones.Backbone` that gives the targets.
    generator
        The generative narrator (``--narrator tiny`` / ``llava``); None for ``retrieval``, whose bank is
        built after the targets.
    reference
        The narrator whose narrations of the TRUE patches are the references when the session has no
        captions: the generator itself when there is one, else ``--reference-narrator``; None when no
        references need to be written.
    trained
        `neurrator.models.training.TrainedEncoder` from ``--encoder``, or None (the run trains one).
    embedder
        The sentence embedder that scores narrations (all-MiniLM-L6-v2, sha256-checked).
    """

    backbone: Any
    generator: Any | None
    reference: Any | None
    trained: Any | None
    embedder: Any


# ------------------------------------------------------------------------------------- the split


# ----------------------------------------------------------------------------------- the outline


# ------------------------------------------------------------------------------------- the models


def needs_reference(config, *, has_captions: bool | None) -> bool:
    """True when the run must load ``config.reference_narrator``: a ``retrieval`` narrator on a session
    without captions (or whose captions are not known yet: None). A generative narrator writes its own
    references; captions make references unnecessary."""
    return config.narrator.partition(":")[0] == "retrieval" and not has_captions


def narrator_dim(name: str) -> int | None:
    """The patch-token width a generative narrator's projector reads, found without loading its weights.

    ``tiny``: the tiny vision tower's width; ``llava[:<hub id or folder>]``: the checkpoint's
    ``config.json`` (the folder, or the Hugging Face cache; never the network), else the known width of
    the LLaVA-1.5 checkpoints. None when it cannot be told (the loader then reports what is missing).

    Examples
    --------
    >>> narrator_dim("tiny")
    64
    """
    base, _, arg = name.partition(":")
    if base == "tiny":
        return int(TINY_VISION["hidden_size"])
    if base != "llava":
        return None

    model_id = arg or DEFAULT_LLAVA
    config_file: str | Path | None = None
    folder = Path(model_id).expanduser()
    if folder.is_dir():
        config_file = folder / "config.json"
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(model_id, "config.json")
            config_file = found if isinstance(found, str) else None
        except Exception:  # noqa: BLE001 - an invalid hub id: the loader says so
            config_file = None
    if config_file is not None and Path(config_file).is_file():
        try:
            cfg = json.loads(Path(config_file).read_text())
            width = int((cfg.get("vision_config") or {}).get("hidden_size", 1024))  # LlavaConfig's default tower
            layers = cfg.get("vision_feature_layer", -2)
            return width * (len(layers) if isinstance(layers, list) else 1)
        except (OSError, ValueError, TypeError, AttributeError):
            return None
    return KNOWN_NARRATOR_DIMS.get(model_id)


def load_encoder(path: str | Path, *, device: str):
    """A `TrainedEncoder` from a checkpoint folder or from the EncoderCheckpoint of a neurrator NWB file."""
    path = Path(path)
    if not path.exists():
        raise NeurratorError(path, "encoder not found: pass a checkpoint folder or a neurrator NWB file to --encoder")
    if path.is_dir():
        return load_checkpoint(path, device=device)

    return load_encoder_nwb(path, device=device)


def _check_width(dim: int | None, backbone, *, option: str, reason: str = "") -> None:
    """Refuse a narrator whose projector cannot read the backbone's patch tokens (one line, what to use)."""
    if dim is None or dim == backbone.spec.dim:
        return
    flag = option.split()[0]
    lead = f"{reason}, but it reads {dim}-d patch tokens and" if reason else f"it reads {dim}-d patch tokens but"
    raise NeurratorError(option, f"{lead} --backbone {backbone.spec.backbone_id} gives {backbone.spec.dim}-d ones: "
                         f"use {flag} tiny with --backbone tiny, or {flag} llava with --backbone llava")


def check_encoder_targets(got, spec, *, encoder: str | Path, preprocessing: str) -> None:
    """A reused encoder must predict exactly the targets this run's backbone gives (``--encoder`` named).

    Compared: backbone id, hidden-state layer, patch count, width, preprocessing and, for backbones
    with seeded random weights (``tiny``), the seed: other seeds give other targets.
    """
    if got is None:  # check_metadata refuses this when the file is read; kept for TrainedEncoders built in code
        raise NeurratorError(encoder, "the encoder records no target spec: it cannot be checked against --backbone")
    mode = "pad" if str(got.preprocessing).startswith("pad") else "crop"
    if (got.backbone_id, got.preprocessing, int(got.n_patches), int(got.dim)) != (
            spec.backbone_id, spec.preprocessing, int(spec.n_patches), int(spec.dim)):
        raise NeurratorError(encoder, f"encoder was trained on {got.backbone_id} targets "
                             f"({got.n_patches} x {got.dim}, {mode}), not on {spec.backbone_id} targets "
                             f"({spec.n_patches} x {spec.dim}, {preprocessing}): pass --backbone "
                             f"{got.backbone_id} --preprocessing {mode}, or train a new encoder (no --encoder)")
    if int(got.layer) != int(spec.layer):
        raise NeurratorError(encoder, f"encoder was trained on hidden state {got.layer} of {got.backbone_id}; this "
                             f"backbone gives hidden state {spec.layer}: train a new encoder (no --encoder)")
    seeded = str(got.weights).startswith("random:") and str(spec.weights).startswith("random:")
    if seeded and got.weights != spec.weights:
        seed = str(got.weights).rpartition("=")[2]
        raise NeurratorError(encoder, f"encoder was trained on {got.backbone_id} targets from weights "
                             f"{got.weights}, this run's backbone has {spec.weights} (other random weights, other "
                             f"targets): pass --seed {seed}, or train a new encoder (no --encoder)")


def check_encoder_session(trained, unit_ids: np.ndarray, n_frames: int | None, *, encoder: str | Path) -> None:
    """A reused encoder must know every unit the run decodes and its held-out frames must exist.

    Called right after the session is read, before binning, targets or decoding.
    """
    known = {int(u) for u in np.asarray(trained.unit_ids).ravel()}
    ids = [int(u) for u in np.asarray(unit_ids).ravel()]
    unknown = [u for u in ids if u not in known]
    if unknown:
        some = ", ".join(str(u) for u in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        lead = (f"none of the session's {len(ids)} units are" if len(unknown) == len(ids)
                else f"{len(unknown)} of the session's {len(ids)} units are not")
        raise NeurratorError(encoder, f"{lead} among the encoder's {len(known)} training units "
                             f"(unit ids {some}); an encoder decodes only units it was trained with: use the session "
                             "(and quality filter) it was trained on, or train a new encoder (no --encoder)")
    hold = np.asarray(trained.holdout_frames).ravel()
    if n_frames is not None and hold.size and int(hold.max()) >= n_frames:
        raise NeurratorError(encoder, f"the encoder's held-out frames go up to {int(hold.max())}, but the movie has "
                             f"{n_frames} frames: it was trained on another stimulus")


def load_models(config, *, device: str, needs_reference: bool | None) -> Models:
    """Load and check every model the run will need, cheapest and most likely to fail first.

    Order: the encoder checkpoint (``config.encoder``, sha256-verified), the backbone, the widths the
    narrator and the reference narrator read (from their configs, before any large weights are
    loaded), the sentence embedder, then the narrators themselves.

    Parameters
    ----------
    config
        `neurrator.config.NarrateConfig`.
    device
        Resolved torch device (``cpu``, ``cuda``).
    needs_reference
        Whether the session lacks captions (`SessionOutline.has_captions` negated). None = not known:
        treated as True, so a ``retrieval`` run loads its reference narrator.

    Returns
    -------
    Models

    Raises
    ------
    NeurratorError
        A missing or corrupt checkpoint, one trained on other targets, unknown model ids, missing
        weights, or a narrator / reference narrator whose projector does not read the backbone's tokens
        (the message names the option and the value to use).

    With ``config.progress`` False no library draws a bar meanwhile (transformers' "Loading weights",
    huggingface_hub's downloads: `neurrator.io.progress.library_bars`).
    """
    with library_bars(config.progress):
        return _load_all(config, device=device, needs_reference=needs_reference)


def _load_all(config, *, device: str, needs_reference: bool | None) -> Models:
    trained = load_encoder(config.encoder, device=device) if config.encoder else None
    backbone = load_backbone(config.backbone, preprocessing=config.preprocessing, device=device, seed=config.seed)
    spec = backbone.spec
    if trained is not None:
        check_encoder_targets(trained.target_spec, spec, encoder=config.encoder, preprocessing=config.preprocessing)

    generative = config.narrator.partition(":")[0] != "retrieval"
    wants_reference = needs_reference is None or bool(needs_reference)
    reference_name = config.reference_narrator if (wants_reference and not generative) else None
    if generative:
        _check_width(narrator_dim(config.narrator), backbone, option=f"--narrator {config.narrator}")
    if reference_name is not None:
        if reference_name.partition(":")[0] == "retrieval":
            raise NeurratorError(f"--reference-narrator {reference_name}", "the reference narrator must be "
                                 "generative (tiny or llava): it writes the texts the retrieval narrator retrieves")
        captions = "has no captions" if needs_reference else "may have no captions"
        why = f"the session {captions}, so this narrator writes the references (the retrieval bank's texts)"
        _check_width(narrator_dim(reference_name), backbone, option=f"--reference-narrator {reference_name}",
                     reason=why)
    embedder = load_sentence_embedder(device=device)

    generator = None
    if generative:
        generator = load_narrator(config.narrator, device=device, seed=config.seed)
        _check_width(getattr(generator, "dim", None), backbone, option=f"--narrator {config.narrator}")
    reference = generator if (generative and wants_reference) else None
    if reference_name is not None:
        reference = load_narrator(reference_name, device=device, seed=config.seed)
        _check_width(getattr(reference, "dim", None), backbone, option=f"--reference-narrator {reference_name}")
    return Models(backbone, generator, reference, trained, embedder)


# ---------------------------------------------------------------------------------- output folders


