"""Path records of whole generations (ppl.lm.paths): a generation cut back to step j continues as
if it had grown to j, memory included (what particle Gibbs' reference and power sampling's
proposals rely on)."""

import jax
import jax.numpy as jnp
import numpy as np

from ppl.lm.paths import current, recorded, truncate
from ppl.lm.potentials import odds
from tests.scaling.test_gibbs import TAU, TokenReward, program


def test_a_truncated_generation_continues_from_its_memory_at_the_cut():
    prog = program()
    T = prog.num_steps
    model = prog.with_potential(recorded(odds(TAU, "min")(TokenReward(), incremental=False), T),
                                correct_proposal=False)
    data, n, cut = model.data, 64, 1
    keys = jax.random.split(jax.random.key(3), T + 1)
    x, _ = model.init_batch(keys[0], n, data)
    grown = [x]
    for t in range(1, T):
        x, _ = model.step_batch(keys[t], x, t, data)
        grown.append(x)
    at_cut = grown[cut - 1]                              # every particle after `cut` steps, as it grew
    back = jax.vmap(truncate, in_axes=(0, None))(x, cut)  # the finished generations cut back to `cut` steps
    live = ~np.asarray(at_cut.done)
    # The cut must matter: for some particles the running minimum at the end is below the one at the cut.
    end_min = np.asarray(jax.vmap(current)(x).low)
    cut_min = np.asarray(jax.vmap(current)(at_cut).low)
    assert np.any(live & (end_min < cut_min - 1e-3))
    np.testing.assert_array_equal(np.asarray(jax.vmap(current)(back).low)[live], cut_min[live])
    # One more step from each, with the same key: the same tokens, weights and memory.
    a, log_w_a = model.step_batch(keys[T], at_cut, cut, data)
    b, log_w_b = model.step_batch(keys[T], back, cut, data)
    np.testing.assert_array_equal(np.asarray(a.length), np.asarray(b.length))
    within = np.arange(a.tokens.shape[1])[None] < np.asarray(a.length)[:, None]  # past the length: stale
    np.testing.assert_array_equal(np.where(within, a.tokens, -1)[live], np.where(within, b.tokens, -1)[live])
    np.testing.assert_allclose(np.asarray(log_w_b)[live], np.asarray(log_w_a)[live], rtol=1e-6)
    for leaf_a, leaf_b in zip(jax.tree_util.tree_leaves(jax.vmap(current)(a)),
                              jax.tree_util.tree_leaves(jax.vmap(current)(b))):
        np.testing.assert_allclose(np.asarray(leaf_b)[live], np.asarray(leaf_a)[live], rtol=1e-6)
    assert jnp.all(b.num_steps[live] == cut + 1)
