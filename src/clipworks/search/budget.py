"""Which faiss index fits a memory budget: the choice rule of `clipworks index build --from-embeddings`.

The rule follows autofaiss (the index chooser clip-retrieval uses; Johnson, Douze & Jégou, "Billion-scale similarity
search with GPUs", 2017, for IVF-PQ; Ge et al. 2013 for OPQ): take the most accurate kind whose size fits the budget,
and compress only as much as the budget demands.

    1. flat (exact)               when N <= FLAT_MAX_N and N * 4d bytes fit
    2. HNSW32 (graph over floats) when N <= HNSW_MAX_N and it fits; built with efConstruction 80
    3. IVF-Flat (floats in cells) when it fits
    4. IVF-PQ, M one-byte codes   the largest M (a divisor of d, 4 <= M <= d/2) that fits;
       OPQ+IVF-PQ                 the same, preceded by a learnt rotation, when a code byte covers >= OPQ_MIN_DIMS dims
    5. nothing fits               an error naming the smallest size that would

The budget bounds the index's size, which is its file and what it occupies in memory once every page is read;
`search` and `serve` map the file, so the resident part is what queries touch. Sizes are estimates from the
layouts below (bench/RESULTS.md compares them with the files written).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import ConfigError

FLAT_MAX_N = 100_000  # exact search of <= 100k vectors takes milliseconds per query: no need to approximate
HNSW_MAX_N = 500_000  # the graph's build time grows fast with N on a few cores; IVF beyond
HNSW_M = 32  # graph neighbours per vector
# Candidates searched per insertion while the graph is built. faiss's default, 40, is below the 2 * HNSW_M = 64
# links a vector may keep on level 0, so the graph is built short of neighbours and recall stops short of the
# target at large N whatever efSearch (bench/RESULTS.md: 0.927 at 500k x 512); 80 reaches it.
HNSW_EF_CONSTRUCTION = 80
PQ_NBITS = 8  # bits per sub-quantizer code: one byte, 256 centroids per sub-space
OPQ_MIN_DIMS = 8  # dims per code byte from which a learnt rotation (OPQ) is worth its training time
ID_BYTES = 8  # an int64 id per vector in IVF lists
MIN_PER_CELL = 39  # faiss's minimum k-means training points per centroid

_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9,
          "T": 10**12, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text: str) -> int:
    """Bytes of a size such as "4GB" (powers of 1000), "512MiB" (powers of 1024) or "1000000" (bytes)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _UNITS:
        raise ConfigError(f"{text!r} is not a memory size; write e.g. 4GB, 512MB or 8GiB")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def format_size(n: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


@dataclass(frozen=True)
class IndexPlan:
    """A faiss index for N vectors of dimension d, and its estimated size."""

    kind: str  # flat | hnsw | ivf | ivfpq | opq-ivfpq
    factory: str  # faiss.index_factory string
    bytes: int  # estimated size of the index (file and memory)
    nlist: int | None = None  # IVF cells
    pq_m: int | None = None  # PQ code bytes per vector
    pq_nbits: int | None = None
    hnsw_m: int | None = None
    hnsw_ef_construction: int | None = None


def default_nlist(n: int) -> int:
    """IVF cells: 2 * sqrt(N) (as `IndexSpec`), with at least MIN_PER_CELL training vectors per cell."""
    return max(1, min(round(2 * math.sqrt(n)), n // MIN_PER_CELL))


def pq_sizes(dim: int) -> list[int]:
    """Code bytes M a d-dimensional vector can be split into, largest first: divisors of d from d/2 down to 4."""
    return [m for m in range(dim // 2, 3, -1) if dim % m == 0]


def plan_flat(n: int, dim: int) -> IndexPlan:
    return IndexPlan("flat", "Flat", n * dim * 4)


def plan_hnsw(n: int, dim: int) -> IndexPlan:
    # floats, 2M int32 neighbours on level 0, ~4 bytes of upper levels, a level and an offset per vector
    return IndexPlan("hnsw", f"HNSW{HNSW_M}", n * (dim * 4 + 2 * HNSW_M * 4 + 4 + 4 + 8), hnsw_m=HNSW_M,
                     hnsw_ef_construction=HNSW_EF_CONSTRUCTION)


def plan_ivf(n: int, dim: int) -> IndexPlan:
    nlist = default_nlist(n)
    return IndexPlan("ivf", f"IVF{nlist},Flat", n * (dim * 4 + ID_BYTES) + nlist * dim * 4, nlist=nlist)


def plan_ivfpq(n: int, dim: int, m: int) -> IndexPlan:
    nlist = default_nlist(n)
    size = n * (m + ID_BYTES) + nlist * dim * 4 + 2**PQ_NBITS * dim * 4  # codes and ids, centroids, PQ codebooks
    if dim // m >= OPQ_MIN_DIMS:
        return IndexPlan("opq-ivfpq", f"OPQ{m},IVF{nlist},PQ{m}x{PQ_NBITS}", size + dim * dim * 4, nlist=nlist,
                         pq_m=m, pq_nbits=PQ_NBITS)
    return IndexPlan("ivfpq", f"IVF{nlist},PQ{m}x{PQ_NBITS}", size, nlist=nlist, pq_m=m, pq_nbits=PQ_NBITS)


def candidates(n: int, dim: int) -> list[IndexPlan]:
    """Every plan the rule considers for (N, d), most accurate first."""
    plans = []
    if n <= FLAT_MAX_N:
        plans.append(plan_flat(n, dim))
    if n <= HNSW_MAX_N:
        plans.append(plan_hnsw(n, dim))
    plans.append(plan_ivf(n, dim))
    plans.extend(plan_ivfpq(n, dim, m) for m in pq_sizes(dim))
    return plans


def choose_index(n: int, dim: int, budget: int) -> IndexPlan:
    """The most accurate index for N vectors of dimension d whose estimated size is at most `budget` bytes."""
    if n < 1:
        raise ConfigError("there are no vectors to index")
    if dim < 8:
        raise ConfigError(f"embeddings of dimension {dim} are too small to index (at least 8)")
    plans = candidates(n, dim)
    for plan in plans:
        if plan.bytes <= budget:
            return plan
    smallest = min(plans, key=lambda p: p.bytes)
    raise ConfigError(f"no index of {n:,} vectors of dimension {dim} fits in {format_size(budget)}: the smallest, "
                      f"{smallest.kind} with {smallest.pq_m}-byte codes, needs {format_size(smallest.bytes)}; "
                      f"raise --max-index-memory to at least that")
