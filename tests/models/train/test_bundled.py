"""The shipped weights load without training or network and reproduce their model cards."""

import json
import os


from ppl_models import bundled

# pass@1 of the small fixed evaluation (48 hard test problems x 8 samples, fixed key) is recorded
# in the card when the weights are made; re-running it here must give the same value up to
# floating-point differences between machines (a few samples may flip): tolerance 0.03. It must
# also agree with the card's large evaluation (64 problems x 64 samples) within sampling error:
# tolerance 0.12 (about two standard errors of a 48-problem mean).
SMALL_EVAL_TOLERANCE = 0.03
LARGE_EVAL_TOLERANCE = 0.12


def test_bundled_lm_loads_and_matches_its_card():
    from ppl_models.train.lm import SMALL_EVAL, lm_small_eval

    lm = bundled.load_lm()
    card = bundled.lm_card_metrics()
    assert lm.config.num_params == card["num_params"]
    assert lm.tokenizer is not None and lm.tokenizer.token_to_id("\n") is not None
    small = lm_small_eval(lm)
    assert card["small_eval"]["difficulty"] == SMALL_EVAL["difficulty"]
    assert abs(small["pass@1"] - card["small_eval"]["pass@1"]) <= SMALL_EVAL_TOLERANCE
    assert abs(small["pass@1"] - card["metrics"]["hard"]["pass@1"]) <= LARGE_EVAL_TOLERANCE
    # imperfect on purpose, with room for inference-time scaling
    hard = card["metrics"]["hard"]
    assert 0.1 <= hard["pass@1"] <= 0.7
    assert hard["pass@64"] >= hard["pass@1"] + 0.2


def test_bundled_verifier_lm_loads_matches_its_card_and_knows_more_than_the_generator():
    # the PRM reads the verifier's token features; it is the LM trained further, so it must be
    # clearly stronger than the generator on the hard split
    from ppl_models.train.lm import SMALL_EVAL, lm_small_eval

    ver = bundled.load_verifier()
    card = bundled.verifier_card_metrics()
    assert ver.config.num_params == card["num_params"] == bundled.lm_card_metrics()["num_params"]
    assert card["train_config"]["init_from"] is not None and card["train_config"]["schedule"] == "cosine"
    small = lm_small_eval(ver)
    assert card["small_eval"]["difficulty"] == SMALL_EVAL["difficulty"]
    assert abs(small["pass@1"] - card["small_eval"]["pass@1"]) <= SMALL_EVAL_TOLERANCE
    assert abs(small["pass@1"] - card["metrics"]["hard"]["pass@1"]) <= LARGE_EVAL_TOLERANCE
    assert card["metrics"]["hard"]["pass@1"] >= bundled.lm_card_metrics()["metrics"]["hard"]["pass@1"] + 0.3


def test_bundled_weights_are_small():
    total = 0
    for root, _, files in os.walk(bundled.BUNDLED_DIR):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    assert total < 20 * 2**20


# The PRM's small fixed evaluation (16 hard test problems x 16 LM samples, fixed key): its AUC
# is recorded in the card; re-running must match up to cross-machine float differences (0.03),
# and agree with the card's larger evaluation (32 x 32) within sampling error (0.12).
PRM_SMALL_TOLERANCE = 0.03
PRM_LARGE_TOLERANCE = 0.12


def test_bundled_prm_loads_and_ranks_correct_above_incorrect():
    from ppl_models.train.prm import PRM_SMALL_EVAL, prm_small_eval

    lm = bundled.load_lm()
    prm = bundled.load_prm()
    card = bundled.prm_card_metrics()
    assert prm.config.num_params == card["num_params"]
    small = prm_small_eval(prm, lm)
    assert card["small_eval"]["difficulty"] == PRM_SMALL_EVAL["difficulty"]
    assert abs(small["auc_final"] - card["small_eval"]["auc_final"]) <= PRM_SMALL_TOLERANCE
    assert abs(small["auc_final"] - card["metrics"]["hard"]["auc_final"]) <= PRM_LARGE_TOLERANCE
    assert small["auc_final"] > 0.75  # ranks correct solutions above incorrect ones
    # the reference solution of a problem scores higher than a corrupted one
    from ppl_models.tasks import arithmetic as A

    wins = 0
    problems = A.generate(20, "hard", "test", seed=5)
    for p in problems:
        bad = p.solution.rsplit("answer: ", 1)[0] + f"answer: {(p.answer + 1) % p.modulus}"
        good_s, bad_s = prm.final_score([p.prompt, p.prompt], [p.solution, bad])
        wins += good_s > bad_s
    assert wins >= 18


def test_bundled_twist_loads_and_predicts_the_future_better_than_the_prm():
    """The shipped twist (CTL, ppl train twist) estimates P(right | prefix) under the program's
    sampler better than the PRM it started from (whose score is P(every step so far is right)):
    lower log loss on held-out rollouts; the small fixed evaluation reproduces the card's."""
    from ppl_models.train.twist import TWIST_SMALL_EVAL, twist_small_eval

    twist, prm = bundled.load_twist(), bundled.load_prm()
    with open(bundled.TWIST_DIR / "metrics.json") as fh:
        card = json.load(fh)
    assert twist.config.num_params == card["num_params"] == prm.config.num_params
    small = twist_small_eval(twist, prm, card["train_config"]["epsilon"])
    assert {k: small[k] for k in TWIST_SMALL_EVAL} == {k: card["small_eval"][k] for k in TWIST_SMALL_EVAL}
    assert abs(small["twist_log_loss"] - card["small_eval"]["twist_log_loss"]) <= 0.02
    assert small["twist_log_loss"] < small["prm_log_loss"] - 0.02, small
    held = card["metrics"]
    assert held["twist"]["log_loss"] < held["bundled PRM"]["log_loss"]
