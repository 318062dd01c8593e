"""Self-supervised methods: one module per method over a shared interface (pathgen.ssl.base)."""
