"""Hostile --movie files: every format's declared size is refused before anything is decoded, the error names the
movie file (never the session), non-regular files are never read, and no MemoryError reaches the user."""

from __future__ import annotations

import os
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from _helpers import FAST_FLAGS, assert_one_line_error, run_cli, sha256

from neurrator.errors import NeurratorError
from neurrator.io.limits import MAX_ARRAY_BYTES, check_array_size, max_array_bytes
from neurrator.io.movie_files import load_movie_file

#: The limit the tests set (small, so that honest files of a few hundred kB pass and bombs are cheap to build).
LIMIT = 1_000_000


@pytest.fixture
def limit(monkeypatch):
    monkeypatch.setenv("NEURRATOR_MAX_ARRAY_BYTES", str(LIMIT))
    return LIMIT


@pytest.fixture
def no_decoding(monkeypatch):
    """Decoding anything fails the test: a bomb must be refused from its header."""
    import PIL.ImageFile

    def boom(*a, **k):
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(np, "load", boom)
    monkeypatch.setattr(PIL.ImageFile.ImageFile, "load", boom)


def _npy_header(shape, dtype="|u1") -> bytes:
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {tuple(shape)}, }}"
    header += " " * (64 - (10 + len(header) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1")


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def _jpeg_with_size(path: Path, width: int, height: int) -> Path:
    """A real JPEG whose SOF header is patched to declare ``width`` x ``height``."""
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path, format="JPEG")
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def _corpus(folder: Path) -> dict[str, Path]:
    """Each hostile movie (name -> path); each declares far more than `LIMIT` in a file of a few kB."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    c = {}
    c["npy header"] = folder / "bomb.npy"
    c["npy header"].write_bytes(_npy_header((100_000, 1000, 1000)) + b"\x00" * 64)
    c["npy huge dims"] = folder / "dims.npy"
    c["npy huge dims"].write_bytes(_npy_header((2**62, 2**62, 4), "<f8"))
    c["npz member"] = folder / "bomb.npz"
    with zipfile.ZipFile(c["npz member"], "w") as z:
        z.writestr("frames.npy", _npy_header((100_000, 1000, 1000)) + b"\x00" * 64)
    c["npz zip size"] = folder / "zipbomb.npz"  # honest header, deflated zeros: 50 MB in about 50 kB
    with zipfile.ZipFile(c["npz zip size"], "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("frames.npy", _npy_header((50, 1000, 1000)) + bytes(50 * 1000 * 1000))
    c["h5 dataset"] = folder / "bomb.h5"
    import h5py

    with h5py.File(c["h5 dataset"], "w") as f:  # chunked, unallocated: declares 100 MB, stores nothing
        f.create_dataset("data", shape=(100, 1000, 1000), dtype="u1", chunks=(1, 100, 100))
    c["tiff pages"] = folder / "pages.tif"
    page = Image.fromarray(np.zeros((200, 200), np.uint8))
    page.save(c["tiff pages"], save_all=True, append_images=[page] * 30, compression="tiff_deflate")
    c["png header"] = folder / "png" / "frame_000.png"
    c["png header"].parent.mkdir()
    c["png header"].write_bytes(_png_header(60_000, 60_000))
    c["jpeg header"] = _jpeg_with_size(folder / "jpg_dir_frame.jpg", 30_000, 30_000)
    jpg_dir = folder / "jpg"
    jpg_dir.mkdir()
    shutil.move(c["jpeg header"], jpg_dir / "frame_000.jpg")
    c["jpeg header"] = jpg_dir / "frame_000.jpg"
    return c


CASES = ["npy header", "npy huge dims", "npz member", "npz zip size", "h5 dataset", "tiff pages", "png header",
         "jpeg header"]


@pytest.mark.parametrize("case", CASES)
def test_declared_sizes_are_refused_before_decoding(case, tmp_path, limit, no_decoding):
    corpus = _corpus(tmp_path / "corpus")
    bomb = corpus[case]
    target = bomb.parent if case in ("png header", "jpeg header") else bomb  # images come as a folder
    before = sha256(target)
    with pytest.raises(NeurratorError) as err:
        load_movie_file(target)
    message = str(err.value)
    assert message.startswith(str(bomb)), message  # names the file that holds the bomb
    assert "NEURRATOR_MAX_ARRAY_BYTES" in message and "refusing" in message
    assert "\n" not in message
    assert sha256(target) == before


def test_honest_movies_under_the_limit_still_load(tmp_path, limit):
    frames = np.arange(4 * 30 * 40, dtype=np.uint8).reshape(4, 30, 40)
    np.save(tmp_path / "m.npy", frames)
    np.savez_compressed(tmp_path / "m.npz", frames=frames)
    for name in ("m.npy", "m.npz"):
        np.testing.assert_array_equal(load_movie_file(tmp_path / name), frames)


def test_limit_is_one_constant_overridable_by_the_environment(monkeypatch):
    monkeypatch.delenv("NEURRATOR_MAX_ARRAY_BYTES", raising=False)
    assert max_array_bytes() == MAX_ARRAY_BYTES
    monkeypatch.setenv("NEURRATOR_MAX_ARRAY_BYTES", "123")
    assert max_array_bytes() == 123
    monkeypatch.setenv("NEURRATOR_MAX_ARRAY_BYTES", "nonsense")
    assert max_array_bytes() == MAX_ARRAY_BYTES
    with pytest.raises(NeurratorError, match="x.npy: frames declares shape"):
        check_array_size((10, 10, 10), 1, label="x.npy", what="frames", limit=999)
    assert check_array_size((10, 10, 10), 1, label="x.npy", what="frames", limit=1000) == 1000


def test_a_memory_error_while_decoding_names_the_movie(tmp_path, monkeypatch):
    np.save(tmp_path / "m.npy", np.zeros((2, 4, 4), np.uint8))

    def oom(*a, **k):
        raise MemoryError

    monkeypatch.setattr(np, "load", oom)
    with pytest.raises(NeurratorError, match=r"m\.npy: out of memory while reading the movie"):
        load_movie_file(tmp_path / "m.npy")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_and_device_movies_are_never_read(tmp_path):
    fifo = tmp_path / "movie.npy"
    os.mkfifo(fifo)
    with pytest.raises(NeurratorError, match="not a regular file"):
        load_movie_file(fifo)  # would block forever if opened for reading
    with pytest.raises(NeurratorError, match="not a regular file"):
        load_movie_file(Path("/dev/zero"))


def test_a_movie_folder_reads_no_link_leading_out(tmp_path):
    from PIL import Image

    outside = tmp_path / "outside.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(outside)
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "a.png")
    (folder / "b.png").symlink_to(outside)
    with pytest.raises(NeurratorError, match=r"b\.png: is a symbolic link"):
        load_movie_file(folder)


@pytest.mark.slow
def test_cli_names_the_movie_file_not_the_session(small_sim, tmp_path):
    """`narrate --movie BOMB`: one line naming the movie, exit 1, no traceback, inputs unchanged, no output."""
    import h5py

    session = tmp_path / "nomovie.nwb"
    shutil.copy(small_sim, session)
    with h5py.File(session, "a") as f:
        del f["stimulus/templates"]
    bomb = tmp_path / "bomb.npy"
    bomb.write_bytes(_npy_header((100_000, 1000, 1000)) + b"\x00" * 64)
    before = (sha256(session), sha256(bomb))
    out = tmp_path / "out"
    proc = run_cli("narrate", str(session), "--out", str(out), "--movie", str(bomb), *FAST_FLAGS,
                   env={"NEURRATOR_MAX_ARRAY_BYTES": str(LIMIT)})
    line = assert_one_line_error(proc, f"Error: {bomb}:", "NEURRATOR_MAX_ARRAY_BYTES")
    assert "nomovie.nwb" not in line and "internal error" not in proc.stderr
    assert (sha256(session), sha256(bomb)) == before
    assert not out.exists() or not any(out.rglob("*"))
