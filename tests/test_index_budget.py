"""The index chooser of `index build --from-embeddings`: its decision for given (N, d, budget), computed by hand from
the size layouts in budget.py, and memory sizes as users write them."""

import pytest

from clipworks.errors import ConfigError
from clipworks.search.budget import choose_index, parse_size


@pytest.mark.parametrize("n, dim, budget, kind, factory, size", [
    # flat: 10k x 512 x 4 bytes
    (10_000, 512, 4 * 10**9, "flat", "Flat", 20_480_000),
    # above FLAT_MAX_N: HNSW32, 200k x (2048 floats + 256 neighbours + 16)
    (200_000, 512, 4 * 10**9, "hnsw", "HNSW32", 464_000_000),
    # above HNSW_MAX_N: IVF-Flat, nlist 2 sqrt(N) = 2000: 1M x (2048 + 8) + 2000 x 2048
    (1_000_000, 512, 4 * 10**9, "ivf", "IVF2000,Flat", 2_060_096_000),
    # 1 GB: PQ with 256 bytes (2 dims a byte): 1M x 264 + centroids 4,096,000 + codebooks 256 x 512 x 4
    (1_000_000, 512, 10**9, "ivfpq", "IVF2000,PQ256x8", 268_620_288),
    # 100M in 4 GB: 32-byte codes need 4.04 GB; 16 bytes (32 dims a byte) with an OPQ rotation (512 x 512 x 4)
    (100_000_000, 512, 4 * 10**9, "opq-ivfpq", "OPQ16,IVF20000,PQ16x8", 2_442_532_864),
    # the test collection of test_from_embeddings: 20k x 64 in 1 MB, nlist 283 (2 sqrt(20k))
    (20_000, 64, 10**6, "ivfpq", "IVF283,PQ32x8", 937_984),
    # budget exactly the flat size: it fits
    (1_000, 64, 256_000, "flat", "Flat", 256_000),
])
def test_chooser_picks_the_most_accurate_index_that_fits(n, dim, budget, kind, factory, size):
    plan = choose_index(n, dim, budget)
    assert (plan.kind, plan.factory, plan.bytes) == (kind, factory, size)
    assert plan.bytes <= budget


def test_nothing_fits_names_the_smallest_size():
    # 100M x 512 with 4-byte codes: 100M x 12 + 40,960,000 + 524,288 + 1,048,576 bytes
    with pytest.raises(ConfigError, match=r"smallest, opq-ivfpq with 4-byte codes, needs 1.24 GB; raise "
                                          r"--max-index-memory"):
        choose_index(100_000_000, 512, 10**9)


@pytest.mark.parametrize("text, value", [("4GB", 4 * 10**9), ("4G", 4 * 10**9), ("512MiB", 512 * 2**20),
                                         ("1.5 GB", 1_500_000_000), ("1000", 1000), ("2kb", 2000)])
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "4 gigs", "GB", "-1GB"])
def test_bad_sizes_say_how_to_write_one(text):
    with pytest.raises(ConfigError, match="write e.g. 4GB"):
        parse_size(text)
