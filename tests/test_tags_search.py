"""Tags, descriptions and search_models on both backends."""

from __future__ import annotations

import json
import math

import pytest

from registry import audit
from registry.errors import FilterSyntaxError, InvalidArgumentError, ModelNotFoundError


@pytest.fixture
def three_models(registry, model_dir):  # type: ignore[no-untyped-def]
    """als v1 (ndcg 0.10), bpr v1 (ndcg 0.30, team=search), als v2 (ndcg 0.20, team=feed)."""
    ids = [
        registry.register_model(model_dir("als/v1"), "als", version="v1", metrics={"ndcg@10": 0.10, "recall@10": 0.5}),
        registry.register_model(model_dir("bpr/v1", "bpr"), "bpr", version="v1", metrics={"ndcg@10": 0.30}),
        registry.register_model(model_dir("als/v2", seed=2), "als", version="v2", metrics={"ndcg@10": 0.20}),
    ]
    registry.set_tag("bpr_v1", "team", "search")
    registry.set_tag("als_v2", "team", "feed")
    registry.set_tag("als_v2", "owner", "ana")
    return ids


def test_tags_and_description_round_trip_with_audit(registry, three_models, registry_path) -> None:  # type: ignore[no-untyped-def]
    assert registry.get_tags("als_v2") == {"owner": "ana", "team": "feed"}
    assert registry.get_tags("als_v1") == {}
    assert registry.set_tag("als_v2", "team", "feed") is False  # unchanged: no event
    assert registry.set_description("als_v2", "Retrained on\nNovember data") is True
    info = registry.get_model("als_v2")
    assert info["tags"] == {"owner": "ana", "team": "feed"}
    assert info["description"] == "Retrained on\nNovember data"
    assert "tags" not in registry.get_model("als_v1") and "description" not in registry.get_model("als_v1")
    exported = json.loads(registry_path.read_text())["models"]["als_v2"]
    assert exported["tags"] == {"owner": "ana", "team": "feed"} and exported["description"].startswith("Retrained")
    assert registry.delete_tag("als_v2", "owner") is True
    assert registry.delete_tag("als_v2", "owner") is False
    assert registry.get_tags("als_v2") == {"team": "feed"}
    events = registry.context.read(lambda s: audit.query_events(s))
    assert [e["action"] for e in events if e["action"] in ("TAG_SET", "TAG_DELETE", "DESCRIBE")] == [
        "TAG_SET", "TAG_SET", "TAG_SET", "DESCRIBE", "TAG_DELETE",
    ]


def test_bad_tags_are_refused_and_change_nothing(registry, three_models) -> None:  # type: ignore[no-untyped-def]
    before = registry.get_tags("als_v2")
    for key, value in ((" team", "x"), ("team", "a|b"), ("team", "x" * 1025), ("team", 3), ("", "x")):
        with pytest.raises(InvalidArgumentError):
            registry.set_tag("als_v2", key, value)
    with pytest.raises(ModelNotFoundError):
        registry.set_tag("nope_v1", "team", "x")
    with pytest.raises(InvalidArgumentError):
        registry.set_description("als_v2", "x" * 10_001)
    assert registry.get_tags("als_v2") == before


def test_list_models_has_a_tags_column(registry, three_models) -> None:  # type: ignore[no-untyped-def]
    frame = registry.list_models(sort_by="ndcg@10")
    assert list(frame.columns) == ["model_id", "model_type", "version", "status", "created_at",
                                   "ndcg@10", "recall@10", "training_time", "tags"]
    assert dict(zip(frame["model_id"], frame["tags"])) == {
        "bpr_v1": {"team": "search"}, "als_v2": {"owner": "ana", "team": "feed"}, "als_v1": {},
    }


def test_search_by_metric_type_and_tag_in_order(registry, three_models) -> None:  # type: ignore[no-untyped-def]
    found = registry.search_models("metrics.ndcg@10 > 0.1 and model_type = 'als'")
    assert found["model_id"].tolist() == ["als_v2"]
    found = registry.search_models("metrics.ndcg@10 >= 0.1", order_by=["metrics.ndcg@10 desc"])
    assert found["model_id"].tolist() == ["bpr_v1", "als_v2", "als_v1"]
    assert registry.search_models("tags.team = 'search'")["model_id"].tolist() == ["bpr_v1"]
    assert sorted(registry.search_models("tags.team != 'search'")["model_id"]) == ["als_v2"]  # untagged never match
    assert registry.search_models("tags.team in ('search', 'feed') and metrics.recall@10 < 1")["model_id"].tolist() == []
    assert registry.search_models("model_id like 'als%' or tags.owner = 'ana'", order_by=["model_id"])["model_id"].tolist() == ["als_v1", "als_v2"]
    assert registry.search_models("created_at >= '2000-01-01' and created_at < '2999-01-01T00:00:00Z'").shape[0] == 3
    assert registry.search_models("created_at < '2000-01-01'").empty
    # Missing metric values sort last in either direction.
    ordered = registry.search_models("", order_by=["metrics.recall@10 desc", "model_id"])
    assert ordered["model_id"].tolist() == ["als_v1", "als_v2", "bpr_v1"]
    assert math.isnan(ordered["recall@10"].iloc[2])


def test_search_pages(registry, three_models) -> None:  # type: ignore[no-untyped-def]
    order = ["metrics.ndcg@10 asc"]
    first = registry.search_models("", order_by=order, limit=2)
    second = registry.search_models("", order_by=order, limit=2, offset=2)
    assert first["model_id"].tolist() == ["als_v1", "als_v2"]
    assert second["model_id"].tolist() == ["bpr_v1"]
    assert registry.search_models("", order_by=order, limit=2, offset=3).empty
    with pytest.raises(InvalidArgumentError):
        registry.search_models("", limit=10_001)
    with pytest.raises(InvalidArgumentError):
        registry.search_models("", offset=-1)


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("metrics.ndcg@10 > 'high'", 0),
        ("tags.team = 3", 0),
        ("created_at > 'yesterday'", 0),
        ("model_type = 'als' and bogus = 1", 23),
        ("model_type like 3", 0),
    ],
)
def test_bad_filters_point_at_the_token(registry, three_models, text: str, position: int) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FilterSyntaxError) as caught:
        registry.search_models(text)
    assert caught.value.position == position


def test_filter_values_are_never_sql(registry, three_models) -> None:  # type: ignore[no-untyped-def]
    hostile = "x' OR '1'='1"
    assert registry.search_models(f"model_id = \"{hostile}\"").empty
    with pytest.raises(FilterSyntaxError):
        registry.search_models("tags.team = 'search'; DROP TABLE models")
    assert len(registry.list_models()) == 3


def test_embeddings_versions_have_tags_and_descriptions(tmp_path, embeddings_dir, database_url) -> None:  # type: ignore[no-untyped-def]
    from registry import BERTEmbeddingsRegistry

    bert = BERTEmbeddingsRegistry(tmp_path / "artifacts" / "cf" / "bert_registry.json", database_url=database_url, root=tmp_path)
    version = bert.register_embeddings(embeddings_dir("bert/v1", num_items=25, dim=16), "phobert-base", 25, 16, version="bert_v1")
    assert bert.set_tag(version, "source", "phobert") is True
    assert bert.set_description(version, "PhoBERT base, product titles") is True
    assert bert.get_tags(version) == {"source": "phobert"}
    info = bert.get_embeddings(version)
    assert info["tags"] == {"source": "phobert"} and info["description"] == "PhoBERT base, product titles"
    assert bert.list_embeddings()[0]["tags"] == {"source": "phobert"}
    exported = json.loads((tmp_path / "artifacts" / "cf" / "bert_registry.json").read_text())["embeddings"][version]
    assert exported["tags"] == {"source": "phobert"}
    assert bert.delete_tag(version, "source") is True and bert.get_tags(version) == {}
    with pytest.raises(ModelNotFoundError):
        bert.set_tag("bert_missing", "source", "x")


def test_cli_tag_and_describe(registry, three_models, registry_path, database_url, workdir) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from registry.cli import app

    base = ["--registry", str(registry_path), "--database-url", database_url]
    runner = CliRunner()
    assert runner.invoke(app, [*base, "tag", "set", "als_v1", "team", "ranking"]).exit_code == 0
    assert runner.invoke(app, [*base, "describe", "als_v1", "baseline ALS"]).exit_code == 0
    listed = runner.invoke(app, [*base, "--json", "tag", "list", "als_v1"])
    assert json.loads(listed.stdout) == {"team": "ranking"}
    assert registry.get_model("als_v1")["description"] == "baseline ALS"
    removed = runner.invoke(app, [*base, "--json", "tag", "delete", "als_v1", "team"])
    assert json.loads(removed.stdout)["changed"] is True and registry.get_tags("als_v1") == {}
    bad = runner.invoke(app, [*base, "tag", "set", "als_v1", "bad key", "x"])
    assert bad.exit_code == 1 and "invalid tag key" in bad.stderr


def test_cli_list_filter_and_order(registry, three_models, registry_path, database_url, workdir) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from registry.cli import app

    base = ["--registry", str(registry_path), "--database-url", database_url]
    runner = CliRunner()
    found = runner.invoke(app, [*base, "--json", "list", "--filter", "metrics.ndcg@10 >= 0.15", "--order-by", "metrics.ndcg@10 desc"])
    assert found.exit_code == 0, found.stderr
    assert [row["model_id"] for row in json.loads(found.stdout)] == ["bpr_v1", "als_v2"]
    typed = runner.invoke(app, [*base, "--json", "list", "--filter", "metrics.ndcg@10 > 0", "--type", "als", "--limit", "1"])
    assert [row["model_id"] for row in json.loads(typed.stdout)] == ["als_v2"]
    hostile = runner.invoke(app, [*base, "--json", "list", "--order-by", "created_at", "--type", "x' or model_type != '"])
    assert hostile.exit_code == 0 and json.loads(hostile.stdout) == []
    bad = runner.invoke(app, [*base, "list", "--filter", "bogus = 1"])
    assert bad.exit_code == 1 and "unknown field 'bogus'" in bad.stderr
