"""Graph datasets: a TU folder written by the test, MUTAG from the grakel wheel, the karate club."""

import importlib.util
from types import SimpleNamespace

import pytest
import torch

from gperc_core import TaskError
from gperc_plugin_graph.datasets import load_karate, load_mutag, load_tu_folder, stratified_folds
from gperc_plugin_graph.plugin import gperc_input_array
from gperc_plugin_graph.tu import read_tu

HAVE_GRAKEL = importlib.util.find_spec("grakel") is not None


def write_tu(folder, name="TOY"):
    """Three graphs: a triangle (label 1), an edge (label -1), a 3-path (label 1), TU style (1-based)."""
    folder.mkdir(parents=True, exist_ok=True)
    edges = [(1, 2), (2, 1), (2, 3), (3, 2), (1, 3), (3, 1), (4, 5), (5, 4), (6, 7), (7, 6), (7, 8), (8, 7)]
    (folder / f"{name}_A.txt").write_text("".join(f"{u}, {v}\n" for u, v in edges))
    (folder / f"{name}_graph_indicator.txt").write_text("1\n1\n1\n2\n2\n3\n3\n3\n")
    (folder / f"{name}_graph_labels.txt").write_text("1\n-1\n1\n")
    (folder / f"{name}_node_labels.txt").write_text("0\n1\n2\n0\n0\n1\n1\n2\n")
    (folder / f"{name}_edge_labels.txt").write_text("".join(f"{i // 2}\n" for i in range(len(edges))))
    return folder


def test_read_tu(tmp_path):
    data = read_tu(write_tu(tmp_path / "TOY"))
    assert [g.num_nodes for g in data.graphs] == [3, 2, 3]
    assert [g.num_edges for g in data.graphs] == [3, 1, 2]
    assert data.targets.tolist() == [1, 0, 1] and data.classes == ["-1", "1"]
    assert data.graphs[2].edges.tolist() == [[0, 1], [1, 2]]
    assert data.graphs[2].edge_labels.tolist() == [4, 5]
    assert data.graphs[0].node_labels.tolist() == [0, 1, 2]


def test_tu_folder_dataset_splits(tmp_path):
    root = write_tu(tmp_path / "TOY")
    options = {"root": str(root), "num_folds": 2}
    train, test = load_tu_folder("train", options), load_tu_folder("test", options)
    assert len(train) + len(test) == 3 and len(test) >= 1
    sample = test[0]
    arr = gperc_input_array(modality="graph", sample=sample["graph"], options={"num_node_labels": 3})
    assert arr.array.shape[1] == 3 + 1 + 8


def test_tu_missing_file_names_it(tmp_path):
    root = write_tu(tmp_path / "TOY")
    (root / "TOY_graph_indicator.txt").unlink()
    with pytest.raises(TaskError, match="graph plugin: TU dataset 'TOY': expected TOY_graph_indicator.txt"):
        read_tu(root)
    with pytest.raises(TaskError, match="options\\['root'\\]: expected a TU-format folder"):
        load_tu_folder("train", {})


def test_tu_edge_between_graphs(tmp_path):
    root = write_tu(tmp_path / "TOY")
    (root / "TOY_A.txt").write_text("1, 4\n")
    (root / "TOY_edge_labels.txt").unlink()
    with pytest.raises(TaskError, match="expected every edge inside one graph"):
        read_tu(root)


def test_stratified_folds_balance_classes():
    labels = torch.tensor([0] * 50 + [1] * 100)
    folds = stratified_folds(labels, 5, seed=0)
    for f in range(5):
        assert torch.bincount(labels[folds == f]).tolist() == [10, 20]
    assert torch.equal(folds, stratified_folds(labels, 5, seed=0))
    assert not torch.equal(folds, stratified_folds(labels, 5, seed=1))


@pytest.mark.parametrize("options, key", [({"num_folds": 1}, "num_folds"), ({"fold": 5}, "fold"),
                                          ({"split_seed": "x"}, "split_seed")])
def test_bad_split_options(options, key):
    with pytest.raises(TaskError, match=f"options\\['{key}'\\]"):
        load_karate("train", options)


@pytest.mark.skipif(not HAVE_GRAKEL, reason="MUTAG ships in grakel: pip install grakel==0.1.11")
def test_mutag_from_grakel():
    train, test = load_mutag("train"), load_mutag("test")
    assert (len(train), len(test)) == (150, 38)
    assert sorted(set(train.targets)) == [0, 1] and sum(test.targets) == 25  # 125 of 188 are mutagenic
    assert not {id(g) for g in train.graphs} & {id(g) for g in test.graphs}
    options = {"num_node_labels": 7, "num_edge_labels": 4, "edge_tokens": True, "position": "both"}
    arr = gperc_input_array(modality="graph", sample=train[0]["graph"], options=options)
    g = train[0]["graph"]
    assert arr.array.shape == (g.num_nodes + g.num_edges, 7 + 4 + 1 + 16 + 16 + 1)
    ten = load_mutag("test", {"num_folds": 10, "fold": 3})
    assert len(ten) in (18, 19, 20)


def test_mutag_without_grakel(monkeypatch):
    import gperc_plugin_graph.datasets as datasets

    monkeypatch.setattr(datasets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TaskError, match="pip install grakel==0.1.11"):
        load_mutag("train")


def test_karate_splits_are_complementary():
    parts = {s: load_karate(s)[0]["target"] for s in ("train", "validation", "test")}
    labelled = {s: t != -100 for s, t in parts.items()}
    assert sum(labelled.values()).eq(1).all()  # every node in exactly one split
    assert [int(labelled[s].sum()) for s in ("train", "validation", "test")] == [12, 4, 18]  # 2 folds (9 + 9 tested); 0.2 of each class
    both = parts["train"].clone()
    for s in ("validation", "test"):
        both = torch.where(labelled[s], parts[s], both)
    assert torch.bincount(both).tolist() == [17, 17]
    assert torch.bincount(parts["validation"][labelled["validation"]]).tolist() == [2, 2]  # stratified


def test_karate_folds_partition_the_nodes():
    tests = [load_karate("test", {"num_folds": 10, "fold": k})[0]["target"] != -100 for k in range(10)]
    assert torch.stack(tests).sum(0).eq(1).all()  # each node tested in exactly one fold
    for k in range(10):
        opts = {"num_folds": 10, "fold": k, "validation_fraction": 0.1}
        train, val = (load_karate(s, opts)[0]["target"] != -100 for s in ("train", "validation"))
        assert not (train & val).any() and not ((train | val) & tests[k]).any() and int(val.sum()) >= 2
        assert bool((train | val | tests[k]).all())
    with pytest.raises(TaskError, match=r"validation_fraction.*\(0, 1\), got 1.5"):
        load_karate("validation", {"validation_fraction": 1.5})
    with pytest.raises(TaskError, match="split: expected one of"):
        load_karate("dev")


def test_pyg_stand_in_through_the_hook():
    data = SimpleNamespace(edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), x=torch.tensor([0, 1, 1]),
                           y=torch.tensor([1]))
    arr = gperc_input_array(modality="graph", sample=data, options={"num_node_labels": 2, "pe_dim": 2})
    assert tuple(arr.array.shape) == (3, 2 + 1 + 2)


def test_karate_task_builds_and_learns():
    import torch.nn.functional as F

    from gperc_core import create_task

    task = create_task("graph/karate", dropout=0.0)
    config = task.config
    assert config.decoder_reduction is None and config.output_len == 34
    assert config.output_dim == 16 and config.n_classes == 2
    batch = task.split("train").batch(torch.arange(1))
    assert tuple(batch["output_array"].shape) == (1, 34, 16) and tuple(batch["target"].shape) == (1, 34)
    torch.manual_seed(0)
    model = task.build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        logits = model(batch["input_array"], batch["attention_mask"], batch["output_array"])
        loss = F.cross_entropy(logits.reshape(-1, 2), batch["target"].reshape(-1), ignore_index=-100)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_mutag_card_cross_validation_folds_partition_the_graphs():
    from gperc_core.data.tasks import Task
    from gperc_core.data.registry import find_card, plugin_manager

    pm = plugin_manager()
    card = find_card("graph/mutag", pm)
    assert card.cross_validation == {"folds": 10, "seed": 0} and card.goal["accuracy"] == 0.88
    tested = 0
    for k in range(10):
        data = Task(card, pm, {"cross_validation.fold": k}).data
        sizes = {s: len(data.split_index(s)["mutag"]) for s in ("train", "validation", "test")}
        train, val = (set(data.split_index(s)["mutag"].tolist()) for s in ("train", "validation"))
        assert not train & val and sizes["train"] + sizes["validation"] + sizes["test"] == 188
        assert sizes["validation"] in (16, 17, 18)
        tested += sizes["test"]
    assert tested == 188
