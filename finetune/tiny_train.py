"""From-scratch training recipe for the tiny Florence-2 (see docs/tiny-model-recipe.md for why each part is there).

Plain cross-entropy on `label<loc><loc><loc><loc>` targets teaches a 2 M-parameter Florence-2 to ignore the image:
the decoder learns the marginal answer long before the vision tower learns anything. The recipe adds, for training
only (nothing of it is saved; the saved model is a plain `Florence2ForConditionalGeneration`):

- a per-cell class head on the encoder's image-token outputs (which defect class covers each grid cell),
- a per-cell box head: every cell inside a defect predicts that defect's four `<loc>` bins, scored against the
  model's own (tied) `<loc>` embeddings, so image tokens carry box coordinates in the space the decoder emits,
- Gaussian soft targets over neighbouring `<loc>` bins for the decoder (a near miss costs less than a far one),
- horizontal/vertical flips of the frames (boxes flipped with them).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from agent.capture.synthetic import SyntheticFrame
from agent.detections import LOC_BINS, Detections, box_iou

TASK = "<OD>"
Progress = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class TinyTrainConfig:
    """Hyper-parameters of the recipe; the defaults are the measured recipe of docs/tiny-model-recipe.md."""

    steps: int = 600
    batch_size: int = 16
    seed: int = 0
    lr: float = 1e-3
    vision_lr_scale: float = 1.0
    warmup_steps: int = 30
    weight_decay: float = 0.01
    loc_sigma: float = 4.0  # std of the Gaussian soft target over <loc> bins, in bins
    cell_class_weight: float = 1.0
    background_weight: float = 0.2
    cell_box_weight: float = 1.0
    flip: bool = True
    grad_clip: float = 1.0
    aligned_init: bool = False  # re-initialise position codes first (only for a freshly built model)
    threads: int | None = None


@dataclass
class TrainResult:
    """What a training run did: steps, seconds, the last losses, and a loss history every `log_every` steps."""

    steps: int
    seconds: float
    final: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalResult:
    """Greedy-generation quality on frames with ground truth: matches at IoU >= `iou` with the right class."""

    frames: int
    true_positives: int
    predictions: int
    ground_truth: int
    distinct_answers: int
    unparsed_groups: int
    iou: float

    @property
    def precision(self) -> float:
        return self.true_positives / self.predictions if self.predictions else 0.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.ground_truth if self.ground_truth else 0.0

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "precision": round(self.precision, 4), "recall": round(self.recall, 4)}


# ----- batches ----------------------------------------------------------------------------------------------------
@dataclass
class _Batch:
    pixel_values: torch.Tensor  # B x 3 x S x S
    labels: torch.Tensor  # B x T, -100 on padding
    cell_class: torch.Tensor  # B x G*G, 0 = background, c + 1 = class c
    cell_box: torch.Tensor  # B x G*G x 4 loc bins, -1 where the cell is background


def flip_frame(image: npt.NDArray[np.uint8], dets: Detections, horizontal: bool, vertical: bool
               ) -> tuple[npt.NDArray[np.uint8], Detections]:
    """Mirror a frame and its boxes."""
    w, h = dets.image_size
    xyxy = dets.xyxy.copy()
    if horizontal:
        image = image[:, ::-1]
        xyxy[:, [0, 2]] = w - xyxy[:, [2, 0]]
    if vertical:
        image = image[::-1]
        xyxy[:, [1, 3]] = h - xyxy[:, [3, 1]]
    flipped = Detections(xyxy, dets.class_id, dets.score, dets.class_names, dets.image_size)
    return np.ascontiguousarray(image), flipped


def cell_targets(dets: Detections, grid: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per grid cell (raster order): class (0 background, c + 1) and the covering box's loc bins (-1 if none).

    A cell belongs to a box when the cell centre lies inside it; the cell holding the box centre always does,
    so a defect smaller than a cell still owns one. Smaller boxes are written last and win ties.
    """
    w, h = dets.image_size
    classes = np.zeros((grid, grid), dtype=np.int64)
    boxes = np.full((grid, grid, 4), -1, dtype=np.int64)
    centres_x = (np.arange(grid) + 0.5) * w / grid
    centres_y = (np.arange(grid) + 0.5) * h / grid
    bins = dets.to_bins()
    area = (dets.xyxy[:, 2] - dets.xyxy[:, 0]) * (dets.xyxy[:, 3] - dets.xyxy[:, 1])
    for i in np.argsort(-area):
        x1, y1, x2, y2 = dets.xyxy[i]
        inside = ((centres_y >= y1) & (centres_y < y2))[:, None] & ((centres_x >= x1) & (centres_x < x2))[None, :]
        cx = min(int((x1 + x2) / 2 / w * grid), grid - 1)
        cy = min(int((y1 + y2) / 2 / h * grid), grid - 1)
        inside[cy, cx] = True
        classes[inside] = dets.class_id[i] + 1
        boxes[inside] = bins[i]
    return classes.reshape(-1), boxes.reshape(-1, 4)


class _Batcher:
    """Turns frames into tensors: pixels normalised like the processor, target tokens, per-cell targets."""

    def __init__(self, processor: Any, grid: int, flip: bool) -> None:
        ip = processor.image_processor
        self.tokenizer = processor.tokenizer
        self.size = (int(ip.size["width"]), int(ip.size["height"]))
        self.mean = np.asarray(ip.image_mean, dtype=np.float32)
        self.std = np.asarray(ip.image_std, dtype=np.float32)
        self.scale = float(ip.rescale_factor)
        self.grid = grid
        self.flip = flip

    def pixels(self, images: Sequence[npt.NDArray[np.uint8]]) -> torch.Tensor:
        """BGR frames -> normalised RGB tensor (the same transform as `Florence2Detector.preprocess`)."""
        batch = []
        for image in images:
            rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            if rgb.shape[1::-1] != self.size:
                rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_CUBIC)
            batch.append((rgb.astype(np.float32) * self.scale - self.mean) / self.std)
        return torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).contiguous()

    def __call__(self, frames: Sequence[SyntheticFrame], rng: np.random.Generator) -> _Batch:
        images, texts, classes, boxes = [], [], [], []
        for frame in frames:
            image, dets = frame.image, frame.detections
            if self.flip:
                image, dets = flip_frame(image, dets, bool(rng.random() < 0.5), bool(rng.random() < 0.5))
            images.append(image)
            texts.append(dets.sorted_raster().to_loc_text())
            cls, box = cell_targets(dets, self.grid)
            classes.append(cls)
            boxes.append(box)
        return _Batch(self.pixels(images), self.labels(texts),
                      torch.from_numpy(np.stack(classes)), torch.from_numpy(np.stack(boxes)))

    def labels(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts), return_tensors="pt", padding=True)
        return tokens.input_ids.masked_fill(tokens.attention_mask == 0, -100)


# ----- losses -----------------------------------------------------------------------------------------------------
class _AuxHeads(nn.Module):
    """Training-only heads on the encoder's image-token outputs (never saved with the model)."""

    def __init__(self, d_model: int, num_classes: int) -> None:
        super().__init__()
        self.cell_class = nn.Linear(d_model, num_classes + 1)
        self.cell_box = nn.Linear(d_model, 4 * d_model)


def soft_loc_targets(sigma: float, bins: int = LOC_BINS) -> torch.Tensor:
    """bins x bins matrix: row k is a Gaussian over bins centred on k (normalised); sigma 0 gives one-hot rows."""
    if sigma <= 0:
        return torch.eye(bins)
    k = torch.arange(bins, dtype=torch.float32)
    weights = torch.exp(-((k[None, :] - k[:, None]) ** 2) / (2 * sigma**2))
    return weights / weights.sum(dim=1, keepdim=True)


def sequence_loss(logits: torch.Tensor, labels: torch.Tensor, loc_ids: torch.Tensor, soft: torch.Tensor
                  ) -> torch.Tensor:
    """Cross-entropy over the target tokens; `<loc>` targets are spread over neighbouring bins by `soft`."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    valid = labels != -100
    safe = labels.clamp(min=0)
    hard = -log_probs.gather(-1, safe[..., None]).squeeze(-1)
    loc_index = torch.searchsorted(loc_ids, safe).clamp(max=len(loc_ids) - 1)
    is_loc = loc_ids[loc_index] == safe
    target = soft[loc_index]
    # KL rather than cross-entropy: subtracting the target's own entropy makes 0 the floor, so logs are readable
    soft_nll = (target * (target.clamp(min=1e-12).log() - log_probs[..., loc_ids])).sum(-1)
    per_token = torch.where(is_loc, soft_nll, hard)
    return (per_token * valid).sum() / valid.sum().clamp(min=1)


def cell_losses(heads: _AuxHeads, cells: torch.Tensor, batch: _Batch, loc_embeddings: torch.Tensor,
                soft: torch.Tensor, background_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Class loss on every cell (background down-weighted) and box loss on cells inside a defect."""
    class_logits = heads.cell_class(cells)
    weights = torch.ones(class_logits.shape[-1])
    weights[0] = background_weight
    class_loss = F.cross_entropy(class_logits.flatten(0, 1), batch.cell_class.flatten(), weight=weights)
    positive = batch.cell_box[..., 0] >= 0
    if not positive.any():
        return class_loss, cells.sum() * 0.0
    coded = heads.cell_box(cells[positive]).view(-1, 4, cells.shape[-1])
    box_log_probs = F.log_softmax(coded @ loc_embeddings.T, dim=-1)
    target = soft[batch.cell_box[positive]]
    box_loss = (target * (target.clamp(min=1e-12).log() - box_log_probs)).sum(-1).mean()
    return class_loss, box_loss


# ----- training ---------------------------------------------------------------------------------------------------
class TinyTrainer:
    """Holds the model, its processor and the auxiliary heads for one training run."""

    def __init__(self, model_dir: Path, config: TinyTrainConfig) -> None:
        from transformers import AutoProcessor, Florence2ForConditionalGeneration

        self.model_dir = Path(model_dir)
        self.config = config
        self.processor = AutoProcessor.from_pretrained(self.model_dir)
        self.model = Florence2ForConditionalGeneration.from_pretrained(self.model_dir, dtype=torch.float32)
        self.class_names = read_classes(self.model_dir)
        tokenizer = self.processor.tokenizer
        self.loc_ids = torch.tensor(tokenizer.convert_tokens_to_ids([f"<loc_{i}>" for i in range(LOC_BINS)]))
        if not bool((self.loc_ids[1:] > self.loc_ids[:-1]).all()):
            raise ValueError(f"{self.model_dir}: <loc_N> token ids are not increasing with N")
        self.image_token_id = int(self.model.config.image_token_id)
        self.grid = grid_size(self.processor)
        d_model = int(self.model.config.text_config.d_model)  # type: ignore[union-attr]
        if config.aligned_init:
            align_position_init(self.model, self.loc_ids, self.grid)
        torch.manual_seed(config.seed)
        self.heads = _AuxHeads(d_model, len(self.class_names))
        self.soft = soft_loc_targets(config.loc_sigma)
        self.batcher = _Batcher(self.processor, self.grid, config.flip)
        self.prompt = self.processor(text=[TASK], images=[np.zeros((8, 8, 3), np.uint8)], return_tensors="pt")

    def parameter_groups(self) -> list[dict[str, Any]]:
        lr, cfg = self.config.lr, self.config
        vision = list(self.model.model.vision_tower.parameters())
        vision_ids = {id(p) for p in vision}
        rest = [p for p in self.model.parameters() if id(p) not in vision_ids]
        return [
            {"params": vision, "lr": lr * cfg.vision_lr_scale},
            {"params": rest, "lr": lr},
            {"params": list(self.heads.parameters()), "lr": lr},
        ]

    def losses(self, batch: _Batch) -> dict[str, torch.Tensor]:
        size = batch.pixel_values.shape[0]
        input_ids = self.prompt.input_ids.expand(size, -1)
        out = self.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                         pixel_values=batch.pixel_values, labels=batch.labels)
        cells = out.encoder_last_hidden_state[:, : self.grid * self.grid]
        loc_embeddings = self.model.get_input_embeddings().weight[self.loc_ids]  # type: ignore[index]
        lm = sequence_loss(out.logits, batch.labels, self.loc_ids, self.soft)
        cls, box = cell_losses(self.heads, cells, batch, loc_embeddings, self.soft, self.config.background_weight)
        total = lm + self.config.cell_class_weight * cls + self.config.cell_box_weight * box
        return {"loss": total, "lm": lm, "cell_class": cls, "cell_box": box}

    def fit(self, frames: Sequence[SyntheticFrame], progress: Progress | None = None, log_every: int = 25
            ) -> TrainResult:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        optimizer = torch.optim.AdamW(self.parameter_groups(), weight_decay=cfg.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg.warmup_steps, cfg.steps))
        self.model.train()
        history: list[dict[str, float]] = []
        start = time.perf_counter()
        values: dict[str, float] = {}
        for step in range(cfg.steps):
            chosen = rng.choice(len(frames), size=min(cfg.batch_size, len(frames)), replace=False)
            losses = self.losses(self.batcher([frames[i] for i in chosen], rng))
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(self.trainable(), cfg.grad_clip)
            optimizer.step()
            schedule.step()
            values = {k: float(v.detach()) for k, v in losses.items()}
            if step % log_every == 0 or step == cfg.steps - 1:
                history.append({"step": float(step), **values})
            if progress is not None:
                progress(step + 1, cfg.steps, values)
        self.model.eval()
        return TrainResult(cfg.steps, time.perf_counter() - start, values, history, asdict(cfg))

    def trainable(self) -> list[nn.Parameter]:
        return list(self.model.parameters()) + list(self.heads.parameters())

    def save(self, out_dir: Path | None = None) -> Path:
        """Write the trained model (safetensors) and its processor; the auxiliary heads are not part of it."""
        target = Path(out_dir) if out_dir is not None else self.model_dir
        target.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(target, safe_serialization=True)
        self.processor.save_pretrained(target)
        (target / "classes.txt").write_text("\n".join(self.class_names) + "\n")
        return target


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 5 % of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def grid_size(processor: Any) -> int:
    """Side of the image-token grid: the processor's image_seq_length is grid^2 spatial tokens + 1 temporal."""
    side = math.isqrt(int(processor.image_processor.image_seq_length) - 1)
    if side * side + 1 != int(processor.image_processor.image_seq_length):
        raise ValueError(f"image_seq_length {processor.image_processor.image_seq_length} is not grid^2 + 1")
    return side


def read_classes(model_dir: Path) -> tuple[str, ...]:
    path = Path(model_dir) / "classes.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: build the model with `edge-inspect model tiny`")
    return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())


def train_tiny(model_dir: Path, frames: Sequence[SyntheticFrame], config: TinyTrainConfig | None = None,
               progress: Progress | None = None, out_dir: Path | None = None) -> TrainResult:
    """Train the tiny model in `model_dir` on `frames` and save it back (or into `out_dir`)."""
    config = config or TinyTrainConfig()
    if not frames:
        raise ValueError("train_tiny needs at least one frame")
    if config.threads:
        torch.set_num_threads(config.threads)
    trainer = TinyTrainer(model_dir, config)
    wrong = [f.index for f in frames if f.detections.class_names != trainer.class_names]
    if wrong:
        raise ValueError(f"frames {wrong[:5]} have classes {frames[0].detections.class_names}, "
                         f"the model {trainer.class_names}")
    result = trainer.fit(frames, progress)
    trainer.save(out_dir)
    return result


# ----- evaluation -------------------------------------------------------------------------------------------------
def generate_texts(model: Any, processor: Any, images: Sequence[npt.NDArray[np.uint8]], batch_size: int = 16,
                   max_new_tokens: int = 64) -> list[str]:
    """Plain greedy `<OD>` generation (no grammar constraints) -> decoded text per BGR frame."""
    batcher = _Batcher(processor, grid_size(processor), flip=False)
    texts: list[str] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        prompt = processor(text=[TASK] * len(chunk), images=[np.zeros((8, 8, 3), np.uint8)] * len(chunk),
                           return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(input_ids=prompt.input_ids, attention_mask=prompt.attention_mask,
                                 pixel_values=batcher.pixels(chunk), max_new_tokens=max_new_tokens,
                                 do_sample=False, num_beams=1)
        texts.extend(processor.batch_decode(out, skip_special_tokens=False))
    return texts


def match_count(pred: Detections, truth: Detections, iou: float = 0.5) -> int:
    """Greedy one-to-one matches (highest IoU first) of same-class boxes with IoU >= `iou`."""
    if not len(pred) or not len(truth):
        return 0
    overlaps = box_iou(pred.xyxy, truth.xyxy) * (pred.class_id[:, None] == truth.class_id[None, :])
    matches = 0
    while overlaps.size and overlaps.max() >= iou:
        i, j = np.unravel_index(int(overlaps.argmax()), overlaps.shape)
        overlaps[i, :] = 0
        overlaps[:, j] = 0
        matches += 1
    return matches


def evaluate_frames(model_dir: Path, frames: Sequence[SyntheticFrame], iou: float = 0.5) -> EvalResult:
    """Load a saved model and measure greedy generation on `frames` (precision/recall at `iou`)."""
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    processor = AutoProcessor.from_pretrained(model_dir)
    model = Florence2ForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    return evaluate_model(model, processor, frames, iou)


def evaluate_model(model: Any, processor: Any, frames: Sequence[SyntheticFrame], iou: float = 0.5) -> EvalResult:
    texts = generate_texts(model, processor, [f.image for f in frames])
    tp = predicted = truth = unparsed = 0
    for frame, text in zip(frames, texts):
        pred = Detections.from_loc_text(text, frame.detections.class_names, frame.detections.image_size, strict=False)
        unparsed += max(0, text.count("<loc_") // 4 - len(pred))
        tp += match_count(pred, frame.detections, iou)
        predicted += len(pred)
        truth += len(frame.detections)
    return EvalResult(len(frames), tp, predicted, truth, len(set(texts)), unparsed, iou)


# ----- aligned initialisation -------------------------------------------------------------------------------------
def position_codes(bins: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal codes (dim values each) of `<loc>` bin positions; nearby bins get similar codes."""
    freqs = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(LOC_BINS * 4.0) / dim))
    angles = bins.float()[:, None] * freqs[None, :]
    codes = torch.zeros(len(bins), dim)
    codes[:, 0::2] = torch.sin(angles)
    codes[:, 1::2] = torch.cos(angles)
    return codes


def align_position_init(model: Any, loc_ids: torch.Tensor, grid: int, loc_scale: float = 0.05) -> None:
    """Initialise so that image tokens and `<loc>` embeddings speak the same position code.

    `<loc_k>` = [code(k), code(k)] (x half, y half); the 2-D position embedding of grid cell (row i, column j) =
    [code(bin of the column centre), code(bin of the row centre)] and the image projection starts as identity.
    A decoder state that copies the x half of an attended cell then already scores `<loc>` tokens near that cell's
    x coordinate highest, so localisation need not be discovered from random embeddings.
    """
    d_model = int(model.config.text_config.d_model)
    projector = model.model.multi_modal_projector
    half = projector.image_position_embed.column_embeddings.weight.shape[1]
    if half * 2 != d_model or projector.image_projection.weight.shape != (d_model, d_model):
        raise ValueError(f"aligned init needs vision dim == d_model == {d_model}")
    centres = ((torch.arange(grid) + 0.5) * LOC_BINS / grid).floor()
    with torch.no_grad():
        codes = position_codes(torch.arange(LOC_BINS), half)
        model.get_input_embeddings().weight[loc_ids] = torch.cat([codes, codes], dim=1) * loc_scale
        projector.image_position_embed.column_embeddings.weight[:grid] = position_codes(centres, half)
        projector.image_position_embed.row_embeddings.weight[:grid] = position_codes(centres, half)
        projector.image_projection.weight.copy_(torch.eye(d_model))


# ----- the demo model ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoRecipe:
    """Everything `edge-inspect model demo` does, in one place (measurements in docs/tiny-model-recipe.md)."""

    classes: tuple[str, ...] = ("scratch", "hole", "stain")
    image_size: int = 128
    patch_strides: tuple[int, ...] = (4, 2, 1)  # 16 x 16 token grid
    train_frames: int = 1000
    eval_frames: int = 50
    max_defects: int = 2
    defect_free_fraction: float = 0.2
    eval_seed_offset: int = 1_000_003  # unseen frames come from another generator seed
    lr: float = 2e-3
    batch_size: int = 16
    aligned_init: bool = True

    def generator(self, seed: int) -> Any:
        from agent.capture.synthetic import SyntheticGenerator

        return SyntheticGenerator(seed=seed, size=self.image_size, classes=self.classes,
                                  max_defects=self.max_defects, defect_free_fraction=self.defect_free_fraction)


def build_demo_model(out_dir: Path, steps: int = 500, seed: int = 0, recipe: DemoRecipe | None = None,
                     progress: Progress | None = None) -> tuple[TrainResult, EvalResult]:
    """Build a tiny model, train it on synthetic frames, save it to `out_dir` and measure it on unseen frames."""
    from finetune.tiny import TinySpec, build_tiny_model

    recipe = recipe or DemoRecipe()
    spec = TinySpec(image_size=recipe.image_size, patch_strides=recipe.patch_strides, seed=seed)
    build_tiny_model(recipe.classes, Path(out_dir), spec)
    frames = recipe.generator(seed).frames(recipe.train_frames)
    config = TinyTrainConfig(steps=steps, batch_size=recipe.batch_size, seed=seed, lr=recipe.lr,
                             aligned_init=recipe.aligned_init)
    result = train_tiny(Path(out_dir), frames, config, progress)
    unseen = recipe.generator(seed + recipe.eval_seed_offset).frames(recipe.eval_frames)
    return result, evaluate_frames(Path(out_dir), unseen)
