"""Presentations (frame, repeat) -> train / validation / test indices: whole repeats of a movie, or whole
images of a flashed-image protocol (the unseen-image test).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from neurrator.errors import NeurratorError

__all__ = ["Split", "check_split", "split_by_image", "split_problem", "split_repeats"]


class Split(NamedTuple):
    """Presentation indices (int64, ascending) of the train / validation / test repeats."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_repeats(
    repeat: np.ndarray,
    *,
    n_val: int = 2,
    n_test: int | None = None,
    seed: int | None = None,
) -> Split:
    """Split presentations into train / validation / test by whole repeats.

    Parameters
    ----------
    repeat
        (P,) int64 repeat of each presentation.
    n_val
        Repeats held out for validation.
    n_test
        Repeats held out for testing; None means the same as ``n_val``.
    seed
        None: the last ``n_test`` repeats (in ascending repeat number) are test, the ``n_val`` before
        them validation, the rest train (the paper's layout: train on early repeats). An int shuffles
        the repeats with ``np.random.default_rng(seed)`` first.

    Returns
    -------
    Split
        (train, val, test) presentation indices, each sorted ascending.

    Raises
    ------
    ValueError
        When fewer than ``n_val + n_test + 1`` repeats exist (training needs at least one).

    Examples
    --------
    >>> s = split_repeats(np.repeat(np.arange(4), 2), n_val=1, n_test=1)
    >>> s.train.tolist(), s.val.tolist(), s.test.tolist()
    ([0, 1, 2, 3], [4, 5], [6, 7])
    """
    repeat = np.asarray(repeat, dtype=np.int64)
    n_test = n_val if n_test is None else n_test
    if n_val < 0 or n_test < 0:
        raise ValueError("n_val and n_test must be >= 0")
    reps = np.unique(repeat)
    if reps.size < n_val + n_test + 1:
        raise ValueError(
            f"{reps.size} repeats cannot give {n_val} validation + {n_test} test repeats and at least "
            "one training repeat; lower n_val/n_test"
        )
    if seed is not None:
        reps = np.random.default_rng(seed).permutation(reps)
    n_train = reps.size - n_val - n_test
    train_r, val_r, test_r = reps[:n_train], reps[n_train : n_train + n_val], reps[n_train + n_val :]
    idx = np.arange(repeat.size, dtype=np.int64)
    return Split(
        train=idx[np.isin(repeat, train_r)],
        val=idx[np.isin(repeat, val_r)],
        test=idx[np.isin(repeat, test_r)],
    )


def split_by_image(frame: np.ndarray, *, n_val_images: int, n_test_images: int, seed: int):
    """Split presentations by image: the test (and validation) images are never shown in training.

    Parameters
    ----------
    frame
        (P,) int64 image index per presentation.
    n_val_images, n_test_images
        Distinct images held out for validation and for the unseen-image test.
    seed
        Which images are held out.

    Returns
    -------
    `neurrator.data.splits.Split` of presentation indices; every presentation of a test image is in
    ``test``, of a validation image in ``val``, the rest in ``train``.
    """
    frame = np.asarray(frame, dtype=np.int64)
    images = np.unique(frame)
    if n_val_images < 0 or n_test_images < 1 or n_val_images + n_test_images >= images.size:
        raise NeurratorError("split", f"cannot hold out {n_val_images} + {n_test_images} of {images.size} images "
                             "and keep some for training")
    perm = np.random.default_rng(seed).permutation(images)
    test_img, val_img = perm[:n_test_images], perm[n_test_images:n_test_images + n_val_images]
    idx = np.arange(frame.size, dtype=np.int64)
    test, val = np.isin(frame, test_img), np.isin(frame, val_img)
    return Split(train=idx[~test & ~val], val=idx[val], test=idx[test])


def split_problem(n_repeats: int, *, n_val: int, n_test: int) -> str | None:
    """Why ``n_repeats`` movie repeats cannot be split into train / validation / test, or None when they can.

    Training needs at least one repeat, validation (``--val-repeats``) and test (``--test-repeats``) at
    least one each. The message names the CLI options and values that would work.

    Examples
    --------
    >>> split_problem(5, n_val=2, n_test=2) is None
    True
    >>> split_problem(4, n_val=2, n_test=2)  # doctest: +NORMALIZE_WHITESPACE
    '4 repeats cannot give 2 validation + 2 test repeats and at least one training repeat: pass --val-repeats and
    --test-repeats that add up to at most 3, e.g. --val-repeats 1 --test-repeats 1'
    """
    n_repeats, n_val, n_test = int(n_repeats), int(n_val), int(n_test)
    if n_val < 1 or n_test < 1:
        return "--val-repeats and --test-repeats must be at least 1"
    if n_repeats >= n_val + n_test + 1:
        return None
    head = (f"{n_repeats} repeat{'' if n_repeats == 1 else 's'} cannot give {n_val} validation + {n_test} test "
            "repeats and at least one training repeat")
    if n_repeats < 3:
        return f"{head}: at least 3 repeats are needed (1 training, 1 validation, 1 test)"
    return (f"{head}: pass --val-repeats and --test-repeats that add up to at most {n_repeats - 1}, e.g. "
            "--val-repeats 1 --test-repeats 1")


def check_split(n_repeats: int, *, n_val: int, n_test: int, source: str) -> None:
    """Raise `NeurratorError` (naming ``source`` and the CLI options to change) unless the split works.

    Examples
    --------
    >>> check_split(12, n_val=2, n_test=2, source="ses.nwb")
    >>> check_split(2, n_val=1, n_test=1, source="ses.nwb")  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    neurrator.errors.NeurratorError: ses.nwb: 2 repeats cannot give 1 validation + 1 test repeats and at least one
    training repeat: at least 3 repeats are needed (1 training, 1 validation, 1 test)
    """
    problem = split_problem(n_repeats, n_val=n_val, n_test=n_test)
    if problem is not None:
        raise NeurratorError(source, problem)
