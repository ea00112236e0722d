"""From-scratch training recipe for the tiny Florence-2 (see docs/tiny-model-recipe.md for why each part is there).

Plain cross-entropy on `label<loc><loc><loc><loc>` targets teaches a 2 M-parameter Florence-2 to ignore the image:
the decoder learns the marginal answer long before the vision tower learns anything. The recipe adds, for training
only (nothing of it is saved; the saved model is a plain `Florence2ForConditionalGeneration`):

- a per-cell class head on the encoder's image-token outputs (which defect class covers each grid cell),
- a per-cell box head: every cell inside a defect predicts that defect's four `<loc>` bins, scored against the
  model's own (tied) `<loc>` embeddings, so image tokens carry box coordinates in the space the decoder emits,
- Gaussian soft targets over neighbouring `<loc>` bins for the decoder (a near miss costs less than a far one),
- horizontal/vertical flips of the frames (boxes flipped with them).

Modules: `batches` (flips, per-cell targets, tensors), `heads` (the training-only heads and their losses),
`aligned_init` (position-code initialisation), `trainer` (the loop, `train_tiny`), `evaluation` (greedy generation
measured against ground truth), `demo` (the recipe behind `edge-inspect model demo`).
"""
