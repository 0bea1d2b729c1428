"""Bring your own tools: OpenAI tools files and OpenAPI 3 specs read into Tool schemas, and their errors."""

from __future__ import annotations

import json
import random

import fastjsonschema
import pytest
import yaml

from simulators.json_sampler import sample
from simulators.tool_specs import SpecError, load_tool_spec, parse_tool_spec, writes_by_name

OPENAI_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}}},
    {"name": "send_email", "description": "Send an email.", "strict": True,
     "parameters": {"type": "object", "properties": {"to": {"$ref": "#/$defs/address"}, "body": {"type": "string"}},
                    "required": ["to", "body"], "$defs": {"address": {"type": "string", "format": "email"}}}},
]

PETSTORE = {
    "openapi": "3.0.3",
    "info": {"title": "pets", "version": "1"},
    "paths": {
        "/pets/{petId}": {
            "parameters": [{"name": "petId", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}],
            "get": {"operationId": "getPet", "summary": "Get a pet by id.",
                    "parameters": [{"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
                                   {"$ref": "#/components/parameters/Fields"}],
                    "responses": {"200": {"description": "ok", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Pet"}}}}}},
            "delete": {"responses": {"204": {"description": "gone"}}},
        },
        "/pets": {
            "post": {"operationId": "create.pet", "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/NewPet"}}}},
                "responses": {"201": {"$ref": "#/components/responses/PetCreated"}}},
        },
    },
    "components": {
        "parameters": {"Fields": {"name": "fields", "in": "query", "schema": {"type": "string", "nullable": True}}},
        "schemas": {
            "NewPet": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string", "minLength": 2, "maxLength": 20},
                "tag": {"type": "string", "enum": ["cat", "dog"], "example": "cat"}}},
            "Pet": {"allOf": [{"$ref": "#/components/schemas/NewPet"}, {"type": "object", "required": ["id", "owner"],
                                                                         "properties": {
                "id": {"type": "integer", "minimum": 1},
                "owner": {"$ref": "#/components/schemas/Person"},
                "born": {"type": "string", "format": "date"}}}]},
            "Person": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "friend": {"$ref": "#/components/schemas/Person"}}},
        },
        "responses": {"PetCreated": {"description": "created", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Pet"}}}}},
    },
}


def test_openai_tools_file_both_shapes_and_local_refs(tmp_path):
    path = tmp_path / "tools.json"
    path.write_text(json.dumps({"tools": OPENAI_TOOLS}))
    tools = {t.name: t for t in load_tool_spec(path)}
    assert set(tools) == {"get_weather", "send_email"}
    assert tools["send_email"].tool.function.parameters["properties"]["to"] == {"type": "string", "format": "email"}
    assert "$defs" not in tools["send_email"].tool.function.parameters
    assert tools["get_weather"].response_schema is None
    assert not tools["get_weather"].writes and tools["send_email"].writes


def test_write_heuristic_for_plain_tool_lists():
    assert [writes_by_name(n) for n in ("get_order", "listItems", "search", "cancel_order", "sendEmail")] == \
        [False, False, False, True, True]


def test_openapi_operations_become_tools(tmp_path):
    path = tmp_path / "pets.yaml"
    path.write_text(yaml.safe_dump(PETSTORE))
    tools = {t.name: t for t in load_tool_spec(path)}
    assert set(tools) == {"getPet", "delete_pets_petId", "create_pet"}
    get = tools["getPet"]
    params = get.tool.function.parameters
    assert set(params["properties"]) == {"petId", "fields"}  # headers are transport, not tool arguments
    assert params["required"] == ["petId"]
    assert params["properties"]["fields"]["type"] == ["string", "null"]  # nullable -> type union
    assert not get.writes and tools["delete_pets_petId"].writes and tools["create_pet"].writes
    assert get.tool.function.description == "Get a pet by id."
    create = tools["create_pet"].tool.function.parameters
    assert set(create["properties"]) == {"name", "tag"} and create["required"] == ["name"]
    assert "example" not in create["properties"]["tag"]
    # the recursive Person reference is cut, not followed forever
    owner = get.response_schema["allOf"][1]["properties"]["owner"]
    assert owner["properties"]["friend"]["type"] == "object" and "recursive" in owner["properties"]["friend"]["description"]
    assert tools["create_pet"].response_schema == get.response_schema
    assert tools["delete_pets_petId"].response_schema is None


def test_sampled_values_conform_to_the_schemas():
    tools = parse_tool_spec(PETSTORE, "pets")
    for t in tools:
        for schema in (t.tool.function.parameters, t.response_schema):
            if schema is None:
                continue
            check = fastjsonschema.compile(schema)
            for seed in range(50):
                check(sample(schema, random.Random(seed), optional_rate=0.5))


@pytest.mark.parametrize(
    ("doc", "where", "problem"),
    [
        ({"swagger": "2.0"}, "/", "expected an OpenAPI 3 document"),
        ({"openapi": "2.0", "paths": {}}, "/openapi", "only OpenAPI 3.x"),
        ({"openapi": "3.1.0"}, "/paths", "missing"),
        ({"openapi": "3.0.0", "paths": {"/a": {"get": {"parameters": [{"in": "query", "schema": {}}]}}}},
         "/paths/~1a/get/parameters/0", "missing 'name'"),
        ({"openapi": "3.0.0", "paths": {"/a": {"get": {"parameters": [{"$ref": "#/components/parameters/Nope"}]}}}},
         "/paths/~1a/get/parameters/0/$ref", "points to nothing"),
        ({"openapi": "3.0.0", "paths": {"/a": {"post": {"requestBody": {"content": {"application/json": {
            "schema": {"$ref": "other.yaml#/Pet"}}}}}}}}, "/paths/~1a/post/requestBody/content/application~1json/schema/$ref",
         "only local references"),
        ({"openapi": "3.0.0", "paths": {"/a": {"get": {"operationId": "x"}}, "/b": {"get": {"operationId": "x"}}}},
         "/paths/~1b/get", "already used by /paths/~1a/get"),
        ({"openapi": "3.0.0", "paths": {}}, "/", "defines no tools"),
        ([{"type": "function", "function": {"name": "bad name!"}}], "/0/function/name", "must match"),
        ([{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}], "/0/function/parameters",
         "type 'object'"),
        ([{"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": 5}}}}],
         "/0/parameters/properties/a/type", "a type must be a string, got int"),
        ([{"name": "f", "parameters": {"type": "object", "properties": {"a": {"minLength": "x"}}}}], "/0/parameters",
         "not a valid JSON schema"),
        ([{"type": "retrieval"}], "/0/type", "only 'function'"),
        ({"tools": {"a": 1}}, "/tools", "must be a list"),
    ],
)
def test_malformed_specs_name_file_pointer_and_problem(doc, where, problem):
    with pytest.raises(SpecError) as err:
        parse_tool_spec(doc, "my-spec.json")
    message = str(err.value)
    assert message.startswith(f"my-spec.json: {where}: "), message
    assert problem in message and "\n" not in message


def test_unreadable_files_are_one_line(tmp_path):
    with pytest.raises(SpecError, match="no such tool spec file"):
        load_tool_spec(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('[{"name": "f",}]')
    with pytest.raises(SpecError, match=r"bad.json: line 1: invalid JSON"):
        load_tool_spec(bad)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("openapi: [3\n")
    with pytest.raises(SpecError, match=r"bad.yaml: line \d+: invalid YAML"):
        load_tool_spec(bad_yaml)
