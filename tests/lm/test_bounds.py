"""Two-sided log Z bounds on an enumerable LM program (vocabulary 4, at most 4 generated tokens).

The target is p(x) phi(x) with phi = 1 when the generation holds two 2s, else EPS (a soft check:
a run whose particles all fail keeps a finite log Z-hat). The exact log Z and the exact twist
psi_t(x_1:t) = E_p[phi | x_1:t] come from enumerating every generation.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

import ppl
from tests.lm.tiny import TinyLM, step_bounds

PROMPT = np.array([2, 3])
MAX_LEN, MAX_STEPS, MAX_STEP_TOKENS, DELIM, EOS = 6, 4, 1, 1, 0
EPS, GOOD, SEED = 0.05, 2, 5  # phi = 1 for two GOOD tokens, else EPS; the LM's seed
RUNS = 400


class TinyLM4(TinyLM):
    vocab_size = 4


def segment(gen):
    """Step boundaries of a generation, or None if generation would not end exactly there."""
    return step_bounds(gen, max_steps=MAX_STEPS, prompt_length=len(PROMPT),
                       max_length=MAX_LEN, max_step_tokens=MAX_STEP_TOKENS, delimiter=DELIM, eos=EOS)


def log_phi_np(gen):
    return 0.0 if list(gen).count(GOOD) >= 2 else np.log(EPS)


def code(tokens):
    """A unique integer for a generated prefix (digits 1..4 in base 5)."""
    return sum((int(t) + 1) * 5 ** j for j, t in enumerate(tokens))


@pytest.fixture(scope="module")
def enumerated():
    lm = TinyLM4(seed=SEED)
    gens, log_p = [], []
    for k in range(1, MAX_LEN - len(PROMPT) + 1):
        for g in itertools.product(range(lm.vocab_size), repeat=k):
            if segment(list(g)) is not None:
                gens.append(g)
                log_p.append(lm.log_prob_sequence(PROMPT, np.array(g)))
    log_p = np.array(log_p)
    assert abs(logsumexp(log_p)) < 1e-4
    log_w = log_p + np.array([log_phi_np(g) for g in gens])
    # The exact twist at every unfinished step boundary: sum of p(g) phi(g) / sum of p(g) over the
    # generations g that extend the prefix.
    num, den = {}, {}
    for g, lp, lw in zip(gens, log_p, log_w):
        for b in segment(list(g))[:-1]:
            c = code(g[:b])
            num[c] = np.logaddexp(num.get(c, -np.inf), lw)
            den[c] = np.logaddexp(den.get(c, -np.inf), lp)
    table = np.zeros(5 ** (MAX_LEN - len(PROMPT)), np.float32)
    for c in num:
        table[c] = num[c] - den[c]
    good = np.array([log_phi_np(g) == 0.0 for g in gens])
    return lm, float(logsumexp(log_w)), jnp.asarray(table), float(np.exp(logsumexp(log_p[good]) - logsumexp(log_w)))


def has_two_good(prev, state):
    idx = jnp.arange(state.tokens.shape[0])
    n = jnp.sum((idx >= state.prompt_length) & (idx < state.length) & (state.tokens == GOOD))
    return jnp.where(n >= 2, 0.0, jnp.log(EPS))


def table_psi(table, state):
    """log psi of a state's generated prefix, read from a table indexed by ``code``."""
    idx = jnp.arange(state.tokens.shape[0]) - state.prompt_length
    gen = (idx >= 0) & (idx < state.length - state.prompt_length)
    return table[jnp.sum(jnp.where(gen, (state.tokens + 1) * 5 ** jnp.maximum(idx, 0), 0))]


KW = dict(max_steps=MAX_STEPS, step_delimiter=DELIM, max_step_tokens=MAX_STEP_TOKENS, max_length=MAX_LEN)


def _programs(lm, table):
    final = ppl.lm.Potential(has_two_good)
    bootstrap = ppl.lm.LMProgram(lm, PROMPT, ppl.lm.when_finished(final, MAX_STEPS), **KW)
    twisted = ppl.lm.LMProgram(lm, PROMPT, ppl.lm.twisted(lambda s: table_psi(table, s), final, MAX_STEPS), **KW)
    return bootstrap, twisted


@pytest.fixture(scope="module")
def bounds(enumerated):
    lm, log_z, table, _ = enumerated
    out = {}
    for name, fk in zip(("bootstrap", "twisted"), _programs(lm, table)):
        refs = ppl.exact_references(fk, RUNS, key=jax.random.key(1), log_bound=0.0)
        for n in (4, 16, 64):
            out[name, n] = ppl.log_evidence_bounds(fk, n, refs, key=jax.random.key(n))
    return log_z, out


def test_exact_log_z_lies_between_the_bounds(bounds):
    log_z, out = bounds
    for (name, n), b in out.items():
        assert b.lower - 3 * b.lower_se < log_z < b.upper + 3 * b.upper_se, (name, n, b.lower, log_z, b.upper)
        # In expectation strictly inside; the bootstrap's gap is wide enough to see it.
        if name == "bootstrap" and n < 64:
            assert b.lower < log_z < b.upper, (name, n, b.lower, log_z, b.upper)
        assert b.gap > -3 * b.gap_se and len(b.lower_runs) == len(b.upper_runs) == RUNS


def test_the_gap_shrinks_with_more_particles_and_with_the_exact_twist(bounds):
    _, out = bounds
    for name in ("bootstrap", "twisted"):
        g = [out[name, n] for n in (4, 16, 64)]
        assert g[0].gap - g[1].gap > 2 * np.hypot(g[0].gap_se, g[1].gap_se), (name, [x.gap for x in g])
        assert g[1].gap > g[2].gap, (name, [x.gap for x in g])
    # Measured: bootstrap 1.30 +- 0.08, 0.42 +- 0.05, 0.11 +- 0.02; exact twist 0.64 +- 0.06,
    # 0.16 +- 0.03, 0.06 +- 0.01 (N = 4, 16, 64).
    for n in (4, 16, 64):
        b, t = out["bootstrap", n], out["twisted", n]
        margin = 2 * np.hypot(t.gap_se, b.gap_se) if n < 64 else 0.0
        assert t.gap < b.gap - margin, (n, t.gap, b.gap)


@pytest.mark.slow  # 21 s: 300 CTL steps; measured figures in docs/smc.md
def test_a_twist_learned_by_ctl_narrows_the_gap(enumerated, bounds):
    """A tabular twist fitted by contrastive twist learning (positives: exact target samples;
    negatives: the twisted filter's own particles) does as well as the exact twist: measured gaps
    0.64 +- 0.06 (N = 4) and 0.17 +- 0.03 (N = 16), against the bootstrap's 1.30 and 0.42."""
    from ppl.lm.twists import train_twist

    lm, log_z, table, _ = enumerated
    _, out = bounds
    bootstrap = _programs(lm, table)[0]
    train = ppl.exact_references(bootstrap, 2000, key=jax.random.key(7), log_bound=0.0, batch_size=2048)
    fit = train_twist(ppl.lm.LMProgram(lm, PROMPT, **KW), table_psi, jnp.zeros_like(table), has_two_good, train,
                      key=jax.random.key(2), num_iterations=300, num_negatives=256, batch_size=256)
    assert np.all(np.isfinite(fit.losses)) and fit.losses.shape == (300,)
    learned = ppl.lm.LMProgram(lm, PROMPT, ppl.lm.twisted(lambda s: table_psi(fit.params, s), has_two_good, MAX_STEPS),
                               **KW)
    refs = ppl.exact_references(bootstrap, RUNS, key=jax.random.key(1), log_bound=0.0)
    for n in (4, 16):
        b, t = out["bootstrap", n], ppl.log_evidence_bounds(learned, n, refs, key=jax.random.key(n))
        assert t.lower - 3 * t.lower_se < log_z < t.upper + 3 * t.upper_se
        assert t.gap < b.gap - 2 * np.hypot(t.gap_se, b.gap_se), (n, t.gap, b.gap)
        assert t.gap < out["twisted", n].gap + 2 * np.hypot(t.gap_se, out["twisted", n].gap_se)


class TableTwist:
    """The tabular twist as a reward model (``log_score(params, state)``), for twisted(reward, ...)."""

    def __init__(self, table):
        self.params = table

    def log_score(self, params, state):
        return table_psi(params, state)


@pytest.mark.slow  # 12 s; the bounds against the exact log Z stay in the default suite
def test_a_reward_model_as_twist_keeps_its_score_in_memory(enumerated):
    """twisted(reward, ...) keeps log psi in the particle's memory instead of re-reading the
    previous prefix; the filter and the conditional SMC runs are the same, run for run, as with
    twisted(log_psi, ...), and references drawn from the bootstrap program (no memory) serve
    once their memories are recomputed along the path (LMProgram.remember)."""
    lm, log_z, table, _ = enumerated
    bootstrap, by_fn = _programs(lm, table)
    by_reward = ppl.lm.LMProgram(lm, PROMPT, ppl.lm.twisted(TableTwist(table), has_two_good, MAX_STEPS), **KW)
    refs = ppl.exact_references(bootstrap, 64, key=jax.random.key(4), log_bound=0.0)
    a = ppl.log_evidence_bounds(by_fn, 8, refs, key=jax.random.key(9))
    b = ppl.log_evidence_bounds(by_reward, 8, refs, key=jax.random.key(9))
    np.testing.assert_allclose(b.lower_runs, a.lower_runs, atol=1e-5)
    np.testing.assert_allclose(b.upper_runs, a.upper_runs, atol=1e-5)
    assert a.lower - 4 * a.lower_se < log_z < a.upper + 4 * a.upper_se
    remembered = by_reward.remember(jax.tree_util.tree_map(lambda x: x[0], refs))
    steps = np.asarray(remembered.num_steps)
    want = np.array([float(table_psi(table, jax.tree_util.tree_map(lambda x: x[t], remembered)))
                     for t in range(MAX_STEPS)])
    live = ~np.asarray(remembered.done)
    np.testing.assert_allclose(np.asarray(remembered.memory["psi"].last)[live], want[live], atol=1e-6)
    assert steps[0] == 1


class TableFinal:
    """phi (two GOODs, else EPS) as a reward model, for twisted(..., final=reward)."""

    params = ()

    def log_score(self, params, state):
        return has_two_good(state, state)


@pytest.mark.slow  # 26 s; run for run equal to the function forms (ppl scale --bounds uses them)
def test_reward_models_as_final_potential_and_no_twist(enumerated):
    """twisted(None, phi) is the bootstrap filter (when_finished(phi)); a reward model as the final
    potential (read from the particle's memory) gives the filter of the plain function, run for
    run, with a function, a reward or the same reward as twist."""
    lm, log_z, table, _ = enumerated
    bootstrap, by_fn = _programs(lm, table)
    refs = ppl.exact_references(bootstrap, 32, key=jax.random.key(6), log_bound=0.0)

    def runs(potential, csmc=False):
        """log Z-hat of 8 filter runs (and, with csmc, of conditional SMC on the references too)."""
        fk = ppl.lm.LMProgram(lm, PROMPT, potential, **KW)
        if csmc:
            b = ppl.log_evidence_bounds(fk, 8, refs, key=jax.random.key(2))
            return np.concatenate([b.lower_runs, b.upper_runs])
        return np.asarray(ppl.run_smc(fk, 8, key=jax.random.split(jax.random.key(2), 8)).log_evidence)

    final, twist = TableFinal(), TableTwist(table)
    want_boot = runs(ppl.lm.when_finished(has_two_good, MAX_STEPS))
    np.testing.assert_allclose(runs(ppl.lm.twisted(None, has_two_good, MAX_STEPS)), want_boot, atol=1e-5)
    np.testing.assert_allclose(runs(ppl.lm.twisted(None, final, MAX_STEPS)), want_boot, atol=1e-5)
    want_twist = runs(ppl.lm.twisted(lambda s: table_psi(table, s), has_two_good, MAX_STEPS), csmc=True)
    # both memories ("psi" and "final"), recomputed along the references for conditional SMC
    np.testing.assert_allclose(runs(ppl.lm.twisted(twist, final, MAX_STEPS), csmc=True), want_twist, atol=1e-5)
    np.testing.assert_allclose(runs(ppl.lm.twisted(lambda s: table_psi(table, s), final, MAX_STEPS), csmc=True),
                               want_twist, atol=1e-5)
    # one reward as twist and final: the path telescopes to its own final score
    both = ppl.lm.twisted(twist, twist, MAX_STEPS)
    ratio = ppl.lm.potentials.from_reward(twist, aggregate="last", weighting="ratio")
    res = [ppl.run_smc(ppl.lm.LMProgram(lm, PROMPT, p, **KW), 16, key=jax.random.key(4)) for p in (both, ratio)]
    np.testing.assert_allclose(float(res[0].log_evidence), float(res[1].log_evidence), atol=1e-5)


def _pool(lm, num, key):
    """num draws of the sampler (no resampling, no potential): trajectories, open flags, log phi."""
    fk = ppl.lm.LMProgram(lm, PROMPT, **KW)
    res = ppl.run_smc(fk, num, key=key, ess_threshold=0.0, keep_history=True)
    traj = ppl.trajectories(res)
    is_open = ~traj.done & (traj.num_steps < MAX_STEPS)
    last = jax.tree_util.tree_map(lambda a: a[:, -1], traj)
    return traj, is_open, jax.vmap(lambda s: has_two_good(s, s))(last)


def test_pool_weights_are_the_twisted_filters(enumerated):
    """pool_log_weights re-weights draws of q as the twisted filter without resampling does."""
    from ppl.lm.twists import pool_log_weights

    lm, _, table, _ = enumerated
    twisted = _programs(lm, table)[1]
    res = ppl.run_smc(twisted, 64, key=jax.random.key(3), ess_threshold=0.0, keep_history=True)
    traj = ppl.trajectories(res)
    is_open = ~traj.done & (traj.num_steps < MAX_STEPS)
    lp = jax.vmap(jax.vmap(lambda s: table_psi(table, s)))(traj)
    last = jax.tree_util.tree_map(lambda a: a[:, -1], traj)
    got = pool_log_weights(lp, is_open, jax.vmap(lambda s: has_two_good(s, s))(last))
    np.testing.assert_allclose(np.exp(got), np.exp(np.asarray(res.history_log_weights).T), atol=1e-5)


def test_ctl_on_a_pool_recovers_the_exact_twist(enumerated):
    """CTL with both expectations over one pool of q-draws (positives weighted by phi, negatives by
    the twisted filter's weights: what ppl train twist does) fits a tabular twist to the exact
    psi_t = E[phi | x_1:t] up to a constant per step, on the prefixes the pool visits often."""
    import optax

    from ppl.lm.twists import ctl_surrogate, pool_log_weights

    lm, _, exact, _ = enumerated
    traj, is_open, log_phi = _pool(lm, 4096, jax.random.key(11))
    codes = jax.vmap(jax.vmap(lambda s: table_psi(jnp.arange(exact.shape[0], dtype=jnp.float32), s)))(traj)

    def loss(params):
        lp = jax.vmap(jax.vmap(lambda s: table_psi(params, s)))(traj)
        return ctl_surrogate(lp, is_open, lp, is_open, pool_log_weights(lp, is_open, log_phi),
                             pos_weights=jnp.exp(log_phi))

    opt = optax.adam(0.1)
    params = jnp.zeros_like(exact)
    state = opt.init(params)
    step = jax.jit(lambda p, s: (lambda g: (lambda u, s2: (optax.apply_updates(p, u), s2))(*opt.update(g, s, p)))(
        jax.grad(loss)(p)))
    for _ in range(400):
        params, state = step(params, state)
    codes, is_open = np.asarray(codes).astype(int), np.asarray(is_open)
    checked = 0
    for t in range(MAX_STEPS - 1):
        seen, counts = np.unique(codes[:, t][is_open[:, t]], return_counts=True)
        often = seen[counts >= 200]
        if len(often) < 2:
            continue
        diff = np.asarray(params)[often] - np.asarray(exact)[often]
        assert np.ptp(diff) < 0.15, (t, often, diff)
        checked += len(often)
    assert checked >= 6


def test_exact_references_are_target_samples(enumerated):
    """The rejection sampler's output follows p(x) phi(x) / Z: the frequency of 'two 2s' matches."""
    lm, log_z, table, p_good = enumerated
    fk = _programs(lm, table)[0]
    refs = ppl.exact_references(fk, 1500, key=jax.random.key(3), log_bound=0.0, batch_size=2048)
    final = jax.tree_util.tree_map(lambda a: np.asarray(a[:, -1]), refs)
    hits = np.array([list(t[len(PROMPT):n]).count(GOOD) >= 2 for t, n in zip(final.tokens, final.length)])
    assert abs(hits.mean() - p_good) < 4 * np.sqrt(p_good * (1 - p_good) / 1500), (hits.mean(), p_good)
    with pytest.raises(ValueError, match="log_bound=-1.0: a weight"):
        ppl.exact_references(fk, 10, key=jax.random.key(0), log_bound=-1.0)


def test_bounds_check_their_inputs(enumerated):
    lm, _, table, _ = enumerated
    fk = _programs(lm, table)[0]
    refs = ppl.exact_references(fk, 3, key=jax.random.key(0), log_bound=0.0)
    with pytest.raises(ValueError, match=r"references: expected trajectories with leaves \[R, T=4"):
        ppl.log_evidence_bounds(fk, 4, jax.tree_util.tree_map(lambda a: a[:, :2], refs), key=jax.random.key(0))
    with pytest.raises(ValueError, match="num_particles"):
        ppl.log_evidence_bounds(fk, 1, refs, key=jax.random.key(0))
    with pytest.raises(ValueError, match="log_bound"):
        ppl.exact_references(fk, 3, key=jax.random.key(0), log_bound=float("inf"))
