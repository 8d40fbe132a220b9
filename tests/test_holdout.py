"""The holdout rule: per key, stable, about `fraction` of any key set, nested across fractions."""

import pickle

import pytest

from graph200k import HoldoutFilter, is_held_out
from graph200k.holdout import holdout_score

KEYS = [f"data-{i // 1000:05d}-of-00022-{i:05d}" for i in range(20_000)]


def test_about_the_fraction_is_held_out_and_larger_fractions_contain_smaller_ones():
    small = {k for k in KEYS if is_held_out(k, 0.01)}
    large = {k for k in KEYS if is_held_out(k, 0.05)}
    assert abs(len(small) - 200) < 45 and abs(len(large) - 1000) < 100
    assert small < large
    assert not any(is_held_out(k, 0.0) for k in KEYS)


def test_the_rule_is_pinned():
    """Changing the hash would move keys between training and validation of existing shards."""
    assert holdout_score("2c4e256fa512cb7e7f433f4c7f9101de") == pytest.approx(0.7183, abs=1e-4)
    assert holdout_score("012cd3921e1f97d761eeff580f918ff9") == pytest.approx(0.1630, abs=1e-4)


def test_filters_are_complementary_and_pickle_for_dataloader_workers():
    held, kept = HoldoutFilter(0.2), HoldoutFilter(0.2, held_out=False)
    assert all(held(k) != kept(k) for k in KEYS[:500])
    assert pickle.loads(pickle.dumps(held))("x") == held("x")


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 2])
def test_bad_fractions_are_named(fraction):
    with pytest.raises(ValueError, match="holdout fraction"):
        is_held_out("k", fraction)
    with pytest.raises(ValueError, match="holdout fraction"):
        HoldoutFilter(fraction)
