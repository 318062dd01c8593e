"""The benchmark engine: frozen features in, metrics, tables and plots out.

Patch level, on features already in memory:
    `metrics`       balanced accuracy, AUROC, binary and macro F1, accuracy; two-level bootstrap CIs; mean ± sd
    `compare`       paired comparison of two encoders: paired bootstrap of Δ (seeds resampled), DeLong
    `probes`        logistic-regression probe, `run_probe` (seeds → summary dict); re-exports all probes
    `linear_probe`  eva's linear head with early stopping counted in validation checks
    `knn_probe`     DINO's similarity-weighted kNN on cosine similarity
    `few_shot`      SimpleShot nearest-centroid episodes
    `probe_result`  the `ProbeResult` every probe returns and the input checks
    `report`        summaries → results.json + scores.npz, results.md (tables, comparison, header)
    `figures`       bars with intervals (few-shot apart), mean ROC curves with a band; PNG/SVG/PDF

Slide level, on bags of tile features:
    `mil_models`    mean-pool, ABMIL, TransMIL, CLAM-SB
    `mil`           training with early stopping, seeds or folds, eva's Camelyon16(-small) recipes
    `mil_optim`     the MIL papers' optimisers: AdamW (eva), Adam (CLAM), RAdam + Lookahead (TransMIL)

Data (running a suite is pathgen.stages.bench):
    `datasets`      readers for PCam, CRC-100K, MHIST, BACH, ImageFolder/CSV, Camelyon16, slide CSVs
    `synth_datasets` small synthetic copies in those formats (`pathgen synth-dataset`)
    `features`      frozen-encoder features cached per (encoder, dataset, split); slide bags via tile + embed

Nothing is imported here, so ``import pathgen.eval`` stays cheap (no torch).
"""
