//! Nesting guard for Avro bodies of recursive schemas.
//!
//! apache-avro decodes recursively, a few stack frames per nesting level,
//! with no depth limit. A recursive schema (a named type that contains
//! itself through a union, array or map, e.g. a reply thread or a tree) lets
//! a body nest as deep as it has bytes: a 1 MiB poison record repeating
//! "one more reply" nests ~500,000 levels and overflows the ingest thread's
//! stack, which aborts the process; after the restart the same record is
//! read again, so one record is a crash loop.
//!
//! In: the parsed schema, once, in [`DepthGuard::new`] (`None` for schemas
//! that are not recursive: their nesting is bounded by the schema text).
//! Per record: the body (after the wire prefix). Out: whether the body nests
//! deeper than [`MAX_AVRO_DEPTH`]. Runs on the ingest thread in
//! `schema::validate_avro`, before the decoder.
//!
//! The walk is iterative (an explicit task stack) and reads bytes by the
//! decoder's rules (zigzag varints, length-prefixed strings and bytes,
//! blocked arrays and maps, union indexes). It stops at the first thing it
//! cannot read: the decoder fails there too (or, at the end of the body,
//! stops nesting), so the decoder never nests deeper than the walk saw.
//! Where the decoder is stricter (an enum index out of range, an `int` out
//! of range) the walk reads on, which can only over-estimate the depth of a
//! body the decoder refuses anyway.

use std::collections::{HashMap, HashSet};

use apache_avro::schema::{InnerDecimalSchema, Name, NamesRef, NamespaceRef, ResolvedSchema, UuidSchema};
use apache_avro::Schema;

/// Deepest nesting of records, arrays, maps and unions a body of a
/// recursive schema may have: the same as the JSON `max_depth` default.
/// Each level costs the decoder one to three stack frames. Measured on a
/// 64-level body: an optimised build decodes it in under 256 KiB of stack
/// (the ingest thread has 2 MiB); an unoptimised build needs about 50 KiB
/// per level, so debug-build tests keep their Avro bodies shallow.
pub const MAX_AVRO_DEPTH: usize = 64;

/// One schema node of the walk plan; named types referenced by name point
/// back to their node, which is what makes a plan recursive.
#[derive(Debug)]
enum Node {
    /// Reads nothing.
    Null,
    /// A zigzag varint (int, long, enum index, dates and times).
    Varint,
    /// A fixed number of bytes (boolean, float, double, fixed, duration).
    Fixed(usize),
    /// A varint length, then that many bytes (string, bytes, decimal on bytes, uuid).
    Sized,
    Record(Vec<usize>),
    Array(usize),
    Map(usize),
    Union(Vec<usize>),
}

/// The walk plan of a recursive schema.
#[derive(Debug)]
pub struct DepthGuard {
    nodes: Vec<Node>,
}

struct PlanBuilder<'s> {
    names: &'s NamesRef<'s>,
    nodes: Vec<Node>,
    named: HashMap<Name, usize>,
    /// Named types whose children are being planned: a reference to one of
    /// them is a cycle.
    open: HashSet<Name>,
    recursive: bool,
}

impl DepthGuard {
    /// The guard for `schema`, or `None` when no type of it contains itself
    /// (or its names do not resolve, which the decoder reports anyway).
    pub fn new(schema: &Schema) -> Option<DepthGuard> {
        let resolved = ResolvedSchema::new(schema).ok()?;
        let mut builder = PlanBuilder {
            names: resolved.get_names(),
            nodes: Vec::new(),
            named: HashMap::new(),
            open: HashSet::new(),
            recursive: false,
        };
        builder.plan(schema, None)?;
        builder.recursive.then_some(DepthGuard { nodes: builder.nodes })
    }

    /// Whether `body`, read as a datum of the schema, nests deeper than
    /// [`MAX_AVRO_DEPTH`] before it ends or stops being readable.
    pub fn too_deep(&self, body: &[u8]) -> bool {
        enum Task {
            Node(usize),
            /// The remaining items of an array or map block (`map`: each item
            /// is a key, then the value).
            Items {
                item: usize,
                map: bool,
                left: u64,
            },
            /// Leaves a container.
            Exit,
        }
        let mut reader = Bytes { rest: body };
        let mut tasks = vec![Task::Node(0)];
        let mut depth = 0usize;
        while let Some(task) = tasks.pop() {
            let node = match task {
                Task::Exit => {
                    depth -= 1;
                    continue;
                }
                Task::Items { item, map, left: 0 } => {
                    let Some(left) = reader.block_count() else { return false };
                    if left > 0 {
                        tasks.push(Task::Items { item, map, left });
                    } else {
                        tasks.push(Task::Exit);
                    }
                    continue;
                }
                Task::Items { item, map, left } => {
                    tasks.push(Task::Items { item, map, left: left - 1 });
                    tasks.push(Task::Node(item));
                    if map && reader.sized().is_none() {
                        return false;
                    }
                    continue;
                }
                Task::Node(node) => node,
            };
            let readable = match &self.nodes[node] {
                Node::Null => Some(()),
                Node::Varint => reader.varint().map(drop),
                Node::Fixed(size) => reader.skip(*size),
                Node::Sized => reader.sized(),
                Node::Record(fields) => {
                    depth += 1;
                    tasks.push(Task::Exit);
                    tasks.extend(fields.iter().rev().map(|field| Task::Node(*field)));
                    Some(())
                }
                Node::Array(item) | Node::Map(item) => {
                    depth += 1;
                    let map = matches!(self.nodes[node], Node::Map(_));
                    tasks.push(Task::Items { item: *item, map, left: 0 });
                    Some(())
                }
                Node::Union(variants) => {
                    let variant = reader.varint().and_then(|index| variants.get(usize::try_from(index).ok()?));
                    variant.map(|variant| {
                        depth += 1;
                        tasks.push(Task::Exit);
                        tasks.push(Task::Node(*variant));
                    })
                }
            };
            if readable.is_none() {
                return false;
            }
            if depth > MAX_AVRO_DEPTH {
                return true;
            }
        }
        false
    }
}

impl<'s> PlanBuilder<'s> {
    /// Plans `schema` (read with `namespace` as the enclosing namespace, as
    /// the decoder does) and returns its node. Recursion here follows the
    /// schema text, whose nesting serde_json bounded when it was parsed.
    fn plan(&mut self, schema: &Schema, namespace: NamespaceRef) -> Option<usize> {
        let node = match schema {
            Schema::Null => Node::Null,
            Schema::Boolean => Node::Fixed(1),
            Schema::Int
            | Schema::Long
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos
            | Schema::Enum(_) => Node::Varint,
            Schema::Float => Node::Fixed(4),
            Schema::Double => Node::Fixed(8),
            Schema::Duration(_) => Node::Fixed(12),
            Schema::Fixed(fixed) => Node::Fixed(fixed.size),
            Schema::Decimal(decimal) => match &decimal.inner {
                InnerDecimalSchema::Fixed(fixed) => Node::Fixed(fixed.size),
                InnerDecimalSchema::Bytes => Node::Sized,
            },
            Schema::Uuid(UuidSchema::Fixed(fixed)) => Node::Fixed(fixed.size),
            Schema::Uuid(_) | Schema::Bytes | Schema::String | Schema::BigDecimal => Node::Sized,
            Schema::Array(array) => {
                let index = self.push(Node::Null);
                let item = self.plan(&array.items, namespace)?;
                self.nodes[index] = Node::Array(item);
                return Some(index);
            }
            Schema::Map(map) => {
                let index = self.push(Node::Null);
                let value = self.plan(&map.types, namespace)?;
                self.nodes[index] = Node::Map(value);
                return Some(index);
            }
            Schema::Union(union) => {
                let index = self.push(Node::Null);
                let variants =
                    union.variants().iter().map(|variant| self.plan(variant, namespace)).collect::<Option<_>>()?;
                self.nodes[index] = Node::Union(variants);
                return Some(index);
            }
            Schema::Record(record) => {
                let name = record.name.fully_qualified_name(namespace).into_owned();
                let index = self.push(Node::Null);
                self.named.insert(name.clone(), index);
                self.open.insert(name.clone());
                let fields = record
                    .fields
                    .iter()
                    .map(|field| self.plan(&field.schema, name.namespace()))
                    .collect::<Option<_>>()?;
                self.open.remove(&name);
                self.nodes[index] = Node::Record(fields);
                return Some(index);
            }
            Schema::Ref { name } => {
                let name = name.fully_qualified_name(namespace).into_owned();
                if let Some(index) = self.named.get(&name) {
                    self.recursive |= self.open.contains(&name);
                    return Some(*index);
                }
                let names = self.names;
                let resolved: &Schema = names.get(&name)?;
                return self.plan(resolved, name.namespace());
            }
        };
        Some(self.push(node))
    }

    fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }
}

/// The unread rest of a body, read by the decoder's rules.
struct Bytes<'a> {
    rest: &'a [u8],
}

impl Bytes<'_> {
    /// A zigzag varint of at most 10 bytes.
    fn varint(&mut self) -> Option<i64> {
        let mut value = 0u64;
        for (i, byte) in self.rest.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (i * 7);
            if byte & 0x80 == 0 {
                self.rest = &self.rest[i + 1..];
                return Some(if value & 1 == 0 { (value >> 1) as i64 } else { !(value >> 1) as i64 });
            }
        }
        None
    }

    fn skip(&mut self, len: usize) -> Option<()> {
        self.rest = self.rest.get(len..)?;
        Some(())
    }

    /// A length, then that many bytes.
    fn sized(&mut self) -> Option<()> {
        let len = usize::try_from(self.varint()?).ok()?;
        self.skip(len)
    }

    /// The item count of the next array or map block (0 ends it); a
    /// negative count is followed by the block's size in bytes.
    fn block_count(&mut self) -> Option<u64> {
        let count = self.varint()?;
        if count < 0 {
            self.varint()?;
        }
        // i64::MIN has no positive count: the decoder fails on it too.
        (count != i64::MIN).then(|| count.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREAD: &str = r#"{"type": "record", "name": "Ticket", "namespace": "support", "fields": [
        {"name": "subject", "type": "string"},
        {"name": "replies", "type": ["null", {"type": "record", "name": "Reply",
          "fields": [{"name": "text", "type": "string"}, {"name": "next", "type": ["null", "Reply"]}]}]}]}"#;

    /// A `Ticket` body with `replies` nested `depth` levels deep.
    fn thread(depth: usize) -> Vec<u8> {
        let mut body = vec![0x04, b'h', b'i'];
        for _ in 0..depth {
            body.extend_from_slice(&[0x02, 0x00]); // union branch 1 (a reply), empty text
        }
        body.push(0x00); // null: the thread ends
        body
    }

    fn guard(schema: &str) -> Option<DepthGuard> {
        DepthGuard::new(&Schema::parse_str(schema).unwrap())
    }

    #[test]
    fn only_recursive_schemas_get_a_guard() {
        assert!(guard(THREAD).is_some());
        let flat = r#"{"type": "record", "name": "Paid", "fields": [{"name": "id", "type": "string"},
            {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line",
              "fields": [{"name": "sku", "type": "string"}]}}}, {"name": "again", "type": "Line"}]}"#;
        assert!(guard(flat).is_none(), "a type used twice is not recursion");
        let tree = r#"{"type": "record", "name": "Node", "fields": [
            {"name": "children", "type": {"type": "array", "items": "Node"}}]}"#;
        assert!(guard(tree).is_some());
    }

    #[test]
    fn depth_is_counted_through_unions_records_and_arrays() {
        let guard = guard(THREAD).unwrap();
        // Ticket record (1), then per reply: union (1) + Reply record (1), then the final union (1).
        let fits = (MAX_AVRO_DEPTH - 2) / 2;
        assert!(!guard.too_deep(&thread(fits)));
        assert!(guard.too_deep(&thread(fits + 1)));
        assert!(guard.too_deep(&thread(500_000)));
        // A body that stops being readable before it gets deep is left to the decoder.
        assert!(!guard.too_deep(&thread(500_000)[..40]));
        assert!(!guard.too_deep(&[0x04, b'h']));

        let tree = self::guard(
            r#"{"type": "record", "name": "Node", "fields": [{"name": "children", "type": {"type": "array", "items": "Node"}}]}"#,
        )
        .unwrap();
        // Per level: a block of one child (record + array = 2 levels).
        let nested = |levels: usize| {
            let mut body = vec![0x02; levels];
            body.extend(std::iter::repeat_n(0x00, levels + 1));
            body
        };
        assert!(!tree.too_deep(&nested(MAX_AVRO_DEPTH / 2 - 1)));
        assert!(tree.too_deep(&nested(MAX_AVRO_DEPTH)));
        // A negative block count is followed by the block's byte size.
        assert!(tree.too_deep(&[[0x01, 0x02].repeat(MAX_AVRO_DEPTH), vec![0x00; MAX_AVRO_DEPTH + 1]].concat()));
    }

    #[test]
    fn map_keys_and_sized_values_are_skipped() {
        let guard = self::guard(
            r#"{"type": "record", "name": "Doc", "fields": [{"name": "blob", "type": "bytes"},
              {"name": "sections", "type": {"type": "map", "values": "Doc"}}]}"#,
        )
        .unwrap();
        // Per level: a 3-byte blob, a block of one entry with key "k".
        let mut body = Vec::new();
        for _ in 0..MAX_AVRO_DEPTH {
            body.extend_from_slice(&[0x06, 1, 2, 3, 0x02, 0x02, b'k']);
        }
        assert!(guard.too_deep(&body));
        body.truncate(7 * 10);
        assert!(!guard.too_deep(&body));
    }
}
