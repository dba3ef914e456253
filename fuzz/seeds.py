#!/usr/bin/env python3
"""Writes the starting seeds of pipewarden's fuzz corpora (fuzz/corpus/<target>/seed-*).

Realistic inputs: demo-pipeline events, Confluent wire-format records, Avro
bodies of the fuzz target's schema, traceparent values, the shipped
config.toml and the demo's JSON schemas. Run once; the fuzzers grow the
corpora from here and `cargo fuzz cmin` keeps them small.
"""
import glob
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
TP = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def event(n, data=b'{"subject":"printer on fire","priority":"high"}', extra=b""):
    return (b'{"event_type":"support.ticket.created","trace_id":"trace-%d","event_id":"evt-%d",'
            b'"created_at":"2026-11-29T06:00:00.250Z","schema_version":"1.0","producer":"intake-agent",'
            b'"llm":{"provider":"openai","model":"gpt-4o","input_tokens":812,"output_tokens":97},'
            b'"data":%s%s}' % (n, n, data, extra))


EVENTS = [
    event(1),
    event(2, b'{"customer_email":"jane.doe@example.com","card":"4111 1111 1111 1111"}'),
    event(3, b'{"phone":"+44 20 7946 0958","iban":"DE89 3704 0044 0532 0130 00","n":4111111111111111}'),
    event(4, b'{"text":"caf\\u00e9 \\"quoted\\" \\ud83d\\ude00","nested":[1,2,{"event_type":"not me"}]}'),
    b'{"meta":{"type":"doc.extracted","trace":{"id":"t-9"},"source":{"agent":"extractor"}},"event_id":"e-9"}',
    b'{"event_type":"x","correlation_id":"corr-7","created_at":"yesterday"}',
    b'{"event_type":42,"trace_id":{"a":1},"event_id":["e"],"created_at":12345,"schema_version":null,"producer":true}',
    b'[1,2,3]',
    b'"just a string"',
    b'{"a":[[[[[[[[{"b":"[[[\\"{{"}]]]]]]]]}',
    b'{"event_type":"x","event_type":"y"}',
]


def zz(n):
    """Avro zigzag varint."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def s(text):
    return zz(len(text)) + text


def avro(thread_depth=0, tags=(b"urgent", b"billing"), trace=b"trace-1"):
    body = s(b"support.ticket.created")
    body += (zz(1) + s(trace)) if trace is not None else zz(0)
    body += zz(123456789) + zz(3) + struct.pack("<d", 0.75) + struct.pack("<f", 0.5) + b"\x01"
    body += s(b"\x00\x01binary\xff")
    body += zz(1)  # PENDING
    body += b"\xde\xad\xbe\xef"
    body += (zz(len(tags)) + b"".join(s(t) for t in tags) + zz(0)) if tags else zz(0)
    body += zz(2) + s(b"retries") + zz(3) + s(b"age_s") + zz(86400) + zz(0)
    body += zz(1795932000250000)
    body += s(b"\x30\x39")  # 123.45 as decimal(10,2)
    body += s(b"6f1c2b9e-0d3a-4c1e-9a51-2f4e8b7c6d5a")
    if thread_depth == 0:
        body += zz(0)
    else:
        body += zz(1)
        for i in range(thread_depth):
            body += s(b"reply %d" % i) + (zz(1) if i + 1 < thread_depth else zz(0))
    return body


def write(target, name, data):
    path = os.path.join(CORPUS, target)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "seed-" + name), "wb") as f:
        f.write(data)


def regression(target, name, data):
    """Inputs that found a bug, kept apart from the corpus so `cmin` never drops them."""
    path = os.path.join(ROOT, "fuzz", "regressions", target)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, name), "wb") as f:
        f.write(data)


def main():
    for i, e in enumerate(EVENTS):
        write("wire", "json-%d" % i, e)
        write("wire", "confluent-json-%d" % i, b"\x00\x00\x00\x01\x2c" + e)
        write("json_scan", "event-%d" % i, e)
        write("envelope", "plain-%d" % i, b"\x00" + e)
        write("envelope", "wire-%d" % i, b"\x00" + b"\x00\x00\x00\x00\x07 " + e)
        # one traceparent header, then the payload
        write("envelope", "traceparent-%d" % i, b"\x01" + TP + b"\xff" + e)
        # three headers: ce_type, x-agent, traceparent
        write("envelope", "headers-%d" % i, bytes([0b00_10_01_11]) + b"ticket.created\xffclassifier\xff" + TP + b"\xff" + e)
    write("envelope", "tombstone", b"\xff")
    write("envelope", "empty", b"\x00")
    write("envelope", "avro-body", b"\x01" + TP + b"\xff\x00\x00\x00\x00\x07" + avro())
    for depth, tags, trace in [(0, (b"urgent", b"billing"), b"trace-1"), (1, (), None), (4, (b"a",), b"t")]:
        body = avro(depth, tags, trace)
        write("avro", "record-depth%d" % depth, body)
        write("wire", "avro-depth%d" % depth, b"\x00\x00\x00\x00\x07" + body)
    write("avro", "record-depth8", avro(8))
    write("avro", "record-no-tags-no-trace", avro(0, (), None))
    # Regression seeds: a reply thread 200 levels deep (the decoder recursed
    # without limit), and a record cut off at its last union index.
    regression("avro", "deep-thread", avro(0)[:-1] + b"\x02" + b"\x00\x02" * 200 + b"\x00\x00")
    regression("avro", "truncated-union", avro(0)[:-1])
    write("wire", "empty", b"")
    write("wire", "short-zero", b"\x00\x01\x02")
    for i, tp in enumerate([TP, b"  " + TP + b"\t", b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future",
                            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01", b"garbage"]):
        write("traceparent", "value-%d" % i, tp)
    with open(os.path.join(ROOT, "config.toml"), "rb") as f:
        write("config", "shipped-config.toml", f.read())
    write("config", "empty.toml", b"")
    write("config", "envelope.toml", b'[envelope]\nevent_type = ["header:ce_type", "/meta/type"]\n'
          b'trace_id = ["/trace_id", "traceparent:traceparent"]\nmax_payload_bytes = 512\n')
    write("config", "interpolation.toml", b'[kafka]\nbootstrap_servers = "${KAFKA_BOOTSTRAP:-127.0.0.1:9092}"\n'
          b'[topics]\ninclude = ["support\\\\..*"]\nexclude = ["$${literal}"]\n')
    write("config", "broken.toml", b'[kafka\nbootstrap_servers = 5\n[unknown]\nx = 1\n')
    for path in sorted(glob.glob(os.path.join(ROOT, "schemas", "*.json")))[:4]:
        with open(path, "rb") as f:
            write("json_scan", "schema-" + os.path.basename(path), f.read())


main()
