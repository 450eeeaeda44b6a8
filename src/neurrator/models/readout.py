"""A trained `SpikeEncoder` + its validation windows -> the output blend that keeps ridge's regression
fit and the encoder's identification (issue 28.2).

The encoder's contrastive training makes its predictions discriminative (frame identification above
ridge) but pulls them off the conditional mean, so their centred patch cosine falls below the closed-form
ridge's. After training, `fit_blend` scores a small family of outputs on the validation repeats (all
units), each a function of the trained encoder's output y and the closed-form ridge r of the same units:

- ``r + beta (y - r)``, beta in `BETAS` (beta = 0: ridge itself, 1: the encoder);
- then a share gamma in `GAMMAS` of a soft retrieval over the training frames' target maps, weights
  ``softmax(cos(output - mean map, map - mean map) / tau)``, tau in `TAUS` (the encoder's similarity to
  the frames it was trained on, as CEBRA's or any kNN decoder reads an embedding).

- when the encoder keeps its training windows (`EncoderConfig.window_bank`), then a share w in
  `KNN_WEIGHTS` of the kNN over them (`SpikeEncoder.window_knn`: the k in `KNN_KS` training windows
  nearest by cosine of z-scored 4-bin features on exactly the units given vote with their frames' maps),
  chosen after the first three on the same validation windows.

The chosen blend has a validation centred patch cosine at least ridge's (beta = 0, gamma = 0 always
qualifies, so the blend cannot make validation worse than ridge on either criterion) and, among those,
the best identification (the mean of top-1, top-5 and top-30 among all frames but held-out ones,
centred maps). With a window bank the choice is made once per subset size (`BLEND_SIZES` and all
units, each on `BLEND_DRAWS` random draws of that size taking turns over the validation windows) into
``blend_table``, and a subset decodes through the row nearest its size in log n: on fewer units the
attention path and the ridge are weaker and the kNN relatively stronger, so one all-unit choice left a
subset gap (issue 28.1).
The choice sits in the model's buffers, so every caller (subsets, checkpoints, the pipeline) decodes
through it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["BETAS", "BLEND_DRAWS", "GAMMAS", "KNN_KS", "KNN_WEIGHTS", "MAX_BANK_BYTES", "MAX_GRID_BYTES",
           "MAX_WINDOWS", "MIN_WINDOW_BANK", "TAUS", "bank_fits", "bank_plan", "candidate_rows", "fit_blend",
           "fit_subset_blend", "retrieval_keys"]

BETAS = (0.0, 0.25, 0.5, 0.75, 1.0)
GAMMAS = (0.0, 0.5, 1.0)
TAUS = (0.001, 0.003, 0.01, 0.03)
#: Neighbours and shares of the kNN over training windows (`SpikeEncoder.window_knn`), the blend's last stage.
KNN_KS = (1, 5, 10, 20)
KNN_WEIGHTS = (0.25, 0.5, 0.75, 1.0)
#: Random draws of each subset size the per-size blend is chosen on (the validation windows take turns).
BLEND_DRAWS = 3
#: Validation windows the blend is chosen on (evenly spaced when there are more).
MAX_WINDOWS = 1024
#: Fewer validation windows when their (windows, n_patches, dim) float32 outputs would exceed this (the choice
#: holds several such arrays at once: 227 windows at CLIP ViT-L/14-336's 576 x 1024, all 1024 below 128 x 1024).
MAX_GRID_BYTES = 512 * 2**20
#: Largest retrieval bank (training frames x n_patches x dim float32) an encoder keeps (and stores).
MAX_BANK_BYTES = 64 * 2**20


def bank_fits(n_frames: int, n_patches: int, dim: int) -> bool:
    """Whether ``n_frames`` target maps of (n_patches, dim) fit `MAX_BANK_BYTES`.

    >>> bank_fits(900, 64, 64), bank_fits(900, 576, 1024)
    (True, False)
    """
    return 0 < 4 * int(n_frames) * int(n_patches) * int(dim) <= MAX_BANK_BYTES


#: Fewest training windows worth a kNN over them (fewer fit `MAX_BANK_BYTES`: no window bank).
MIN_WINDOW_BANK = 256


def bank_plan(n_frames: int, n_patches: int, dim: int, linear_rank: int, n_windows: int, n_features: int,
              knn: bool = True, count_bytes: int = 1) -> tuple[int, int, int]:
    """(bank_frames, bank_rank, window_bank) a blend keeps within `MAX_BANK_BYTES` each: the ``n_frames``
    training maps in full when they fit, else their ``linear_rank`` coefficients in the linear basis
    (``bank_rank``); with ``knn``, the ``n_windows`` training windows' pooled counts (``n_features`` = units x
    pooled bins each, ``count_bytes`` each: `EncoderConfig.window_dtype`), or as many evenly spaced ones as fit
    (at least `MIN_WINDOW_BANK`).

    >>> bank_plan(900, 16, 64, 256, 9000, 480), bank_plan(900, 576, 1024, 64, 18 * 900, 2000 * 5)
    ((900, 0, 9000), (900, 64, 6710))
    """
    if bank_fits(n_frames, n_patches, dim):
        frames, rank = int(n_frames), 0
    elif linear_rank and 0 < 4 * int(n_frames) * int(linear_rank) <= MAX_BANK_BYTES:
        frames, rank = int(n_frames), int(linear_rank)
    else:
        return 0, 0, 0
    wins = min(int(n_windows), MAX_BANK_BYTES // max(1, count_bytes * int(n_features))) if (knn and linear_rank) else 0
    return frames, rank, (wins if wins >= min(MIN_WINDOW_BANK, int(n_windows)) else 0)


def retrieval_keys(bank: torch.Tensor, mean: torch.Tensor, basis: torch.Tensor | None = None):
    """(values, keys) of a soft retrieval over a bank: for (F', n_patches, dim) maps, the maps centred on
    ``mean`` and flattened, and their unit-norm rows; for (F', r) coefficients of the centred maps
    ``bank @ basis`` (``basis`` (r, n_patches * dim)), the coefficients and the same rows divided by the norms
    of the maps they stand for (from the basis's Gram matrix), so that a query projected onto ``basis`` meets
    them with the maps' cosine."""
    if basis is None:
        centred = (bank - mean).flatten(1)
        return centred, F.normalize(centred, dim=1)
    norms = ((bank @ (basis @ basis.T)) * bank).sum(1).clamp_min(1e-24).sqrt()
    return bank, bank / norms[:, None]


def _candidates(targets: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """(F, n_patches * dim) unit-norm centred maps of the identification candidates."""
    return F.normalize((targets - mean).flatten(1), dim=1)


def _scores(pred: torch.Tensor, frame: torch.Tensor, targets: torch.Tensor, mean: torch.Tensor) -> tuple[float, float]:
    """(centred patch cosine, identification: mean of top-1, top-5 and top-30) of (P, n_patches, dim)
    predictions of frames ``frame``, ranked among all frames by the cosine of centred maps."""
    ccos = float(F.cosine_similarity(pred - mean, targets[frame] - mean, dim=-1).mean())
    sim = F.normalize((pred - mean).flatten(1), dim=1) @ _candidates(targets, mean).T  # (P, F)
    rank = (sim > sim.gather(1, frame[:, None])).sum(1)
    return ccos, float(sum((rank < k).float().mean() for k in (1, 5, 30)) / 3)


def _ranks(sim: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
    return (sim > sim.gather(1, frame[:, None])).sum(1)


def _ident(rank: torch.Tensor) -> float:
    return float(sum((rank < k).float().mean() for k in (1, 5, 30)) / 3)


def _mix(a, b, t, tt, aC, bC, frame, shares) -> dict:
    """share s -> `_scores` of the centred output ``(1 - s) a + s b``, from inner products: a, b (P, n_p, d)
    centred outputs, t their frames' centred maps and tt = (t * t).sum(-1); aC, bC (P, F) products of a and b
    with the unit-norm centred candidates (a row's scale does not change its ranks)."""
    at, aa = (a * t).sum(-1), (a * a).sum(-1)
    bt, bb, ab = (b * t).sum(-1), (b * b).sum(-1), (a * b).sum(-1)
    out = {}
    for s in shares:
        num = (1 - s) * at + s * bt
        den2 = (1 - s) ** 2 * aa + 2 * s * (1 - s) * ab + s ** 2 * bb
        out[s] = (float((num / (den2 * tt).clamp_min(1e-16).sqrt()).mean()), _ident(_ranks((1 - s) * aC + s * bC, frame)))
    return out


def _grid(y, r, frame, targets, mean, bank, betas, basis=None, cand=None) -> dict:
    """`_scores` of every candidate (beta, gamma, tau), from inner products: a candidate's centred output is a
    combination of the centred encoder output, ridge and retrieval, so its similarity to every frame and its
    per-patch cosines follow from a few matrix products (`_mix`). ``bank``: (F', n_patches, dim) maps, or with
    ``basis`` (r, n_patches * dim) (F', r) coefficients of the centred maps ``bank @ basis``, which are then
    never materialised (at 576 x 1024 they and their normalised copy would be 2 x 2.1 GB). ``cand``: the
    unit-norm centred candidates (`_candidates`), when the caller has them."""
    Yc, Rc, t = y - mean, r - mean, targets[frame] - mean  # (P, n_p, d)
    cand = _candidates(targets, mean) if cand is None else cand  # (F, D)
    YC, RC = Yc.flatten(1) @ cand.T, Rc.flatten(1) @ cand.T
    tt = (t * t).sum(-1)
    results = {}
    if bank is not None:  # with a basis, Bc and Bn hold (F', r) coefficient rows
        Bc, Bn = retrieval_keys(bank, mean, basis)
        Yq, Rq = (Yc.flatten(1), Rc.flatten(1)) if basis is None else (Yc.flatten(1) @ basis.T, Rc.flatten(1) @ basis.T)
        BcC = Bc @ cand.T if basis is None else Bc @ (basis @ cand.T)
        YB, RB = Yq @ Bn.T, Rq @ Bn.T
    for beta in betas:
        base = (1 - beta) * Rc + beta * Yc
        baseC = (1 - beta) * RC + beta * YC
        results[(beta, 0.0, TAUS[0])] = _mix(base, base, t, tt, baseC, baseC, frame, (0.0,))[0.0]
        if bank is None:
            continue
        norm = base.flatten(1).norm(dim=1, keepdim=True).clamp_min(1e-12)
        baseB = ((1 - beta) * RB + beta * YB) / norm
        for tau in TAUS:
            w = torch.softmax(baseB / tau, dim=1)  # (P, F')
            S = (w @ Bc if basis is None else (w @ Bc) @ basis).view_as(base)  # retrieval output, centred
            for gamma, sc in _mix(base, S, t, tt, baseC, w @ BcC, frame, GAMMAS[1:]).items():
                results[(beta, gamma, tau)] = sc
    return results


@torch.no_grad()
def fit_blend(model, windows, frame: torch.Tensor, targets: torch.Tensor, bank: torch.Tensor | None,
              seed: int = 0) -> dict:
    """Choose and set the blend (model buffers ``blend_beta``, ``blend_gamma``, ``blend_tau``, ``bank``, and
    with a window bank ``blend_table``: one choice per subset size, on `BLEND_DRAWS` random draws of it).

    Parameters
    ----------
    model
        A trained `SpikeEncoder` with ``config.blend`` (eval mode).
    windows
        Callable ``(rows (B,) long) -> (counts (B, W, N), unit_idx (N,))``: those validation windows, all units
        (at most `MAX_WINDOWS`, and within `MAX_GRID_BYTES`, evenly spaced, are used).
    frame
        (P,) long movie frame of each validation window.
    targets
        (F, n_patches, dim) float32 target maps of all frames (the identification candidates).
    bank
        (F', n_patches, dim) training frames' maps for the retrieval (None: no retrieval); kept by
        `SpikeEncoder.set_bank` (as coefficients when the model has ``bank_rank``).
    seed
        Draws the subsets of the per-size choices.

    Returns
    -------
    dict with the chosen ``beta``, ``gamma``, ``tau``, ``knn_k``, ``knn_w`` (all units) and validation
    ``centred_patch_cosine`` / ``identification`` of the choice, of ridge and of the plain encoder; with a
    window bank also ``by_size``: {str(n units): the same dict}.
    """
    if bank is not None and model.config.bank_frames:
        model.set_bank(bank)
        bank = model.bank  # choose on what the blend will retrieve: with bank_rank the maps' projections
    model.blend_beta.fill_(1.0)
    model.blend_gamma.fill_(0.0)
    keep, ref = _choice_data(model, frame, targets, bank)
    if not model.has_window_bank:
        out = _fit_one(model, windows, keep, frame[keep], ref, [None])
        model.blend_beta.fill_(out["beta"])
        model.blend_gamma.fill_(out["gamma"])
        model.blend_tau.fill_(out["tau"])
        return out
    table = model.blend_table
    table[:, 1:] = torch.tensor([1.0, 0.0, 0.01, 0.0, 0.0], dtype=table.dtype, device=table.device)
    gen = torch.Generator().manual_seed(int(seed) + 104729)
    N = model.config.n_units
    by_size = {}
    for row in range(len(table)):
        n = int(round(math.exp(float(table[row, 0]))))
        subs = [None] if n >= N else [torch.randperm(N, generator=gen)[:n].sort().values
                                      for _ in range(BLEND_DRAWS)]
        res = by_size[str(n)] = _fit_one(model, windows, keep, frame[keep], ref, subs)
        table[row, 1:] = torch.tensor([res["beta"], res["gamma"], res["tau"], res["knn_k"], res["knn_w"]],
                                      dtype=table.dtype)
    out = dict(by_size[str(N)])
    model.blend_beta.fill_(out["beta"])
    model.blend_gamma.fill_(out["gamma"])
    model.blend_tau.fill_(out["tau"])
    out["by_size"] = by_size
    return out


def candidate_rows(n_frames: int, holdout, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The blend's identification candidates: every frame but the held-out ones (their maps never inform the
    model). -> (the candidate frames (F',) long; the row of each of ``frames`` among them), on ``frames``'
    device. Training's choice and `neurrator.models.subset_blend.calibrate_blend` both rank among these."""
    cand = torch.from_numpy(np.setdiff1d(np.arange(n_frames), np.asarray(holdout, np.int64))).to(frames.device)
    return cand, torch.searchsorted(cand, frames)


def _choice_data(model, frame: torch.Tensor, targets: torch.Tensor, bank: torch.Tensor | None) -> tuple:
    """The validation windows a choice reads (at most `MAX_WINDOWS` and within `MAX_GRID_BYTES`, evenly spaced)
    and what every choice shares: the targets, the candidates' unit-norm centred rows (2.1 GB at 576 x 1024),
    the bank as kept and a coefficient bank's basis."""
    n_keep = min(len(frame), MAX_WINDOWS, max(64, MAX_GRID_BYTES // (4 * targets[0].numel())))
    keep = torch.linspace(0, len(frame) - 1, n_keep, device=frame.device).round().long()
    targets = targets.float()
    return keep, (targets, _candidates(targets, model.target_mean.float()), bank,
                  model.bank_basis().float() if (bank is not None and model.config.bank_rank) else None)


@torch.no_grad()
def fit_subset_blend(model, windows, frame: torch.Tensor, targets: torch.Tensor) -> dict:
    """`fit_blend`'s choice made for one unit subset (the units ``windows`` returns), on validation windows of
    exactly these units, with the bank the model keeps; sets nothing (`neurrator.models.subset_blend`).

    ``windows``: callable ``(rows (B,) long) -> (counts (B, W, n), unit_idx (n,))``; ``frame``, ``targets`` as
    in `fit_blend`. Returns the same dict as `fit_blend` for one size (without ``by_size``), with the
    ``n_windows`` read."""
    bank = model.bank if model.config.bank_frames else None
    keep, ref = _choice_data(model, frame, targets, bank)
    return {**_fit_one(model, windows, keep, frame[keep], ref, [None]), "n_windows": len(keep)}


def _fit_one(model, windows, keep, frame, ref: tuple, subs: list) -> dict:
    """One blend choice on the validation windows ``keep``; blocks of 128 windows in turn read the unit
    subsets ``subs`` (None: all units), so one choice serves several draws of a size. ``ref``: (targets,
    their unit-norm centred rows, the bank as kept, its basis or None)."""
    targets, cand, bank, basis = ref
    gammas = GAMMAS if (bank is not None and model.config.bank_frames) else (0.0,)
    betas = BETAS if (model.has_subset_ridge and float(model.lin_alpha) > 0) else (1.0,)
    ys, rs, chunks = [], [], []
    for c, i in enumerate(range(0, len(keep), 128)):
        x, units = windows(keep[i : i + 128])
        sub = subs[c % len(subs)]
        if sub is not None:
            x, units = x[..., sub.to(x.device)], units[sub.to(units.device)]
        ys.append(model(x, units, blend=False).float())
        rs.append(model.ridge_tokens(x, units).float() if betas != (1.0,) else ys[-1])
        chunks.append((x, units))
    mean = model.target_mean.float()
    results = _grid(torch.cat(ys), torch.cat(rs), frame, targets, mean, bank.float() if len(gammas) > 1 else None,
                    betas, basis, cand)
    floor = results[(0.0, 0.0, TAUS[0])][0] if (0.0, 0.0, TAUS[0]) in results else -np.inf
    ok = {k: v for k, v in results.items() if v[0] >= floor - 1e-9}
    best = max(ok, key=lambda k: (ok[k][1], ok[k][0]))
    plain = results.get((1.0, 0.0, TAUS[0]))
    ridge = results.get((0.0, 0.0, TAUS[0]))
    out = {"beta": best[0], "gamma": best[1], "tau": best[2], "knn_k": 0, "knn_w": 0.0,
           "centred_patch_cosine": results[best][0], "identification": results[best][1],
           "encoder": None if plain is None else list(plain), "ridge": None if ridge is None else list(ridge)}
    if model.has_window_bank and len(gammas) > 1:
        out.update(_fit_knn(model, chunks, torch.cat(ys), frame, (targets, cand), mean, floor, results[best], best))
    return out


def _fit_knn(model, chunks, y, frame, ref: tuple, mean, floor: float, chosen: tuple[float, float], params) -> dict:
    """Second stage: a share ``w`` in `KNN_WEIGHTS` of `SpikeEncoder.window_knn` with k in `KNN_KS` on top of the
    chosen blend ``params`` (beta, gamma, tau), kept where it beats the blend's identification with the cosine
    still at least ridge's. ``ref``: (targets, their unit-norm centred rows)."""
    targets, cand = ref
    blended, near = [], {k: [] for k in KNN_KS}
    j = 0
    beta, gamma, tau = params
    for x, units in chunks:
        blended.append(model.blend_output(y[j : j + len(x)], x, units, beta=beta, gamma=gamma, tau=tau,
                                          knn_w=0.0).float())
        rows = model.win_row[model.window_neighbours(x, units, max(KNN_KS))]  # one search serves every k
        for k in KNN_KS:
            near[k].append(model.bank_mean(rows[:, :k]).float())
        j += len(x)
    b, t = torch.cat(blended) - mean, targets[frame] - mean  # centred
    bC, tt = b.flatten(1) @ cand.T, (t * t).sum(-1)
    best, best_score = (0, 0.0), chosen
    for k in KNN_KS:
        nk = torch.cat(near[k]) - mean
        for w, sc in _mix(b, nk, t, tt, bC, nk.flatten(1) @ cand.T, frame, KNN_WEIGHTS).items():
            if sc[0] >= floor - 1e-9 and (sc[1], sc[0]) > (best_score[1], best_score[0]):
                best, best_score = (k, w), sc
    return {"knn_k": best[0], "knn_w": best[1], "centred_patch_cosine": best_score[0],
            "identification": best_score[1]}
