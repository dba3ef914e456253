//! `pipewarden-bench extract`: nanoseconds per record of the envelope
//! extraction, with and without the cost and dead-letter pointers the cost
//! stage adds to the same single-pass walk, on two demo-like events. Run a
//! release build (`cargo run --release --bin pipewarden-bench -- extract`);
//! timings depend on the machine, so this is a benchmark, not a test.

use pipewarden::config::Config;
use pipewarden::decode::EnvelopeExtractor;

const NO_HEADERS: &[(&str, &[u8])] = &[];

pub fn run() -> anyhow::Result<()> {
    let config = Config::from_toml("", &|_| None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let plain = EnvelopeExtractor::new(&config.envelope)?;
    let full = EnvelopeExtractor::for_config(&config)?;
    let without_usage = br#"{"event_type":"support.ticket.classified","trace_id":"0b1d08f58c53ad657485694251744c39","event_id":"5353985547d449b6bd3573ec016f24db","causation_id":"abababababababababababababababab","created_at":"2026-11-29T08:46:17.593Z","schema_version":"1.0","producer":"classifier-agent","data":{"ticket_id":"TCK-191925","customer_id":"cus_0123456789","category":"technical","priority":"p2","sentiment":"neutral","confidence":0.91,"routing_queue":"tier1-technical","language":"en"}}"#;
    let with_usage = br#"{"event_type":"support.answer.drafted","trace_id":"0b1d08f58c53ad657485694251744c39","event_id":"5353985547d449b6bd3573ec016f24db","causation_id":"abababababababababababababababab","created_at":"2026-11-29T08:46:17.593Z","schema_version":"1.0","producer":"knowledge-agent","model":"claude-sonnet-4-5","usage":{"cache_creation_input_tokens":0,"cache_read_input_tokens":2816,"input_tokens":2831,"output_tokens":606},"data":{"ticket_id":"TCK-191925","category":"technical","priority":"p1","kb_articles":["KB-5993","KB-5833"],"retrieval":{"hits":2,"top_score":0.82}}}"#;
    const ROUNDS: u32 = 200_000;
    let time = |extractor: &EnvelopeExtractor, payload: &[u8]| {
        let mut found = 0u64;
        let started = std::time::Instant::now();
        for _ in 0..ROUNDS {
            let envelope = extractor.extract(Some(std::hint::black_box(payload)), NO_HEADERS);
            found += u64::from(envelope.accounting.usage.is_some()) + u64::from(envelope.event_type.is_some());
        }
        std::hint::black_box(found);
        started.elapsed().as_nanos() as f64 / f64::from(ROUNDS)
    };
    for (name, payload) in [("event without usage", &without_usage[..]), ("event with usage", &with_usage[..])] {
        // Interleaved repeats so drift in machine load hits both alike.
        let (mut a, mut b) = (f64::MAX, f64::MAX);
        for _ in 0..5 {
            a = a.min(time(&plain, payload));
            b = b.min(time(&full, payload));
        }
        println!("{name} ({} bytes): envelope only {a:.0} ns, with cost and dlq pointers {b:.0} ns", payload.len());
    }
    Ok(())
}
