"""Training pieces: batches, pass@k, deterministic training, the CLI parser."""

import argparse
import dataclasses
import itertools
import json

import jax
import numpy as np
import pytest

from ppl_models.tasks import arithmetic as A
from ppl_models.tasks.tokenizer import build_tokenizer, decode
from ppl_models.train.data import batch_for_step, make_batch
from ppl_models.train.evaluate import pass_at_k


def test_pass_at_k_matches_brute_enumeration():
    # pass@k = P(a uniformly random k-subset of the n samples contains a correct one)
    for n, c, k in [(5, 2, 1), (5, 2, 3), (6, 0, 2), (6, 6, 1), (7, 3, 4), (4, 1, 4)]:
        samples = [1] * c + [0] * (n - c)
        subsets = list(itertools.combinations(range(n), k))
        brute = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
        assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_batch_masks_solution_tokens_only():
    tok = build_tokenizer()
    p = A.make_problem(34, [("+", 21), ("*", 3)], 97)
    b = make_batch(tok, [p, A.make_problem(1, [("+", 1)], 23)])
    assert b.tokens.shape == b.targets.shape == b.mask.shape and b.tokens.shape[1] % 16 == 0
    n_prompt = len(p.prompt)
    row_t, row_y, row_m = b.tokens[0], b.targets[0], b.mask[0]
    assert decode(tok, row_t[:n_prompt]) == p.prompt
    # targets are the inputs shifted by one
    assert np.array_equal(row_y[:-1][row_t[1:] != 0], row_t[1:][row_t[1:] != 0])
    masked_targets = row_y[row_m > 0]
    assert decode(tok, masked_targets) == p.solution
    assert masked_targets[-1] == tok.token_to_id("<eos>")
    assert row_m.sum() == len(p.solution) + 1


def test_training_batches_are_deterministic_and_from_train_split():
    tok = build_tokenizer()
    mix = A.training_mixture()
    a = batch_for_step(tok, 5, 0, 8, mix)
    b = batch_for_step(tok, 5, 0, 8, mix)
    c = batch_for_step(tok, 5, 1, 8, mix)
    assert np.array_equal(a.tokens, b.tokens) and not np.array_equal(a.tokens, c.tokens)
    for row in a.tokens:
        prompt = decode(tok, row).split("\n")[0] + "\n"
        assert A.split_of(prompt) == "train"


def test_training_is_deterministic_and_learns():
    from ppl_models.train.lm import TrainConfig, train_lm

    cfg = TrainConfig(steps=6, batch_size=8, warmup_steps=2, hidden_size=32, num_layers=1, num_heads=2,
                      intermediate_size=64, max_steps_in_mixture=1, moduli=(23,))
    lm1, h1 = train_lm(cfg, progress=False, log_every=1)
    lm2, h2 = train_lm(cfg, progress=False, log_every=1)
    assert h1["loss"] == h2["loss"]
    for a, b in zip(jax.tree.leaves(lm1.params), jax.tree.leaves(lm2.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert h1["loss"][-1] < h1["loss"][0]


def test_cli_parses_train_lm():
    from ppl_models.train import cli

    parser = argparse.ArgumentParser()
    cli.setup(parser)
    args = parser.parse_args(["lm", "--out", "x", "--steps", "3", "--eval-problems", "0"])
    assert args.func is cli.run and args.steps == 3 and args.out == "x"
    args.steps = 0
    assert cli.run(args) == 2


@pytest.mark.slow  # 8 s; resuming is tested by the continued-run test
def test_checkpoint_of_long_run_equals_short_run(tmp_path):
    # constant rate after warm-up: the weights after n steps do not depend on the total steps,
    # so the shipped checkpoint (taken from a longer run) is what `ppl train lm --steps n` makes
    from ppl_models.lm import load_pretrained
    from ppl_models.train.lm import TrainConfig, train_lm

    small = dict(batch_size=4, warmup_steps=2, hidden_size=32, num_layers=1, num_heads=2,
                 intermediate_size=64, max_steps_in_mixture=2, moduli=(23,))
    train_lm(TrainConfig(steps=5, **small), progress=False, checkpoint_every=3, checkpoint_dir=str(tmp_path))
    short, _ = train_lm(TrainConfig(steps=3, **small), progress=False)
    ckpt = load_pretrained(tmp_path / "step_3")
    for a, b in zip(jax.tree.leaves(ckpt.params), jax.tree.leaves(short.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_continued_run_starts_from_checkpoint_and_reads_later_batches(tmp_path):
    # the bundled verifier LM is the bundled LM continued: init_from loads the weights and
    # first_step offsets the data stream, so the first loss is the checkpoint's loss on batch k
    import jax.numpy as jnp

    from ppl_models.lm import save_pretrained
    from ppl_models.train.lm import TrainConfig, _loss, train_lm

    small = dict(batch_size=4, warmup_steps=0, hidden_size=32, num_layers=1, num_heads=2,
                 intermediate_size=64, max_steps_in_mixture=2, moduli=(23,))
    base, _ = train_lm(TrainConfig(steps=3, **small), progress=False)
    save_pretrained(base, tmp_path / "base")
    cont = TrainConfig(steps=2, learning_rate=1e-3, schedule="cosine", init_from=str(tmp_path / "base"),
                       first_step=3, **small)
    lm, h = train_lm(cont, progress=False, log_every=1)
    mix = A.training_mixture(2, (23,))
    b = batch_for_step(base.tokenizer, 3, 0, 4, mix)
    want = float(_loss(base.apply, base.params, jnp.asarray(b.tokens), jnp.asarray(b.targets), jnp.asarray(b.mask)))
    assert h["loss"][0] == pytest.approx(want, rel=1e-5)
    b0 = batch_for_step(base.tokenizer, 0, 0, 4, mix)
    other = float(_loss(base.apply, base.params, jnp.asarray(b0.tokens), jnp.asarray(b0.targets), jnp.asarray(b0.mask)))
    assert other != pytest.approx(want, rel=1e-5)
    moved = [float(np.max(np.abs(np.asarray(a) - np.asarray(c)))) for a, c in
             zip(jax.tree.leaves(lm.params), jax.tree.leaves(base.params))]
    assert 0 < max(moved) < 0.05  # a few small steps away from the checkpoint
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="first_step"):
        TrainConfig(first_step=-1)


def test_cli_parses_train_lm_continuation(tmp_path):
    from ppl_models.train import cli

    parser = argparse.ArgumentParser()
    cli.setup(parser)
    args = parser.parse_args(["lm", "--init-from", str(tmp_path), "--first-step", "3000", "--schedule", "cosine",
                              "--warmup-steps", "0"])
    assert args.init_from == str(tmp_path) and args.first_step == 3000 and args.schedule == "cosine"
    assert cli.run(args) == 2  # not a checkpoint folder: a clear error before any work
    args = parser.parse_args(["lm", "--first-step", "-1"])
    assert cli.run(args) == 2


def test_cli_parses_train_prm():
    from ppl_models.train import cli

    parser = argparse.ArgumentParser()
    cli.setup(parser)
    args = parser.parse_args(["prm", "--out", "y", "--rollouts", "2"])
    assert args.func is cli.run and args.rollouts == 2 and args.lm is None
    # the shipped PRM's recipe: exact step labels on rollouts at T=1 and 0.8, reading the verifier LM
    assert args.step_labels == "exact" and not args.init_from_lm and args.lm_features
    assert args.rollout_temperatures == [1.0, 0.8] and args.features_lm is None
    args2 = parser.parse_args(["prm", "--step-labels", "monte-carlo", "--init-from-lm", "--no-lm-features",
                               "--rollout-temperatures", "0.7", "--features-lm", "rollout"])
    assert args2.step_labels == "monte-carlo" and args2.init_from_lm and not args2.lm_features
    assert args2.rollout_temperatures == [0.7] and args2.features_lm == "rollout"
    args2.rollout_temperatures = [0.0]
    assert cli.run(args2) == 2
    args.rollouts = 0
    assert cli.run(args) == 2
    with pytest.raises(SystemExit):
        parser.parse_args([])  # a model is required


@pytest.mark.slow  # 17 s end to end; PRM training is tested on small data above
def test_prm_rollout_data_and_training_from_lm():
    from ppl_models.lm import LMConfig, random_lm
    from ppl_models.train.prm import PRMTrainConfig, make_rollout_data, train_prm

    tok = build_tokenizer()
    lm = random_lm(LMConfig.llama(vocab_size=32, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                                  max_position_embeddings=256, eos_token_id=1), seed=0, tokenizer=tok)
    cfg = PRMTrainConfig(problems_per_difficulty=2, difficulties=((2, 23),), num_rollouts=2, num_continuations=2,
                         steps=5, batch_size=4, warmup_steps=1, step_labels="monte-carlo", rollout_temperatures=(1.0,))
    data = make_rollout_data(lm, cfg, jax.random.key(0), progress=False)
    assert data.tokens.shape[0] == 4
    # rollouts at two temperatures: the first temperature's are the same, the second's added
    two = make_rollout_data(lm, dataclasses.replace(cfg, step_labels="exact", rollout_temperatures=(1.0, 0.5)),
                            jax.random.key(0), progress=False)
    assert two.tokens.shape[0] == 8
    width = min(two.tokens.shape[1], data.tokens.shape[1])
    for i in range(2):  # problem i: rows 4i, 4i+1 at T=1 (as before), then 2 at T=0.5
        np.testing.assert_array_equal(two.tokens[4 * i:4 * i + 2, :width], data.tokens[2 * i:2 * i + 2, :width])
    with pytest.raises(ValueError, match="rollout_temperatures"):
        PRMTrainConfig(rollout_temperatures=(1.0, 0.0))
    w = data.weights > 0
    nl, eos = tok.token_to_id("\n"), tok.token_to_id("<eos>")
    assert np.all(np.isin(data.tokens[w], [nl, eos]))  # labels sit on step boundaries only
    assert np.all((data.labels >= 0) & (data.labels <= 1)) and np.all(data.labels[~w] == 0)
    # exact step labels (process supervision): the checker's verdict at every step boundary, the
    # same rollouts (same key), and the final answer's correctness at the end-of-sequence token
    exact = make_rollout_data(lm, dataclasses.replace(cfg, step_labels="exact"), jax.random.key(0), progress=False)
    np.testing.assert_array_equal(exact.tokens, data.tokens)
    np.testing.assert_array_equal(exact.weights, data.weights)
    at_nl = exact.weights.astype(bool) & (exact.tokens == nl)
    np.testing.assert_array_equal(exact.labels[at_nl], exact.oracle[at_nl])
    at_eos = exact.weights.astype(bool) & (exact.tokens == eos)
    np.testing.assert_array_equal(exact.labels[at_eos], data.labels[at_eos])
    assert set(np.unique(exact.labels[w])) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="step_labels"):
        PRMTrainConfig(step_labels="guess")
    # default: a small network reading the LM's token features
    small = dataclasses.replace(cfg, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    prm, h = train_prm(data, small, tok, lm=lm, progress=False)
    assert prm.config.lm_features and prm.lm is lm and prm.config.hidden_size == 16 and np.isfinite(h["loss"][-1])
    s = prm.step_scores("1+2 mod 23\n", "1+2=3=3\nanswer: 3")[0]
    assert s.shape == (2,) and np.all((s > 0) & (s < 1))
    with pytest.raises(ValueError, match="LM"):
        train_prm(data, small, tok, lm=None, progress=False)
    # init_from_lm: the trunk starts from the LM; with a negligible step the embedding is the LM's
    cfg = dataclasses.replace(cfg, init_from_lm=True)
    prm, h = train_prm(data, cfg, tok, lm=lm, progress=False)
    assert prm.config.hidden_size == 32 and np.isfinite(h["loss"][-1])
    prm0, _ = train_prm(data, dataclasses.replace(cfg, steps=1, learning_rate=1e-12), tok, lm=lm, progress=False)
    np.testing.assert_allclose(np.asarray(prm0.params["embed"]["embedding"][...]),
                               np.asarray(lm.params["embed"]["embedding"][...]), atol=1e-6)


def test_train_refuses_a_non_empty_out_folder(tmp_path, capsys):
    from ppl_models.train import cli

    parser = argparse.ArgumentParser()
    cli.setup(parser)
    (tmp_path / "model.safetensors").write_bytes(b"x")
    assert cli.run(parser.parse_args(["lm", "--out", str(tmp_path), "--steps", "3"])) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert cli.run(parser.parse_args(["prm", "--out", str(tmp_path / "model.safetensors")])) == 2
    assert "is a file" in capsys.readouterr().err


def test_twist_pool_and_ctl_training_on_the_bundled_program(tmp_path):
    """ppl train twist's pieces on a few problems: the pool's prefixes end where the program's
    steps end (a newline, or the end-of-sequence token when the rollout finished), phi follows
    the checker, CTL steps run, and the CLI writes a checkpoint that loads (card and metrics)."""
    import jax

    from ppl_models import bundled
    from ppl_models.rewards.prm import load_prm
    from ppl_models.tasks import arithmetic
    from ppl_models.tasks.tokenizer import decode
    from ppl_models.train.twist import TwistTrainConfig, make_pool, train_twist_head

    prm = bundled.load_prm()
    s = bundled.setup(3, split="train", prm="oracle")
    pool = make_pool(s, 8, 0.01, jax.random.key(0), features_lm=prm.lm, progress=False)
    P, K, L = pool.tokens.shape
    assert pool.ends.shape == (P, K, 8) and pool.features.shape == (P, K, L, 2)
    nl, eos = s.tokenizer.token_to_id("\n"), 1
    for p in range(P):
        plen = len(s.prompts[p])
        for k in range(K):
            ends = pool.ends[p, k]
            steps = ends[ends > np.concatenate([[plen], ends[:-1]])]
            for j, e in enumerate(steps):
                assert pool.tokens[p, k, e - 1] in (nl, eos) or e - (steps[j - 1] if j else plen) == 24
            text = decode(s.tokenizer, [int(t) for t in pool.tokens[p, k, plen:ends[-1]] if t != eos])
            assert bool(pool.correct[p, k]) == arithmetic.check(s.problems[p], text)
            assert pool.log_phi[p, k] == (0.0 if pool.correct[p, k] else np.float32(np.log(0.01)))
            # open prefixes precede the last step
            assert not pool.is_open[p, k, -1]
    head, hist = train_twist_head(pool, TwistTrainConfig(steps=3, problems_per_batch=2), prm, features_lm=prm.lm,
                                  progress=False)
    assert len(hist["loss"]) == 2 and np.all(np.isfinite(hist["loss"]))
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree_util.tree_leaves(head.params),
                                                     jax.tree_util.tree_leaves(prm.params)))

    from ppl_models.cli import main
    from ppl_models.rewards.prm import save_prm
    from ppl_models.train.twist import write_twist_card

    assert main(["train", "twist", "--out", str(tmp_path / "x"), "--rollouts", "1"]) == 2
    out = tmp_path / "tw"
    save_prm(head, out)
    assert load_prm(out, lm=prm.lm).config == prm.config
    # the card (written after the held-out evaluation; the shipped twist's is checked in test_bundled)

    metrics = {"bundled PRM": {"open_prefixes": 9, "log_loss": 1.0, "brier": 0.2, "mean_psi": 0.5, "mean_right": 0.3},
               "twist": {"open_prefixes": 9, "log_loss": 0.5, "brier": 0.1, "mean_psi": 0.3, "mean_right": 0.3}}
    hist = {**hist, "total_seconds": 60.0, "pool_seconds": 6.0}
    write_twist_card(out, TwistTrainConfig(), head, hist, {"rollouts": 8}, metrics, "ppl train twist", {"seed": 99})
    card = (out / "MODEL_CARD.md").read_text()
    assert "contrastive twist learning" in card and "| twist | 9 | 0.5000 |" in card
    assert json.loads((out / "metrics.json").read_text())["small_eval"] == {"seed": 99}


@pytest.mark.slow  # 15 s; the pieces are tested above
def test_train_twist_cli_end_to_end(tmp_path):
    from ppl_models import bundled
    from ppl_models.cli import main
    from ppl_models.rewards.prm import load_prm

    out = tmp_path / "tw"
    assert main(["train", "twist", "--out", str(out), "--problems", "2", "--rollouts", "4", "--steps", "2",
                 "--eval-problems", "0", "--quiet"]) == 0
    assert load_prm(out, lm=bundled.load_verifier()).config.lm_features
    assert main(["train", "twist", "--out", str(out), "--problems", "2"]) == 2  # not empty, no --overwrite
