"""One-time conversion of third-party open_clip weights (.bin / .pt / TorchScript) to safetensors.

neurrator reads only safetensors weights: a ``.bin`` or ``.pt`` file is a pickle (``torch.load`` can
run code while unpickling, and even ``weights_only=True`` is a restricted unpickler), and OpenAI's CLIP
``.pt`` files are TorchScript archives (``torch.jit.load`` deserialises a program). This module is the
one place that opens such a file, only when you run it yourself, on a file you trust::

    python -m neurrator.models.convert_weights ViT-L-14-336px.pt ViT-L-14-336px.safetensors            # pickled state dict
    python -m neurrator.models.convert_weights --torchscript ViT-L-14-336px.pt ViT-L-14-336px.safetensors

then ``--backbone open_clip:ViT-L-14-336-quickgelu:ViT-L-14-336px.safetensors``. Pickles are read
with ``torch.load(weights_only=True)``; TorchScript only with ``--torchscript``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from neurrator.errors import NeurratorError

__all__ = ["convert_to_safetensors", "main"]


def convert_to_safetensors(src: str | Path, dst: str | Path, *, torchscript: bool = False) -> Path:
    """Convert a trusted open_clip checkpoint ``src`` to a safetensors file ``dst``; returns ``dst``.

    Parameters
    ----------
    src
        A pickled state dict (``torch.save``; read with ``weights_only=True``) or, with
        ``torchscript=True``, a TorchScript archive (OpenAI's CLIP ``.pt`` files).
    dst
        Output ``.safetensors`` path (written atomically).
    torchscript
        Allow ``torch.jit.load``; only for files you trust.
    """
    import os

    import torch
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    if dst.suffix != ".safetensors":
        raise NeurratorError(dst, "the output must end in .safetensors")
    if not src.is_file():
        raise NeurratorError(src, "file not found")
    is_script = _is_torchscript(src)
    if is_script and not torchscript:
        # torch.load would silently hand a TorchScript archive to torch.jit.load: refuse before that
        raise NeurratorError(src, "is a TorchScript archive; rerun with --torchscript if you trust it")
    if is_script:
        state = torch.jit.load(str(src), map_location="cpu").state_dict()
        for key in ("input_resolution", "context_length", "vocab_size"):
            state.pop(key, None)
    else:
        try:
            state = torch.load(str(src), map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError, ...
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise NeurratorError(src, f"not a weights-only state dict ({first})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise NeurratorError(src, "does not hold a state dict of tensors")
    state = {(k[7:] if k.startswith("module.") else k): v.detach().contiguous() for k, v in state.items()}
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    save_file(state, str(tmp))
    os.replace(tmp, dst)
    return dst


def _is_torchscript(path: Path) -> bool:
    """A zip archive with TorchScript's ``code/`` or ``constants.pkl`` entries."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurrator.models.convert_weights", description=__doc__.splitlines()[0])
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--torchscript", action="store_true", help="allow a TorchScript archive (trusted files only)")
    args = parser.parse_args(argv)
    try:
        out = convert_to_safetensors(args.src, args.dst, torchscript=args.torchscript)
    except NeurratorError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
