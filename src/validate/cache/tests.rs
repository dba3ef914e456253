//! Cache behaviour with scripted fetchers (no server) and local folders.

use super::*;
use std::sync::atomic::AtomicUsize;

const JSON: &str = r#"{"type":"object","required":["a"]}"#;

fn json(text: &str) -> RegistrySchema {
    RegistrySchema { kind: SchemaKind::Json, text: text.into(), references: 0 }
}

/// Answers from a closure; counts calls.
struct Scripted<F> {
    calls: Arc<AtomicUsize>,
    answer: F,
}

type Answer = Result<(u32, RegistrySchema), LookupError>;

impl<F: Fn(usize, Option<u32>, Option<(&str, Option<&str>)>) -> Answer + Send + 'static> SchemaFetcher for Scripted<F> {
    fn by_id(&self, id: u32) -> Result<RegistrySchema, LookupError> {
        let n = self.calls.fetch_add(1, Relaxed);
        (self.answer)(n, Some(id), None).map(|(_, s)| s)
    }
    fn by_subject(&self, subject: &str, version: Option<&str>) -> Answer {
        let n = self.calls.fetch_add(1, Relaxed);
        (self.answer)(n, None, Some((subject, version)))
    }
}

fn fast() -> CacheSettings {
    CacheSettings {
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        ..CacheSettings::default()
    }
}

fn cache_with<F>(settings: CacheSettings, answer: F) -> (SchemaCache, Arc<AtomicUsize>)
where
    F: Fn(usize, Option<u32>, Option<(&str, Option<&str>)>) -> Answer + Send + 'static,
{
    let calls = Arc::new(AtomicUsize::new(0));
    let fetcher = Scripted { calls: Arc::clone(&calls), answer };
    (SchemaCache::new(SchemaSource::Fetcher(Box::new(fetcher)), settings).unwrap(), calls)
}

/// Asks until the answer is not Pending (as the ingest loop would).
fn settle(mut ask: impl FnMut() -> Lookup) -> Lookup {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match ask() {
            Lookup::Pending if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            other => return other,
        }
    }
}

#[test]
fn unavailable_stays_pending_then_ready() {
    let (cache, calls) = cache_with(fast(), |n, _, _| {
        if n < 4 {
            Err(LookupError::Unavailable("connection refused".into()))
        } else {
            Ok((7, json(JSON)))
        }
    });
    assert!(matches!(cache.by_id(7), Lookup::Pending));
    let mut saw_unavailable = false;
    let result = settle(|| {
        saw_unavailable |= !cache.registry_available();
        let r = cache.by_id(7);
        assert!(!matches!(r, Lookup::NotFound | Lookup::Invalid), "outage turned into {r:?}");
        r
    });
    let Lookup::Ready(schema) = result else { panic!("{result:?}") };
    assert!(schema.validate(br#"{"a":1}"#).is_ok());
    assert!(saw_unavailable, "registry_available never went false");
    assert!(cache.registry_available());
    assert_eq!(calls.load(Relaxed), 5, "one key, four failures, one success: no duplicate fetches");
    let stats = cache.stats();
    assert_eq!((stats.fetch_unavailable, stats.fetch_ok, stats.cached_schemas), (4, 1, 1));
    assert!(stats.misses >= 1 && stats.hits == 1, "{stats:?}");
    assert!(matches!(cache.by_id(7), Lookup::Ready(_)));
    assert_eq!(cache.stats().hits, 2);
}

#[test]
fn backoff_grows_while_unavailable() {
    let settings =
        CacheSettings { backoff_initial: Duration::from_millis(10), backoff_max: Duration::from_millis(40), ..fast() };
    let (cache, calls) = cache_with(settings, |_, _, _| Err(LookupError::Unavailable("down".into())));
    for id in 0..50 {
        assert!(matches!(cache.by_id(id), Lookup::Pending));
    }
    std::thread::sleep(Duration::from_millis(300));
    // 10 + 20 + 40 + 40 ... ms: about 9 attempts in 300 ms, not 50+ per key.
    let n = calls.load(Relaxed);
    assert!((4..=14).contains(&n), "{n} attempts");
    assert!(!cache.registry_available());
    assert!(matches!(cache.by_id(3), Lookup::Pending));
}

#[test]
fn not_found_and_invalid_by_id_are_final() {
    let (cache, calls) = cache_with(fast(), |_, id, _| match id {
        Some(1) => Err(LookupError::NotFound),
        Some(2) => Ok((2, json(r#"{"type": 12}"#))),
        _ => Ok((3, RegistrySchema { kind: SchemaKind::Avro, text: "{".into(), references: 0 })),
    });
    assert!(matches!(settle(|| cache.by_id(1)), Lookup::NotFound));
    assert!(matches!(settle(|| cache.by_id(2)), Lookup::Invalid));
    assert!(matches!(settle(|| cache.by_id(3)), Lookup::Invalid));
    for _ in 0..100 {
        assert!(matches!(cache.by_id(1), Lookup::NotFound));
    }
    assert_eq!(calls.load(Relaxed), 3);
    let stats = cache.stats();
    assert_eq!((stats.fetch_not_found, stats.fetch_invalid, stats.cached_schemas), (1, 2, 0));
}

#[test]
fn subject_negative_entries_expire() {
    let settings = CacheSettings { negative_ttl: Duration::from_millis(30), ..fast() };
    let (cache, calls) = cache_with(settings, |n, _, subject| {
        assert_eq!(subject, Some(("orders-value", None)));
        if n == 0 {
            Err(LookupError::NotFound)
        } else {
            Ok((11, json(JSON)))
        }
    });
    assert!(matches!(settle(|| cache.by_subject("orders-value", None)), Lookup::NotFound));
    assert!(matches!(cache.by_subject("orders-value", Some("latest")), Lookup::NotFound));
    std::thread::sleep(Duration::from_millis(40));
    // The expired answer is served while the re-check runs.
    assert!(matches!(cache.by_subject("orders-value", None), Lookup::NotFound));
    let ready = settle(|| match cache.by_subject("orders-value", None) {
        Lookup::NotFound => Lookup::Pending,
        other => other,
    });
    assert!(matches!(ready, Lookup::Ready(_)), "{ready:?}");
    assert_eq!(calls.load(Relaxed), 2);
    // The subject's ID is now cached too.
    assert!(matches!(cache.by_id(11), Lookup::Ready(_)));
    assert_eq!(calls.load(Relaxed), 2);
}

#[test]
fn subject_latest_refreshes_in_background_and_pins_do_not() {
    let settings = CacheSettings { subject_ttl: Duration::from_millis(30), ..fast() };
    let (cache, calls) = cache_with(settings, |n, _, subject| {
        let (_, version) = subject.unwrap();
        match (version, n) {
            (Some("3"), _) => Ok((3, json(JSON))),
            (None, 0) | (None, 1) => Ok((20, json(JSON))),
            (None, 2) => Err(LookupError::Unavailable("blip".into())),
            (None, _) => Ok((21, json(r#"{"type":"object","required":["b"]}"#))),
            _ => unreachable!(),
        }
    });
    let Lookup::Ready(first) = settle(|| cache.by_subject("s", None)) else { panic!() };
    assert!(matches!(settle(|| cache.by_subject("s", Some("3"))), Lookup::Ready(_)));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let Lookup::Ready(now) = cache.by_subject("s", None) else { panic!("pending/negative once known") };
        if now.validate(br#"{"b":1}"#).is_ok() && !Arc::ptr_eq(&now, &first) {
            break;
        }
        assert!(Instant::now() < deadline, "never refreshed");
        std::thread::sleep(Duration::from_millis(2));
    }
    let before = calls.load(Relaxed);
    for _ in 0..20 {
        assert!(matches!(cache.by_subject("s", Some("3")), Lookup::Ready(_)));
    }
    std::thread::sleep(Duration::from_millis(40));
    assert!(matches!(cache.by_subject("s", Some("3")), Lookup::Ready(_)));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(calls.load(Relaxed), before, "a pinned version was re-fetched");
}

#[test]
fn panicking_fetcher_is_an_outage_not_a_dead_worker() {
    let (cache, _) = cache_with(fast(), |n, id, _| {
        if n < 2 {
            panic!("fetcher bug (expected in this test)");
        }
        Ok((id.unwrap(), json(JSON)))
    });
    assert!(matches!(settle(|| cache.by_id(5)), Lookup::Ready(_)));
    assert!(cache.registry_available());
    assert_eq!(cache.stats().fetch_unavailable, 2);
}

#[test]
fn non_numeric_versions_are_not_found_without_a_fetch() {
    let (cache, calls) = cache_with(fast(), |_, _, _| Err(LookupError::NotFound));
    for version in ["v2", "1.0.0", "", "../x"] {
        assert!(matches!(cache.by_subject("s", Some(version)), Lookup::NotFound), "{version}");
    }
    assert_eq!(calls.load(Relaxed), 0);
}

#[test]
fn versions_per_subject_are_bounded() {
    let (cache, _) = cache_with(fast(), |_, _, subject| match subject.unwrap().1 {
        Some("1") => Ok((1, json(JSON))),
        _ => Err(LookupError::NotFound),
    });
    assert!(matches!(settle(|| cache.by_subject("s", Some("1"))), Lookup::Ready(_)));
    for v in 2..200 {
        assert!(matches!(settle(|| cache.by_subject("s", Some(&v.to_string()))), Lookup::NotFound));
    }
    let versions = read(&cache.shared.subjects).map["s"].len();
    assert!(versions <= MAX_VERSIONS_PER_SUBJECT, "{versions}");
    assert!(matches!(cache.by_subject("s", Some("1")), Lookup::Ready(_)), "positive entries kept first");
}

#[test]
fn bounded_with_fifo_eviction() {
    let settings = CacheSettings { max_schemas: 2, ..fast() };
    let (cache, calls) = cache_with(settings, |_, id, _| Ok((id.unwrap(), json(JSON))));
    for id in 1..=3 {
        assert!(matches!(settle(|| cache.by_id(id)), Lookup::Ready(_)));
    }
    assert_eq!(cache.stats().cached_schemas, 2);
    assert!(matches!(cache.by_id(3), Lookup::Ready(_)));
    assert!(matches!(cache.by_id(1), Lookup::Pending), "oldest insert evicted");
    assert!(matches!(settle(|| cache.by_id(1)), Lookup::Ready(_)));
    assert_eq!(calls.load(Relaxed), 4);
}

#[test]
fn full_queue_answers_pending_and_recovers() {
    let settings = CacheSettings { queue_capacity: 2, ..fast() };
    let (cache, _) = cache_with(settings, |_, id, _| {
        std::thread::sleep(Duration::from_millis(5));
        Ok((id.unwrap(), json(JSON)))
    });
    for id in 0..50 {
        assert!(matches!(cache.by_id(id), Lookup::Pending));
    }
    for id in 0..50 {
        assert!(matches!(settle(|| cache.by_id(id)), Lookup::Ready(_)), "{id}");
    }
}

#[test]
fn shutdown_is_prompt_and_idempotent() {
    let (cache, _) = cache_with(fast(), |_, _, _| Err(LookupError::Unavailable("down".into())));
    assert!(matches!(cache.by_id(1), Lookup::Pending));
    let t0 = Instant::now();
    cache.shutdown();
    cache.shutdown();
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert!(matches!(cache.by_id(2), Lookup::Pending), "lookups after shutdown do not panic");
    assert!(!cache.registry_available(), "no worker, not ready");
    fn send_sync<T: Send + Sync>(_: &T) {}
    send_sync(&cache);
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const AVRO: &str = r#"{"type":"record","name":"M","fields":[{"name":"n","type":"long"}]}"#;

#[test]
fn local_folder_layout() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "orders-value.json", JSON);
    write(d, "metrics.avsc", AVRO);
    write(d, "calls.proto", "syntax = \"proto3\"; message C {}");
    write(d, "history/1.json", r#"{"type":"string"}"#);
    write(d, "history/10.json", r#"{"type":"integer"}"#);
    write(d, "history/2.json", r#"{"type":"boolean"}"#);
    write(d, "ids/42.avsc", AVRO);
    write(d, "com.acme.Order.avsc", AVRO);
    write(d, "README.md", "not a schema");
    let cache = SchemaCache::new(SchemaSource::Local(d.into()), CacheSettings::default()).unwrap();
    assert!(cache.registry_available());
    let kind = |l: Lookup| match l {
        Lookup::Ready(s) => Some(s.kind()),
        _ => None,
    };
    assert_eq!(kind(cache.by_subject("orders-value", None)), Some(SchemaKind::Json));
    assert_eq!(kind(cache.by_subject("metrics", Some("latest"))), Some(SchemaKind::Avro));
    assert_eq!(kind(cache.by_subject("calls", None)), Some(SchemaKind::Protobuf));
    assert_eq!(kind(cache.by_id(42)), Some(SchemaKind::Avro));
    assert_eq!(kind(cache.by_subject("com.acme.Order", None)), Some(SchemaKind::Avro));
    assert!(matches!(cache.by_id(43), Lookup::NotFound));
    let Lookup::Ready(latest) = cache.by_subject("history", None) else { panic!() };
    assert!(latest.validate(b"5").is_ok(), "latest is version 10, not 2");
    let Lookup::Ready(v2) = cache.by_subject("history", Some("2")) else { panic!() };
    assert!(v2.validate(b"true").is_ok());
    assert!(matches!(cache.by_subject("history", Some("3")), Lookup::NotFound));
    assert!(matches!(cache.by_subject("missing", None), Lookup::NotFound));
    assert!(matches!(cache.by_subject("../etc/passwd", None), Lookup::NotFound));
    assert!(matches!(cache.by_subject("history", Some("../ids/42")), Lookup::NotFound));
    // A file added after start is found on request (no negative cached yet).
    write(d, "late.json", JSON);
    write(d, "com.acme.Late.json", JSON);
    assert!(matches!(cache.by_subject("late", None), Lookup::Ready(_)));
    assert!(matches!(cache.by_subject("com.acme.Late", None), Lookup::Ready(_)));
    assert_eq!(cache.stats().fetch_ok, 2);
}

#[test]
fn local_negative_entries_expire() {
    let dir = tempfile::tempdir().unwrap();
    let settings = CacheSettings { negative_ttl: Duration::from_millis(20), ..CacheSettings::default() };
    let cache = SchemaCache::new(SchemaSource::Local(dir.path().into()), settings).unwrap();
    assert!(matches!(cache.by_subject("late", None), Lookup::NotFound));
    write(dir.path(), "late.json", JSON);
    assert!(matches!(cache.by_subject("late", None), Lookup::NotFound), "cached negative");
    std::thread::sleep(Duration::from_millis(30));
    assert!(matches!(cache.by_subject("late", None), Lookup::Ready(_)));
}

#[test]
fn local_folder_lists_every_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "good.json", JSON);
    write(d, "bad-json.json", "{nope");
    write(d, "bad-avro.avsc", r#"{"type":"record"}"#);
    write(d, "s/3.json", r#"{"type": 5}"#);
    write(d, "twice.json", JSON);
    write(d, "twice.avsc", AVRO);
    let err = SchemaCache::new(SchemaSource::Local(d.into()), CacheSettings::default()).unwrap_err();
    for name in ["bad-json", "bad-avro", "s/3", "twice"] {
        assert!(err.contains(name), "{name} missing from: {err}");
    }
    assert!(err.contains("4 file(s)"), "{err}");
    assert!(!err.contains("good"), "{err}");
    let missing = SchemaCache::new(SchemaSource::Local(d.join("nope")), CacheSettings::default());
    assert!(missing.is_err());
}

/// Asks a memo until the answer is not Pending; true when it is Ready and
/// the schema accepts `doc`.
fn memo_settles_to(memo: &mut SchemaMemo, subject: &str, doc: &[u8]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match memo.by_subject(subject, None) {
            Found::Pending if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Found::Ready(schema) => return schema.validate(doc).is_ok(),
            _ => return false,
        }
    }
}

#[test]
fn a_memo_answers_as_the_cache_and_counts_its_hits() {
    let (cache, calls) = cache_with(fast(), |_, id, subject| match (id, subject) {
        (Some(9), _) => Ok((9, json(JSON))),
        (Some(_), _) => Err(LookupError::NotFound),
        (None, Some(("s", None))) => Ok((20, json(JSON))),
        (None, _) => Err(LookupError::NotFound),
    });
    let cache = Arc::new(cache);
    let mut memo = SchemaMemo::new(Arc::clone(&cache));
    assert!(memo_settles_to(&mut memo, "s", br#"{"a":1}"#));
    assert!(!memo_settles_to(&mut memo, "s", br#"{"b":1}"#), "the memo lends the cache's schema");
    assert!(matches!(memo.by_subject("missing", None), Found::Pending));
    assert!(matches!(settle(|| cache.by_subject("missing", None)), Lookup::NotFound));
    assert!(matches!(memo.by_subject("missing", None), Found::NotFound), "negative answers come from the cache");
    // A pinned version the cache does not have falls back to the latest.
    assert!(matches!(memo.by_subject_pinned("s", Some("4")), Found::Pending));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !matches!(memo.by_subject_pinned("s", Some("4")), Found::Ready(_)) {
        assert!(Instant::now() < deadline, "no fallback to the latest");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(matches!(memo.by_id(9), Found::Pending));
    while !matches!(memo.by_id(9), Found::Ready(_)) {
        assert!(Instant::now() < deadline, "id 9 never ready");
        std::thread::sleep(Duration::from_millis(1));
    }
    let fetches = calls.load(Relaxed);
    memo.flush_hits();
    let hits_before = cache.stats().hits;
    for _ in 0..3000 {
        assert!(matches!(memo.by_id(9), Found::Ready(_)));
        assert!(matches!(memo.by_subject("s", None), Found::Ready(_)));
    }
    assert_eq!(calls.load(Relaxed), fetches, "hits fetch nothing");
    let flushed = cache.stats().hits - hits_before;
    assert!((6000 - MEMO_HITS_FLUSH..=6000).contains(&flushed), "{flushed} of 6000 hits counted before the drop");
    drop(memo);
    assert_eq!(cache.stats().hits - hits_before, 6000, "every hit is counted once the memo is dropped");
}

#[test]
fn a_memo_follows_refreshes_and_expiry() {
    // The latest schema of "s" changes at the third fetch; its entries
    // expire after 30 ms, so the memo must ask again and see the change.
    let settings = CacheSettings { subject_ttl: Duration::from_millis(30), ..fast() };
    let (cache, calls) = cache_with(settings, |n, _, _| match n {
        0 | 1 => Ok((20, json(JSON))),
        _ => Ok((21, json(r#"{"type":"object","required":["b"]}"#))),
    });
    let cache = Arc::new(cache);
    let mut memo = SchemaMemo::new(Arc::clone(&cache));
    assert!(memo_settles_to(&mut memo, "s", br#"{"a":1}"#));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !memo_settles_to(&mut memo, "s", br#"{"b":1}"#) {
        assert!(Instant::now() < deadline, "the memo kept serving the first schema");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(calls.load(Relaxed) >= 3, "the refresh was queued by a lookup through the memo");
    // Another thread's memo, and the cache itself, agree.
    let Lookup::Ready(shared) = cache.by_subject("s", None) else { panic!() };
    assert!(shared.validate(br#"{"b":1}"#).is_ok());
    let mut other = SchemaMemo::new(Arc::clone(&cache));
    assert!(memo_settles_to(&mut other, "s", br#"{"b":1}"#));
}

#[test]
fn a_memo_is_emptied_when_the_cache_changes() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "orders-value.json", JSON);
    let cache = Arc::new(SchemaCache::new(SchemaSource::Local(dir.path().into()), CacheSettings::default()).unwrap());
    let mut memo = SchemaMemo::new(Arc::clone(&cache));
    assert!(matches!(memo.by_subject("orders-value", None), Found::Ready(_)));
    assert_eq!(memo.subjects.len(), 1);
    // Any store (here: a subject read from disk on first use) moves the
    // generation, and the memo forgets what it held.
    write(dir.path(), "late.json", JSON);
    assert!(matches!(cache.by_subject("late", None), Lookup::Ready(_)));
    assert!(matches!(memo.by_id(12345), Found::NotFound));
    assert!(memo.subjects.is_empty(), "the memo kept entries across a change of the cache");
    assert!(matches!(memo.by_subject("orders-value", None), Found::Ready(_)));
}
