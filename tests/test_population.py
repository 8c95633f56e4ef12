"""Populations: K networks stacked and run together give each seed what it gets alone
(outputs, gradients, a whole training run, checkpoints), compiled or not, K = 1 included;
one seed's divergence leaves the others alone; per-seed checkpoints stack back."""

import json
from functools import partial

import pandas as pd
import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from ntm_repro.models.factory import build_model
from ntm_repro.models.population import Population, stack_key
from ntm_repro.training.instantiate import build_task
from ntm_repro.training.metrics import cost_nats
from ntm_repro.training.module import SequenceLearner
from ntm_repro.training.run import train, train_seeds
from ntm_repro.training.seed_checkpoints import split_checkpoint, stack_checkpoints
from ntm_repro.launcher import populations

SEEDS = (0, 1, 2)
LEVELS = (4, 1, 3)  # one length per seed: the batch is padded to the longest


def networks(cfg, seeds=SEEDS):
    task = build_task(cfg.task)
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(build_model(cfg.model, cfg.controller, task.input_size, task.output_size))
    return task, models


def episodes(task, levels=LEVELS):
    generator = torch.Generator().manual_seed(7)
    return [task.episode(2, min(level, task.train_levels[-1]) if task.name == "copy" else level + 1, generator) for level in levels]


def assert_like_alone(batch, alone, task, atol=1e-6):
    """Each seed's logits (at its own length) and gradients equal its network's alone."""
    batches = episodes(task)
    logits = batch.forward_padded([episode.inputs for episode in batches])
    sum(cost_nats(seed_logits, episode) for seed_logits, episode in zip(logits, batches)).backward()
    for k, (network, episode) in enumerate(zip(alone, batches)):
        expected = network(episode.inputs)
        cost_nats(expected, episode).backward()
        assert logits[k].shape == expected.shape
        torch.testing.assert_close(logits[k], expected, rtol=1e-5, atol=atol)
        for name, param in network.named_parameters():
            torch.testing.assert_close(batch.stacked[stack_key(name)].grad[k], param.grad, rtol=1e-4, atol=atol, msg=name)


@pytest.mark.parametrize(
    "overrides",
    [["model=ntm"], ["model=ntm3", "task=recall", "++model.memory.locations=16", "++model.memory.width=6", "controller.size=12"],
     ["model=lstm"], ["controller=feedforward", "model.engine=reference"], ["model=ntm2", "model.engine=reference"]],
    ids=["ntm", "ntm3", "lstm", "feedforward reference engine", "ntm2 reference engine"],
)
def test_each_seed_gets_what_it_gets_alone(compose_cfg, overrides):
    cfg = compose_cfg(*overrides, tiny="task=recall" not in overrides)
    task, alone = networks(cfg)
    batch = Population(networks(cfg)[1])
    assert batch.seeds == 3 and not torch.equal(batch.stacked[stack_key(batch.names[0])][0], batch.stacked[stack_key(batch.names[0])][1])
    assert_like_alone(batch, alone, task)


@pytest.mark.parametrize("compiled", [False, True], ids=["direct", "compiled"])
def test_a_population_of_one_is_its_network(compose_cfg, compiled):
    """K = 1 runs its network directly (or, compiled, through the batched step): the same
    outputs and gradients as the network alone, on both engines."""
    for engine in ("fused", "reference") if not compiled else ("reference",):
        cfg = compose_cfg(f"model.engine={engine}")
        task, alone = networks(cfg, seeds=(1,))
        one = Population(networks(cfg, seeds=(1,))[1], compile_step=compiled)
        assert one.seeds == 1 and one.direct is not compiled
        batches = episodes(task, levels=(3,))
        (logits,) = one.forward_padded([batches[0].inputs])
        cost_nats(logits, batches[0]).backward()
        expected = alone[0](batches[0].inputs)
        cost_nats(expected, batches[0]).backward()
        torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
        for name, param in alone[0].named_parameters():
            torch.testing.assert_close(one.stacked[stack_key(name)].grad[0], param.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_any_single_network_runs_as_itself_but_several_need_a_batched_forward():
    """K = 1 takes any module (evaluation wraps plain networks); K > 1 of a type with no
    batched forward is refused when the population is built, not deep in the first step."""

    class Linear(torch.nn.Linear):
        pass

    one = Population([Linear(2, 3)])
    assert one(torch.ones(1, 4, 5, 2)).shape == (1, 4, 5, 3)
    with pytest.raises(TypeError, match="no batched forward for Linear"):
        Population([Linear(2, 3), Linear(2, 3)])


def test_a_compiled_seed_batch_matches_and_is_not_recompiled_for_new_lengths(compose_cfg):
    cfg = compose_cfg("model.engine=reference")  # train.compile compiles the reference's time step
    task, alone = networks(cfg)
    torch._dynamo.reset()
    counters.clear()
    batch = Population(networks(cfg)[1], compile_step=True)
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True, recompile_limit=4):  # first/later x train/eval
        assert_like_alone(batch, alone, task, atol=1e-5)
        for length in range(1, 7):
            inputs = torch.rand(3, 2, length, task.input_size)
            batch(inputs).sum().backward()
            with torch.no_grad():
                batch(inputs)
    assert counters["stats"]["unique_graphs"] >= 2  # compiled (training and evaluation), not run eagerly


def test_training_together_matches_training_alone(compose_cfg, tmp_path):
    cfgs = [compose_cfg(f"seed={seed}") for seed in SEEDS]
    together = train_seeds(cfgs, [tmp_path / "together" / str(seed) for seed in SEEDS])
    for seed, summary in zip(SEEDS, together):
        assert summary["status"] == "completed" and summary["trained_with_seeds"] == list(SEEDS)
        alone = train(cfgs[seed], tmp_path / "alone" / str(seed))
        assert summary["steps"] == alone["steps"] and summary["num_parameters"] == alone["num_parameters"]
        for name in ("metrics.csv", "generalisation.csv"):
            ours = pd.read_csv(tmp_path / "together" / str(seed) / name).drop(columns="time_s", errors="ignore")
            theirs = pd.read_csv(tmp_path / "alone" / str(seed) / name).drop(columns="time_s", errors="ignore")
            pd.testing.assert_frame_equal(ours, theirs, rtol=1e-4, atol=1e-5)
        ours, theirs = (torch.load(tmp_path / way / str(seed) / "last.ckpt", weights_only=False) for way in ("together", "alone"))
        assert ours["state_dict"].keys() == theirs["state_dict"].keys()
        for name, value in theirs["state_dict"].items():
            torch.testing.assert_close(ours["state_dict"][name], value, rtol=1e-4, atol=1e-5)
        for index, state in theirs["optimizer_states"][0]["state"].items():
            for name, value in state.items():
                torch.testing.assert_close(ours["optimizer_states"][0]["state"][index][name], value, rtol=1e-4, atol=1e-6)
    curves = [pd.read_csv(tmp_path / "together" / str(seed) / "metrics.csv").cost_bits for seed in SEEDS]
    assert not curves[0].equals(curves[1])  # the seeds really are different runs


def test_a_diverged_seed_stops_alone(compose_cfg):
    cfg = compose_cfg()
    task, models = networks(cfg)
    batch = Population(models)
    with torch.no_grad():
        batch.stacked[stack_key(batch.names[0])][1].fill_(float("nan"))
    learner = SequenceLearner(batch, partial(torch.optim.Adam, lr=1e-3), [], batch_size=2, log_every_steps=1, val_every_steps=1)
    loss = learner.training_step(episodes(task), 0)
    assert torch.isfinite(loss)
    assert learner.diverged[0] is None and learner.diverged[2] is None
    assert learner.diverged[1].startswith("non-finite loss (nan) at step 1")
    loss.backward()
    grads = [param.grad for param in batch.parameters()]
    assert all(torch.isfinite(grad[[0, 2]]).all() for grad in grads)


def test_seed_checkpoints_are_what_each_seed_alone_writes_and_stack_back(compose_cfg, tmp_path):
    stop = ["+trainer.max_epochs=1", "+trainer.limit_train_batches=3", "train.log_every=32"]
    cfgs = [compose_cfg(*stop, f"seed={seed}") for seed in SEEDS]
    assert {s["status"] for s in train_seeds(cfgs, [tmp_path / str(seed) for seed in SEEDS])} == {"interrupted"}
    train(cfgs[1], tmp_path / "alone")
    alone = torch.load(tmp_path / "alone" / "last.ckpt", weights_only=False)
    seeds = [torch.load(tmp_path / str(seed) / "last.ckpt", weights_only=False) for seed in SEEDS]
    assert seeds[1].keys() == alone.keys() and seeds[1]["global_step"] == alone["global_step"] == 3
    assert seeds[1]["EpisodeDataModule"] == alone["EpisodeDataModule"] == {"next_batch": 3}
    for name, value in alone["state_dict"].items():
        torch.testing.assert_close(seeds[1]["state_dict"][name], value, rtol=1e-5, atol=1e-6)
    assert len(seeds[1]["interval"]["cost"]) == 1

    model = Population(networks(cfgs[0])[1])
    stacked = stack_checkpoints(seeds, model)
    assert stacked["state_dict"][f"model.stacked.{stack_key(model.names[0])}"].shape[0] == 3
    model.load_state_dict({name.removeprefix("model."): value for name, value in stacked["state_dict"].items()})
    again = split_checkpoint(stacked, model)
    for original, split in zip(seeds, again):
        for name, value in original["state_dict"].items():
            assert torch.equal(split["state_dict"][name], value)
        for index, state in original["optimizer_states"][0]["state"].items():
            for name, value in state.items():
                assert torch.equal(split["optimizer_states"][0]["state"][index][name], value)
        assert split["interval"] == original["interval"]
    with pytest.raises(ValueError, match="different steps"):
        stack_checkpoints([seeds[0], {**seeds[1], "global_step": 5}], model)


def test_runs_group_by_everything_but_the_seed(compose_cfg, tmp_path):
    runs = [(compose_cfg(f"model={model}", f"seed={seed}"), tmp_path / f"{model}{seed}") for seed in (2, 0) for model in ("ntm", "lstm")]
    groups = populations(runs)
    assert [[(cfg.model.name, cfg.seed) for cfg, _ in group] for group in groups] == [[("ntm", 0), ("ntm", 2)], [("lstm", 0), ("lstm", 2)]]


def test_a_resumed_batch_skips_finished_seeds(compose_cfg, tmp_path):
    cfgs = [compose_cfg(f"seed={seed}", "resume=true") for seed in SEEDS[:2]]
    dirs = [tmp_path / str(seed) for seed in SEEDS[:2]]
    first = train(cfgs[0], dirs[0])
    both = train_seeds(cfgs, dirs)
    assert both[0]["skipped"] and both[0]["final"] == first["final"]
    assert both[1]["status"] == "completed" and both[1]["trained_with_seeds"] == [1]  # the one left, a population of one
    assert json.loads((dirs[1] / "summary.json").read_text())["status"] == "completed"
