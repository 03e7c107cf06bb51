"""Pick a small representative subset of a collection under a budget.

**Communities** (InfoMotion; Li, Reynaud, Gomez, Kainz, 2025), per class:

1. a kNN graph on the embeddings (:func:`knn_graph`): every item linked to its ``k`` most
   cosine-similar items, edge weight = cosine similarity (floored at a tiny positive value,
   so that dissimilar neighbours are weak but present links);
2. communities of that graph (:func:`detect_communities`): Louvain (seeded) by default,
   or label propagation / greedy modularity;
3. the representative of a community is its most central member
   (:func:`central_member`): highest weighted degree inside the community by default
   (``"closeness"``: closeness centrality with distance ``1 - weight``; ``"medoid"``:
   highest mean cosine similarity to the other members);
4. the budget: with more communities than budget the largest communities are kept; with
   fewer, the largest community is split again by community detection on its own kNN graph
   (recursively, largest first) and whatever is still missing is filled by k-center greedy
   (farthest item from the chosen ones).

**k-center greedy** (:func:`k_center_greedy`): the baseline; start at the collection's medoid,
repeatedly add the item farthest (cosine distance) from everything chosen. It minimises,
within a factor 2, the largest distance from an item to its nearest chosen item.

Every pick carries its reasons: community id and size, centrality, and coverage radii
(largest cosine distance from a community member -- and from any item assigned to it as its
nearest pick -- to the representative).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import networkx as nx
import numpy as np

__all__ = [
    "METHODS",
    "Pick",
    "allocate_budget",
    "central_member",
    "community_summary",
    "cosine_similarity",
    "detect_communities",
    "k_center_greedy",
    "k_center_summary",
    "knn_graph",
    "select_subset",
]

METHODS = ("community", "kcenter")
COMMUNITY_ALGORITHMS = ("louvain", "label_propagation", "greedy_modularity")
CENTRALITIES = ("degree", "closeness", "medoid")
_MIN_WEIGHT = 1e-6


def cosine_similarity(x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    if y is None:
        return np.clip(a @ a.T, -1.0, 1.0)
    b = np.asarray(y, dtype=np.float64)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.clip(a @ b.T, -1.0, 1.0)


def knn_graph(x: np.ndarray, k: int = 10, nodes: Sequence[int] | None = None) -> nx.Graph:
    """Undirected kNN graph (union of each node's ``k`` nearest by cosine similarity);
    weight = ``max(cos, 1e-6)``. ``nodes`` names the rows (default ``0..N-1``)."""
    n = len(x)
    names = list(range(n)) if nodes is None else list(nodes)
    g = nx.Graph()
    g.add_nodes_from(names)
    if n < 2:
        return g
    s = cosine_similarity(x)
    np.fill_diagonal(s, -np.inf)
    kk = min(max(int(k), 1), n - 1)
    nn = np.argsort(-s, axis=1, kind="stable")[:, :kk]
    for i in range(n):
        for j in nn[i]:
            w = max(float(s[i, j]), _MIN_WEIGHT)
            a, b = names[i], names[int(j)]
            if not g.has_edge(a, b):
                g.add_edge(a, b, weight=w, similarity=float(s[i, j]))
    return g


def detect_communities(g: nx.Graph, method: str = "louvain", seed: int = 0, resolution: float = 1.0) -> list[set]:
    """Communities of a weighted graph, largest first (ties: smallest member first)."""
    if g.number_of_nodes() == 0:
        return []
    if g.number_of_edges() == 0:
        comms = [{v} for v in g.nodes]
    elif method == "louvain":
        comms = nx.community.louvain_communities(g, weight="weight", resolution=resolution, seed=seed)
    elif method == "label_propagation":
        comms = list(nx.community.asyn_lpa_communities(g, weight="weight", seed=seed))
    elif method == "greedy_modularity":
        comms = nx.community.greedy_modularity_communities(g, weight="weight", resolution=resolution)
    else:
        raise ValueError(f"unknown community method {method!r}; expected one of {COMMUNITY_ALGORITHMS}")
    return sorted((set(c) for c in comms), key=lambda c: (-len(c), min(c)))


def central_member(g: nx.Graph, members: Sequence[int], x: np.ndarray, centrality: str = "degree") -> tuple[int, float]:
    """Most central member of a community and its centrality. ``x`` rows are indexed by the
    node names. Ties are broken by mean cosine similarity to the other members."""
    mem = sorted(members)
    if len(mem) == 1:
        return mem[0], 0.0
    sim = cosine_similarity(x[mem])
    np.fill_diagonal(sim, np.nan)
    mean_sim = np.nanmean(sim, axis=1)
    if centrality == "medoid":
        score = mean_sim
    elif centrality == "degree":
        sub = g.subgraph(mem)
        score = np.array([sub.degree(v, weight="weight") for v in mem], dtype=np.float64)
    elif centrality == "closeness":
        sub = g.subgraph(mem).copy()
        for _, _, d in sub.edges(data=True):
            d["distance"] = max(1.0 - d["weight"], 1e-9)
        cc = nx.closeness_centrality(sub, distance="distance")
        score = np.array([cc[v] for v in mem], dtype=np.float64)
    else:
        raise ValueError(f"unknown centrality {centrality!r}; expected one of {CENTRALITIES}")
    order = np.lexsort((-mean_sim, -score))  # primary: score, then mean similarity
    best = int(order[0])
    return mem[best], float(score[best])


@dataclass
class Pick:
    """One chosen item and why."""

    index: int  # row in the collection
    label: str
    rank: int  # order of choice within its class
    source: str  # "community" | "split" | "k-center"
    community: int  # community id within the class (-1 for k-center picks)
    community_size: int
    centrality: float
    community_radius: float  # max cosine distance member -> this representative
    assigned_size: int = 0  # items of the class whose nearest pick this is
    assigned_radius: float = 0.0  # max cosine distance of those items to this pick

    def to_dict(self) -> dict:
        return asdict(self)


def _cos_dist(x: np.ndarray, i: int, members: Sequence[int]) -> float:
    if len(members) == 0:
        return 0.0
    return float(np.max(1.0 - cosine_similarity(x[[i]], x[list(members)])[0]))


def k_center_greedy(x: np.ndarray, budget: int, chosen: Sequence[int] = ()) -> list[int]:
    """Farthest-first traversal in cosine distance. Starts from ``chosen`` (or from the
    medoid: the item of highest mean similarity). Returns the new items only, in order."""
    n = len(x)
    chosen = list(chosen)
    new: list[int] = []
    if n == 0 or budget <= 0:
        return new
    sim = cosine_similarity(x)
    if not chosen:
        first = int(np.argmax(sim.mean(1)))
        chosen, new = [first], [first]
    d = (1.0 - sim[:, chosen]).min(1)
    d[chosen] = -np.inf
    while len(new) < budget and len(chosen) < n:
        j = int(np.argmax(d))
        if not np.isfinite(d[j]):
            break
        chosen.append(j)
        new.append(j)
        d = np.minimum(d, 1.0 - sim[:, j])
        d[chosen] = -np.inf
    return new[:budget]


def _split(x: np.ndarray, members: set, k: int, method: str, seed: int, resolution: float) -> list[set]:
    mem = sorted(members)
    g = knn_graph(x[mem], k, nodes=mem)
    return detect_communities(g, method, seed, resolution)


def _merge_smallest(x: np.ndarray, parts: list[set], keep: int) -> list[set]:
    """Merge the smallest parts into the most similar (centroid cosine) kept part."""
    parts = sorted(parts, key=lambda c: (-len(c), min(c)))
    kept, rest = parts[:keep], parts[keep:]
    for p in rest:
        cen = np.stack([x[sorted(c)].mean(0) for c in kept])
        j = int(np.argmax(cosine_similarity(x[sorted(p)].mean(0)[None], cen)[0]))
        kept[j] = kept[j] | p
    return kept


def _merge_most_similar(x: np.ndarray, parts: list[set], keep: int) -> list[set]:
    """Agglomerate parts (centroid cosine similarity, most similar pair first) to ``keep``."""
    parts = [set(p) for p in parts]
    while len(parts) > keep:
        cen = np.stack([x[sorted(p)].mean(0) for p in parts])
        s = cosine_similarity(cen)
        np.fill_diagonal(s, -np.inf)
        i, j = np.unravel_index(int(np.argmax(s)), s.shape)
        i, j = min(i, j), max(i, j)
        parts[i] = parts[i] | parts[j]
        del parts[j]
    return sorted(parts, key=lambda c: (-len(c), min(c)))


def community_summary(
    x: np.ndarray,
    budget: int,
    *,
    k: int = 10,
    method: str = "louvain",
    centrality: str = "degree",
    resolution: float = 1.0,
    seed: int = 0,
    label: str = "",
    overflow: str = "largest",
    max_split_rounds: int = 100,
) -> list[Pick]:
    """InfoMotion-style picks for one class (rows of ``x``); see the module doc.

    ``overflow`` -- more communities than budget: ``"largest"`` keeps the largest ones (the
    rest is represented only through its nearest pick); ``"merge"`` merges the two
    communities with the most similar centroids until the budget is met, so that a large
    homogeneous cluster that Louvain cut into pieces does not crowd out a small distinct one.
    """
    n = len(x)
    budget = min(int(budget), n)
    if budget <= 0:
        return []
    g = knn_graph(x, k)
    # [members, source ("community" | "merged" | "split"), splittable]
    comms: list[list] = [[c, "community", True] for c in detect_communities(g, method, seed, resolution)]
    if len(comms) > budget:
        if overflow == "largest":
            comms = comms[:budget]
        elif overflow == "merge":
            orig = [c[0] for c in comms]
            comms = [[c, "community" if c in orig else "merged", True] for c in _merge_most_similar(x, orig, budget)]
        else:
            raise ValueError(f"overflow must be 'largest' or 'merge', got {overflow!r}")
    for _ in range(max_split_rounds):
        if len(comms) >= budget:
            break
        cand = [i for i, c in enumerate(comms) if c[2] and len(c[0]) >= 2]
        if not cand:
            break
        i = max(cand, key=lambda j: (len(comms[j][0]), -min(comms[j][0])))
        parts = _split(x, comms[i][0], k, method, seed, resolution)
        if len(parts) < 2:
            comms[i][2] = False
            continue
        need = budget - len(comms) + 1
        if len(parts) > need:
            parts = _merge_smallest(x, parts, need)
        comms = comms[:i] + comms[i + 1 :] + [[c, "split", True] for c in parts]
    comms.sort(key=lambda c: (-len(c[0]), min(c[0])))
    picks: list[Pick] = []
    for cid, (c, src, _) in enumerate(comms):
        rep, cent = central_member(g, sorted(c), x, centrality)
        picks.append(Pick(rep, label, len(picks), src, cid, len(c), cent, _cos_dist(x, rep, sorted(c))))
    if len(picks) < budget:  # fill by k-center from the representatives
        for j in k_center_greedy(x, budget - len(picks), [p.index for p in picks]):
            picks.append(Pick(j, label, len(picks), "k-center", -1, 0, float("nan"), float("nan")))
    _assign(x, picks)
    return picks


def k_center_summary(x: np.ndarray, budget: int, *, label: str = "") -> list[Pick]:
    """The k-center greedy baseline as :class:`Pick` records."""
    picks = [
        Pick(j, label, r, "k-center", -1, 0, float("nan"), float("nan"))
        for r, j in enumerate(k_center_greedy(x, min(int(budget), len(x))))
    ]
    _assign(x, picks)
    return picks


def _assign(x: np.ndarray, picks: list[Pick]) -> None:
    """Each item's nearest pick: sizes and radii of those assignments."""
    if not picks:
        return
    idx = [p.index for p in picks]
    d = 1.0 - cosine_similarity(x, x[idx])
    near = d.argmin(1)
    for j, p in enumerate(picks):
        mine = np.flatnonzero(near == j)
        p.assigned_size = int(len(mine))
        p.assigned_radius = float(d[mine, j].max()) if len(mine) else 0.0


def allocate_budget(counts: dict[str, int], budget: int) -> dict[str, int]:
    """Split an overall budget over classes in proportion to their sizes (largest
    remainder), giving every class at least one item while the budget allows, never more
    than its size."""
    classes = sorted(counts, key=lambda c: (-counts[c], c))
    total = sum(counts.values())
    budget = min(int(budget), total)
    if budget <= 0 or total == 0:
        return {c: 0 for c in classes}
    alloc = {c: 0 for c in classes}
    if budget >= len(classes):
        for c in classes:
            alloc[c] = 1
    left = budget - sum(alloc.values())
    if left > 0:
        cap = {c: counts[c] - alloc[c] for c in classes}
        cap_total = sum(cap.values())
        quota = {c: left * cap[c] / cap_total for c in classes}
        for c in classes:
            alloc[c] += min(int(math.floor(quota[c])), cap[c])
        rest = budget - sum(alloc.values())
        order = sorted(classes, key=lambda c: (-(quota[c] - math.floor(quota[c])), -counts[c], c))
        while rest > 0:
            moved = False
            for c in order:
                if rest > 0 and alloc[c] < counts[c]:
                    alloc[c] += 1
                    rest -= 1
                    moved = True
            if not moved:
                break
    return alloc


def select_subset(
    x: np.ndarray,
    budget: int,
    labels: Sequence[str] | None = None,
    *,
    per_class: bool = False,
    method: str = "community",
    k: int = 10,
    community_method: str = "louvain",
    centrality: str = "degree",
    resolution: float = 1.0,
    seed: int = 0,
    overflow: str = "largest",
) -> list[Pick]:
    """Picks for a whole collection: one selection per class (``labels``; one class when
    None). ``per_class``: ``budget`` items per class; otherwise ``budget`` overall, shared
    in proportion to class sizes (:func:`allocate_budget`)."""
    x = np.asarray(x, dtype=np.float64)
    labs = [""] * len(x) if labels is None else [str(v) for v in labels]
    if len(labs) != len(x):
        raise ValueError(f"{len(labs)} labels for {len(x)} items")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    classes = sorted(set(labs))
    counts = {c: labs.count(c) for c in classes}
    alloc = {c: min(int(budget), counts[c]) for c in classes} if per_class else allocate_budget(counts, budget)
    out: list[Pick] = []
    for c in classes:
        rows = np.flatnonzero(np.array(labs) == c)
        if alloc[c] <= 0:
            continue
        if method == "community":
            picks = community_summary(
                x[rows], alloc[c], k=k, method=community_method, centrality=centrality,
                resolution=resolution, seed=seed, label=c, overflow=overflow,
            )
        else:
            picks = k_center_summary(x[rows], alloc[c], label=c)
        for p in picks:
            p.index = int(rows[p.index])
        out.extend(picks)
    return out
