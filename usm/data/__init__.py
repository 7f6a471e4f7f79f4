"""Training data: the embedded ``shapes`` dataset, image folders, text contexts, VAE latents."""
