"""References and the retrieval bank: the bank comes from training frames alone (issue 14.1)."""

import numpy as np

from neurrator.decode.references import bank_frames, caption_references, oracle_references


class _Echo:
    """A generator whose narration of a frame's patches names the frame (patches hold the frame id)."""

    model_id = "echo"

    def __init__(self):
        self.calls = []

    def narrate(self, patches):
        self.calls.append(len(patches))
        return [f"frame {int(p[0, 0])}" for p in patches]


def _targets(n):
    return np.arange(n, dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)


def test_oracle_bank_does_not_depend_on_the_narrated_frames():
    targets = _targets(900)
    train = np.arange(900)
    a = oracle_references(_Echo(), targets, train, narrated_frames=np.array([5, 301, 777]))
    b = oracle_references(_Echo(), targets, train, narrated_frames=np.array([11, 12, 13, 600]))
    np.testing.assert_array_equal(a.bank_frames, b.bank_frames)
    assert a.bank_texts == b.bank_texts
    assert not set(a.bank_frames.tolist()) & {5, 301, 777}
    # every narrated frame still has its reference, written from its own true patches
    assert a.by_frame[301] == "frame 301" and b.by_frame[600] == "frame 600"
    assert set(a.naming_texts) == set(a.bank_frames.tolist())


def test_bank_frames_is_an_even_subsample_of_training_frames():
    assert bank_frames(np.array([3, 1, 2, 2, 0]), max_frames=2).tolist() == [0, 2]
    assert len(bank_frames(np.arange(900))) == 225


def test_caption_references_use_another_paraphrase_than_the_bank():
    captions = ["a bright car", "a dim circle", "a car moving"]
    variants = [[c, c.upper()] for c in captions]
    refs = caption_references(captions, np.array([0, 2]), variants)
    assert refs.bank_texts == ["a bright car", "a car moving"]
    assert refs.by_frame[1] == "A DIM CIRCLE"
    assert refs.naming_texts == {0: "a bright car", 2: "a car moving"}
    plain = caption_references(captions, np.array([0, 1, 2]))
    assert plain.by_frame[1] == "a dim circle"
