"""Training: chat template and loss weights, batches and packing, the loss, AdamW, the compiled
step, the loop, checkpoints, and device meshes."""
