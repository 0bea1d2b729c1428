"""Bring your own tools: tool lists and OpenAPI 3 specs as they are shipped, read into ``Tool`` schemas.

A researcher's tool list usually exists already: as the ``tools`` array sent to
the OpenAI API, as bare function objects, as benchmark function docs in the
Gorilla/BFCL dialect (``simulators.tool_dialects``), one per line or as an
array, or as an OpenAPI document of a service. All become ``SchemaTool``s: the
OpenAI tool schema the assistant is offered, whether the tool writes (what the
schema-only domain's state records), and the response schema when the spec has
one (an OpenAPI response, a function doc's ``response``: what the offline tool
simulator fills in).

OpenAPI mapping: one tool per operation; path and query parameters and the
JSON request body's properties become the tool's parameters (a body that is
not an object with properties becomes one ``body`` parameter); the first 2xx
or ``default`` JSON response is the response schema. Local ``$ref``s
(``#/...``) are inlined; a recursive reference is cut to a plain object.
OpenAPI 3.0's ``nullable`` becomes a JSON-schema type union.

Every problem is a ``SpecError``: one line with the file, a JSON pointer to
the offending place, and what is wrong with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastjsonschema

from schemas import InputError, Tool
from schemas.documents import MiB, SizeLimits, read_tool_list
from simulators.tool_dialects import DialectError, to_json_schema

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
READ_METHODS = frozenset({"get", "head", "options"})
# Verbs that name a read in a plain OpenAI tool list, which says nothing about side effects.
READ_VERBS = frozenset({"get", "list", "search", "find", "lookup", "read", "fetch", "check", "query", "show",
                        "describe", "view", "count", "calculate", "compute", "retrieve", "is", "has", "validate"})
_DROP = frozenset({"discriminator", "xml", "externalDocs", "example", "readOnly", "writeOnly", "deprecated"})
_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


class SpecError(InputError):
    """A malformed tool spec; ``str`` is ``FILE: /json/pointer: problem``."""


@dataclass(frozen=True)
class SchemaTool:
    """One tool of a spec: its OpenAI schema and what the simulator needs to answer it."""

    tool: Tool
    writes: bool
    response_schema: dict[str, Any] | None
    pointer: str  # where in the spec it came from, for messages

    @property
    def name(self) -> str:
        return self.tool.name


def pointer(*parts: Any) -> str:
    """An RFC 6901 JSON pointer from path parts."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts) or "/"


def tool_name(text: str) -> str:
    """An OpenAI-valid function name (``[A-Za-z0-9_-]{1,64}``) from an operationId or a method + path."""
    return re.sub(r"_+", "_", _BAD_NAME_CHARS.sub("_", text)).strip("_")[:64] or "tool"


def writes_by_name(name: str) -> bool:
    """For a plain tool list: a tool writes unless its first word is a read verb (``get_``, ``list_`` ...)."""
    first = re.split(r"[_\-]|(?<=[a-z])(?=[A-Z])", name, maxsplit=1)[0].lower()
    return first not in READ_VERBS


@dataclass(frozen=True)
class SpecLimits:
    """How large a tool spec may be: it is untrusted input, and every tool is offered in every request."""

    max_bytes: int = 16 * MiB
    max_line_chars: int = 1 * MiB  # a minified JSON spec is one line: pretty-print it or raise this
    max_tools: int = 128  # the most tools the OpenAI API takes in one request
    knob: str = "domain.params"  # where the limits are set, for the message


def load_tool_spec(path: str | Path, limits: SpecLimits = SpecLimits()) -> list[SchemaTool]:
    """Read a tool spec file into tools: an OpenAPI 3 document (JSON or YAML), or a tool list as a JSON array,
    an object with ``tools``, or JSON Lines (``.jsonl``, or a ``.json`` file with one tool per line)."""
    doc, lines = read_tool_list(path, "tool spec", SpecError, SizeLimits(
        max_bytes=limits.max_bytes, max_line_chars=limits.max_line_chars,
        bytes_knob=f"{limits.knob}.max_spec_bytes", line_knob=f"{limits.knob}.max_line_chars"))
    tools = parse_tool_spec(doc, str(path), lines)
    if len(tools) > limits.max_tools:
        raise SpecError(f"{path}: /: defines {len(tools)} tools, over the limit of {limits.max_tools} "
                        f"({limits.knob}.max_tools; every tool is offered in every request, and the OpenAI API "
                        "takes at most 128)")
    return tools


def parse_tool_spec(doc: Any, source: str = "spec", lines: list[int] | None = None) -> list[SchemaTool]:
    """Tools from an already-parsed document; ``source`` names it in errors, ``lines`` are JSON Lines' line numbers."""
    if lines is not None:
        tools = _openai_tools(doc, source, lines)
    elif isinstance(doc, dict) and "openapi" in doc:
        tools = _OpenAPI(doc, source).tools()
    elif isinstance(doc, list) or (isinstance(doc, dict) and "tools" in doc):
        tools = _openai_tools(doc, source)
    else:
        raise SpecError(f"{source}: /: expected an OpenAPI 3 document (with 'openapi') or an OpenAI tools list "
                        f"(a JSON array, or an object with 'tools')")
    if not tools:
        raise SpecError(f"{source}: /: the spec defines no tools")
    seen: dict[str, str] = {}
    for t in tools:
        if t.name in seen:
            raise SpecError(f"{source}: {t.pointer}: tool name {t.name!r} is already used by {seen[t.name]}")
        seen[t.name] = t.pointer
    return tools


def _check_schema(schema: Any, source: str, where: str, what: str) -> None:
    if not isinstance(schema, dict):
        raise SpecError(f"{source}: {where}: {what} must be a JSON schema object, got {type(schema).__name__}")
    try:
        fastjsonschema.compile(schema)
    except fastjsonschema.JsonSchemaDefinitionException as err:
        raise SpecError(f"{source}: {where}: {what} is not a valid JSON schema: {err}") from None
    except Exception as err:  # fastjsonschema reports some bad schemas as plain errors
        raise SpecError(f"{source}: {where}: {what} is not a valid JSON schema: {type(err).__name__}: {err}") from None


def _make_tool(name: Any, description: Any, parameters: Any, source: str, where: str) -> Tool:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise SpecError(f"{source}: {where}/name: tool name must match [A-Za-z0-9_-]{{1,64}}, got {name!r}")
    if not isinstance(description, str):
        raise SpecError(f"{source}: {where}/description: must be a string")
    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
        raise SpecError(f"{source}: {where}/parameters: must be a JSON schema of type 'object'")
    _check_schema(parameters, source, f"{where}/parameters", "parameters")
    return Tool.model_validate({"function": {"name": name, "description": description, "parameters": parameters}})


def tool_from_schema(name: str, description: str, parameters: Any, source: str, where: str) -> Tool:
    """An OpenAI tool from a name, a description and a parameter schema found elsewhere (an MCP server's
    ``inputSchema``): local ``$ref``s inlined, the schema checked; a problem is a ``SpecError`` naming ``where``."""
    if isinstance(parameters, dict):
        parameters = _Inliner(parameters, source, f"{where}/inputSchema").inline(parameters, ())
    return _make_tool(name, description, parameters, source, where)


def _openai_tools(doc: Any, source: str, lines: list[int] | None = None) -> list[SchemaTool]:
    """Tools from a list of OpenAI tools, bare function objects or Gorilla/BFCL function docs, mixed freely.

    ``lines`` (JSON Lines) are the items' line numbers, so a problem reads ``line 3: /parameters: ...``.
    """
    base: tuple[Any, ...] = ()
    if isinstance(doc, dict):
        doc, base = doc["tools"], ("tools",)
        if not isinstance(doc, list):
            raise SpecError(f"{source}: {pointer(*base)}: must be a list of tools")
    out = []
    for i, item in enumerate(doc):
        def at(*parts: Any, i: int = i) -> str:
            return f"line {lines[i]}: {pointer(*parts)}" if lines is not None else pointer(*base, i, *parts)

        if not isinstance(item, dict):
            raise SpecError(f"{source}: {at()}: a tool must be an object, got {type(item).__name__}")
        if item.get("type", "function") != "function":
            raise SpecError(f"{source}: {at('type')}: only 'function' tools are supported, got {item['type']!r}")
        inside: tuple[str, ...] = ()
        if "function" in item:
            fn, inside = item["function"], ("function",)
            if not isinstance(fn, dict):
                raise SpecError(f"{source}: {at(*inside)}: must be an object")
        else:
            fn = item
        where = at(*inside)
        if "name" not in fn:
            raise SpecError(f"{source}: {where}: missing 'name'")
        parameters = fn.get("parameters", {"type": "object", "properties": {}})
        response = fn.get("response", item.get("response"))
        try:  # the Gorilla/BFCL dialect ("dict", "float", "tuple", "any" ...) is JSON schema with other type names
            parameters = to_json_schema(parameters, "/parameters")
            response = to_json_schema(response, "/response")
        except DialectError as err:
            raise SpecError(f"{source}: {at(*inside).rstrip('/')}{err.pointer}: {err}") from None
        if isinstance(parameters, dict):
            parameters = _Inliner(parameters, source, f"{where}/parameters").inline(parameters, ())
        tool = _make_tool(fn["name"], fn.get("description", ""), parameters, source, where)
        if response is not None:
            response_where = f"{where}/response" if "response" in fn else at("response")
            if isinstance(response, dict):
                response = _Inliner(response, source, response_where).inline(response, ())
            _check_schema(response, source, response_where, "response schema")
        out.append(SchemaTool(tool=tool, writes=writes_by_name(tool.name), response_schema=response, pointer=where))
    return out


class _Inliner:
    """Inlines local ``$ref``s against ``root``, converting OpenAPI-only keywords on the way."""

    def __init__(self, root: dict[str, Any], source: str, root_pointer: str = "") -> None:
        self.root = root
        self.source = source
        self.root_pointer = root_pointer

    def resolve(self, ref: Any, where: str) -> tuple[Any, str]:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise SpecError(f"{self.source}: {where}/$ref: only local references ('#/...') are supported, got {ref!r}")
        node: Any = self.root
        for raw in [p for p in ref[1:].split("/") if p]:
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise SpecError(f"{self.source}: {where}/$ref: {ref!r} points to nothing")
        return node, ref

    def inline(self, node: Any, stack: tuple[str, ...], where: str = "") -> Any:
        where = where or self.root_pointer or "/"
        if isinstance(node, list):
            return [self.inline(v, stack, f"{where}/{i}") for i, v in enumerate(node)]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target, ref = self.resolve(node["$ref"], where)
            if ref in stack:
                return {"type": "object", "description": f"(recursive reference to {ref})"}
            return self.inline(target, (*stack, ref), where)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROP or key in ("$defs", "definitions", "components"):
                continue
            at = f"{where}/{pointer(key)[1:]}"
            if key in ("properties", "patternProperties") and isinstance(value, dict):
                out[key] = {k: self.inline(v, stack, f"{at}/{pointer(k)[1:]}") for k, v in value.items()}
            else:
                out[key] = self.inline(value, stack, at) if key != "nullable" else value
        if out.pop("nullable", False) is True and "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"] if "null" not in types else types
            if "enum" in out and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        return out


class _OpenAPI:
    def __init__(self, doc: dict[str, Any], source: str) -> None:
        self.doc = doc
        self.source = source
        self.refs = _Inliner(doc, source)

    def fail(self, where: str, problem: str) -> SpecError:
        return SpecError(f"{self.source}: {where}: {problem}")

    def tools(self) -> list[SchemaTool]:
        version = self.doc.get("openapi")
        if not isinstance(version, str) or not version.startswith("3."):
            raise self.fail("/openapi", f"only OpenAPI 3.x is supported, got {version!r}")
        paths = self.doc.get("paths")
        if not isinstance(paths, dict):
            raise self.fail("/paths", "missing or not an object")
        out = []
        for route, item in paths.items():
            where = pointer("paths", route)
            if not isinstance(item, dict):
                raise self.fail(where, "a path item must be an object")
            if "$ref" in item:
                item, _ = self.refs.resolve(item["$ref"], where)
            shared = item.get("parameters", [])
            for method in HTTP_METHODS:
                if method in item:
                    out.append(self.operation(route, method, item[method], shared, f"{where}/{method}"))
        return out

    def operation(self, route: str, method: str, op: Any, shared: Any, where: str) -> SchemaTool:
        if not isinstance(op, dict):
            raise self.fail(where, "an operation must be an object")
        name = tool_name(op["operationId"]) if isinstance(op.get("operationId"), str) else \
            tool_name(f"{method}_{route.replace('{', '').replace('}', '')}")
        description = " ".join(x for x in (op.get("summary"), op.get("description")) if isinstance(x, str)) or \
            f"{method.upper()} {route}"
        properties: dict[str, Any] = {}
        required: list[str] = []
        params: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        for key, listed in (("parameters", shared), ("parameters", op.get("parameters", []))):
            base = where.rsplit("/", 1)[0] if listed is shared else where
            if not isinstance(listed, list):
                raise self.fail(f"{base}/{key}", "must be a list")
            for i, p in enumerate(listed):
                at = f"{base}/{key}/{i}"
                if isinstance(p, dict) and "$ref" in p:
                    p, _ = self.refs.resolve(p["$ref"], at)
                if not isinstance(p, dict):
                    raise self.fail(at, "a parameter must be an object")
                for field in ("name", "in"):
                    if not isinstance(p.get(field), str):
                        raise self.fail(at, f"missing '{field}'")
                if p["in"] not in ("path", "query", "header", "cookie"):
                    raise self.fail(f"{at}/in", f"must be path, query, header or cookie, got {p['in']!r}")
                params[(p["in"], p["name"])] = (p, at)  # operation-level overrides path-level
        for (where_in, pname), (p, at) in params.items():
            if where_in not in ("path", "query"):
                continue  # headers and cookies carry transport (auth, tracing), not what a model decides
            schema = p.get("schema")
            if schema is None and isinstance(p.get("content"), dict) and p["content"]:
                schema = next(iter(p["content"].values())).get("schema")
            if schema is None:
                raise self.fail(at, f"parameter {pname!r} has no 'schema'")
            prop = self.refs.inline(schema, (), f"{at}/schema")
            if not isinstance(prop, dict):
                raise self.fail(f"{at}/schema", "must be an object")
            if isinstance(p.get("description"), str) and "description" not in prop:
                prop = {**prop, "description": p["description"]}
            properties[pname] = prop
            if p.get("required") or where_in == "path":
                required.append(pname)
        if "requestBody" in op:
            self.body(op["requestBody"], f"{where}/requestBody", properties, required)
        parameters = {"type": "object", "properties": properties, "required": required}
        tool = _make_tool(name, description, parameters, self.source, where)
        response = self.response(op.get("responses"), f"{where}/responses")
        return SchemaTool(tool=tool, writes=method not in READ_METHODS, response_schema=response, pointer=where)

    def body(self, body: Any, where: str, properties: dict[str, Any], required: list[str]) -> None:
        if isinstance(body, dict) and "$ref" in body:
            body, _ = self.refs.resolve(body["$ref"], where)
        if not isinstance(body, dict) or not isinstance(body.get("content"), dict):
            raise self.fail(where, "a request body needs a 'content' object")
        media = _json_media(body["content"])
        if media is None:
            return  # form or binary bodies: nothing a JSON tool call can carry
        if "schema" not in body["content"][media]:
            raise self.fail(f"{where}/content/{pointer(media)[1:]}", "missing 'schema'")
        schema = self.refs.inline(body["content"][media]["schema"], (), f"{where}/content/{pointer(media)[1:]}/schema")
        body_required = bool(body.get("required"))
        own = schema.get("properties") if isinstance(schema, dict) and schema.get("type", "object") == "object" else None
        if isinstance(own, dict) and own and not (set(own) & set(properties)):
            properties.update(own)
            if body_required:
                required += [r for r in schema.get("required", []) if r in own]
        else:
            properties["body"] = schema
            if body_required:
                required.append("body")

    def response(self, responses: Any, where: str) -> dict[str, Any] | None:
        if responses is None:
            return None
        if not isinstance(responses, dict):
            raise self.fail(where, "must be an object")
        codes = sorted(c for c in map(str, responses) if c.startswith("2")) + (["default"] if "default" in responses else [])
        for code in codes:
            resp = responses.get(code, responses.get(int(code)) if code.isdigit() else None)
            at = f"{where}/{code}"
            if isinstance(resp, dict) and "$ref" in resp:
                resp, _ = self.refs.resolve(resp["$ref"], at)
            if not isinstance(resp, dict):
                raise self.fail(at, "a response must be an object")
            content = resp.get("content")
            media = _json_media(content) if isinstance(content, dict) else None
            if media and isinstance(content[media], dict) and "schema" in content[media]:
                schema = self.refs.inline(content[media]["schema"], (), f"{at}/content/{pointer(media)[1:]}/schema")
                _check_schema(schema, self.source, f"{at}/content/{pointer(media)[1:]}/schema", "response schema")
                return schema
        return None


def _json_media(content: dict[str, Any]) -> str | None:
    for media in content:
        if media == "application/json" or media.endswith("+json") or media == "*/*":
            return media
    return None
