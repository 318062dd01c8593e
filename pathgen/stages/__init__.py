"""Everything runnable: each module here is one `pathgen` stage (or the Gen-SIS / ablation runs made
of them), composing the method libraries below it (data, models, ssl, diffusion, genaug, eval,
generation_metrics). No library imports this package; see docs/architecture.md."""
