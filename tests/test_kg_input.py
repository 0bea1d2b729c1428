"""KG input: triple files in four formats and as published (headerless, any extension, mapped columns, labels
from separate files, relation tables), self-loops and duplicates skipped, size limits, the shipped and
store-derived graphs, malformed files, the KG tools."""

from __future__ import annotations

import json
import logging
import resource

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.steps import build_steps
from schemas import ConfigError
from simulators.domains.kg.countries import countries_graph
from simulators.domains.kg.env import KGEnv, KGParams
from simulators.domains.kg.graph import KGError
from simulators.domains.kg.loaders import EntitySource, load_graph, load_triples
from simulators.domains.kg.store_graph import store_graph
from simulators.domains.kg.tables import Limits, Table
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
    ("kg.tsv", "head\trelation\ttail\na\tr\ta\n", "no edges"),  # its one edge, a self-loop, was skipped
    ("kg.jsonl", '{"head": "a", "relation": "r", "tail": "b"}\n{"head": "a", \n', "line 2: not valid JSON"),
    ("kg.jsonl", '{"head": "a", "relation": "r", "tail": "b"}\n\n["a", "r", "b"]\n', "line 3: expected a JSON object"),
    ("kg.jsonl", '{"head": "a", "relation": "r"}\n', "line 1: missing key(s) tail"),
    ("kg.jsonl", '{"head": "a", "relation": "r", "tail": "b"}\n{"head": "a", "relation": "size", "tail": null, '
                 '"kind": "attribute"}\n', "line 2: attribute 'size' needs a scalar value"),
    ("kg.jsonl", '{"head": "a", "relation": 3, "tail": "b"}\n', "line 1: relation must be a non-empty string"),
    ("kg.jsonl", '{"head": "a", "relation": "r", "tail": "a2", "kind": "alias"}\n', "no edges"),
    ("kg.csv", "", "line 1: missing column(s) head, relation, tail"),
    ("kg.xml", "<kg/>", "unknown KG file format '.xml' (use .csv, .jsonl, .ndjson, .parquet, .tsv, or set format:"),
    ("kg.txt", "a\tr\tb\tc\td\n", "unknown KG file format '.txt'"),
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


SAMPLE = "tests/data/wn18rr_sample/train.txt"
WIKI = "tests/data/wikidata_style"


def test_wn18rr_loads_as_published_with_a_column_mapping(caplog, small_config):
    """Headerless TSV named .txt, self-loops in it, names and types read out of ids like land_reform.n.01."""
    with pytest.raises(KGError, match=r"train.txt: unknown KG file format '.txt'"):
        load_triples(SAMPLE)
    with pytest.raises(KGError, match=r"train.txt: line 1: missing column\(s\) head, relation, tail"):
        load_triples(SAMPLE, format="tsv")
    config = small_config(domain={"name": "kg", "params": {
        "source": "file", "path": SAMPLE, "format": "tsv", "header": False, "columns": ["head", "relation", "tail"],
        "entities": [{"pattern": {"id": r"(?P<name>.+)\.(?P<type>[nvasr])\.\d+"},
                      "values": {"type": {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective"}}}],
        "relations": {"path": "examples/kg/wn18rr_relations.tsv"}}}, generators=[{"name": "kg_question"}])
    with caplog.at_level(logging.WARNING, logger="trajforge.kg"):
        kg = build_steps(config).env.kg
    assert kg.num_edges == 3293 and kg.skipped == {"self_loops": 3}
    warnings = [r.getMessage() for r in caplog.records if r.name == "trajforge.kg"]
    assert warnings == [f"{SAMPLE}: skipped 3 self-loop edge(s) (first: line 304 'bondage.n.02')"]
    assert kg.entity("tree.n.01") == {"id": "tree.n.01", "name": "tree", "type": "noun", "aliases": [],
                                      "attributes": {}}
    assert kg.name_of("compare.v.01") == "compare" and kg.type_of("compare.v.01") == "verb"
    assert len(kg.homonyms("compare")) > 1  # compare.v.01, compare.v.02, ...: one shown name
    assert kg.reads("_hypernym", "out") == "is a kind of" and kg.reads("_hypernym", "in") == "is a broader term for"
    with pytest.raises(ConfigError, match=r"domain.params: tests/data/wn18rr_sample/train.txt: line 304: edge from "
                                          r"'bondage.n.02' to itself \(self_loops: skip to leave it out\)"):
        build_steps(small_config(domain={"name": "kg", "params": {
            "source": "file", "path": SAMPLE, "format": "tsv", "header": False, "self_loops": "error"}}))


def test_wikidata_style_claims_with_labels_aliases_descriptions_and_property_phrases(tmp_path, caplog):
    """Headerless claims, a labels file with a header, aliases by position, a property table; a repeated claim."""
    with caplog.at_level(logging.WARNING, logger="trajforge.kg"):
        kg = load_graph(
            Table(path=f"{WIKI}/claims.csv", header=False, columns={"head": 0, "relation": 1, "tail": 2}),
            [EntitySource(path=f"{WIKI}/labels.csv", columns={"id": "id", "name": "label", "description": "description"}),
             EntitySource(path=f"{WIKI}/aliases.tsv", header=False, columns=["id", "alias"])],
            Table(path=f"{WIKI}/properties.csv"))
    assert kg.skipped == {"duplicates": 1} and kg.num_edges == 30
    assert [r.getMessage() for r in caplog.records] == [
        f"{WIKI}/claims.csv: skipped 1 repeated triple(s) (each edge kept once)"]
    assert kg.entity("Q183") == {"id": "Q183", "name": "Germany", "type": "entity",
                                 "aliases": ["Federal Republic of Germany", "Deutschland"],
                                 "attributes": {"description": "country in Central Europe"}}
    assert kg.search("Deutschland")[0]["id"] == "Q183"
    env = KGEnv.configure(KGParams(
        source="file", path=f"{WIKI}/claims.csv", header=False, columns=["head", "relation", "tail"],
        entities=[EntitySource(path=f"{WIKI}/labels.csv", columns={"id": "id", "name": "label"})],
        relations=Table(path=f"{WIKI}/properties.csv")))(0)
    entity = json.loads(env.execute("get_entity", {"entity_id": "Q64"}))
    assert entity["name"] == "Berlin" and "P17 (out): is in the country" in entity["relations"]
    assert "P36 (in): is the capital of" in entity["relations"]


MAPPING_ERRORS = [
    ({"header": False}, "a,r,b,edge,c\n", "line 1: 5 columns and no header: say which is which with columns:"),
    ({"header": False, "columns": ["head", "relation"]}, "a,r,b\n", "columns: missing role(s) tail"),
    ({"header": False, "columns": ["head", "rel", "tail"]}, "a,r,b\n", "columns: missing role(s) relation"),
    ({"header": False, "columns": ["head", "relation", "tail", "weight"]}, "a,r,b,1\n", "columns: unknown role(s) weight"),
    ({"columns": {"head": "s", "relation": "p", "tail": "x"}}, "s,p,o\na,r,b\n", "columns.tail: no column 'x' (the "
                                                                                 "header has s, p, o)"),
    ({"header": False, "columns": {"head": 0, "relation": 1, "tail": 5}}, "a,r,b\n", "line 1: 3 field(s), the column "
                                                                                      "mapping needs 6"),
]


@pytest.mark.parametrize(("table", "content", "problem"), MAPPING_ERRORS)
def test_column_mapping_problems_are_one_line(tmp_path, table, content, problem):
    path = tmp_path / "kg.csv"
    path.write_text(content)
    with pytest.raises(KGError) as err:
        load_triples(path, **table)
    assert str(err.value).startswith(f"{path}: {problem}")
    assert "\n" not in str(err.value)


def test_a_header_with_other_names_maps_by_name_and_jsonl_by_key(tmp_path):
    csv_path = tmp_path / "kg.csv"
    csv_path.write_text("subject,predicate,object\nfr,capital,paris\nfr,neighbour,be\n")
    kg = load_triples(csv_path, columns={"head": "subject", "relation": "predicate", "tail": "object"})
    assert kg.step("fr", "capital", "out") == ["paris"]
    jsonl = tmp_path / "kg.ndjson"
    jsonl.write_text('{"s": "fr", "p": "capital", "o": "paris", "extra": 1}\n')
    kg = load_triples(jsonl, columns={"head": "s", "relation": "p", "tail": "o"})
    assert kg.step("paris", "capital", "in") == ["fr"]


def test_size_limits_stop_a_huge_entry_in_one_line_without_reading_it_all(tmp_path, small_config):
    """A 10 MB entity name is refused while reading, naming the line and the limit; raising the limit admits it."""
    path = tmp_path / "kg.tsv"
    path.write_text("head\trelation\ttail\n" + "a\tr\tb\n" * 3 + "x" * 10_000_000 + "\tr\tb\n")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(KGError) as err:
        load_triples(path)
    assert str(err.value) == (f"{path}: line 5: longer than max_line_chars 100,000 (limits in domain.params.limits)")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB: the line was never held whole
    short = tmp_path / "short.tsv"
    short.write_text("head\trelation\ttail\n" + "n" * 3000 + "\tr\tb\n")
    with pytest.raises(KGError, match=r"short.tsv: line 2: head is 3,000 characters, over max_field_chars 2,000"):
        load_triples(short)
    assert len(load_graph(Table(path=str(short)), limits=Limits(max_field_chars=5000))) == 2
    many = tmp_path / "many.csv"
    many.write_text("head,relation,tail\n" + "".join(f"a{i},r,b\n" for i in range(20)))
    with pytest.raises(KGError, match=r"many.csv: more than max_rows 10 rows"):
        load_graph(Table(path=str(many)), limits=Limits(max_rows=10))
    config = small_config(domain={"name": "kg", "params": {"source": "file", "path": str(short),
                                                           "limits": {"max_field_chars": 100}}})
    with pytest.raises(ConfigError, match=r"^config: domain.params: .*short.tsv: line 2: head is 3,000 characters"):
        build_steps(config)
    with pytest.raises(ConfigError, match=r"domain.params.limits.max_rows: Input should be greater than or equal to 1"):
        build_steps(small_config(domain={"name": "kg", "params": {"source": "file", "path": str(short),
                                                                  "limits": {"max_rows": 0}}}))
    jsonl = tmp_path / "big.jsonl"
    jsonl.write_text(json.dumps({"head": "a", "relation": "r", "tail": "b" * 5000}) + "\n")
    with pytest.raises(KGError, match=r"big.jsonl: line 1: tail is 5,000 characters"):
        load_triples(jsonl)
    parquet = tmp_path / "big.parquet"
    pq.write_table(pa.Table.from_pylist([{"head": "a", "relation": "r", "tail": "b" * 5000}]), parquet)
    with pytest.raises(KGError, match=r"big.parquet: column 'tail': a value of 5,000 characters"):
        load_triples(parquet)


def test_entity_sources_split_columns_by_pattern_and_report_what_they_skip(tmp_path, caplog):
    triples = tmp_path / "train.txt"
    triples.write_text("14854262\t_hypernym\t00590383\n00590383\t_hypernym\t08769179\n")
    labels = tmp_path / "entity2text.txt"
    labels.write_text("14854262\tstool, solid excretory product\n00590383\tchieftainship, the position of chieftain\n"
                      "99999999\tnobody, not in any triple\n08769179\tno comma here\n")
    with caplog.at_level(logging.WARNING, logger="trajforge.kg"):
        kg = load_graph(Table(path=str(triples), format="tsv", header=False),
                        [EntitySource(path=str(labels), format="tsv", header=False,
                                      pattern={"name": r"(?P<name>[^,]+), (?P<definition>.*)"})])
    assert kg.entity("14854262")["name"] == "stool"
    assert kg.attributes("00590383") == {"definition": "the position of chieftain"}
    assert kg.name_of("08769179") == "no comma here"  # the pattern did not match: the value is kept as it is
    assert sorted(r.getMessage() for r in caplog.records) == [
        f"{labels}: 1 row(s) describe entities that are in no triple (skipped)",
        f"{labels}: 1 value(s) of name did not match its pattern (left as they are)"]
    with pytest.raises(ValueError, match="pattern.name: needs named groups"):
        EntitySource(path=str(labels), pattern={"name": "[^,]+"})


def test_the_kg_doc_examples_load_as_written(small_config):
    """Every `domain:` block of docs/kg.md loads its files (the WN18RR sample, the Wikidata-style extract)."""
    import re

    import yaml

    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", open("docs/kg.md").read(), re.S)
              if b.startswith("domain:")]
    assert len(blocks) == 2
    wn, wiki = (build_steps(small_config(domain=b["domain"], generators=[{"name": "kg_question"}])).env.kg
                for b in blocks)
    assert wn.name_of("river.n.01") == "river" and wn.type_of("compare.v.01") == "verb"
    assert wn.phrase("_hypernym").forward == "is a kind of"
    assert wiki.name_of("Q64") == "Berlin" and "Deutschland" in wiki.aliases("Q183")
    assert wiki.attributes("Q64") == {"description": "capital and largest city of Germany"}
