"""The VSE++ text tower in plain torch: word ids -> embedding -> GRU -> last state -> L2 norm.
No file reading or jina here; :func:`vseimageencoder.release.checkpoint.load_text_tower` loads it.
"""
from typing import Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from vseimageencoder.model.image import l2_normalize, skip_weight_init

#: Word ids of VSE++'s special tokens, fixed by its vocabulary builder.
PAD, START, END, UNK = 0, 1, 2, 3


class VSETextTower(nn.Module):
    """VSE++'s caption encoder (``EncoderText`` in the paper's code).

    Input: int64 ``(B, T)`` word ids, each row ``<start> w1 .. wn <end>`` followed by
    padding, and the int64 ``(B,)`` lengths (counting start and end, at least 1).
    Output: float32 ``(B, embed_size)``: the top GRU layer's output at each caption's last
    word, of unit L2 norm; non-negative when ``use_abs``. Padding never reaches the GRU
    (packed sequences), so a caption gives the same row alone or in any batch.
    """

    def __init__(self, vocab_size: int, word_dim: int, embed_size: int, num_layers: int = 1,
                 use_abs: bool = False):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, word_dim)
        self.rnn = nn.GRU(word_dim, embed_size, num_layers, batch_first=True)
        self.vocab_size = vocab_size
        self.word_dim = word_dim
        self.embed_size = embed_size
        self.num_layers = num_layers
        self.use_abs = bool(use_abs)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        # For a unidirectional GRU over packed input, the last hidden state of the top layer is
        # the output at each sequence's own last step, which is what VSE++ gathers.
        _, h_n = self.rnn(packed)
        out = l2_normalize(h_n[-1].float())
        if self.use_abs:
            out = torch.abs(out)
        return out


def build_text_tower(vocab_size: int, word_dim: int, embed_size: int, num_layers: int = 1,
                     use_abs: bool = False) -> VSETextTower:
    """An unloaded tower (uninitialised weights); fill it with ``load_state_dict``."""
    with skip_weight_init():
        return VSETextTower(vocab_size, word_dim, embed_size, num_layers, use_abs)


def pad_ids(sequences: Sequence[Sequence[int]]):
    """Word-id lists as a zero-padded int64 ``(B, T)`` tensor and their int64 ``(B,)`` lengths."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.int64)
    width = int(lengths.max()) if len(sequences) else 0
    ids = torch.full((len(sequences), width), PAD, dtype=torch.int64)
    for i, s in enumerate(sequences):
        ids[i, :len(s)] = torch.as_tensor(list(s), dtype=torch.int64)
    return ids, lengths
