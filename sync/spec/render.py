"""Render ``openapi.yaml`` to the readable page ``README.md`` beside it.

    python -m sync.spec.render           # rewrite README.md
    python -m sync.spec.render --check   # exit 1 if README.md is out of date

Standard library plus PyYAML only, so a platform vendor can run it anywhere.
The output is deterministic (a test checks the committed page is current).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
SPEC = HERE / "openapi.yaml"
PAGE = HERE / "README.md"
_REF = "#/components/schemas/"


def _esc(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _type_of(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].removeprefix(_REF)
        return f"[{name}](#{name.lower()})"
    if "const" in schema:
        return f"`{schema['const']}`"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"] if v is not None) + (
            " \\| null" if None in schema["enum"] else ""
        )
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return " or ".join(_type_of(s) for s in schema[key])
    t = schema.get("type", "any")
    base = " \\| ".join(t) if isinstance(t, list) else str(t)
    if base == "array" and isinstance(schema.get("items"), dict):
        return f"array of {_type_of(schema['items'])}"
    if "pattern" in schema and base in ("string", "string \\| null"):
        return f"{base} `{_esc(schema['pattern'])}`"
    return base


def _limits(schema: dict[str, Any]) -> str:
    parts = []
    for key in ("minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems"):
        if key in schema:
            parts.append(f"{key} {schema[key]}")
    return ", ".join(parts)


def _field_rows(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    rows = [
        "| field | type | required | 中文 | PII | notes |",
        "|---|---|---|---|---|---|",
    ]
    for name, prop in schema.get("properties", {}).items():
        prop = prop or {}
        notes = " ".join(x for x in (_esc(prop.get("description", "")), _limits(prop)) if x)
        rows.append(
            f"| `{name}` | {_type_of(prop)} | {'yes' if name in required else ''} | "
            f"{_esc(prop.get('x-label-zh', ''))} | {_esc(prop.get('x-pii', ''))} | {notes} |"
        )
    return rows


def _schema_section(name: str, schema: dict[str, Any]) -> list[str]:
    out = [f"### {name}", ""]
    label = schema.get("x-label-zh")
    if label:
        out += [f"**{label}**", ""]
    if schema.get("description"):
        out += [str(schema["description"]).strip(), ""]
    if schema.get("x-pii"):
        out += [f"PII: `{schema['x-pii']}`", ""]
    if "properties" in schema:
        out += _field_rows(schema)
        if schema.get("additionalProperties") is False:
            out += ["", "No other fields are allowed."]
    else:
        out += [f"Type: {_type_of(schema)}" + (f" ({_limits(schema)})" if _limits(schema) else "")]
    if "allOf" in schema or "if" in schema:
        out += ["", "Conditional rules (see the YAML for the exact schema):", ""]
        for cond in schema.get("allOf", []) + ([schema] if "if" in schema else []):
            if "if" not in cond:
                continue
            then = yaml.safe_dump(cond.get("then", {}), default_flow_style=True, width=10**6)
            out.append(
                f"- when `{yaml.safe_dump(cond['if'], default_flow_style=True).strip()}`: "
                f"`{_esc(then.strip())}`"
            )
    disc = schema.get("discriminator")
    if isinstance(disc, dict):
        out += ["", f"Discriminator: `{disc['propertyName']}`", ""]
        out += [f"- `{value}`: {_type_of({'$ref': ref})}" for value, ref in disc["mapping"].items()]
    for example in schema.get("examples", []):
        out += ["", "Example:", "", "```json", json.dumps(example, ensure_ascii=False), "```"]
    out.append("")
    return out


def _registration(reg: dict[str, Any] | None) -> list[str]:
    """The ``x-device-registration`` section: the procedure and the worked example."""
    if not reg:
        return []
    ex = reg["example"]
    out = [f"## {reg['title']}", "", f"**{reg.get('x-label-zh', '')}**", ""]
    out += [str(reg["description"]).strip(), "", "### Worked example", ""]
    out += [
        f"* private key seed (32 bytes, hex): `{ex['private_key_seed_hex']}`",
        f"* public key (base64 of the 32 raw bytes): `{ex['public_key']}`",
        f"* registration: `{ex['registration']}`",
        f"* `created` {ex['created']}, `nonce` `{ex['nonce']}`",
        "",
        "The request (the body is exactly these bytes, UTF-8, no trailing newline):",
        "",
        "```http",
        f"{ex['method']} {ex['path']}{'?' + ex['query'] if ex['query'] else ''} HTTP/1.1",
        *(f"{k}: {v}" for k, v in ex["headers"].items()),
        "",
        ex["body"],
        "```",
        "",
        "The signature base, the exact bytes signed (lines joined by `\\n`, no trailing newline):",
        "",
        "```text",
        ex["signature_base"],
        "```",
        "",
        f"The Ed25519 signature of it, base64: `{ex['signature']}`",
        "",
    ]
    return out


def render(doc: dict[str, Any]) -> str:
    info = doc["info"]
    out = [
        "<!-- Generated from openapi.yaml by `python -m sync.spec.render`. Do not edit by hand. -->",
        "",
        f"# {info['title']} (v{info['version']})",
        "",
        f"**{info.get('x-title-zh', '')}**",
        "",
        str(info.get("summary", "")),
        "",
        str(info.get("description", "")).strip(),
        "",
        *_registration(doc.get("x-device-registration")),
        "## Endpoints",
        "",
        "| method | path | operation | 中文 | summary |",
        "|---|---|---|---|---|",
    ]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            out.append(
                f"| {method.upper()} | `{path}` | {op['operationId']} | {op.get('x-label-zh', '')} | "
                f"{_esc(op.get('summary', ''))} |"
            )
    out.append("")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            out += [f"### {method.upper()} {path}", ""]
            if op.get("description"):
                out += [str(op["description"]).strip(), ""]
            params = []
            for p in op.get("parameters", []):
                if "$ref" in p:
                    p = doc["components"]["parameters"][p["$ref"].rsplit("/", 1)[-1]]
                params.append(
                    f"| `{p['name']}` | {p['in']} | {'yes' if p.get('required') else ''} | "
                    f"{_esc(p.get('description', ''))} |"
                )
            if params:
                out += ["| parameter | in | required | notes |", "|---|---|---|---|", *params, ""]
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            if body:
                out += [f"Request body: {_type_of(body['schema'])}", ""]
            out += ["| status | response |", "|---|---|"]
            for status, resp in op["responses"].items():
                if "$ref" in resp:
                    resp = doc["components"]["responses"][resp["$ref"].rsplit("/", 1)[-1]]
                schema = resp.get("content", {}).get("application/json", {}).get("schema")
                shown = _type_of(schema) if schema else ""
                out.append(f"| {status} | {_esc(resp.get('description', ''))} {shown} |")
            out.append("")
    out += ["## Schemas", ""]
    for name, schema in doc["components"]["schemas"].items():
        out += _schema_section(name, schema)
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if README.md is out of date")
    args = parser.parse_args(argv)
    with SPEC.open("rb") as fh:
        text = render(yaml.safe_load(fh))
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current != text:
            print(f"{PAGE} is out of date; run python -m sync.spec.render", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
