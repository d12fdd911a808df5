"""Training steps: data in memory, device choice, the GAN loop, checkpoints, generators."""
