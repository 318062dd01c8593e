"""Generation quality: Fréchet distance in an encoder's feature space, conditioning fidelity and retrieval, precision
/ recall."""
