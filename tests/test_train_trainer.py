"""The batched trainer: equal to independent training, position-free, resumable, isolated."""

from __future__ import annotations

import io
import logging
import shutil
import sys
import types

import numpy as np
import pytest
import torch

from evosim.scenario import AutoencoderConfig
from evosim.train import (
    AEBank,
    AESpec,
    engine,
    model,
    resources,
    streams,
    train_autoencoders,
    trainer,
)
from evosim.train.data import member_splits, noise_pool

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def circles(s: int, n: int = 48, d: int = 6, seed: int = 0) -> np.ndarray:
    """Noisy points on circles of radius 0.5..2, embedded by one random linear map."""
    g = np.random.default_rng(seed)
    theta = g.uniform(0, 2 * np.pi, (s, n))
    radius = np.linspace(0.5, 2.0, s)[:, None]
    embed = g.normal(size=(2, d)) / np.sqrt(2)
    pts = np.stack([radius * np.cos(theta), radius * np.sin(theta)], -1) @ embed
    return (pts + 0.02 * g.normal(size=(s, n, d))).astype(np.float32)


def cfg(**kw) -> AutoencoderConfig:
    base = dict(
        hidden=[12],
        latent=2,
        steps=40,
        batch_size=16,
        lr=3e-3,
        device="cpu",
        validation_fraction=0.25,
    )
    base.update(kw)
    return AutoencoderConfig(**base)


def assert_banks_equal(a: AEBank, b: AEBank) -> None:
    assert a.species == b.species and a.replicates == b.replicates
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), k
    for k in ("train", "val", "curve"):
        np.testing.assert_array_equal(a.losses[k], b.losses[k])
    np.testing.assert_array_equal(a.diverged, b.diverged)


# ------------------------------------------------------------------ batched == independent


def _reference(x_all, config, seed, names, variant):
    """Each species alone: an ordinary nn.Module and torch.optim.Adam, same init and batches."""
    s, n, d = x_all.shape
    spec = AESpec.from_config(config, d)
    _, _, table = member_splits(seed, names, 1, n, config.validation_fraction)
    init = model.init_params(spec, seed, names, [0] * s, config.init)
    pool = noise_pool(seed, d)
    out = {}
    for i, name in enumerate(names):
        ae = model.SpeciesAE(spec, {k: v[i] for k, v in init.items()})
        opt = torch.optim.Adam(ae.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        key = streams.member_keys(seed, [name], [0])
        data = torch.from_numpy(x_all[i])
        for t in range(config.steps):
            pos = streams.randint(
                streams.step_base(key, streams.STREAM_BATCH, t),
                (config.batch_size,),
                table.shape[1],
            )[0]
            x = data[torch.from_numpy(table[i])[pos]]
            if variant == "denoising":
                rows = streams.randint(
                    streams.step_base(key, streams.STREAM_NOISE, t),
                    (config.batch_size,),
                    pool.shape[0],
                )[0]
                recon = ae(x + config.corruption * pool[rows])
                loss = torch.mean((recon - x) ** 2)
            elif variant == "variational":
                eps = streams.normal(
                    streams.step_base(key, streams.STREAM_EPS, t), (config.batch_size, spec.latent)
                )[0]
                h = ae.encoder(x)
                mu, logvar = h[:, : spec.latent], h[:, spec.latent :]
                recon = ae.decoder(mu + torch.exp(0.5 * logvar) * eps)
                kl = -0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp(), dim=1)
                loss = torch.mean((recon - x) ** 2) + config.kl_weight * kl.mean()
            elif variant == "sparse":
                z = ae.encode(x)
                loss = torch.mean((ae.decode(z) - x) ** 2) + config.sparsity_weight * (
                    z.abs().sum(1).mean()
                )
            else:
                loss = torch.mean((ae(x) - x) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
        out[name] = ae
    return out


@pytest.mark.parametrize(
    "variant,extra",
    [
        ("plain", {"weight_decay": 1e-2, "init": "independent"}),
        ("denoising", {"corruption": 0.3}),
        ("variational", {"kl_weight": 0.05}),
        ("sparse", {"sparsity_weight": 0.01, "activation": "tanh"}),
    ],
)
def test_batched_equals_independent_training(variant, extra):
    x = circles(3)
    config = cfg(variant=variant, **extra)
    bank = train_autoencoders(x, config, species=["a", "b", "c"], seed=5, progress=False)
    ref = _reference(x, config, 5, ["a", "b", "c"], variant)
    for i, name in enumerate(["a", "b", "c"]):
        mine = bank.module(i).state_dict()
        theirs = ref[name].state_dict()
        for k in theirs:
            torch.testing.assert_close(mine[k], theirs[k], rtol=1e-4, atol=2e-5, msg=k)
    assert not bank.diverged.any()


# ------------------------------------------------------------------ every variant learns


@pytest.mark.parametrize("variant", ["plain", "denoising", "sparse", "contractive", "variational"])
def test_every_variant_lowers_its_loss(variant):
    x = circles(4, n=64)
    extra = {"sparsity": "kl", "sparsity_weight": 1e-2} if variant == "sparse" else {}
    bank = train_autoencoders(x, cfg(variant=variant, steps=200, **extra), seed=1, progress=False)
    curve = bank.losses["curve"]
    assert curve.shape == (4, 50)
    # the objective ends below a third of where it started, for every species
    assert np.all(curve[:, -1] < curve[:, 0] / 3), curve[:, [0, -1]]
    # and the AE beats predicting each species' mean (variance of its data per input)
    baseline = x.var(axis=1).mean(axis=1)
    assert np.all(bank.losses["val"] < 0.5 * baseline), (bank.losses["val"], baseline)


# ------------------------------------------------------------------ position-free


def test_species_ae_same_among_4_or_64_and_any_chunking():
    x = circles(64, n=32, d=5)
    names = [f"sp{i}" for i in range(64)]
    config = cfg(steps=12, replicates=2, init="independent")
    big = train_autoencoders(x, config, species=names, seed=9, progress=False)
    pick = [3, 17, 40, 63]
    small = train_autoencoders(
        x[pick],
        config.model_copy(update={"chunk_size": 3}),
        species=[names[i] for i in pick],
        seed=9,
        progress=False,
    )
    assert_banks_equal(small, big.subset([names[i] for i in pick]))
    chunked = train_autoencoders(
        x, config.model_copy(update={"chunk_size": 5}), species=names, seed=9, progress=False
    )
    assert_banks_equal(chunked, big)
    # replicates differ from each other (own init, own bootstrap sample and batches)
    assert not torch.equal(big.params["encoder.0.weight"][0], big.params["encoder.0.weight"][1])


def test_replicates_of_shared_init_start_from_shared_weights():
    x = circles(3)
    config = cfg(steps=1, lr=1e-12, replicates=2)
    bank = train_autoencoders(x, config, seed=2, progress=False)
    w = bank.params["encoder.0.weight"]
    torch.testing.assert_close(w[0], w[2], rtol=0, atol=1e-9)  # replicate 0 of each species
    torch.testing.assert_close(w[1], w[5], rtol=0, atol=1e-9)  # replicate 1
    assert not torch.allclose(w[0], w[1])


def test_splits_are_disjoint_and_bootstrap_only_with_replicates():
    train, val, table = member_splits(0, ["a", "b"], 1, 20, 0.25)
    assert train.shape == (2, 15) and val.shape == (2, 5)
    for i in range(2):
        assert set(train[i]) | set(val[i]) == set(range(20))
        assert not set(train[i]) & set(val[i])
    np.testing.assert_array_equal(table, train)
    train2, _, table2 = member_splits(0, ["a", "b"], 3, 20, 0.25)
    assert not np.array_equal(train2[0], train2[1])
    assert all(set(table2[i]) <= set(train2[i]) for i in range(6))
    assert len(set(table2[0])) < 15  # a bootstrap resample repeats instances


# ------------------------------------------------------------------ divergence


def test_diverging_species_is_flagged_and_isolated(caplog):
    x = circles(4)
    bad = x.copy()
    bad[2, :, 0] = np.inf
    config = cfg(steps=20)
    with caplog.at_level(logging.WARNING, logger="evosim.train.trainer"):
        b_bad = train_autoencoders(bad, config, seed=3, progress=False)
    assert "diverge" in caplog.text
    b_ok = train_autoencoders(x, config, seed=3, progress=False)
    np.testing.assert_array_equal(b_bad.diverged, [False, False, True, False])
    keep = [0, 1, 3]
    assert_banks_equal(b_bad.subset(keep), b_ok.subset(keep))
    # the diverged member never took a step: it is frozen at its initial weights
    init = model.init_params(b_bad.spec, 3, ["s3"], [0])
    for k, v in b_bad.params.items():
        assert torch.equal(v[2], init[k][0])
    assert np.isnan(b_bad.losses["curve"][2]).all()


def test_member_diverging_mid_run_is_frozen_at_its_last_state():
    x = torch.from_numpy(circles(3))
    config = cfg(steps=10)
    spec = AESpec.from_config(config, x.shape[2])
    names = ["a", "b", "c"]
    _, _, table = member_splits(0, names, 1, x.shape[1], config.validation_fraction)

    def make():
        return engine.BatchedTrainer(
            spec,
            config,
            x,
            torch.arange(3),
            streams.member_keys(0, names, [0] * 3),
            torch.from_numpy(table),
            model.init_params(spec, 0, names, [0] * 3),
        )

    run, clean = make(), make()
    for _ in range(5):
        run.step()
        clean.step()
    frozen = {k: v[1].clone() for k, v in run.params_cpu().items()}
    run.flat[x.shape[1] : 2 * x.shape[1]] = float("nan")  # species b's data turns to NaN
    for _ in range(5):
        run.step()
        clean.step()
    assert run.state.alive.tolist() == [True, False, True]
    assert run.state.death_step.tolist() == [-1, 5, -1]
    for k, v in run.params_cpu().items():
        assert torch.equal(v[1], frozen[k])
        assert torch.equal(v[[0, 2]], clean.params_cpu()[k][[0, 2]])
    curve = run.curve()
    assert np.isnan(curve[1, 5:]).all() and np.isfinite(curve[1, :5]).all()


# ------------------------------------------------------------------ checkpoint and resume


class _Kill(Exception):
    pass


@pytest.mark.parametrize(
    "variant,compiled",
    [
        ("plain", False),
        ("variational", False),
        pytest.param(
            "plain",
            True,
            marks=pytest.mark.skipif(
                shutil.which("c++") is None and shutil.which("g++") is None,
                reason="torch.compile on the CPU needs a C++ compiler",
            ),
        ),
    ],
)
def test_kill_and_resume_is_bit_identical(tmp_path, variant, compiled):
    x = circles(5)
    config = cfg(
        variant=variant, steps=30, checkpoint_every=4, chunk_size=2, replicates=2, compile=compiled
    )
    whole = train_autoencoders(x, config, seed=4, progress=False)
    total = 3 * config.steps  # three chunks of species
    kill_at = int(np.random.default_rng(2024).integers(1, total))  # a random step overall
    seen = []

    def hook(event):
        seen.append(1)
        if len(seen) == kill_at:
            raise _Kill

    with pytest.raises(_Kill):
        train_autoencoders(
            x, config, seed=4, checkpoint_dir=tmp_path, progress=False, callback=hook
        )
    redone = []
    resumed = train_autoencoders(
        x,
        config,
        seed=4,
        checkpoint_dir=tmp_path,
        progress=False,
        callback=lambda event: redone.append(1),
    )
    assert_banks_equal(resumed, whole)
    assert resumed.info["compiled"] is whole.info["compiled"] is compiled
    # it continued from the last checkpoint (finished chunks and every 4th step), not afresh
    chunk, step = divmod(kill_at - 1, config.steps)
    last_checkpoint = min((step + 1) // 4 * 4, 28)
    assert len(redone) == total - chunk * config.steps - last_checkpoint


def test_kill_twice_and_stale_checkpoints_ignored(tmp_path):
    x = circles(3)
    config = cfg(steps=25, checkpoint_every=3)
    whole = train_autoencoders(x, config, seed=6, progress=False)
    for kill_at in (11, 19):

        def hook(event, kill_at=kill_at):
            if event.step == kill_at:
                raise _Kill

        with pytest.raises(_Kill):
            train_autoencoders(
                x, config, seed=6, checkpoint_dir=tmp_path, progress=False, callback=hook
            )
    assert_banks_equal(
        train_autoencoders(x, config, seed=6, checkpoint_dir=tmp_path, progress=False), whole
    )
    # a different seed must not pick up these checkpoints
    other = train_autoencoders(x, config, seed=7, checkpoint_dir=tmp_path, progress=False)
    assert_banks_equal(other, train_autoencoders(x, config, seed=7, progress=False))


def test_out_of_memory_halves_the_chunk(monkeypatch, caplog):
    x = circles(6)
    config = cfg(steps=8, chunk_size=6)
    whole = train_autoencoders(
        x, config.model_copy(update={"chunk_size": 1}), seed=1, progress=False
    )
    real = trainer.train_chunk
    sizes = []

    def fake(plan, a, b, **kw):
        sizes.append(b - a)
        if b - a > 2:
            raise torch.cuda.OutOfMemoryError("fake")
        return real(plan, a, b, **kw)

    monkeypatch.setattr(trainer, "train_chunk", fake)
    with caplog.at_level(logging.WARNING, logger="evosim.train.trainer"):
        bank = train_autoencoders(x, config, seed=1, progress=False)
    assert "halving" in caplog.text
    assert sizes == [6, 3, 1, 1, 1, 1, 1, 1]  # 6 fails, 3 fails, then chunks of 1 all fit
    assert_banks_equal(bank, whole)


# ------------------------------------------------------------------ inputs


def test_accepts_a_simulation_by_duck_typing():
    x = circles(3)
    sim = types.SimpleNamespace(
        instances=x, species=["p", "q", "r"], scenario=types.SimpleNamespace(seed=12)
    )
    config = cfg(steps=5)
    bank = train_autoencoders(sim, config, progress=False)
    assert bank.species == ["p", "q", "r"]
    assert_banks_equal(
        bank, train_autoencoders(x, config, species=["p", "q", "r"], seed=12, progress=False)
    )
    sub = train_autoencoders(sim, config, species=["r", "p"], progress=False)
    assert sub.species == ["r", "p"]
    assert_banks_equal(sub, bank.subset(["r", "p"]))
    assert bank.reference_inputs.shape[1] == 6 and bank.reference_inputs.dtype == np.float32


def test_bad_inputs_are_named():
    x = circles(2)
    with pytest.raises(ValueError, match=r"\[S, N, D\]"):
        train_autoencoders(x[0], cfg(), progress=False)
    with pytest.raises(ValueError, match="names"):
        train_autoencoders(x, cfg(), species=["a"], progress=False)
    with pytest.raises(ValueError, match="unique"):
        train_autoencoders(x, cfg(), species=["a", "a"], progress=False)
    sim = types.SimpleNamespace(
        instances=x, species=["a", "b"], scenario=types.SimpleNamespace(seed=1)
    )
    with pytest.raises(ValueError, match="not in the simulation"):
        train_autoencoders(sim, cfg(), species=["z"], progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            train_autoencoders(x, cfg(device="cuda"), progress=False)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_reports_species_steps_on_a_terminal_only(monkeypatch):
    terminal, log_file = _Terminal(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", terminal)
    train_autoencoders(circles(2), cfg(steps=3), progress=True)
    assert "species-step" in terminal.getvalue()
    # stderr not a terminal (a cluster's log file): no bar to flood it
    monkeypatch.setattr(sys, "stderr", log_file)
    train_autoencoders(circles(2), cfg(steps=3), progress=True)
    assert "species-step" not in log_file.getvalue()


def test_tf32_on_cpu_falls_back_to_fp32_and_dict_config(caplog):
    x = circles(2)
    with caplog.at_level(logging.INFO, logger="evosim.train.trainer"):
        tf32 = train_autoencoders(x, cfg(steps=5, precision="tf32"), progress=False)
    assert "fp32" in caplog.text and tf32.info["precision"] == "fp32"
    full = train_autoencoders(x, cfg(steps=5).model_dump(), progress=False)  # a dict works
    assert_banks_equal(tf32, full)


def test_bf16_on_cpu_runs_the_layers_in_bfloat16():
    x = circles(4, n=64)
    spec = AESpec.from_config(cfg(), 6)
    names = list("abcd")
    params = model.init_params(spec, 0, names, [0] * 4)
    batch = torch.from_numpy(x[:, :16])
    full = model.member_objective(params, spec, batch, cfg())
    half = model.member_objective(params, spec, batch, cfg(), compute_dtype=torch.bfloat16)
    assert half.dtype == torch.float32
    # bfloat16 keeps 8 significant bits (unit roundoff 2^-9); the objective of four layers of
    # rounded products differs by a few roundoffs, not by more
    rel = ((half - full).abs() / full).max().item()
    assert 0 < rel < 16 * 2.0**-9, rel
    bank = train_autoencoders(x, cfg(steps=200, precision="bf16"), seed=1, progress=False)
    ref = train_autoencoders(x, cfg(steps=200), seed=1, progress=False)
    assert bank.info["precision"] == "bf16"
    assert all(p.dtype == torch.float32 for p in bank.params.values())  # float32 master weights
    assert not torch.equal(bank.params["encoder.0.weight"], ref.params["encoder.0.weight"])
    baseline = x.var(axis=1).mean(axis=1)
    assert np.all(bank.losses["val"] < 0.5 * baseline), (bank.losses["val"], baseline)


# ------------------------------------------------------------------ torch.compile


def test_compile_auto_rule():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resources.use_compile("auto", cuda, 1)
    assert not resources.use_compile("auto", cpu, resources.COMPILE_MIN_MEMBER_STEPS - 1)
    assert resources.use_compile("auto", cpu, resources.COMPILE_MIN_MEMBER_STEPS)
    assert resources.use_compile(True, cpu, 1) and not resources.use_compile(False, cuda, 10**9)
    assert AutoencoderConfig(compile="auto").compile == "auto"
    assert AutoencoderConfig(compile=True).compile is True


def test_failed_compile_falls_back_to_the_eager_step(monkeypatch, caplog):
    def broken(fn, **kwargs):
        def call(*args, **kwargs):
            raise RuntimeError("no C++ compiler found")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    x = circles(3)
    with caplog.at_level(logging.WARNING, logger="evosim.train.trainer"):
        bank = train_autoencoders(x, cfg(steps=10, compile=True), seed=4, progress=False)
    assert "training eagerly" in caplog.text and "no C++ compiler" in caplog.text
    assert_banks_equal(bank, train_autoencoders(x, cfg(steps=10), seed=4, progress=False))


@pytest.mark.skipif(
    shutil.which("c++") is None and shutil.which("g++") is None,
    reason="torch.compile on the CPU needs a C++ compiler",
)
@pytest.mark.parametrize("variant", ["plain", "contractive"])
def test_compiled_step_matches_the_eager_step(variant, caplog):
    x = circles(3)
    with caplog.at_level(logging.WARNING, logger="evosim.train.trainer"):
        fast = train_autoencoders(
            x, cfg(steps=30, compile=True, variant=variant), seed=6, progress=False
        )
    assert "eagerly" not in caplog.text  # it really compiled
    assert fast.info["compiled"] is True
    slow = train_autoencoders(x, cfg(steps=30, variant=variant), seed=6, progress=False)
    for k in slow.params:  # the same arithmetic, fused and reordered: float rounding apart
        torch.testing.assert_close(fast.params[k], slow.params[k], rtol=1e-4, atol=1e-5, msg=k)


def test_minibatch_rows_drawn_in_blocks_equal_the_per_step_draw(monkeypatch):
    x = torch.from_numpy(circles(3, n=40))
    config = cfg(batch_size=5)
    spec = AESpec.from_config(config, 6)
    names = ["a", "b", "c"]
    keys = streams.member_keys(3, names, [0] * 3)
    table = torch.stack(
        [torch.randperm(40, generator=torch.Generator().manual_seed(i))[:30] for i in range(3)]
    )
    monkeypatch.setattr(engine, "ROW_BLOCK_STEPS", 7)
    tr = engine.BatchedTrainer(
        spec, config, x, torch.arange(3), keys, table, model.init_params(spec, 0, names, [0] * 3)
    )
    for t in [0, 1, 6, 7, 8, 20, 3, 100]:  # inside, across and back before a block
        pos = streams.randint(streams.step_base(keys, streams.STREAM_BATCH, t), (5,), 30)
        expected = table.gather(1, pos) + torch.arange(3).unsqueeze(1) * 40
        assert torch.equal(tr.batch_rows(t), expected), t


def _step_layer_bytes(monkeypatch, spec, config, members: int) -> int:
    """Bytes of the minibatch and every layer output in one eager step of a chunk."""
    species = members // config.replicates
    names = [f"s{i}" for i in range(species) for _ in range(config.replicates)]
    reps = [r for _ in range(species) for r in range(config.replicates)]
    seen = []
    real = model._linear

    def spy(params, key, h):
        out = real(params, key, h)
        if key == "encoder.0":
            seen.append(h.nbytes)  # the minibatch the encoder reads
        seen.append(out.nbytes)
        return out

    tr = engine.BatchedTrainer(
        spec,
        config,
        torch.zeros(species, 16, spec.input_dim),
        torch.arange(species).repeat_interleave(config.replicates),
        streams.member_keys(0, names, reps),
        torch.arange(12).repeat(members, 1),
        model.init_params(spec, 0, names, reps),
        noise_pool=noise_pool(0, spec.input_dim) if spec.variant == "denoising" else None,
    )
    with monkeypatch.context() as m:
        m.setattr(model, "_linear", spy)
        tr.step()
    return sum(seen)


@pytest.mark.parametrize(
    ("variant", "replicates"), [("plain", 1), ("variational", 3), ("denoising", 2)]
)
def test_cpu_chunk_cap_keeps_a_steps_layer_outputs_under_the_budget(
    monkeypatch, variant, replicates
):
    # The cap is the largest chunk whose step's minibatch and layer outputs, as measured in
    # a real step, fit CPU_STEP_BYTES: one species more would not fit.
    config = cfg(variant=variant, replicates=replicates, batch_size=128, hidden=[64])
    spec = AESpec(input_dim=32, hidden=(64,), latent=2, variant=variant)
    cap = resources.cpu_chunk_cap(spec, 128, replicates=replicates)
    assert cap > 1
    fits = _step_layer_bytes(monkeypatch, spec, config, cap * replicates)
    more = _step_layer_bytes(monkeypatch, spec, config, (cap + 1) * replicates)
    assert fits <= resources.CPU_STEP_BYTES < more, (fits, more)


def test_cpu_chunks_are_capped_to_stay_in_cache(monkeypatch):
    config = cfg(steps=8)
    x = circles(7)
    spec = AESpec.from_config(config, 6)
    one = _step_layer_bytes(monkeypatch, spec, config, 1)
    monkeypatch.setattr(resources, "CPU_STEP_BYTES", 3 * one)  # room for three species
    assert resources.chunk_size(spec, config, 48, torch.device("cpu")) == 3
    capped = train_autoencoders(x, config, seed=2, progress=False)
    assert_banks_equal(
        capped,
        train_autoencoders(x, config.model_copy(update={"chunk_size": 7}), seed=2, progress=False),
    )


def test_loss_weights_carry_every_scalar_field():
    # a variant's new weight (a new scalar field of the section) reaches the objective as is
    config = types.SimpleNamespace(kl_weight=0.5, new_weight=2.0, name="x", hidden=[3], chunk=None)
    w = engine.loss_weights(config)
    assert (w.kl_weight, w.new_weight, w.name) == (0.5, 2.0, "x")
    assert not hasattr(w, "hidden") and not hasattr(w, "chunk")
    full = engine.loss_weights(cfg(corruption=0.3, sparsity="kl"))
    assert (full.corruption, full.sparsity, full.lr) == (0.3, "kl", 3e-3)
