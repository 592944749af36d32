"""The SMC loop against exact answers: Kalman filter, HMM forward pass, brute-force enumeration."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import ppl
from tests import exact
from ppl.smc import resampling as rs
from tests.smc import models as m


@pytest.fixture(scope="module")
def lg():
    ys = m.simulate_lg(0)
    kf = m.LG.kalman_filter(ys)
    return ys, kf.log_evidence, kf.means, kf.variances


def _weighted_mean(x, log_w):
    w = np.exp(np.asarray(log_w, np.float64))
    return np.sum(w * np.asarray(x, np.float64), axis=-1) / np.sum(w, axis=-1)


@pytest.mark.parametrize("form", ["bootstrap", "guided"])
def test_linear_gaussian_log_evidence_and_filtering_means(lg, form):
    ys, log_z, means, variances = lg
    fk = m.lg_bootstrap(ys) if form == "bootstrap" else m.lg_guided(ys)
    runs = 8
    batch = ppl.run_smc(fk, 4096, key=jax.random.split(jax.random.key(1), runs), keep_history=True)
    # log Z-hat: sd about 0.14 (bootstrap, R = 0.25 makes weights peaked) and 0.03 (guided).
    lz = np.asarray(batch.log_evidence, np.float64)
    assert abs(lz.mean() - log_z) < 4 * lz.std(ddof=1) / np.sqrt(runs) + 0.01
    assert lz.std() < (0.3 if form == "bootstrap" else 0.06)
    # Filtering means of every run, each within a few Monte Carlo standard errors.
    est = _weighted_mean(batch.history, batch.history_log_weights)
    tol = 6.0 * np.sqrt(variances / np.asarray(batch.ess)) + 1e-3
    np.testing.assert_array_less(np.abs(est - means), tol)
    assert (np.asarray(batch.num_steps) == len(ys)).all()


def _assert_unbiased(log_evidence, log_z):
    """Over independent runs, the mean of Z-hat / Z is 1 within 4 standard errors."""
    ratio = np.exp(np.asarray(log_evidence, np.float64) - log_z)
    se = ratio.std(ddof=1) / np.sqrt(ratio.size)
    assert se < 0.1, "too noisy to be a test"
    assert abs(ratio.mean() - 1.0) < 4.0 * se


@pytest.mark.parametrize("form", ["bootstrap", "guided"])
def test_evidence_estimate_is_unbiased(lg, form):
    """Over independent runs, the mean of Z-hat / Z is 1 within Monte Carlo error."""
    ys, log_z, _, _ = lg
    fk = m.lg_bootstrap(ys) if form == "bootstrap" else m.lg_guided(ys)
    res = ppl.run_smc(fk, 64, key=jax.random.split(jax.random.key(2), 400))
    _assert_unbiased(res.log_evidence, log_z)
    # log Z-hat itself is biased downwards (Jensen), Z-hat is not.
    assert np.mean(np.asarray(res.log_evidence, np.float64)) < log_z


def test_guided_filter_has_lower_variance(lg):
    ys = lg[0]
    keys = jax.random.split(jax.random.key(3), 50)
    boot = ppl.run_smc(m.lg_bootstrap(ys), 64, key=keys).log_evidence
    guided = ppl.run_smc(m.lg_guided(ys), 64, key=keys).log_evidence
    assert float(jnp.var(guided)) < 0.5 * float(jnp.var(boot))


def test_new_data_does_not_recompile(lg):
    ys = lg[0]
    fk = m.lg_bootstrap(ys)
    ppl.run_smc(fk, 128, key=jax.random.key(0))
    from ppl.smc import loop
    before = len(loop._CACHE)
    fn = loop._compiled(fk, 128, ppl.resampling.systematic, 0.5, False, False)
    n_compiled = fn._cache_size()
    ppl.run_smc(fk.with_data(jnp.asarray(ys) + 1.0), 128, key=jax.random.key(1))
    assert len(loop._CACHE) == before
    assert fn._cache_size() == n_compiled


def test_hmm_against_forward_algorithm():
    K, T = 3, 30
    rng = np.random.default_rng(5)
    trans = np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
    p0 = np.array([0.6, 0.3, 0.1])
    mus, sd = np.array([-2.0, 0.0, 2.0]), 1.0
    x = rng.choice(K, p=p0)
    ys = []
    for t in range(T):
        if t:
            x = rng.choice(K, p=trans[x])
        ys.append(rng.normal(mus[x], sd))
    ys = np.array(ys)
    log_lik = -0.5 * ((ys[:, None] - mus[None]) / sd) ** 2 - 0.5 * np.log(2 * np.pi * sd**2)
    log_z, filt = exact.hmm_forward(np.log(p0), np.log(trans), log_lik)

    log_trans = jnp.log(jnp.asarray(trans, jnp.float32))
    mus_j = jnp.asarray(mus, jnp.float32)
    fk = ppl.FeynmanKac(
        init=dist.Categorical(probs=jnp.asarray(p0, jnp.float32)),
        transition=lambda x, t, y: dist.Categorical(logits=log_trans[x]),
        log_potential=lambda xp, x, t, y: dist.Normal(mus_j[x], sd).log_prob(y),
        data=jnp.asarray(ys, jnp.float32))
    runs = 8
    res = ppl.run_smc(fk, 4000, key=jax.random.split(jax.random.key(7), runs))
    lz = np.asarray(res.log_evidence, np.float64)
    assert abs(lz.mean() - log_z) < max(4 * lz.std(ddof=1) / np.sqrt(runs), 0.02)
    w = np.exp(np.asarray(res.log_weights, np.float64))
    marg = np.stack([(w * (np.asarray(res.particles) == k)).sum(1) for k in range(K)], 1).mean(0)
    np.testing.assert_allclose(marg, filt[-1], atol=0.02)


@pytest.mark.parametrize("scheme", ["multinomial", "stratified", "systematic", "residual", "killing"])
def test_discrete_chain_against_enumeration(scheme):
    res = ppl.run_smc(m.discrete_fk(), 4000, key=jax.random.split(jax.random.key(11), 8),
                      resampling=scheme, ess_threshold=1.0)
    _check_discrete_chain(res)


def _check_discrete_chain(res):
    """Runs of the discrete chain against enumeration: mean log Z-hat and the last filtering marginal."""
    log_z, last, _ = exact.enumerate_chain(m.LOG_P0, m.LOG_TRANS, m.LOG_G0, m.LOG_G, m.T_D)
    lz = np.asarray(res.log_evidence, np.float64)
    assert abs(lz.mean() - log_z) < max(4 * lz.std(ddof=1) / np.sqrt(lz.size), 0.01)
    w = np.exp(np.asarray(res.log_weights, np.float64))
    marg = np.stack([(w * (np.asarray(res.particles) == k)).sum(1) for k in range(m.K)], 1).mean(0)
    np.testing.assert_allclose(marg, last, atol=0.015)


def test_done_particles_stop_moving_and_keep_their_weight():
    """State 2 is absorbing via ``done``: the engine must match enumeration with that semantics."""
    log_z, last, _ = exact.enumerate_chain(m.LOG_P0, m.LOG_TRANS, m.LOG_G0, m.LOG_G, m.T_D, absorbing=2)
    runs = 8
    res = ppl.run_smc(m.discrete_fk(done=lambda x: x == 2), 4000,
                      key=jax.random.split(jax.random.key(12), runs), ess_threshold=0.5)
    lz = np.asarray(res.log_evidence, np.float64)
    assert abs(lz.mean() - log_z) < max(4 * lz.std(ddof=1) / np.sqrt(runs), 0.01)
    w = np.exp(np.asarray(res.log_weights, np.float64))
    marg = np.stack([(w * (np.asarray(res.particles) == k)).sum(1) for k in range(m.K)], 1).mean(0)
    np.testing.assert_allclose(marg, last, atol=0.015)


def test_stops_early_when_every_particle_is_done():
    fk = ppl.FeynmanKac(init=dist.Normal(0.0, 1.0), transition=lambda x, t, d: dist.Normal(x, 1.0),
                        log_potential=lambda xp, x, t, d: 0.0 * x, num_steps=10,
                        done=lambda x: jnp.asarray(True))
    res = ppl.run_smc(fk, 16, key=jax.random.key(0), keep_history=True)
    assert int(res.num_steps) == 1
    assert np.isnan(np.asarray(res.ess[1:])).all()
    # Steps that were not run repeat the final particles.
    np.testing.assert_array_equal(np.asarray(res.history[-1]), np.asarray(res.particles))


def test_ess_threshold_controls_resampling(lg):
    fk = m.lg_bootstrap(lg[0])
    every = ppl.run_smc(fk, 256, key=jax.random.key(0), ess_threshold=1.0)
    never = ppl.run_smc(fk, 256, key=jax.random.key(0), ess_threshold=0.0)
    some = ppl.run_smc(fk, 256, key=jax.random.key(0), ess_threshold=0.5)
    assert bool(every.resampled[1:].all()) and not bool(every.resampled[0])
    assert not bool(never.resampled.any())
    assert 0 < int(some.resampled.sum()) < m.T_LG - 1
    # Without resampling ancestors are the identity.
    np.testing.assert_array_equal(np.asarray(never.ancestors), np.broadcast_to(np.arange(256), (m.T_LG, 256)))


def test_same_key_same_result(lg):
    fk = m.lg_bootstrap(lg[0])
    a = ppl.run_smc(fk, 128, key=jax.random.key(4))
    b = ppl.run_smc(fk, 128, key=jax.random.key(4))
    np.testing.assert_array_equal(np.asarray(a.particles), np.asarray(b.particles))
    assert float(a.log_evidence) == float(b.log_evidence)


def test_all_weights_zero_raises_with_step():
    fk = ppl.FeynmanKac(init=dist.Normal(0.0, 1.0), transition=lambda x, t, d: dist.Normal(x, 1.0),
                        log_potential=lambda xp, x, t, d: jnp.where(t == 3, -jnp.inf, 0.0), num_steps=6)
    with pytest.raises(ppl.SMCError, match="step 3") as info:
        ppl.run_smc(fk, 32, key=jax.random.key(0))
    assert info.value.step == 3


def test_nan_potential_raises_with_step():
    fk = ppl.FeynmanKac(init=dist.Normal(0.0, 1.0), transition=lambda x, t, d: dist.Normal(x, 1.0),
                        log_potential=lambda xp, x, t, d: jnp.where(t == 2, jnp.nan, 0.0), num_steps=6)
    with pytest.raises(ppl.SMCError, match="NaN at step 2"):
        ppl.run_smc(fk, 32, key=jax.random.key(0))


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_particles=0), "num_particles"),
    (dict(num_particles=2.5), "num_particles"),
    (dict(ess_threshold=1.5), "ess_threshold"),
    (dict(resampling="bogus"), "resampling"),
])
def test_bad_arguments_are_named(lg, kwargs, match):
    args = dict(num_particles=16, key=jax.random.key(0))
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        ppl.run_smc(m.lg_bootstrap(lg[0]), **args)


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["multinomial", "stratified", "systematic", "residual", "killing"])
def test_evidence_unbiased_for_every_scheme_many_runs(lg, scheme):
    """4000 runs per scheme: E[Z-hat / Z] = 1 to within about 1.5%."""
    ys, log_z, _, _ = lg
    runs = 4000
    res = ppl.run_smc(m.lg_guided(ys), 64, key=jax.random.split(jax.random.key(21), runs), resampling=scheme)
    ratio = np.exp(np.asarray(res.log_evidence, np.float64) - log_z)
    se = ratio.std(ddof=1) / np.sqrt(runs)
    assert se < 0.02
    assert abs(ratio.mean() - 1.0) < 4.0 * se


# ------------------------------------------------------------------ compile once (issue 16)
@pytest.fixture
def count_compiles():
    """A counter of XLA backend compilations while the test runs."""
    from jax import monitoring

    counter = {"n": 0}

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            counter["n"] += 1

    monitoring.register_event_duration_secs_listener(listen)
    yield counter
    monitoring.unregister_event_duration_listener(listen)


def test_equal_but_new_model_objects_do_not_recompile(count_compiles):
    counter = count_compiles
    ys = jnp.asarray(m.simulate_lg(5, T=9))

    def build(scale):  # a new distribution, new lambdas and a new closure on every call
        offsets = jnp.zeros(9)
        return ppl.FeynmanKac(dist.Normal(0.0, 1.0), lambda x, t, y: dist.Normal(0.9 * x, scale),
                              lambda xp, x, t, y: dist.Normal(x + offsets[t], 0.5).log_prob(y), data=ys)

    key = jax.random.key(0)
    first = ppl.run_smc(build(1.0), 32, key=key)
    before = counter["n"]
    second = ppl.run_smc(build(1.0), 32, key=key)
    assert counter["n"] == before, "an equal model rebuilt from new objects recompiled"
    assert float(first.log_evidence) == float(second.log_evidence)
    ppl.run_smc(build(2.0), 32, key=key)  # another captured value: compiled anew
    assert counter["n"] > before
    # A step program with a new point-mass initial state of equal value.
    sp = lambda: ppl.from_step_program(m.lg_step, init=jnp.zeros(()), data=ys)  # noqa: E731
    ppl.run_smc(sp(), 32, key=key)
    before = counter["n"]
    ppl.run_smc(sp(), 32, key=key)
    assert counter["n"] == before


def test_equal_static_models_share_the_tempered_and_nuts_runners(count_compiles):
    import numpyro

    counter = count_compiles
    y = jnp.asarray(np.random.default_rng(0).normal(1.0, 1.0, 30), jnp.float32)

    def make_model(prior_scale):
        def model(y):
            mu = numpyro.sample("mu", dist.Normal(0.0, prior_scale))
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        return model

    for method, opts in [("tempered_smc", dict(num_particles=64, num_mcmc_steps=2)),
                         ("nuts", dict(num_chains=1, num_warmup=20, num_samples=20))]:
        ppl.infer(make_model(3.0), y, method=method, key=jax.random.key(1), **opts)
        before = counter["n"]
        ppl.infer(make_model(3.0), y, method=method, key=jax.random.key(2), **opts)
        assert counter["n"] == before, method


@pytest.mark.parametrize("batched_randomness", [True, False])
def test_multivariate_linear_gaussian_evidence_is_unbiased(batched_randomness):
    """3-d states, correlated noises, numpyro MultivariateNormal (drawn lifted with one key, or
    per particle; tiny products and solves rewritten on CPU): Z-hat / Z has mean 1 against the
    Kalman filter."""
    from ppl_models.state_space import MultivariateLinearGaussian

    mlg = MultivariateLinearGaussian(
        F=np.array([[0.8, -0.2, 0.0], [0.2, 0.8, 0.0], [0.0, 0.1, 0.9]]),
        G=np.array([[1.0, 0.0, 0.0], [0.5, 1.0, 0.0]]),
        Q=0.3 * np.array([[1.0, 0.5, 0.1], [0.5, 1.0, 0.2], [0.1, 0.2, 1.0]]),
        R=np.array([[0.5, 0.1], [0.1, 0.4]]), m0=np.zeros(3), P0=np.eye(3))
    ys = mlg.simulate(12, seed=7)
    fk = mlg.bootstrap(ys, batched_randomness=batched_randomness)
    res = ppl.run_smc(fk, 128, key=jax.random.split(jax.random.key(8), 300))
    _assert_unbiased(res.log_evidence, mlg.kalman_log_evidence(ys))


# ------------------------------------------------------------------ annealed resampling
ANNEALED = [
    pytest.param(lambda: rs.annealed("systematic", 4.0), id="constant-4"),
    pytest.param(lambda: rs.annealed("multinomial", rs.ESSTemperature(m.T_D, threshold=1.0, early_phase=1.0)), id="ess"),
    pytest.param(lambda: rs.annealed("systematic", rs.EntropyTemperature(m.T_D, threshold=1.0, early_phase=1.0)),
                 id="entropy"),
]


@pytest.mark.parametrize("make", ANNEALED)
def test_annealed_resampling_keeps_the_enumerated_target(make):
    """Resampling from W^(1/T) with the weights W / beta carried keeps log Z and the filtering
    marginal of the discrete chain (flattened resampling alone, without the correction, would not:
    the check below is sensitive to it, see the next test)."""
    keys = jax.random.split(jax.random.key(11), 8)
    res = ppl.run_smc(m.discrete_fk(), 4000, key=keys, resampling=make(), ess_threshold=1.0)
    plain = ppl.run_smc(m.discrete_fk(), 4000, key=keys, resampling="systematic", ess_threshold=1.0)
    assert not np.allclose(np.asarray(res.ess), np.asarray(plain.ess))  # the temperature was > 1
    _check_discrete_chain(res)


def test_annealed_resampling_carries_the_correction():
    """One draw: ancestors from beta ∝ W^(1/T) (the scheme on the flattened weights) and weights
    W_a / (N beta_a); dropping the correction (uniform weights, as its_hub does) changes the
    weighted mean of a test function, and the corrected one is unbiased over many draws."""
    log_w = jnp.log(jnp.asarray([0.6, 0.25, 0.1, 0.05, 0.0], jnp.float32))
    ann = rs.annealed("multinomial", 3.0)
    key = jax.random.key(4)
    anc, corr = ann.draw(key, log_w, 5, 1)
    log_beta = log_w / 3.0 - jax.scipy.special.logsumexp(log_w / 3.0)
    np.testing.assert_array_equal(anc, rs.multinomial(key, log_beta, 5))
    np.testing.assert_allclose(corr[:4], (log_w - log_beta - np.log(5))[:4], rtol=1e-6)
    assert corr[4] == -np.inf and 4 not in np.asarray(anc)
    f = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    draws = jax.vmap(lambda k: ann.draw(k, log_w, 5, 1))(jax.random.split(jax.random.key(5), 20000))
    anc, corr = np.asarray(draws[0]), np.asarray(draws[1])
    w = np.exp(np.take_along_axis(corr, anc, 1))
    corrected = (w * f[anc]).sum(1)  # unbiased for sum_i W_i f_i
    uniform = f[anc].mean(1)         # no correction: biased towards the flattened beta
    exact_mean = float(np.exp(np.asarray(log_w)) @ f)
    se = corrected.std() / np.sqrt(corrected.size)
    assert abs(corrected.mean() - exact_mean) < 4 * se
    assert abs(uniform.mean() - exact_mean) > 0.2


def test_annealed_resampling_evidence_is_unbiased(lg):
    ys, log_z, _, _ = lg
    res = ppl.run_smc(m.lg_guided(ys), 64, key=jax.random.split(jax.random.key(2), 400),
                      resampling=rs.annealed("systematic", 50.0), ess_threshold=1.0)
    _assert_unbiased(res.log_evidence, log_z)


def test_annealed_resampling_is_checked():
    with pytest.raises(ValueError, match="temperature"):
        rs.annealed("systematic", 0.5)
    with pytest.raises(ValueError, match="resampling"):
        rs.annealed("bogus", 2.0)
    rule = rs.ESSTemperature(10, threshold=0.5, early_phase=0.5)
    collapsed = jnp.log(jnp.asarray([0.97, 0.01, 0.01, 0.01]))
    r = 1.0 / (0.97**2 + 3 * 0.01**2) / 4  # ESS / N
    assert float(rule(collapsed, 1)) == pytest.approx((1 - 0.1) / r, rel=1e-4)  # progress t / T = 0.1
    assert float(rule(collapsed, 6)) == 1.0  # past the early phase
    assert float(rule(jnp.log(jnp.full((4,), 0.25)), 1)) == 1.0  # healthy weights
    h = rs.EntropyTemperature(10, threshold=1.0, early_phase=1.0)
    assert float(h(jnp.log(jnp.full((4,), 0.25)), 3)) == pytest.approx(1.0)
    assert float(h(collapsed, 0)) > 3.0
