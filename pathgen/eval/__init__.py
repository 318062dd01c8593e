"""The benchmark engine: frozen features in, metrics, tables and plots out.

Patch level, on features already in memory:
    `metrics`       balanced accuracy, AUROC, macro-F1, accuracy; stratified bootstrap CIs; mean ± sd
    `probes`        logistic-regression and kNN probes, `run_probe` (seeds → summary dict)
    `linear_probe`  eva's linear head with early stopping counted in validation checks
    `few_shot`      SimpleShot nearest-centroid episodes
    `report`        summaries → JSON, Markdown table, bar chart with intervals, ROC curves

Nothing is imported here, so ``import pathgen.eval`` stays cheap (no torch).
"""
