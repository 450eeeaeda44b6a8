"""Patch tokens (B, n_patches, dim) -> one sentence per frame, from a frozen narrator.

Registry (`NARRATORS`, one explicit dict):

* ``llava``: a LLaVA checkpoint (transformers ``LlavaForConditionalGeneration`` + ``AutoProcessor``;
  default ``llava-hf/llava-1.5-7b-hf``). The patch tokens replace the vision tower's output: they go
  through the model's own ``multi_modal_projector`` and are written (``masked_scatter``) into the
  image-token positions of the embedded prompt; ``generate(inputs_embeds=..., attention_mask=...)``
  writes the sentence. Greedy by default, batched with left padding, fp16 on CUDA. No monkey-patching.
* ``tiny``: the same classes with a tiny Llama, random seeded weights and a word-level tokenizer
  trained offline with ``tokenizers``; its vision tower is the ``tiny`` backbone of the same seed, so
  the tiny backbone's targets are what its projector reads. For tests and the demo (the text is
  random-looking: the weights are random).
* ``retrieval``: the paper's retrieval variant: the reference text of the nearest bank frame in patch
  space (cosine). The bank is the TRAINING frames' true patches with their references (oracle
  narrations, or the simulator's captions). Allen movies repeat, so held-out repeats show the same
  frames as the bank: a perfect prediction retrieves its own frame's reference. That is the variant the
  paper reports; `RetrievalNarrator.nearest` takes ``exclude`` for a leave-frame-out control.

`oracle_references` is the same narrator on the TRUE patches: each frame's reference narration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from neurrator.errors import NeurratorError
from neurrator.models.backbones import DEFAULT_LLAVA
from neurrator.models.backbones import build_tiny_vision_tower, tiny_vision_config

DEFAULT_PROMPT = "Describe this scene in one sentence."
IMAGE_TOKEN = "<image>"
#: LLaVA-1.5's conversation format (what llava-hf's chat template renders), used when a processor has
#: no chat template.
LLAVA15_FORMAT = "USER: {image}\n{prompt} ASSISTANT:"
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() + ': ' }}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<image>\n' }}{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] + ' ' }}{% endif %}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


@runtime_checkable
class Narrator(Protocol):
    """What every narrator provides."""

    model_id: str
    prompt: str

    def narrate(self, patches: np.ndarray) -> list[str]:
        """patches: (B, n_patches, dim) float32 -> B sentences."""
        ...


def _as_patches(patches: Any) -> np.ndarray:
    p = np.asarray(patches.detach().cpu() if hasattr(patches, "detach") else patches, dtype=np.float32)
    if p.ndim != 3:
        raise ValueError(f"patches must be (B, n_patches, dim), not {p.shape}")
    return p


# --------------------------------------------------------------------------------------- retrieval

class RetrievalNarrator:
    """The reference text of the nearest bank frame (cosine in patch space).

    Parameters
    ----------
    bank_patches
        (F, n_patches, dim) float32 true patch tokens of the training frames.
    bank_texts
        F reference texts (oracle narrations or captions), one per bank frame.
    pooling
        ``flat``: cosine of the flattened (n_patches * dim) tokens (keeps the layout; default) or
        ``mean``: cosine of the mean token.
    center
        Subtract the bank's mean frame from bank and queries before the cosine (default), as
        `neurrator.decode.fidelity.frame_identification` does: CLIP tokens share a large common component
        that otherwise dominates the cosine of a regression-to-the-mean prediction.
    device, batch_size
        Where and how many queries at a time the similarities are computed.

    Examples
    --------
    >>> bank = np.random.default_rng(0).normal(size=(3, 4, 2)).astype(np.float32)
    >>> RetrievalNarrator(bank, ["a", "b", "c"]).narrate(bank[[2, 0]] + 0.01)
    ['c', 'a']
    """

    prompt = ""

    def __init__(self, bank_patches: np.ndarray, bank_texts: Sequence[str], *, pooling: str = "flat",
                 center: bool = True, device: str = "cpu", batch_size: int = 64) -> None:
        import torch

        bank = _as_patches(bank_patches)  # no copy when already float32
        if len(bank) != len(bank_texts) or len(bank) == 0:
            raise ValueError(f"need one text per bank frame and at least one frame: {len(bank)} frames, "
                             f"{len(bank_texts)} texts")
        if pooling not in ("flat", "mean"):
            raise ValueError(f"pooling must be 'flat' or 'mean', not {pooling!r}")
        self.pooling = pooling
        self.device = device
        self.batch_size = int(batch_size)
        self.texts = list(bank_texts)
        self.shape = bank.shape[1:]
        # no normalised copy: for flat pooling the bank can be GBs (900 x 576 x 1024 float32 = 2.1 GB);
        # on CPU the tensor shares the caller's array
        self._bank = torch.from_numpy(np.ascontiguousarray(self._pool(bank))).to(device)
        self.center = bool(center)
        self._mean = self._bank.mean(0) if center else torch.zeros_like(self._bank[0])
        # |b - m|^2 = |b|^2 - 2 b.m + |m|^2, without a centred copy of the bank
        sq = self._bank.pow(2).sum(1) - 2 * (self._bank @ self._mean) + self._mean.pow(2).sum()
        self._bank_norm = sq.clamp_min(0).sqrt().clamp_min(1e-12)
        self.model_id = f"retrieval:{pooling}-{'centred-' if center else ''}cosine:{len(bank)}-frames"

    def _pool(self, p: np.ndarray) -> np.ndarray:
        return p.mean(1) if self.pooling == "mean" else p.reshape(len(p), -1)

    def nearest(self, patches: np.ndarray, *, exclude: Sequence[int] | np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """(B, n_patches, dim) -> (bank index (B,) int64, cosine (B,) float32) of the nearest bank frame.

        ``exclude[i]`` (a bank index, or -1 for none) is never returned for query i.
        """
        import torch

        p = _as_patches(patches)
        if p.shape[1:] != self.shape:
            raise ValueError(f"patches are {p.shape[1:]} per frame but the bank is {self.shape}")
        idx, sim = [], []
        for s in range(0, len(p), self.batch_size):
            q = torch.from_numpy(self._pool(p[s:s + self.batch_size])).to(self.device) - self._mean
            q = torch.nn.functional.normalize(q, dim=1)
            c = (q @ self._bank.T - (q @ self._mean)[:, None]) / self._bank_norm  # cos(q - m, b - m)
            if exclude is not None:
                ex = torch.as_tensor(np.asarray(exclude)[s:s + self.batch_size], device=self.device)
                rows = torch.nonzero(ex >= 0).flatten()
                c[rows, ex[rows]] = float("-inf")
            v, i = c.max(1)
            idx.append(i.cpu().numpy()), sim.append(v.cpu().numpy())
        if not idx:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return np.concatenate(idx).astype(np.int64), np.concatenate(sim).astype(np.float32)

    def narrate(self, patches: np.ndarray) -> list[str]:
        """(B, n_patches, dim) -> the bank texts of the nearest frames."""
        return [self.texts[i] for i in self.nearest(patches)[0]]


# ------------------------------------------------------------------------------------------- llava

def _projector(model: Any) -> Any:
    """The multi-modal projector (transformers 5: ``model.model.multi_modal_projector``; 4.x: top level)."""
    for owner in (getattr(model, "model", None), model):
        proj = getattr(owner, "multi_modal_projector", None)
        if proj is not None:
            return proj
    raise NeurratorError(type(model).__name__, "model has no multi_modal_projector: not a LLaVA model")


def _projector_in_features(model: Any) -> int:
    return int(_projector(model).linear_1.in_features)


class LlavaNarrator:
    """A frozen LLaVA that narrates patch tokens written into its image-token positions.

    Parameters
    ----------
    model
        ``LlavaForConditionalGeneration`` (eval mode, on its device and dtype).
    processor
        Its processor (``LlavaProcessor``): tokenizer, image token and chat template.
    model_id
        Recorded with every narration (hub id, local directory or ``tiny:seed<n>``).
    prompt, max_new_tokens, batch_size
        The instruction, the generation length and how many frames are generated together.
    do_sample
        False (default): greedy decoding.
    """

    def __init__(self, model: Any, processor: Any, *, model_id: str, prompt: str = DEFAULT_PROMPT,
                 max_new_tokens: int = 60, batch_size: int = 8, do_sample: bool = False) -> None:
        self.model = model.eval().requires_grad_(False)
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model_id = model_id
        self.prompt = prompt
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = int(batch_size)
        self.do_sample = bool(do_sample)
        self.image_token = getattr(processor, "image_token", None) or IMAGE_TOKEN
        self.image_token_id = int(model.config.image_token_id)
        self.dim = _projector_in_features(model)

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> Any:
        return _projector(self.model).linear_1.weight.dtype

    def prompt_text(self, n_patches: int, prompt: str | None = None) -> str:
        """The full prompt with the image token repeated ``n_patches`` times (what the processor builds)."""
        prompt = self.prompt if prompt is None else prompt
        if getattr(self.processor, "chat_template", None):
            conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
            text = self.processor.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
        else:
            text = LLAVA15_FORMAT.format(image=self.image_token, prompt=prompt)
        if text.count(self.image_token) != 1:
            raise NeurratorError(self.model_id, f"the prompt template has {text.count(self.image_token)} image "
                                 f"tokens {self.image_token!r}, expected exactly one")
        return text.replace(self.image_token, self.image_token * n_patches)

    def inputs(self, n_frames: int, n_patches: int, prompts: Sequence[str] | None = None) -> Any:
        """Tokenised prompts (left-padded): a BatchEncoding with ``input_ids`` and ``attention_mask``."""
        texts = [self.prompt_text(n_patches, p) for p in (prompts or [self.prompt] * n_frames)]
        return self.tokenizer(texts, return_tensors="pt", padding=True).to(self.device)

    def inject(self, input_ids: Any, patches: Any) -> Any:
        """Embed ``input_ids`` (B, L) and write the projected ``patches`` (B, n_patches, dim) into the
        image-token positions -> inputs_embeds (B, L, hidden)."""
        import torch

        embeds = self.model.get_input_embeddings()(input_ids)
        mask = input_ids == self.image_token_id
        if int(mask.sum()) != patches.shape[0] * patches.shape[1]:
            raise NeurratorError(self.model_id, f"{int(mask.sum())} image tokens in the prompts for "
                                 f"{patches.shape[0] * patches.shape[1]} patch tokens")
        with torch.no_grad():
            feats = _projector(self.model)(patches.to(self.device, self.dtype)).to(embeds.dtype)
        return embeds.masked_scatter(mask.unsqueeze(-1).expand_as(embeds), feats)

    def generate_ids(self, patches: np.ndarray, *, prompts: Sequence[str] | None = None) -> list[list[int]]:
        """(B, n_patches, dim) -> the generated token ids per frame (prompt excluded, padding removed)."""
        import torch

        p = _as_patches(patches)
        if p.shape[2] != self.dim:
            raise NeurratorError(self.model_id, f"patch tokens have dim {p.shape[2]} but the projector expects "
                                 f"{self.dim}: targets must come from this model's vision tower")
        out: list[list[int]] = []
        pad = self.tokenizer.pad_token_id
        for s in range(0, len(p), self.batch_size):
            chunk = torch.from_numpy(p[s:s + self.batch_size])
            enc = self.inputs(len(chunk), chunk.shape[1], None if prompts is None else prompts[s:s + len(chunk)])
            with torch.no_grad():
                embeds = self.inject(enc["input_ids"], chunk)
                gen = self.model.generate(inputs_embeds=embeds, attention_mask=enc["attention_mask"],
                                          max_new_tokens=self.max_new_tokens, do_sample=self.do_sample,
                                          num_beams=1, pad_token_id=pad)
            for row in gen.tolist():
                out.append(_strip_after_eos(row, self.tokenizer.eos_token_id, pad))
        return out

    def narrate(self, patches: np.ndarray) -> list[str]:
        """(B, n_patches, dim) float32 predicted (or true) patch tokens -> B sentences."""
        ids = self.generate_ids(patches)
        return [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]


def _strip_after_eos(row: list[int], eos: int | None, pad: int | None) -> list[int]:
    out = []
    for t in row:
        if eos is not None and t == eos:
            break
        out.append(t)
    while out and pad is not None and out[-1] == pad:
        out.pop()
    return out


def _torch_dtype(dtype: Any, device: str) -> Any:
    import torch

    if dtype is None:
        return torch.float16 if str(device).startswith("cuda") else torch.float32
    if isinstance(dtype, str):
        try:
            return {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16,
                    "bf16": torch.bfloat16, "float32": torch.float32, "fp32": torch.float32}[dtype]
        except KeyError:
            raise ValueError(f"dtype must be float16, bfloat16 or float32, not {dtype!r}") from None
    return dtype


def _load_llava(*, device: str, seed: int, dtype: Any = None, prompt: str = DEFAULT_PROMPT,
                max_new_tokens: int = 60, batch_size: int = 8, model_id: str = DEFAULT_LLAVA,
                local_files_only: bool = False, **kw: Any) -> LlavaNarrator:
    """A LLaVA checkpoint from a hub id (downloaded once into the Hugging Face cache) or a local folder."""
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    if kw:
        raise TypeError(f"unexpected arguments for the llava narrator: {', '.join(kw)}")
    is_dir = Path(model_id).expanduser().is_dir()
    if is_dir:
        where = str(Path(model_id).expanduser())
        if not (Path(where) / "config.json").is_file():
            raise NeurratorError(model_id, "no config.json in this folder: not a LLaVA checkpoint folder (save one "
                                 "with model.save_pretrained and processor.save_pretrained, or pass a hub id)")
    else:
        from huggingface_hub import constants

        where = f"the Hugging Face cache {constants.HF_HUB_CACHE}"
    try:
        processor = AutoProcessor.from_pretrained(model_id, local_files_only=local_files_only)
        model = LlavaForConditionalGeneration.from_pretrained(model_id, dtype=_torch_dtype(dtype, device),
                                                              local_files_only=local_files_only)
    except (OSError, ValueError) as err:
        raise NeurratorError(model_id, f"LLaVA weights not found in {where} ({type(err).__name__}); download them "
                             f"once with network access (`hf download {model_id}`, or "
                             f"LlavaForConditionalGeneration.from_pretrained) or pass a local folder "
                             "holding config.json, the processor files and the safetensors weights") from err
    torch.manual_seed(seed)  # only matters with do_sample; greedy decoding is deterministic
    return LlavaNarrator(model.to(device), processor, model_id=model_id, prompt=prompt,
                         max_new_tokens=max_new_tokens, batch_size=batch_size)


# -------------------------------------------------------------------------------------------- tiny

#: A small built-in corpus for the tiny tokenizer (scene words plus the simulator's caption vocabulary).
TINY_CORPUS: tuple[str, ...] = (
    "USER: ASSISTANT: Describe this scene in one sentence.",
    "a bright circle on the left, moving right",
    "a dark square on the right, moving left",
    "a bright bar at the top, still",
    "a dark grating at the bottom, moving right",
    "a grating in the centre, still",
    "a dog runs across a green field under a blue sky",
    "two people sit at a table in a kitchen",
    "a red car drives down a city street at night",
    "waves crash onto a rocky beach under a cloudy sky",
    "a man in a black coat walks past a tall building",
    "a woman looks at the camera in a dark room",
    "the image shows a black and white picture of a person",
    "a close up of a face with bright light and shadows",
    "trees and grass move in the wind near a house",
    "an object is moving across the screen from left to right",
    "there is a small white shape on a grey background",
)


def build_tiny_tokenizer(corpus: Sequence[str] = ()) -> Any:
    """A word-level fast tokenizer trained offline on `TINY_CORPUS` (+ ``corpus``), with LLaVA's specials.

    Special tokens: ``<unk>`` ``<s>`` (BOS, prepended) ``</s>`` (EOS) ``<pad>`` ``<image>``.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>", IMAGE_TOKEN]
    tk = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tk.train_from_iterator([*TINY_CORPUS, *corpus], trainer=trainers.WordLevelTrainer(special_tokens=specials))
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                      special_tokens=[("<s>", tk.token_to_id("<s>"))])
    tk.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                  pad_token="<pad>", padding_side="left")
    tok.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    return tok


def build_tiny_llava(*, seed: int, corpus: Sequence[str] = (), hidden_size: int = 64, layers: int = 2,
                     initializer_range: float = 0.2) -> tuple[Any, Any]:
    """(LlavaForConditionalGeneration, LlavaProcessor) with random seeded weights, built in code.

    The vision tower is `neurrator.models.backbones.build_tiny_vision_tower(seed)` (the ``tiny`` backbone of the
    same seed); the projector and the Llama text model are drawn after ``torch.manual_seed(seed + 1)``.
    ``initializer_range`` is larger than Llama's 0.02 so that the random model's greedy output depends
    visibly on the image features. The global RNG state is restored.
    """
    import torch
    from transformers import CLIPImageProcessor, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor


    tok = build_tiny_tokenizer(corpus)
    vcfg = tiny_vision_config()
    tcfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                       num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                       max_position_embeddings=512, initializer_range=initializer_range,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    cfg = LlavaConfig(vision_config=vcfg.to_dict(), text_config=tcfg.to_dict(),
                      image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN),
                      image_seq_length=(vcfg.image_size // vcfg.patch_size) ** 2, projector_hidden_act="gelu",
                      vision_feature_layer=-2, vision_feature_select_strategy="default")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        model = LlavaForConditionalGeneration(cfg)
    tower = build_tiny_vision_tower(seed)
    model.model.vision_tower.load_state_dict(tower.state_dict())
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    image_processor = CLIPImageProcessor(size={"shortest_edge": vcfg.image_size},
                                         crop_size={"height": vcfg.image_size, "width": vcfg.image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=vcfg.patch_size,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=TINY_CHAT_TEMPLATE, image_token=IMAGE_TOKEN)
    return model.eval(), processor


def _load_tiny(*, device: str, seed: int, dtype: Any = None, prompt: str = DEFAULT_PROMPT,
               max_new_tokens: int = 60, batch_size: int = 8, corpus: Sequence[str] = (), **kw: Any
               ) -> LlavaNarrator:
    model, processor = build_tiny_llava(seed=seed, corpus=corpus, **kw)
    model = model.to(device=device, dtype=_torch_dtype(dtype or "float32", device))  # random weights: fp32
    return LlavaNarrator(model, processor, model_id=f"tiny:seed{seed}", prompt=prompt,
                         max_new_tokens=max_new_tokens, batch_size=batch_size)


def _load_retrieval(*, device: str, seed: int, dtype: Any = None, prompt: str = DEFAULT_PROMPT,
                    max_new_tokens: int = 60, batch_size: int = 64, bank_patches: np.ndarray | None = None,
                    bank_texts: Sequence[str] | None = None, pooling: str = "flat", center: bool = True
                    ) -> RetrievalNarrator:
    if bank_patches is None or bank_texts is None:
        raise NeurratorError("retrieval", "the retrieval narrator needs bank_patches (training frames' true patch "
                             "tokens) and bank_texts (their references)")
    return RetrievalNarrator(bank_patches, bank_texts, pooling=pooling, center=center, device=device,
                             batch_size=batch_size)


#: The narrator registry: name -> loader(device=, seed=, dtype=, prompt=, max_new_tokens=, batch_size=, **kw).
NARRATORS: dict[str, Callable[..., Narrator]] = {
    "llava": _load_llava,
    "tiny": _load_tiny,
    "retrieval": _load_retrieval,
}


def load_narrator(name: str, *, device: str, seed: int, dtype: Any = None, prompt: str = DEFAULT_PROMPT,
                  max_new_tokens: int = 60, batch_size: int = 8, **kw: Any) -> Narrator:
    """Build a narrator from the registry.

    Parameters
    ----------
    name
        ``llava`` (optionally ``llava:<hub id or folder>``), ``tiny`` or ``retrieval``.
    device, seed
        Torch device; seed of random weights (``tiny``) and sampling.
    dtype
        Model dtype; default float16 on CUDA, float32 on CPU.
    prompt, max_new_tokens, batch_size
        Instruction, generation length, frames per generate call.
    **kw
        ``llava``: ``model_id``, ``local_files_only``; ``tiny``: ``corpus``, ``hidden_size``, ``layers``;
        ``retrieval``: ``bank_patches``, ``bank_texts``, ``pooling``, ``center``.

    Examples
    --------
    >>> n = load_narrator("tiny", device="cpu", seed=0, max_new_tokens=5)   # doctest: +SKIP
    >>> n.narrate(np.zeros((1, 64, 64), np.float32))                         # doctest: +SKIP
    """
    base, _, arg = name.partition(":")
    if base not in NARRATORS:
        raise NeurratorError(name, f"unknown narrator; valid names: {', '.join(NARRATORS)}")
    if arg:
        if base != "llava":
            raise NeurratorError(name, f"only llava takes an argument (llava:<hub id or folder>), not {base}")
        kw["model_id"] = arg
    return NARRATORS[base](device=device, seed=seed, dtype=dtype, prompt=prompt, max_new_tokens=max_new_tokens,
                           batch_size=batch_size, **kw)


def oracle_references(narrator: Narrator, true_patches: np.ndarray) -> list[str]:
    """The same narrator on the TRUE frames' patch tokens (B, n_patches, dim): each frame's reference."""
    return narrator.narrate(true_patches)


__all__ = ["NARRATORS", "Narrator", "RetrievalNarrator", "LlavaNarrator", "load_narrator", "oracle_references",
           "build_tiny_llava", "build_tiny_tokenizer", "DEFAULT_PROMPT"]
