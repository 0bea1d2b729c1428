"""KG input: triple files in four formats, the shipped and store-derived graphs, malformed files, the KG tools."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.steps import build_steps
from schemas import ConfigError
from simulators.domains.kg.countries import countries_graph
from simulators.domains.kg.env import KGEnv, KGParams
from simulators.domains.kg.graph import KGError
from simulators.domains.kg.loaders import load_triples
from simulators.domains.kg.store_graph import store_graph
from simulators.environment import is_error

ROWS = [
    {"head": "fr", "relation": "capital", "tail": "paris", "kind": "edge"},
    {"head": "fr", "relation": "neighbour", "tail": "be", "kind": "edge"},
    {"head": "fr", "relation": "France", "tail": "France", "kind": "name"},
    {"head": "fr", "relation": "type", "tail": "country", "kind": "type"},
    {"head": "fr", "relation": "alias", "tail": "French Republic", "kind": "alias"},
    {"head": "fr", "relation": "population", "tail": "66078000", "kind": "attribute"},
    {"head": "paris", "relation": "name", "tail": "Paris", "kind": "name"},
]


def _write(path, rows, fmt):
    if fmt in ("csv", "tsv"):
        sep = "," if fmt == "csv" else "\t"
        path.write_text(f"head{sep}relation{sep}tail{sep}kind\n"
                        + "".join(sep.join(r.values()) + "\n" for r in rows))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_every_format_loads_the_same_graph(tmp_path, fmt):
    kg = load_triples(_write(tmp_path / f"kg.{fmt}", ROWS, fmt))
    assert kg.num_edges == 2 and len(kg) == 3
    assert kg.entity("fr") == {"id": "fr", "name": "France", "type": "country", "aliases": ["French Republic"],
                               "attributes": {"population": 66078000 if fmt != "jsonl" and fmt != "parquet"
                                              else "66078000"}}
    assert kg.step("fr", "capital", "out") == ["paris"] and kg.step("paris", "capital", "in") == ["fr"]
    assert kg.name_of("paris") == "Paris" and kg.type_of("be") == "entity"


def test_csv_without_kind_column_is_all_edges(tmp_path):
    path = tmp_path / "kg.csv"
    path.write_text("head,relation,tail\na,r,b\nb,r,c\n")
    kg = load_triples(path)
    assert kg.num_edges == 2 and kg.step("b", "r", "out") == ["c"]


MALFORMED = [
    ("kg.csv", "head,relation\na,r\n", "line 1: missing column(s) tail"),
    ("kg.csv", "head,relation,tail,weight\na,r,b,1\n", "line 1: unknown column(s) weight"),
    ("kg.csv", "head,relation,tail\na,r,b\nb,r,c,d\n", "line 3: more fields than the header's 3"),
    ("kg.csv", "head,relation,tail\na,r,b\nb,r\n", "line 3: fewer fields than the header's 3"),
    ("kg.csv", "head,relation,tail\na,r,b\n,r,c\n", "line 3: head must be a non-empty string"),
    ("kg.tsv", "head\trelation\ttail\tkind\na\tr\tb\tedge\na\tr\tb\tweird\n", "line 3: unknown kind 'weird'"),
    ("kg.tsv", "head\trelation\ttail\na\tr\ta\n", "line 2: edge from 'a' to itself"),
    ("kg.jsonl", '{"head": "a", "relation": "r", "tail": "b"}\n{"head": "a", \n', "line 2: not valid JSON"),
    ("kg.jsonl", '{"head": "a", "relation": "r", "tail": "b"}\n\n["a", "r", "b"]\n', "line 3: expected a JSON object"),
    ("kg.jsonl", '{"head": "a", "relation": "r"}\n', "line 1: missing key(s) tail"),
    ("kg.jsonl", '{"head": "a", "relation": "r", "tail": "b"}\n{"head": "a", "relation": "size", "tail": null, '
                 '"kind": "attribute"}\n', "line 2: attribute 'size' needs a scalar value"),
    ("kg.jsonl", '{"head": "a", "relation": 3, "tail": "b"}\n', "line 1: relation must be a non-empty string"),
    ("kg.jsonl", '{"head": "a", "relation": "r", "tail": "a2", "kind": "alias"}\n', "no edges"),
    ("kg.csv", "", "line 1: missing column(s) head, relation, tail"),
    ("kg.xml", "<kg/>", "unknown KG file format '.xml'"),
    ("kg.parquet", "not parquet at all", "not a readable Parquet file"),
]


@pytest.mark.parametrize(("name", "content", "problem"), MALFORMED)
def test_malformed_files_name_file_line_and_problem(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(KGError) as err:
        load_triples(path)
    assert str(err.value).startswith(f"{path}: ")
    assert problem in str(err.value)
    assert "\n" not in str(err.value)


def test_parquet_problems_name_the_row(tmp_path):
    path = tmp_path / "kg.parquet"
    pq.write_table(pa.Table.from_pylist([{"head": "a", "relation": "r", "tail": "b"},
                                         {"head": "b", "relation": "", "tail": "c"}]), path)
    with pytest.raises(KGError, match=r"kg.parquet: row 2: relation must be a non-empty string"):
        load_triples(path)
    pq.write_table(pa.Table.from_pylist([{"head": "a", "tail": "b"}]), path)
    with pytest.raises(KGError, match="missing column"):
        load_triples(path)


def test_missing_file_and_bad_domain_params_are_config_errors(tmp_path, small_config):
    missing = tmp_path / "nope.csv"
    with pytest.raises(KGError, match="no such KG file"):
        load_triples(missing)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"head": "a", "relation": "r", "tail": "b"}\nnot json\n')
    config = small_config(domain={"name": "kg", "params": {"source": "file", "path": str(bad)}},
                          generators=[{"name": "kg_question"}])
    with pytest.raises(ConfigError) as err:
        build_steps(config)
    assert str(err.value).startswith("config: domain.params: ") and f"{bad}: line 2: not valid JSON" in str(err.value)
    with pytest.raises(ConfigError, match="domain.params: path is required"):
        build_steps(small_config(domain={"name": "kg", "params": {"source": "file"}}))
    with pytest.raises(ConfigError, match="domain.params.source: Extra inputs are not permitted"):
        build_steps(small_config(domain={"name": "store", "params": {"source": "x"}}))
    with pytest.raises(ConfigError, match=r"generators\[0\].params: kg_question needs a knowledge-graph domain"):
        build_steps(small_config(generators=[{"name": "kg_question"}]))


def test_shipped_countries_graph_carries_real_facts():
    kg = countries_graph()
    assert len(kg) > 700 and kg.num_edges > 1500
    assert set(kg.relations) == {"capital", "currency", "neighbour", "official language", "region", "subregion"}
    assert [kg.name_of(c) for c in kg.step("country:FRA", "capital", "out")] == ["Paris"]
    assert kg.step("country:FRA", "currency", "out") == ["currency:EUR"]
    assert "country:BEL" in kg.step("country:FRA", "neighbour", "out")
    assert kg.name_of(kg.step(kg.step("country:JPN", "subregion", "out")[0], "region", "out")[0]) == "Asia"
    assert kg.attributes("country:FRA")["iso_alpha3"] == "FRA" and "iso_alpha3" in kg.identifiers


def test_store_database_as_a_graph():
    from simulators.domains.store.data import build_store

    data = build_store(0)
    kg = store_graph(0)
    customer_id, customer = next(iter(data["customers"].items()))
    orders = kg.step(f"customer:{customer_id}", "order", "out")
    assert sorted(orders) == sorted(f"order:{o}" for o in customer["orders"])
    order = data["orders"][customer["orders"][0]]
    products = set(kg.step(f"order:{order['order_id']}", "product", "out"))
    assert products == {f"product:{i['product_id']}" for i in order["items"]}
    assert kg.attributes(f"order:{order['order_id']}")["status"] == order["status"]
    env = KGEnv.configure(KGParams(source="store"))(0)
    assert env.kg is kg or env.kg.fingerprint == kg.fingerprint


def test_kg_tools_search_read_follow_and_fail_as_strings():
    env = KGEnv.configure(KGParams())(0)
    hits = json.loads(env.execute("search_entities", {"query": "paris"}))
    assert hits[0] == {"id": "city:paris:FRA", "name": "Paris", "type": "city"}
    assert json.loads(env.execute("search_entities", {"query": "République française"}))[0]["id"] == "country:FRA"
    regions = json.loads(env.execute("search_entities", {"query": "", "type": "region"}))
    assert {r["name"] for r in regions} >= {"Europe", "Asia", "Africa"}
    entity = json.loads(env.execute("get_entity", {"entity_id": "country:LUX"}))
    assert entity["name"] == "Luxembourg" and "neighbour (out)" in entity["relations"]
    near = json.loads(env.execute("get_neighbors", {"entity_id": "country:LUX", "relation": "neighbour",
                                                    "direction": "out"}))
    assert {n["name"] for n in near["neighbors"]} == {"Belgium", "France", "Germany"} and near["total"] == 3
    assert is_error(env.execute("get_entity", {"entity_id": "country:XXX"}))
    assert is_error(env.execute("get_neighbors", {"entity_id": "country:LUX", "relation": "borders"}))
    assert is_error(env.execute("get_neighbors", {"entity_id": "country:LUX", "direction": "up"}))
    assert is_error(env.execute("search_entities", {"query": " "}))
    before = env.state_hash()
    assert env.fresh().state_hash() == before and env.fresh().params == env.params
