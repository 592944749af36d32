"""Reward models: oracle PRM against the text checker, PRM save/load, potentials in programs, metrics."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_models.lm import LMConfig, random_lm
from ppl_models.rewards import NoisyReward, OraclePRM, PRMConfig, load_prm, random_prm, save_prm
from ppl_models.tasks import arithmetic as A
from ppl_models.tasks.tokenizer import build_tokenizer, encode
from ppl_models.train.prm import auc, expected_calibration_error


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def _state(tok, prompt, text, max_length=96):
    from ppl.lm import LMState

    ids = encode(tok, prompt) + encode(tok, text)
    buf = np.zeros((max_length,), np.int32)
    buf[:len(ids)] = ids
    z = jnp.zeros((), jnp.float32)
    return LMState(tokens=jnp.asarray(buf), length=jnp.asarray(len(ids), jnp.int32), cache=(),
                   num_steps=jnp.asarray(1, jnp.int32), step_start=jnp.asarray(len(encode(tok, prompt)), jnp.int32),
                   prompt_length=jnp.asarray(len(encode(tok, prompt)), jnp.int32), done=jnp.asarray(False),
                   step_log_p=z, step_log_q=z)


def test_oracle_prefix_score_matches_text_checker(tok):
    p = A.make_problem(34, [("+", 21), ("*", 3), ("-", 17)], 97)
    oracle = OraclePRM(p, tok)
    score = jax.jit(oracle.log_prefix_score)
    good = ["34+21=55=55\n", "34+21=55=55\n55*3=165=68\n", "34+21=55=55\n55*3=165=68\n68-17=51=51\n"]
    bad = ["34+21=56=56\n", "34+21=55=55\n55*3=165=69\n", "35+21=56=56\n", "34+21=55=55\n55*3=165=68\n68-17=51=51\nanswer: 52"]
    for text in good:
        assert float(score(_state(tok, p.prompt, text))) == 0.0
        assert all(oracle.step_scores(text) == 1.0)
    for text in bad:
        assert float(score(_state(tok, p.prompt, text))) == -np.inf
        assert oracle.step_scores(text)[-1] == 0.0
    # the full reference with its end-of-sequence token is a prefix of the reference
    full = _state(tok, p.prompt, p.solution)
    ids = np.asarray(full.tokens).copy()
    ids[int(full.length)] = tok.token_to_id("<eos>")
    full = full._replace(tokens=jnp.asarray(ids), length=full.length + 1)
    assert float(score(full)) == 0.0
    # one token past the reference is wrong
    longer = full._replace(length=full.length + 1)
    assert float(score(longer)) == -np.inf
    soft = OraclePRM(p, tok, epsilon=0.1)
    assert float(soft.log_prefix_score(_state(tok, p.prompt, bad[0]))) == pytest.approx(np.log(0.1))
    assert soft.final_score(p.solution) == 1.0 and soft.final_score("answer: 3") == 0.1


def test_prm_scores_save_load_and_causality(tok, tmp_path):
    cfg = PRMConfig(vocab_size=32, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                    newline_token_id=tok.token_to_id("\n"))
    prm = random_prm(cfg, seed=3, tokenizer=tok)
    p = A.make_problem(34, [("+", 21), ("*", 3)], 97)
    s_full = prm.step_scores(p.prompt, p.solution)[0]
    assert s_full.shape == (3,) and np.all((s_full > 0) & (s_full < 1))  # 2 newlines + end
    # causal: the score of a prefix does not depend on what follows it
    s_pre = prm.step_scores(p.prompt, "34+21=55=55\n")[0]
    np.testing.assert_allclose(s_pre, s_full[:1], rtol=1e-5)
    save_prm(prm, tmp_path)
    prm2 = load_prm(tmp_path)
    np.testing.assert_allclose(prm2.step_scores(p.prompt, p.solution)[0], s_full, rtol=1e-6)
    # the in-program score equals the host score at the same boundary
    st = _state(tok, p.prompt, "34+21=55=55\n")
    assert float(jnp.exp(prm.log_prefix_score(st))) == pytest.approx(float(s_pre[0]), rel=1e-4)


def test_load_prm_rejects_mismatched_weights(tok, tmp_path):
    cfg = PRMConfig(vocab_size=32, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    save_prm(random_prm(cfg), tmp_path)
    import json

    with open(tmp_path / "prm_config.json") as fh:
        c = json.load(fh)
    c["hidden_size"] = 64
    with open(tmp_path / "prm_config.json", "w") as fh:
        json.dump(c, fh)
    with pytest.raises(ValueError, match="shape"):
        load_prm(tmp_path)


def test_potentials_run_inside_an_lm_program(tok):
    import ppl

    lm = random_lm(LMConfig.llama(vocab_size=32, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                                  max_position_embeddings=128, eos_token_id=1), seed=0, tokenizer=tok)
    prm = random_prm(PRMConfig(vocab_size=32, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                               newline_token_id=tok.token_to_id("\n")), seed=1, tokenizer=tok)
    p = A.make_problem(3, [("+", 4)], 23)
    prompt = encode(tok, p.prompt)
    for pot in (prm.step_potential("prefix"), prm.step_potential("twist"), OraclePRM(p, tok, 0.01).step_potential()):
        program = ppl.lm.LMProgram(lm, prompt, potential=pot, max_steps=2, step_delimiter=tok.token_to_id("\n"),
                                   max_step_tokens=8)
        res = ppl.run_smc(program, num_particles=4, key=jax.random.key(0), ess_threshold=0.0)
        assert np.all(np.isfinite(np.asarray(res.log_weights)))


def test_auc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, size=30).astype(float)  # many ties
    y = rng.random(30) < 0.4
    pairs = [(a, b) for a, b in itertools.product(s[y], s[~y])]
    brute = np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs])
    assert auc(s, y) == pytest.approx(brute)
    assert auc([0.9, 0.8, 0.1], [1, 1, 0]) == 1.0
    assert np.isnan(auc([0.1, 0.2], [1, 1]))


def test_expected_calibration_error():
    assert expected_calibration_error([0.25] * 4, [1, 0, 0, 0]) == pytest.approx(0.0)
    assert expected_calibration_error([1.0, 1.0], [0, 0]) == pytest.approx(1.0)
    assert expected_calibration_error([0.05, 0.95], [0, 1]) == pytest.approx(0.05)


def test_prm_with_lm_features(tok, tmp_path):
    from ppl_models.rewards.prm import lm_token_features

    lm = random_lm(LMConfig.llama(vocab_size=32, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                                  max_position_embeddings=256, eos_token_id=1), seed=0, tokenizer=tok)
    cfg = PRMConfig(vocab_size=32, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                    newline_token_id=tok.token_to_id("\n"), lm_features=True)
    with pytest.raises(ValueError, match="lm="):
        random_prm(cfg, tokenizer=tok)
    prm = random_prm(cfg, seed=2, tokenizer=tok, lm=lm)
    # features: log-prob of each token under the LM, by an independent computation
    ids = jnp.asarray([encode(tok, "3+4 mod 23\n3+4=7=7\n")], jnp.int32)
    feats = np.asarray(lm_token_features(lm, lm.params, ids))
    pos = jnp.arange(ids.shape[1])[None]
    logits, _ = lm.apply(lm.params, ids, pos, None)
    lp = np.asarray(jax.nn.log_softmax(logits, -1))[0]
    t = 5
    assert feats[0, t, 0] == pytest.approx(lp[t - 1, int(ids[0, t])], rel=1e-5)
    assert feats[0, 0, 0] == 0.0
    p = A.make_problem(3, [("+", 4)], 23)
    s = prm.step_scores(p.prompt, p.solution)[0]
    save_prm(prm, tmp_path)
    with pytest.raises(ValueError, match="lm="):
        load_prm(tmp_path)
    np.testing.assert_allclose(load_prm(tmp_path, lm=lm).step_scores(p.prompt, p.solution)[0], s, rtol=1e-6)
    st = _state(tok, p.prompt, "3+4=7=7\n")
    assert float(jnp.exp(prm.log_prefix_score(st))) == pytest.approx(float(s[0]), rel=1e-4)


# the bundled PRM reads the verifier LM's features (True, fast suite); without them, with -m slow
@pytest.mark.parametrize("lm_features", [pytest.param(False, marks=pytest.mark.slow), True])
def test_incremental_prm_scores_equal_full_prefix_scores(tok, lm_features):
    """The PRM read incrementally (its KV cache and the features LM's in the particle, only each
    step's new tokens fed) scores every prefix as the full-prefix pass does, inside a particle
    filter whose compute counter then counts only the tokens fed."""
    import ppl
    from ppl.lm.program import broadcast
    from ppl.lm.sampling import sample_step
    from ppl.lm.compute import counter

    lm = random_lm(LMConfig.llama(vocab_size=32, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                                  max_position_embeddings=256, eos_token_id=1), seed=0, tokenizer=tok)
    cfg = PRMConfig(vocab_size=32, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                    newline_token_id=tok.token_to_id("\n"), lm_features=lm_features, max_length=40)
    prm = random_prm(cfg, seed=2, tokenizer=tok, lm=lm if lm_features else None)
    p = A.make_problem(3, [("+", 4), ("*", 2)], 23)
    nl = tok.token_to_id("\n")
    program = ppl.lm.LMProgram(lm, encode(tok, p.prompt), None, max_steps=5, step_delimiter=nl, max_step_tokens=7)
    x = broadcast(program.prompt_state(program.data), 6)
    rs, read0 = jax.jit(prm.init_state)(prm.params, jax.tree.map(lambda a: a[0], x))
    assert int(read0) == -(-int(x.length[0]) // prm.chunk_size) * prm.chunk_size  # the prompt, read once
    rs = jax.tree.map(lambda a: jnp.broadcast_to(a, (6,) + a.shape), rs)
    extend = jax.jit(jax.vmap(prm.extend, in_axes=(None, 0, 0)))
    full = jax.jit(jax.vmap(prm.log_score, in_axes=(None, 0)))
    key = jax.random.key(1)
    for _ in range(5):  # the prefixes pass the PRM's width (40): scored at its last position, like log_score
        key, k = jax.random.split(key)
        before = x.length
        x, _, _ = sample_step(lm, lm.params, k, x, program.config)
        log_r, rs, read = extend(prm.params, rs, x)
        np.testing.assert_allclose(np.asarray(log_r), np.asarray(full(prm.params, x)), atol=2e-5)
        new = np.minimum(np.asarray(x.length), 40) - np.minimum(np.asarray(before), 40)
        np.testing.assert_array_equal(np.asarray(read), -(-new // prm.chunk_size) * prm.chunk_size)
    assert int(np.max(np.asarray(x.length))) > 40
    noisy = NoisyReward(prm, 1.5, seed=4)  # incremental when its base is; the noise hashes the prefix
    ns, _ = noisy.init_state(noisy.params, program.prompt_state(program.data))
    one = jax.tree.map(lambda a: a[0], x)
    np.testing.assert_allclose(float(noisy.extend(noisy.params, ns, one)[0]), float(noisy.log_score(noisy.params, one)),
                               atol=2e-5)
    assert NoisyReward(OraclePRM(p, tok, 0.01), 1.0).init_state is None  # the oracle reads whole prefixes

    if not lm_features:
        return
    # In the filter: the same weights and evidence, and the counter counts the tokens fed.
    from ppl.smc import base
    from ppl.smc.loop import build_filter
    from ppl.smc.resampling import systematic

    runs = {}
    for inc in (False, True):
        pot = ppl.lm.potentials.from_reward(prm, incremental=inc)
        model = program.with_potential(pot, correct_proposal=False)
        run = jax.jit(build_filter(model, 8, systematic, 1.0, finished=base.absorbing, collect=counter()))
        runs[inc] = run(model.data, jax.random.key(3))[0]
    a, b = runs[False], runs[True]
    np.testing.assert_array_equal(np.asarray(a.particles.tokens), np.asarray(b.particles.tokens))
    assert float(b.log_evidence) == pytest.approx(float(a.log_evidence), abs=1e-4)
    generated, calls, read_full = (int(v) for v in np.asarray(a.aux))
    _, calls_inc, read_inc = (int(v) for v in np.asarray(b.aux))
    assert calls_inc == calls and read_inc < read_full / 2
    with pytest.raises(ValueError, match="incremental"):
        ppl.lm.potentials.lookahead(ppl.lm.potentials.from_reward(prm), lm, lm.params, program.config, 1, 5)
