"""VSE++ training (:func:`train`): towers, optimiser, schedule, validation and checkpoints in
the release layout.
"""
import argparse
import logging
import math
import signal
import threading
import time
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from vseimageencoder.files.atomic import write_atomically
from vseimageencoder.release.checkpoint import (CheckpointError, release_state_dict, load_text_tower, load_tower, read_checkpoint,
                          resolve_checkpoint_path, stored_options)
from vseimageencoder.model.image import VSEImageTower, build_backbone, l2_normalize
from vseimageencoder.model.text import VSETextTower, pad_ids
from vseimageencoder.release.vocab import Vocabulary, read_vocabulary, resolve_vocabulary_path
from vseimageencoder.release.weights import CHECKPOINT_NAME
from vseimageencoder.training.data import CAPTIONS_PER_IMAGE, CaptionedSplit, DataError, concat, load_split, read_karpathy
from vseimageencoder.training.evaluation import encode_captions, encode_features, encode_image_files
from vseimageencoder.training.loss import contrastive_loss
from vseimageencoder.training.metrics import evaluate_embeddings
from vseimageencoder.training.vocabulary import DEFAULT_THRESHOLD, build_vocabulary, write_vocabulary

logger = logging.getLogger(__name__)

LAST_NAME = 'checkpoint.pth.tar'
BEST_NAME = CHECKPOINT_NAME


class TrainingError(ValueError):
    """Training cannot start or go on; the message names the file or option at fault."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training; ``checkpoint`` is the resumable file written on the way out."""

    def __init__(self, checkpoint: Path):
        super().__init__(str(checkpoint))
        self.checkpoint = checkpoint


def default_options(**overrides) -> argparse.Namespace:
    """The options :func:`train` reads, at the paper's defaults (``vseimageencoder train``'s)."""
    opts = dict(
        karpathy=None, images=None, precomp=None, out=None, data_name=None,
        train_split='train', val_split='dev', restval=False,
        cnn_type='vgg19', embed_size=1024, word_dim=300, num_layers=1, margin=0.2,
        max_violation=True, finetune=False, no_imgnorm=False, use_abs=False,
        lr=2e-4, lr_update=15, epochs=30, batch_size=128, grad_clip=2.0, crop_size=224,
        hflip=True, val_step=500, log_step=10, vocab_threshold=DEFAULT_THRESHOLD,
        init_from=None, vocab_path=None, resume=None, backbone_weights=None,
        precision='fp32', device='cpu', readers=None, seed=0, max_iters=None, threads=None)
    unknown = set(overrides) - set(opts)
    if unknown:
        raise TypeError('unknown training options: %s' % ', '.join(sorted(unknown)))
    opts.update(overrides)
    return argparse.Namespace(**opts)


# --------------------------------------------------------------------------- files

def save_atomically(obj, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place."""
    write_atomically(path, lambda tmp: torch.save(obj, tmp))


def _release_opt(o: argparse.Namespace, data_name: str, image: VSEImageTower, text: VSETextTower,
                 cnn_type: Optional[str]) -> argparse.Namespace:
    """The checkpoint's ``opt``: the fields of VSE++'s ``train.py`` options (plain values only,
    which is all the safe loader admits besides the Namespace). The shape of the model comes
    from the towers (a resumed or initialised model keeps its own), the schedule from ``o``."""
    return argparse.Namespace(
        data_path=str(o.karpathy or o.precomp or ''), data_name=data_name,
        vocab_path=str(Path(o.out)), margin=float(o.margin), num_epochs=int(o.epochs),
        batch_size=int(o.batch_size), word_dim=int(text.word_dim), embed_size=int(image.embed_size),
        grad_clip=float(o.grad_clip), crop_size=int(o.crop_size), num_layers=int(text.num_layers),
        learning_rate=float(o.lr), lr_update=int(o.lr_update), workers=int(o.readers or 0),
        log_step=int(o.log_step), val_step=int(o.val_step), logger_name=str(Path(o.out)),
        resume=str(o.resume or ''), max_violation=bool(o.max_violation), img_dim=int(image.feature_dim),
        finetune=bool(o.finetune), cnn_type=cnn_type or 'vgg19', use_restval=bool(o.restval),
        measure='cosine', use_abs=bool(image.use_abs), no_imgnorm=bool(image.no_imgnorm),
        reset_train=False, vocab_size=int(text.vocab_size), precision=str(o.precision), seed=int(o.seed))


def default_data_name(o: argparse.Namespace) -> str:
    """VSE++-style data names: the precomputed folder's name ending in ``_precomp``; the
    JSON's name without ``dataset_`` (``flickr30k`` as VSE++'s ``f30k``)."""
    if o.precomp:
        base = Path(o.precomp).resolve().name or 'data'
        return base if base.endswith('precomp') else base + '_precomp'
    stem = Path(o.karpathy).stem
    stem = stem[len('dataset_'):] if stem.startswith('dataset_') else stem
    return {'flickr30k': 'f30k', 'flickr8k': 'f8k'}.get(stem, stem) or 'data'


# --------------------------------------------------------------------------- models

def fresh_towers(o: argparse.Namespace, vocab_size: int, img_dim: int) -> Tuple[VSEImageTower, VSETextTower]:
    """Newly initialised towers, as VSE++ initialised them: the image fc uniform in
    +-sqrt(6 / (in + out)) with zero bias, word embeddings uniform in +-0.1, the GRU and the
    backbone as torch and torchvision initialise them (unless ``backbone_weights``)."""
    torch.manual_seed(o.seed)
    if o.precomp:
        backbone, feature_dim = None, img_dim
    else:
        backbone, feature_dim = build_backbone(o.cnn_type)
        if o.backbone_weights:
            _load_backbone_weights(backbone, o.backbone_weights)
        else:
            logger.warning('the %s backbone starts from random weights (VSE++ starts from ImageNet '
                           'weights: give --backbone-weights FILE, a torchvision state dict, or '
                           '--init-from a VSE++ model)', o.cnn_type)
    image = VSEImageTower(backbone, feature_dim, o.embed_size, o.no_imgnorm, o.use_abs)
    r = math.sqrt(6.0) / math.sqrt(image.fc.in_features + image.fc.out_features)
    with torch.no_grad():
        image.fc.weight.uniform_(-r, r)
        image.fc.bias.zero_()
    text = VSETextTower(vocab_size, o.word_dim, o.embed_size, o.num_layers, o.use_abs)
    with torch.no_grad():
        text.embed.weight.uniform_(-0.1, 0.1)
    return image, text


def _load_backbone_weights(backbone: nn.Module, path) -> None:
    """A torchvision classifier's state dict (e.g. ImageNet weights) into the cut backbone;
    the dropped last layer's weights are ignored, anything else missing is an error."""
    from vseimageencoder.release.checkpoint import precheck_checkpoint

    try:
        # Walked before torch reads it, as every checkpoint is: a deep or oversized pickle
        # must be refused, not crash the process.
        precheck_checkpoint(path)
        sd = torch.load(str(path), map_location='cpu', weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable or unsafe file is the user's fault
        raise TrainingError('--backbone-weights %s is not a readable torch state dict (%s)'
                            % (path, str(e).splitlines()[0][:200])) from None
    if isinstance(sd, dict) and 'state_dict' in sd and isinstance(sd['state_dict'], dict):
        sd = sd['state_dict']
    if not isinstance(sd, dict):
        raise TrainingError('--backbone-weights %s holds a %s, not a state dict' % (path, type(sd).__name__))
    own = backbone.state_dict()
    usable = {k: v for k, v in sd.items() if k in own}
    missing = [k for k in own if k not in usable]
    wrong = [k for k in usable if tuple(usable[k].shape) != tuple(own[k].shape)]
    if missing or wrong:
        raise TrainingError('--backbone-weights %s does not fit the backbone: %d missing keys (%s), '
                            '%d of the wrong shape (%s)' % (path, len(missing), ', '.join(missing[:3]),
                                                            len(wrong), ', '.join(wrong[:3])))
    backbone.load_state_dict(usable, strict=False)


def _trainable(image: VSEImageTower, text: VSETextTower, finetune: bool) -> List[nn.Parameter]:
    image.requires_grad_(True)
    text.requires_grad_(True)
    if image.cnn is not None and not finetune:
        image.cnn.requires_grad_(False)
    return [p for p in list(image.parameters()) + list(text.parameters()) if p.requires_grad]


# --------------------------------------------------------------------------- batches

def train_transform(crop_size: int, hflip: bool):
    """VSE++'s training augmentation: a random resized crop, a horizontal flip, ImageNet
    normalisation; float32 ``(3, crop, crop)`` from a PIL image."""
    import torchvision.transforms as T

    from vseimageencoder.images.transform import IMAGENET_MEAN, IMAGENET_STD
    steps = [T.RandomResizedCrop(crop_size)]
    if hflip:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return T.Compose(steps)


class _Batches:
    """The pairs of one split, in a seeded order per epoch: batch ``b`` of epoch ``e`` is
    the same on every run, so a resumed run continues the interrupted epoch exactly."""

    def __init__(self, split: CaptionedSplit, vocab: Vocabulary, batch_size: int, seed: int,
                 transform=None, readers: int = 1):
        self.split, self.batch_size, self.seed = split, batch_size, seed
        self.word_ids = [vocab.ids(c) for c in split.captions]
        self.features = split.features if split.precomputed else None  # may be a read-only memmap
        self.transform, self.readers = transform, readers

    @property
    def pairs(self) -> int:
        return len(self.word_ids)

    def per_epoch(self) -> int:
        return (self.pairs + self.batch_size - 1) // self.batch_size

    def order(self, epoch: int) -> List[torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        perm = torch.randperm(self.pairs, generator=g)
        return list(perm.split(self.batch_size))

    def load(self, pairs: torch.Tensor):
        """(images or features, word ids, lengths) of a batch of pair indices."""
        images = pairs // CAPTIONS_PER_IMAGE
        ids, lengths = pad_ids([self.word_ids[int(j)] for j in pairs])
        if self.features is not None:
            return torch.from_numpy(np.ascontiguousarray(self.features[images.numpy()])), ids, lengths
        from vseimageencoder.images.read import ImageReadError, read_image
        out = []
        for i in images.tolist():
            try:
                img = read_image(self.split.paths[i])
            except ImageReadError as e:
                raise DataError('training image %s cannot be read: %s' % (self.split.paths[i], e.reason)) from None
            out.append(self.transform(img))
        return torch.stack(out), ids, lengths

    def iterate(self, epoch: int, start: int):
        """``(batch index, loaded batch)`` from batch ``start`` of ``epoch``; image batches
        are read and augmented on reader threads ahead of the model."""
        from vseimageencoder.pipeline.prefetch import read_in_order

        batches = list(enumerate(self.order(epoch)))[start:]
        if self.features is not None:
            for b, pairs in batches:
                yield b, self.load(pairs)
            return
        with read_in_order(batches, lambda item: self.load(item[1]), self.readers, 2) as it:
            for (b, _), loaded in it:
                yield b, loaded


# --------------------------------------------------------------------------- trainer

class Trainer:
    """One training run; see :func:`train`."""

    def __init__(self, o: argparse.Namespace):
        if not o.out:
            raise TrainingError('an output folder (--out) is required')
        for name in ('batch_size', 'embed_size', 'word_dim', 'num_layers', 'lr_update', 'log_step',
                     'val_step', 'crop_size', 'vocab_threshold'):
            if int(getattr(o, name)) < 1:
                raise TrainingError('--%s must be at least 1, got %r' % (name.replace('_', '-'), getattr(o, name)))
        if o.epochs < 0:
            raise TrainingError('--epochs must be 0 or more, got %r' % o.epochs)
        if o.karpathy and not o.images:
            raise TrainingError('--karpathy needs --images ROOT, the folder its images are in')
        from vseimageencoder.model.inference import DTYPES, DeviceUnavailableError, check_device, resolve_precision
        from vseimageencoder.model.precisions import check_precision
        try:
            check_precision(o.precision)
        except ValueError as e:
            raise TrainingError('--%s' % e) from None
        self.o = o
        self.out = Path(o.out)
        try:
            # The device check every front end shares: one line, not a traceback from torch.
            self.device = check_device(o.device)
        except DeviceUnavailableError as e:
            raise TrainingError(str(e)) from None
        self.precision = resolve_precision(o.precision, self.device)
        self.autocast_dtype = None if self.precision == 'fp32' else DTYPES[self.precision]
        self.history: List[dict] = []
        self.losses: List[Tuple[int, float]] = []
        self._load_data()
        self._build()

    # -- setup
    def _load_data(self):
        o = self.o
        images = read_karpathy(o.karpathy) if o.karpathy else None
        parts = [load_split(o.train_split, o.karpathy, o.images, o.precomp, images)]
        if o.restval:
            parts.append(load_split('restval', o.karpathy, o.images, o.precomp, images))
        self.train_split = concat(parts, o.train_split) if len(parts) > 1 else parts[0]
        self.val_split = load_split(o.val_split, o.karpathy, o.images, o.precomp, images)
        for s in (self.train_split, self.val_split):
            s.check_files()
        if self.train_split.precomputed and self.train_split.features.shape[1] != self.val_split.features.shape[1]:
            raise DataError('%s: the %s features are %d-d, the %s ones %d-d' % (
                o.precomp, o.train_split, self.train_split.features.shape[1], o.val_split,
                self.val_split.features.shape[1]))
        logger.info('training on %d images (%d pairs), validating on %d images',
                    len(self.train_split), len(self.train_split.captions), len(self.val_split))

    def _build(self):
        o = self.o
        img_dim = self.train_split.features.shape[1] if self.train_split.precomputed else 4096
        self.start_epoch, self.start_batch, self.best_rsum, self.iters = 0, 0, -math.inf, 0
        optimizer_state = None
        if o.resume and o.init_from:
            raise TrainingError('give --resume or --init-from, not both')
        if o.resume:
            path = self._checkpoint_file(o.resume, '--resume', LAST_NAME)
            self.image, self.text, self.vocab, ckpt, self.data_name = self._from_checkpoint(path, '--resume')
            self.start_epoch = int(ckpt.get('epoch') or 0)
            pos = ckpt.get('position')
            if isinstance(pos, dict) and 'epoch' in pos and 'batch' in pos:
                self.start_epoch, self.start_batch = int(pos['epoch']), int(pos['batch'])
            best = ckpt.get('best_rsum')
            self.best_rsum = float(best) if isinstance(best, (int, float)) else -math.inf
            self.iters = int(ckpt.get('Eiters') or 0)
            optimizer_state = ckpt.get('optimizer')
            logger.info('resuming %s at epoch %d, batch %d (%d iterations done, best rsum %.2f)',
                        path, self.start_epoch, self.start_batch, self.iters, self.best_rsum)
        elif o.init_from:
            path = self._checkpoint_file(o.init_from, '--init-from', CHECKPOINT_NAME)
            self.image, self.text, self.vocab, _, init_name = self._from_checkpoint(path, '--init-from')
            self.data_name = o.data_name or default_data_name(o)
            logger.info('starting from %s and its %d-word vocabulary (data_name %s)',
                        path, len(self.vocab), init_name)
        else:
            self.data_name = o.data_name or default_data_name(o)
            self.vocab = build_vocabulary(self.train_split.captions, o.vocab_threshold)
            logger.info('built a vocabulary of %d words (seen at least %d times in the training captions)',
                        len(self.vocab), o.vocab_threshold)
            self.image, self.text = fresh_towers(o, len(self.vocab), img_dim)
        if self.train_split.precomputed != self.image.precomputed:
            raise TrainingError('the model is a %s model, but the data are %s' % (
                'precomputed-feature' if self.image.precomputed else 'full-image',
                'precomputed features' if self.train_split.precomputed else 'image files'))
        if self.image.precomputed and self.image.feature_dim != img_dim:
            raise TrainingError('the model takes %d-d features, but %s has %d-d ones'
                                % (self.image.feature_dim, o.precomp, img_dim))
        if self.image.precomputed != self.data_name.endswith('precomp'):
            raise TrainingError('--data-name %r: a %s model\'s data name must%s end in "precomp" '
                                '(the loaders read the model kind from it)' % (
                                    self.data_name, 'precomputed-feature' if self.image.precomputed else 'full-image',
                                    '' if self.image.precomputed else ' not'))
        self.cnn_type = None
        if self.image.cnn is not None:
            self.cnn_type = self._cnn_type
        self.image.to(self.device)
        self.text.to(self.device)
        if self.image.cnn is not None:
            # The layout oneDNN's (and cuDNN's) convolutions prefer, bf16 above all.
            self.image.cnn.to(memory_format=torch.channels_last)
        self.params = _trainable(self.image, self.text, o.finetune)
        self.optimizer = torch.optim.Adam(self.params, lr=o.lr)
        if optimizer_state is not None:
            try:
                self.optimizer.load_state_dict(optimizer_state)
            except (ValueError, KeyError, TypeError) as e:
                raise TrainingError('--resume: the optimizer state in the checkpoint does not fit '
                                    'this model (was --finetune different?): %s' % e) from None
        self.vocab_file = write_vocabulary(self.vocab, self.out / ('%s_vocab.pkl' % self.data_name))
        self.batches = _Batches(self.train_split, self.vocab, o.batch_size, o.seed,
                                None if self.train_split.precomputed else train_transform(o.crop_size, o.hflip),
                                o.readers if o.readers is not None else 2)
        self.opt_record = _release_opt(o, self.data_name, self.image, self.text, self.cnn_type or o.cnn_type)

    @property
    def _cnn_type(self) -> str:
        return getattr(self, '_loaded_cnn_type', None) or self.o.cnn_type

    def _checkpoint_file(self, given, flag: str, name: str) -> Path:
        p = Path(given)
        if p.is_dir():
            p = p / name
        try:
            return resolve_checkpoint_path(p) if not p.is_file() else p
        except CheckpointError as e:
            raise TrainingError('%s: %s' % (flag, e)) from None

    def _from_checkpoint(self, path: Path, flag: str):
        """Towers, vocabulary and raw contents of a checkpoint (ours or a released one)."""
        try:
            ckpt = read_checkpoint(path)
            opt = stored_options(ckpt, path)
            image, img_opts = load_tower(path)
            text, txt_opts = load_text_tower(path)
            vocab_file = resolve_vocabulary_path(self.o.vocab_path, path, txt_opts.data_name)
            vocab = read_vocabulary(vocab_file)
        except (CheckpointError, ValueError, FileNotFoundError) as e:
            raise TrainingError('%s %s cannot be used: %s' % (flag, path, e)) from None
        if len(vocab) != txt_opts.vocab_size:
            raise TrainingError('%s: the vocabulary %s has %d words, the text tower of %s %d' % (
                flag, vocab_file, len(vocab), path, txt_opts.vocab_size))
        if img_opts.embed_size != txt_opts.embed_size:
            raise TrainingError('%s %s: image embeddings are %d-d, text ones %d-d' % (
                flag, path, img_opts.embed_size, txt_opts.embed_size))
        self._loaded_cnn_type = img_opts.cnn_type
        for t in (image, text):
            t.requires_grad_(True)
        return image, text, vocab, ckpt, str(opt.get('data_name') or txt_opts.data_name)

    # -- steps
    def lr_at(self, epoch: int) -> float:
        return self.o.lr * (0.1 ** (epoch // self.o.lr_update))

    def _autocast(self):
        if self.autocast_dtype is None:
            import contextlib
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def embed_images(self, x: torch.Tensor) -> torch.Tensor:
        if self.image.cnn is None:
            return self.image.head(x)
        if self.o.finetune:
            feats = self.image.cnn(x)
        else:
            with torch.no_grad():
                feats = self.image.cnn(x)
        return self.image.head(l2_normalize(feats.float()))

    def step(self, batch) -> float:
        x, ids, lengths = batch
        x = x.to(self.device, non_blocking=True)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        ids = ids.to(self.device)
        with self._autocast():
            im = self.embed_images(x)
            s = self.text(ids, lengths)
        loss = contrastive_loss(im.float(), s.float(), self.o.margin, self.o.max_violation)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.o.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.params, self.o.grad_clip)
        self.optimizer.step()
        return float(loss.detach())

    def _train_mode(self, on: bool):
        self.text.train(on)
        self.image.train(on)
        if self.image.cnn is not None and not self.o.finetune:
            # A frozen backbone stays in eval mode: its batch-norm statistics stay those it
            # was given (VSE++ let them drift; freezing here means frozen).
            self.image.cnn.eval()

    # -- validation
    def validate(self, split: Optional[CaptionedSplit] = None) -> dict:
        """VSE++'s figures of the current towers on ``split`` (default: the validation split)."""
        split = split or self.val_split
        self._train_mode(False)
        try:
            with torch.no_grad():
                def image_model(x):
                    # no_grad again here: the image batches run on lane threads, and
                    # grad mode is per thread.
                    with torch.no_grad(), self._autocast():
                        return self.image(x.to(self.device)).float().cpu()

                def caption_model(caps):
                    ids, lengths = pad_ids([self.vocab.ids(c) for c in caps])
                    with self._autocast():
                        return self.text(ids.to(self.device), lengths).float().cpu().numpy()
                if split.precomputed:
                    img = encode_features(image_model, split.features)
                else:
                    img = encode_image_files(image_model, split.paths, min(self.o.batch_size, 64),
                                             readers=self.o.readers)
                cap = encode_captions(caption_model, split.captions)
            result = evaluate_embeddings(img, cap)
        finally:
            self._train_mode(True)
        result.pop('ranks')
        return result

    def _after_validation(self, epoch: int, result: dict, next_position) -> None:
        r = result
        logger.info('validation at epoch %d, iteration %d: image->text R@1 %.2f R@5 %.2f R@10 %.2f '
                    'medr %.0f | text->image R@1 %.2f R@5 %.2f R@10 %.2f medr %.0f | rsum %.2f',
                    epoch, self.iters, r['i2t']['r1'], r['i2t']['r5'], r['i2t']['r10'], r['i2t']['medr'],
                    r['t2i']['r1'], r['t2i']['r5'], r['t2i']['r10'], r['t2i']['medr'], r['rsum'])
        self.history.append({'epoch': epoch, 'iteration': self.iters, 'rsum': r['rsum'],
                             'i2t': r['i2t'], 't2i': r['t2i']})
        if r['rsum'] > self.best_rsum:
            self.best_rsum = r['rsum']
            self.save(BEST_NAME, epoch=next_position[0], position=None)
            logger.info('new best rsum %.2f: wrote %s', r['rsum'], self.out / BEST_NAME)

    # -- saving
    def state(self, epoch: int, position) -> dict:
        ckpt = {
            'epoch': int(epoch),
            'model': [release_state_dict(self.image.state_dict(), self.cnn_type),
                      {k: v.detach().to('cpu').contiguous().clone() for k, v in self.text.state_dict().items()}],
            'best_rsum': float(self.best_rsum) if math.isfinite(self.best_rsum) else 0.0,
            'opt': self.opt_record,
            'Eiters': int(self.iters),
        }
        if position is not None:
            ckpt['optimizer'] = self.optimizer.state_dict()
            ckpt['position'] = {'epoch': int(position[0]), 'batch': int(position[1])}
        return ckpt

    def save(self, name: str, epoch: int, position) -> Path:
        path = self.out / name
        save_atomically(self.state(epoch, position), path)
        return path

    # -- the loop
    def run(self) -> dict:
        o = self.o
        per_epoch = self.batches.per_epoch()
        logger.info('%d epochs of %d batches of %d pairs; lr %.1e (/10 every %d epochs); %s%s%s',
                    o.epochs, per_epoch, o.batch_size, o.lr, o.lr_update,
                    'precomputed features' if self.image.precomputed else
                    '%s backbone %s' % (self.cnn_type, 'fine-tuned' if o.finetune else 'frozen'),
                    ', %s autocast' % self.precision if self.autocast_dtype is not None else '',
                    ', hardest negatives' if o.max_violation else ', all negatives')
        if o.epochs == 0 or self.start_epoch >= o.epochs:
            # Nothing to train: validate and write what there is (an untrained baseline).
            self._after_validation(self.start_epoch, self.validate(), (self.start_epoch, 0))
            self.save(LAST_NAME, self.start_epoch, (self.start_epoch, 0))
            return self.summary()
        self._train_mode(True)
        epoch, b = self.start_epoch, self.start_batch
        self._stop = False
        restore = self._catch_ctrl_c()
        try:
            for epoch in range(self.start_epoch, o.epochs):
                lr = self.lr_at(epoch)
                for g in self.optimizer.param_groups:
                    g['lr'] = lr
                first = self.start_batch if epoch == self.start_epoch else 0
                b = first
                t_log, pairs_log, loss_log = time.monotonic(), 0, []
                for b, batch in self.batches.iterate(epoch, first):
                    loss = self.step(batch)
                    self.iters += 1
                    n = len(batch[1])
                    pairs_log += n
                    loss_log.append(loss / n)
                    self.losses.append((self.iters, loss / n))
                    b += 1  # the next batch, once this one is applied
                    if self.iters % o.log_step == 0:
                        now = time.monotonic()
                        logger.info('epoch %d [%d/%d] iteration %d: loss %.4f per pair, lr %.1e, %.0f pairs/s',
                                    epoch, b, per_epoch, self.iters, float(np.mean(loss_log)), lr,
                                    pairs_log / max(now - t_log, 1e-9))
                        t_log, pairs_log, loss_log = now, 0, []
                    if self.iters % o.val_step == 0:
                        self._after_validation(epoch, self.validate(), (epoch, b))
                    if self._stop:
                        raise KeyboardInterrupt
                    if o.max_iters and self.iters >= o.max_iters:
                        break
                if o.max_iters and self.iters >= o.max_iters and b < per_epoch:
                    self.save(LAST_NAME, epoch, (epoch, b))
                    logger.info('stopped after %d iterations (--max-iters): wrote %s', self.iters, self.out / LAST_NAME)
                    return self.summary()
                self._after_validation(epoch + 1, self.validate(), (epoch + 1, 0))
                self.save(LAST_NAME, epoch + 1, (epoch + 1, 0))
                b = 0
                logger.info('epoch %d done: wrote %s', epoch + 1, self.out / LAST_NAME)
                if o.max_iters and self.iters >= o.max_iters:
                    break
        except KeyboardInterrupt:
            path = self.save(LAST_NAME, epoch, (epoch, b))
            logger.warning('interrupted at epoch %d, batch %d: wrote %s; continue with --resume %s',
                           epoch, b, path, self.out)
            raise Interrupted(path) from None
        finally:
            restore()
        return self.summary()

    def _catch_ctrl_c(self):
        """The first Ctrl-C lets the current step finish (so the checkpoint is exactly
        between two steps); a second one interrupts at once. Returns the undo function."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGINT)

        def on_sigint(signum, frame):
            if self._stop:
                raise KeyboardInterrupt
            self._stop = True
            logger.warning('Ctrl-C: stopping after this step (again to stop at once)')
        signal.signal(signal.SIGINT, on_sigint)
        return lambda: signal.signal(signal.SIGINT, previous)

    def summary(self) -> dict:
        return {'best_rsum': self.best_rsum, 'iterations': self.iters, 'history': self.history,
                'losses': self.losses, 'out': str(self.out), 'vocab': str(self.vocab_file),
                'data_name': self.data_name}


def train(o: argparse.Namespace) -> dict:
    """Run VSE++ training with options ``o`` (see :func:`default_options`).

    Writes into ``o.out``: ``checkpoint.pth.tar`` after every epoch and on Ctrl-C (the
    release layout plus ``optimizer`` and ``position``, for ``--resume``);
    ``model_best.pth.tar`` whenever validation rsum improves (release layout only, image keys
    prefixed as the releases did, so VSE++'s code loads it); ``<data_name>_vocab.pkl``.
    Each file is written to a temporary name and renamed, so an interrupted save leaves
    the previous file whole.

    :return: ``{'best_rsum', 'iterations', 'history' (validation results), 'losses'
        ((iteration, loss per pair)), 'out', 'vocab', 'data_name'}``.
    :raises TrainingError, DataError, CheckpointError: naming the option or file at fault.
    :raises Interrupted: on Ctrl-C, after writing a resumable ``checkpoint.pth.tar``.
    """
    previous = torch.get_num_threads()
    if o.threads:
        # Small models on a busy machine run several times faster on one thread than on
        # threads that wait for each other at every op.
        torch.set_num_threads(int(o.threads))
    try:
        return Trainer(o).run()
    finally:
        torch.set_num_threads(previous)
