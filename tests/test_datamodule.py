"""Length-grouped batching and dynamic padding."""
import random

import pytest

from bortlab.data.datamodule import LengthGroupedBatchSampler


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_index_once_per_epoch(shuffle):
    lengths = [random.Random(i).randint(5, 300) for i in range(1037)]
    s = LengthGroupedBatchSampler(lengths, 32, shuffle=shuffle, seed=3)
    for _ in range(2):
        batches = list(s)
        assert len(batches) == len(s) == 33
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(1037))


def test_grouping_cuts_padding_and_epochs_differ():
    rng = random.Random(0)
    lengths = [rng.randint(5, 300) for _ in range(3200)]

    def padded(batches):
        return sum(max(lengths[i] for i in b) * len(b) for b in batches)

    grouped = LengthGroupedBatchSampler(lengths, 32, shuffle=True, seed=0)
    plain = LengthGroupedBatchSampler(lengths, 32, shuffle=True, group=False, seed=0)
    e1, e2 = list(grouped), list(grouped)
    assert e1 != e2  # a new order each epoch
    assert padded(e1) < 0.6 * padded(list(plain))
    # the longest batch comes first: out-of-memory shows at step 1
    assert max(lengths[i] for i in e1[0]) == max(lengths)
