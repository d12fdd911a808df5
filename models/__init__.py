"""Pure nn.Modules and losses: DCGAN, WGAN-GP, BEGAN, DiffAugment, generator EMA. No I/O."""
