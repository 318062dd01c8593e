"""Two CPU processes (gloo): distributed centring, Sinkhorn-Knopp and differentiable gathers equal one process on
the concatenated batch (losses average over ranks; gradients are W × the global-batch gradient
before DDP divides them by W)."""

from __future__ import annotations

import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pathgen.ssl.collectives import all_gather_cat, all_reduce_mean, rank, shuffled_bn_forward, world_size
from pathgen.ssl.losses.barlow import barlow_twins_loss
from pathgen.ssl.losses.centering import sinkhorn_knopp
from pathgen.ssl.losses.dino import DINOLoss
from pathgen.ssl.losses.moco import mocov3_contrastive
from pathgen.ssl.losses.simclr import nt_xent_loss

WORLD = 2
LOCAL_BATCH = 3


def _global_data() -> dict[str, torch.Tensor]:
    """The global batch every rank rebuilds from the same seed and slices."""
    generator = torch.Generator().manual_seed(0)
    batch = WORLD * LOCAL_BATCH
    return {
        "teacher": torch.randn(2, batch, 5, generator=generator),  # 2 global views, K = 5
        "student": torch.randn(3, batch, 5, generator=generator),
        "views": torch.randn(2, batch, 6, generator=generator),
        "query": torch.randn(batch, 6, generator=generator),
        "key": torch.randn(batch, 6, generator=generator),
        "weights": torch.randn(batch, 4, generator=generator),
        "keys": torch.randn(batch, 4, generator=generator) * 2 + 1,
        "barlow": torch.randn(2, batch, 4, generator=generator) * torch.tensor([1.0, 2.0, 0.5, 3.0]) + 1.0,
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_results(data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Everything one rank computes on its slice of the global batch."""
    mine = slice(rank() * LOCAL_BATCH, (rank() + 1) * LOCAL_BATCH)
    results: dict[str, torch.Tensor] = {"world_rank": torch.tensor([world_size(), rank()])}
    dino = DINOLoss(5)
    dino.center.fill_(0.1)
    results["dino_loss"] = dino(list(data["student"][:, mine]), list(data["teacher"][:, mine]), 0.04)
    results["center"] = dino.center.clone()
    results["sinkhorn"] = sinkhorn_knopp(data["teacher"][0, mine] / 0.04)
    sk_dino = DINOLoss(5, centering="sinkhorn_knopp")
    results["sk_dino_loss"] = sk_dino(list(data["student"][:, mine]), list(data["teacher"][:, mine]), 0.04)
    views = data["views"][:, mine].clone().requires_grad_(True)
    results["simclr_loss"] = nt_xent_loss(list(views), 0.2)
    results["simclr_loss"].backward()
    results["simclr_grad"] = views.grad
    query = data["query"][mine].clone().requires_grad_(True)
    results["moco_loss"] = mocov3_contrastive(query, data["key"][mine], 0.2)
    results["moco_loss"].backward()
    results["moco_grad"] = query.grad
    barlow = data["barlow"][:, mine].clone().requires_grad_(True)
    results["barlow_loss"] = barlow_twins_loss(barlow[0], barlow[1], 0.0051, 1.0)
    results["barlow_loss"].backward()
    results["barlow_grad"] = barlow.grad
    local = torch.ones(LOCAL_BATCH, 4, requires_grad=True)
    (all_gather_cat(local) * data["weights"]).sum().backward()
    results["gather_grad"] = local.grad
    reduced_input = torch.full((2,), float(rank() + 1), requires_grad=True)
    reduced = all_reduce_mean(reduced_input)
    (reduced * (rank() + 1)).sum().backward()
    results["reduced"], results["reduced_grad"] = reduced.detach(), reduced_input.grad
    torch.manual_seed(0)  # rank 0's permutation is broadcast; the test redraws it from this seed
    norm = torch.nn.BatchNorm1d(4, affine=False)
    results["shuffled_bn"] = shuffled_bn_forward(norm, data["keys"][mine])
    results["shuffled_scale"] = shuffled_bn_forward(torch.nn.Identity(), data["keys"][mine] * 2)
    return {key: value.detach() for key, value in results.items()}


def _worker(process_rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=process_rank, world_size=WORLD)
    try:
        torch.save(_rank_results(_global_data()), Path(out_dir) / f"rank{process_rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_process_results_equal_single_process_on_concatenated_batch(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    data = _global_data()
    assert [r["world_rank"].tolist() for r in ranks] == [[2, 0], [2, 1]]

    single_dino = DINOLoss(5)
    single_dino.center.fill_(0.1)
    single_loss = single_dino(list(data["student"]), list(data["teacher"]), 0.04)
    for result in ranks:  # the centre is the all-reduced one, identical on every rank
        assert torch.allclose(result["center"], single_dino.center, atol=1e-6)
    assert torch.allclose(torch.stack([r["dino_loss"] for r in ranks]).mean(), single_loss, atol=1e-6)
    # Sinkhorn-Knopp normalises over the global batch: each rank's rows equal the single process's
    single_sinkhorn = sinkhorn_knopp(data["teacher"][0] / 0.04)
    for r, result in enumerate(ranks):
        assert torch.allclose(result["sinkhorn"], single_sinkhorn[r * LOCAL_BATCH : (r + 1) * LOCAL_BATCH], atol=1e-6)
    single_sk = DINOLoss(5, centering="sinkhorn_knopp")(list(data["student"]), list(data["teacher"]), 0.04)
    assert torch.allclose(torch.stack([r["sk_dino_loss"] for r in ranks]).mean(), single_sk, atol=1e-5)

    views = data["views"].clone().requires_grad_(True)
    single_simclr = nt_xent_loss(list(views), 0.2)
    single_simclr.backward()
    assert torch.allclose(torch.stack([r["simclr_loss"] for r in ranks]).mean(), single_simclr, atol=1e-6)
    for r, result in enumerate(ranks):
        mine = slice(r * LOCAL_BATCH, (r + 1) * LOCAL_BATCH)
        assert torch.allclose(result["simclr_grad"] / WORLD, views.grad[:, mine], atol=1e-6)

    query = data["query"].clone().requires_grad_(True)
    single_moco = mocov3_contrastive(query, data["key"], 0.2)
    single_moco.backward()
    assert torch.allclose(torch.stack([r["moco_loss"] for r in ranks]).mean(), single_moco, atol=1e-6)
    # MoCo's shuffled BN: each key is standardised with the statistics of the shuffled chunk it landed
    # in (not its own rank's), and comes back to its own rank and row
    torch.manual_seed(0)
    chunks = torch.randperm(WORLD * LOCAL_BATCH).view(WORLD, LOCAL_BATCH)
    keys = data["keys"]
    expected = torch.empty_like(keys)
    for chunk in chunks:
        expected[chunk] = torch.nn.functional.batch_norm(keys[chunk], None, None, training=True)
    shuffled = torch.cat([r["shuffled_bn"] for r in ranks])
    assert torch.allclose(shuffled, expected, atol=1e-5)
    assert not torch.allclose(
        shuffled[:LOCAL_BATCH], torch.nn.functional.batch_norm(keys[:LOCAL_BATCH], None, None, training=True), atol=1e-3
    )  # this seed does re-split the batch
    assert torch.equal(torch.cat([r["shuffled_scale"] for r in ranks]), keys * 2)

    # Barlow Twins: BN statistics over the global batch (SyncBN in the official code), so every rank's
    # loss is the one-process loss on the concatenated batch, not the mean of per-rank losses
    barlow = data["barlow"].clone().requires_grad_(True)
    single_barlow = barlow_twins_loss(barlow[0], barlow[1], 0.0051, 1.0)
    single_barlow.backward()
    for r, result in enumerate(ranks):
        mine = slice(r * LOCAL_BATCH, (r + 1) * LOCAL_BATCH)
        assert torch.allclose(result["barlow_loss"], single_barlow, atol=1e-5)
        assert torch.allclose(result["barlow_grad"] / WORLD, barlow.grad[:, mine], atol=1e-5)
    for r, result in enumerate(ranks):
        mine = slice(r * LOCAL_BATCH, (r + 1) * LOCAL_BATCH)
        assert torch.allclose(result["moco_grad"] / WORLD, query.grad[mine], atol=1e-6)
        # every rank's loss uses the same gathered tensor: the local slice receives the sum, W·w
        assert torch.allclose(result["gather_grad"], WORLD * data["weights"][mine])
        # mean of (1, 2) is 1.5; the gradient is the mean of the ranks' upstream grads (1, 2)
        assert torch.allclose(result["reduced"], torch.full((2,), 1.5))
        assert torch.allclose(result["reduced_grad"], torch.full((2,), 1.5))
