"""The generative stage: a VAE and an SSL-embedding-conditioned latent diffusion model that make
new views of a tile (Gen-SIS, GenView, GenerativeSSL), their samplers and the generated-view bank."""
