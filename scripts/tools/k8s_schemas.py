#!/usr/bin/env python3
"""Writes JSON schemas for kubeconform from Kubernetes' OpenAPI v3 documents
and from CustomResourceDefinitions, so manifests are validated offline.

    k8s_schemas.py OUT_DIR OPENAPI_V3_DIR [CRD.yaml ...]

Each Kubernetes kind becomes OUT_DIR/<kind><suffix>.json, named the way
kubeconform's template `{{ .ResourceKind }}{{ .KindSuffix }}.json` expects
(deployment-apps-v1.json, service-v1.json, networkpolicy-networking-v1.json,
servicemonitor-monitoring-v1.json). Schemas are standalone (referenced
definitions copied in) and strict (objects with known properties reject
unknown keys), like kubeconform's own "-standalone-strict" schemas.
"""
import json
import os
import sys

import yaml


def suffix(group, version):
    first = group.split(".")[0] if group else ""
    return f"-{first}-{version}".lower() if first else f"-{version}".lower()


def strict(node):
    """Closes objects that list their properties (recursively)."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node and not node.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            node["additionalProperties"] = False
        for value in node.values():
            strict(value)
    elif isinstance(node, list):
        for value in node:
            strict(value)
    return node


def rewrite_refs(node, used):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            used.add(name)
            node["$ref"] = "#/definitions/" + name
        for value in node.values():
            rewrite_refs(value, used)
    elif isinstance(node, list):
        for value in node:
            rewrite_refs(value, used)


def from_openapi(path, out):
    with open(path) as f:
        schemas = json.load(f).get("components", {}).get("schemas", {})
    written = 0
    for name, schema in schemas.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            # Only the kind's own definition, not the shared ones (ObjectMeta) it names.
            if not name.endswith("." + gvk["kind"]):
                continue
            root = json.loads(json.dumps(schema))
            definitions, pending, done = {}, set(), set()
            rewrite_refs(root, pending)
            while pending - done:
                ref = (pending - done).pop()
                done.add(ref)
                definition = json.loads(json.dumps(schemas.get(ref, {})))
                rewrite_refs(definition, pending)
                definitions[ref] = definition
            root["definitions"] = definitions
            # apiVersion and kind are validated by kubeconform itself.
            file = os.path.join(out, gvk["kind"].lower() + suffix(gvk["group"], gvk["version"]) + ".json")
            with open(file, "w") as f:
                json.dump(strict(root), f)
            written += 1
    return written


def from_crd(path, out):
    written = 0
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                schema = version.get("schema", {}).get("openAPIV3Schema")
                if not schema:
                    continue
                file = os.path.join(out, spec["names"]["kind"].lower() + suffix(spec["group"], version["name"]) + ".json")
                with open(file, "w") as f_out:
                    json.dump(strict(schema), f_out)
                written += 1
    return written


def main():
    out, openapi_dir, crds = sys.argv[1], sys.argv[2], sys.argv[3:]
    os.makedirs(out, exist_ok=True)
    count = 0
    for name in sorted(os.listdir(openapi_dir)):
        if name.endswith("_openapi.json"):
            count += from_openapi(os.path.join(openapi_dir, name), out)
    for crd in crds:
        count += from_crd(crd, out)
    print(f"k8s_schemas: wrote {count} schemas to {out}")


if __name__ == "__main__":
    main()
