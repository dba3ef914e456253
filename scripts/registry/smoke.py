#!/usr/bin/env python3
"""Smoke test of a Confluent-API-compatible schema registry, as pipewarden uses it.

    python3 scripts/registry/smoke.py [BASE_URL]

BASE_URL defaults to $SCHEMA_REGISTRY_URL, else http://127.0.0.1:8081/apis/ccompat/v7
(the one scripts/registry.sh starts). Registers Avro, JSON Schema and Protobuf
schemas under fresh subjects (a random suffix, so it also runs against a registry
that is not empty) and checks the response shapes that pipewarden's client parses.
Standard library only. Exits 0 when every check passed, 1 otherwise.
"""
import json
import os
import sys
import urllib.error
import urllib.request
import uuid

BASE = (sys.argv[1] if len(sys.argv) > 1 else
        os.environ.get("SCHEMA_REGISTRY_URL") or "http://127.0.0.1:8081/apis/ccompat/v7").rstrip("/")
CT = "application/vnd.schemaregistry.v1+json"

AVRO = json.dumps({"type": "record", "name": "Order", "namespace": "pipewarden.smoke",
                   "fields": [{"name": "id", "type": "long"},
                              {"name": "amount", "type": "double"}]}, separators=(",", ":"))
JSON_SCHEMA = json.dumps({"$schema": "http://json-schema.org/draft-07/schema#",
                          "type": "object", "properties": {"id": {"type": "integer"}},
                          "required": ["id"]}, separators=(",", ":"))
PROTO = 'syntax = "proto3";\npackage pipewarden.smoke;\n\nmessage Order {\n  int64 id = 1;\n  double amount = 2;\n}\n'

passed = 0
failed = 0


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method,
                                 headers={"Content-Type": CT, "Accept": CT})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def check(name, cond, got):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok    {name}")
    else:
        failed += 1
        print(f"FAIL  {name}: got {got!r}")


def main():
    sfx = uuid.uuid4().hex[:8]
    s_avro, s_avro2 = f"smoke-{sfx}-orders-value", f"smoke-{sfx}-other-value"
    s_json, s_proto = f"smoke-{sfx}-json-value", f"smoke-{sfx}-proto-value"
    print(f"registry smoke test against {BASE}")

    st, b = call("GET", "/subjects")
    check("GET /subjects -> 200 list", st == 200 and isinstance(b, list), (st, b))

    st, b = call("POST", f"/subjects/{s_avro}/versions", {"schema": AVRO})
    check("register Avro -> 200 {id}", st == 200 and isinstance(b, dict) and isinstance(b.get("id"), int), (st, b))
    avro_id = b.get("id") if isinstance(b, dict) else None

    st, b = call("POST", f"/subjects/{s_avro}/versions", {"schema": AVRO})
    check("same schema again -> same id", st == 200 and isinstance(b, dict) and b.get("id") == avro_id, (st, b))

    st, b = call("POST", f"/subjects/{s_avro2}/versions", {"schema": AVRO})
    check("same schema, other subject -> same (global) id",
          st == 200 and isinstance(b, dict) and b.get("id") == avro_id, (st, b))

    st, b = call("POST", f"/subjects/{s_json}/versions", {"schema": JSON_SCHEMA, "schemaType": "JSON"})
    check("register JSON Schema -> 200 {id}", st == 200 and isinstance(b, dict) and isinstance(b.get("id"), int), (st, b))
    json_id = b.get("id") if isinstance(b, dict) else None

    st, b = call("POST", f"/subjects/{s_proto}/versions", {"schema": PROTO, "schemaType": "PROTOBUF"})
    check("register Protobuf -> 200 {id}", st == 200 and isinstance(b, dict) and isinstance(b.get("id"), int), (st, b))
    proto_id = b.get("id") if isinstance(b, dict) else None
    check("ids distinct across types", len({avro_id, json_id, proto_id}) == 3, (avro_id, json_id, proto_id))

    st, b = call("GET", f"/schemas/ids/{avro_id}")
    check("GET /schemas/ids/{avro} -> schema, schemaType absent or AVRO",
          st == 200 and isinstance(b, dict) and json.loads(b.get("schema", "null")) == json.loads(AVRO)
          and b.get("schemaType", "AVRO") == "AVRO", (st, b))
    st, b = call("GET", f"/schemas/ids/{json_id}")
    check("GET /schemas/ids/{json} -> schemaType JSON",
          st == 200 and isinstance(b, dict) and b.get("schemaType") == "JSON"
          and json.loads(b.get("schema", "null")) == json.loads(JSON_SCHEMA), (st, b))
    st, b = call("GET", f"/schemas/ids/{proto_id}")
    check("GET /schemas/ids/{proto} -> schemaType PROTOBUF",
          st == 200 and isinstance(b, dict) and b.get("schemaType") == "PROTOBUF"
          and "message Order" in b.get("schema", ""), (st, b))

    for v in ("latest", "1"):
        st, b = call("GET", f"/subjects/{s_avro}/versions/{v}")
        check(f"GET /subjects/{{s}}/versions/{v} -> subject, version, id, schema",
              st == 200 and isinstance(b, dict) and b.get("subject") == s_avro and b.get("version") == 1
              and b.get("id") == avro_id and json.loads(b.get("schema", "null")) == json.loads(AVRO), (st, b))

    st, b = call("GET", "/schemas/ids/999999999")
    check("unknown id -> 404, error_code 40403",
          st == 404 and isinstance(b, dict) and b.get("error_code") == 40403, (st, b))
    st, b = call("GET", f"/subjects/smoke-{sfx}-missing/versions/latest")
    check("unknown subject -> 404, error_code 40401",
          st == 404 and isinstance(b, dict) and b.get("error_code") == 40401, (st, b))
    st, b = call("GET", f"/subjects/{s_avro}/versions/99")
    check("unknown version -> 404, error_code 40402",
          st == 404 and isinstance(b, dict) and b.get("error_code") == 40402, (st, b))

    # clean up (soft delete), so repeated runs against one registry stay tidy
    for s in (s_avro, s_avro2, s_json, s_proto):
        call("DELETE", f"/subjects/{s}")

    print(f"registry smoke: {passed} checks passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except urllib.error.URLError as e:
        print(f"registry smoke: cannot reach {BASE}: {e.reason}", file=sys.stderr)
        sys.exit(1)
