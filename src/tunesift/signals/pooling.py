"""Sentence-encoder pooling as sentence-transformers configures it per model.

A sentence-transformers model directory names its pooling in ``modules.json`` (the module of type
``...Pooling`` and its folder, usually ``1_Pooling``) and that folder's ``config.json``
(``pooling_mode_cls_token``, ``pooling_mode_mean_tokens``, ...).  Several modes concatenate in the
order sentence-transformers uses; a key left out takes the library's constructor default (mean on,
the others off).  A directory without these files is pooled by mean, as before.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..data.errors import TunesiftError

# sentence-transformers' concatenation order, and each flag's default when the config omits it
MODES = ("cls", "max", "mean", "mean_sqrt_len", "weightedmean", "lasttoken")
_KEYS = {"cls": ("pooling_mode_cls_token", False), "max": ("pooling_mode_max_tokens", False),
         "mean": ("pooling_mode_mean_tokens", True), "mean_sqrt_len": ("pooling_mode_mean_sqrt_len_tokens", False),
         "weightedmean": ("pooling_mode_weightedmean_tokens", False), "lasttoken": ("pooling_mode_lasttoken", False)}
_BY_NAME = {"cls": "cls", "max": "max", "mean": "mean", "mean_sqrt_len_tokens": "mean_sqrt_len",
            "weightedmean": "weightedmean", "lasttoken": "lasttoken"}


def parse_pooling(spec: str) -> tuple[str, ...]:
    """``"cls"`` or ``"cls+mean"`` (our spelling of several modes) -> modes in concatenation order."""
    asked = [s.strip() for s in spec.split("+") if s.strip()]
    bad = [s for s in asked if s not in MODES]
    if bad or not asked:
        raise TunesiftError(f"pooling must be one or more of {', '.join(MODES)} joined by '+', got {spec!r}")
    return tuple(m for m in MODES if m in asked)


def pooling_config(path: str | Path) -> tuple[str, ...] | None:
    """The pooling a sentence-transformers directory declares, or None where it declares none."""
    root = Path(path)
    folder = None
    modules = root / "modules.json"
    if modules.is_file():
        for mod in json.loads(modules.read_text()):
            if str(mod.get("type", "")).endswith(".Pooling"):
                folder = root / mod.get("path", "")
                break
    elif (root / "1_Pooling" / "config.json").is_file():
        folder = root / "1_Pooling"
    if folder is None or not (folder / "config.json").is_file():
        return None
    cfg = json.loads((folder / "config.json").read_text())
    if cfg.get("pooling_mode"):   # the string form overrides every flag
        name = str(cfg["pooling_mode"]).lower()
        if name not in _BY_NAME:
            raise TunesiftError(f"{folder / 'config.json'}: unknown pooling_mode {name!r}")
        return (_BY_NAME[name],)
    modes = tuple(m for m in MODES if cfg.get(_KEYS[m][0], _KEYS[m][1]))
    if not modes:
        raise TunesiftError(f"{folder / 'config.json'} turns every pooling mode off")
    return modes


def pool(hidden, mask, modes: tuple[str, ...]):
    """Sentence vectors from token states ``hidden`` [batch, seq, dim] and ``mask`` [batch, seq]."""
    import torch
    m = mask.unsqueeze(-1).to(hidden.dtype)
    out = []
    for mode in modes:
        if mode == "cls":
            out.append(hidden[:, 0])
        elif mode == "max":
            out.append(hidden.masked_fill(m == 0, -1e9).max(1).values)
        elif mode in ("mean", "mean_sqrt_len"):
            total, n = (hidden * m).sum(1), m.sum(1).clamp(min=1e-9)
            out.append(total / n if mode == "mean" else total / n.sqrt())
        elif mode == "weightedmean":
            w = m * torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=hidden.dtype)[None, :, None]
            out.append((hidden * w).sum(1) / w.sum(1).clamp(min=1e-9))
        else:   # lasttoken: the last position the mask keeps
            seq = mask.shape[1]
            vals, idx = mask.flip(1).max(1)
            last = torch.where(vals == 0, torch.full_like(idx, seq - 1), idx)
            out.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), seq - 1 - last])
    return out[0] if len(out) == 1 else torch.cat(out, -1)
