//! Business `data` objects of each event type: plausible tickets, labels,
//! draft answers, QA verdicts, deliveries, extracted documents, validation
//! results and resolved entities. Downstream payloads carry identifiers
//! forward from the event they react to.

use rand::seq::IndexedRandom;
use rand::Rng;
use serde_json::{json, Value};

use super::event::EventType;

const SUBJECTS: &[(&str, &str)] = &[
    ("billing", "Charged twice for my March invoice"),
    ("billing", "Invoice shows the wrong VAT number"),
    ("refund", "Requesting a refund for an unused annual seat"),
    ("technical", "Dashboard export to CSV times out after 30 seconds"),
    ("technical", "Webhook deliveries failing with HTTP 502"),
    ("technical", "SSO login loops back to the sign-in page"),
    ("account", "Cannot add a new admin to our workspace"),
    ("account", "Please merge two accounts under the same domain"),
    ("shipping", "Hardware token has not arrived after 10 days"),
    ("feature_request", "Can we get audit logs streamed to our SIEM?"),
];

const BODIES: &[&str] = &[
    "Hi team, since this morning several people on my team see the same problem. \
     We already cleared caches and tried another browser. This blocks our month-end close, \
     could you please look into it as soon as possible? Thanks!",
    "Hello, following up on my previous message from last week. I attached screenshots and \
     the request ids from our logs. Let me know if you need anything else from our side.",
    "Good afternoon. Our procurement department noticed this during reconciliation and asked \
     me to reach out. We would appreciate a written confirmation once it is resolved.",
];

const ANSWERS: &[&str] = &[
    "Thanks for reaching out, and sorry for the trouble. I checked your account and found the \
     cause: a retry created a duplicate charge. I have issued a refund for the duplicate; it \
     will appear on your statement within 5-7 business days.",
    "Thank you for the details. This is a known issue with large exports that our engineers \
     fixed in today's release. Please reload the dashboard and try again; if it still times \
     out, narrowing the date range works as a temporary workaround.",
    "Happy to help! Workspace owners can add admins under Settings > Members > Roles. If the \
     button is greyed out, your plan's admin seat limit has been reached; I can raise it for you.",
];

const REJECT_REASONS: &[&str] = &["hallucinated_policy", "missing_citation", "tone", "pii_leak", "incomplete_answer"];
const DOC_TYPES: &[&str] = &["invoice", "purchase_order", "receipt", "contract"];
const VENDORS: &[&str] = &[
    "Acme Industrial Supply GmbH",
    "Northwind Traders Ltd",
    "Globex Logistics B.V.",
    "Initech Software Inc.",
    "Umbrella Medical SAS",
];

fn pick<'a, R: Rng + ?Sized>(rng: &mut R, items: &'a [&'a str]) -> &'a str {
    items.choose(rng).copied().unwrap_or("")
}

fn field<'a>(input: &'a Value, key: &str) -> &'a str {
    input.get(key).and_then(Value::as_str).unwrap_or("unknown")
}

fn hex<R: Rng + ?Sized>(rng: &mut R, digits: usize) -> String {
    let v: u64 = rng.random();
    format!("{v:016x}")[16 - digits.min(16)..].to_owned()
}

/// First `max` characters of `text`, cut at a word boundary, with "...".
fn snippet(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max).collect();
    let cut = cut.rsplit_once(' ').map_or(cut.as_str(), |(head, _)| head);
    format!("{cut}...")
}

/// `support.ticket.created` data.
pub fn ticket_created<R: Rng + ?Sized>(rng: &mut R) -> Value {
    let (category_hint, subject) = *SUBJECTS.choose(rng).unwrap_or(&SUBJECTS[0]);
    json!({
        "ticket_id": format!("TCK-{:06}", rng.random_range(0..1_000_000)),
        "customer_id": format!("cus_{}", hex(rng, 10)),
        "channel": pick(rng, &["email", "chat", "web_form"]),
        "language": pick(rng, &["en", "en", "en", "de", "fr", "es"]),
        "plan": pick(rng, &["free", "team", "business", "enterprise"]),
        "subject": subject,
        "body_snippet": snippet(pick(rng, BODIES), 180),
        "category_hint": category_hint,
        "attachments": rng.random_range(0..3),
    })
}

/// `support.ticket.classified` data.
pub fn ticket_classified<R: Rng + ?Sized>(rng: &mut R, input: &Value) -> Value {
    let category = match field(input, "category_hint") {
        "unknown" => pick(rng, &["billing", "technical", "account"]),
        c => c,
    };
    json!({
        "ticket_id": field(input, "ticket_id"),
        "customer_id": field(input, "customer_id"),
        "category": category,
        "priority": pick(rng, &["p1", "p2", "p2", "p3", "p3", "p3", "p4"]),
        "sentiment": pick(rng, &["negative", "neutral", "neutral", "positive"]),
        "confidence": (rng.random_range(0.62..0.99f64) * 100.0).round() / 100.0,
        "routing_queue": format!("tier1-{category}"),
        "language": field(input, "language"),
    })
}

/// `support.answer.drafted` data.
pub fn answer_drafted<R: Rng + ?Sized>(rng: &mut R, input: &Value) -> Value {
    let answer = match field(input, "category") {
        "billing" | "refund" => ANSWERS[0],
        "technical" => ANSWERS[1],
        "account" => ANSWERS[2],
        _ => pick(rng, ANSWERS),
    };
    let hits = rng.random_range(2..6);
    let articles: Vec<String> = (0..hits.min(3)).map(|_| format!("KB-{}", rng.random_range(1000..9999))).collect();
    json!({
        "ticket_id": field(input, "ticket_id"),
        "category": field(input, "category"),
        "priority": field(input, "priority"),
        "answer_snippet": snippet(answer, 140),
        "kb_articles": articles,
        "retrieval": {"hits": hits, "top_score": (rng.random_range(0.55..0.95f64) * 100.0).round() / 100.0},
        "tools_called": ["kb_search", pick(rng, &["order_lookup", "billing_api", "status_page"])],
    })
}

/// QA verdict: `support.answer.approved` or `support.answer.rejected`.
pub fn qa_verdict<R: Rng + ?Sized>(rng: &mut R, input: &Value, reject_ratio: f64) -> (EventType, Value) {
    let ticket_id = field(input, "ticket_id");
    if rng.random_bool(reject_ratio.clamp(0.0, 1.0)) {
        let reason = pick(rng, REJECT_REASONS);
        let data = json!({
            "ticket_id": ticket_id,
            "category": field(input, "category"),
            "score": (rng.random_range(0.15..0.6f64) * 100.0).round() / 100.0,
            "reason": reason,
            "failed_checks": [reason],
            "reviewer_note": "draft does not meet the support answer policy; escalate to a human agent",
        });
        (EventType::AnswerRejected, data)
    } else {
        let data = json!({
            "ticket_id": ticket_id,
            "category": field(input, "category"),
            "score": (rng.random_range(0.8..0.99f64) * 100.0).round() / 100.0,
            "checks": {"tone": "pass", "policy": "pass", "factuality": "pass", "pii": "pass"},
            "answer_snippet": snippet(field(input, "answer_snippet"), 120),
        });
        (EventType::AnswerApproved, data)
    }
}

/// `support.answer.sent` data.
pub fn answer_sent<R: Rng + ?Sized>(rng: &mut R, input: &Value) -> Value {
    json!({
        "ticket_id": field(input, "ticket_id"),
        "channel": pick(rng, &["email", "chat", "web_form"]),
        "message_id": format!("msg_{}", hex(rng, 16)),
        "recipient_hash": format!("sha256:{}", hex(rng, 16)),
        "gateway": pick(rng, &["sendgrid", "zendesk", "intercom"]),
        "delivery_status": "delivered",
        "qa_score": input.get("score").cloned().unwrap_or(Value::Null),
    })
}

/// `doc.extracted` data.
pub fn doc_extracted<R: Rng + ?Sized>(rng: &mut R) -> Value {
    let doc_type = pick(rng, DOC_TYPES);
    let id = format!("DOC-{}", hex(rng, 8));
    json!({
        "document_id": id,
        "doc_type": doc_type,
        "source_uri": format!("s3://inbound-docs/2025/{}.pdf", id.to_lowercase()),
        "pages": rng.random_range(1..12),
        "mime_type": "application/pdf",
        "ocr_confidence": (rng.random_range(0.7..0.995f64) * 1000.0).round() / 1000.0,
        "fields": {
            "vendor_name": pick(rng, VENDORS),
            "document_number": format!("{}-{}", doc_type[..3].to_uppercase(), rng.random_range(10000..99999)),
            "total_amount": (rng.random_range(20.0..25000.0f64) * 100.0).round() / 100.0,
            "currency": pick(rng, &["EUR", "USD", "GBP"]),
            "issue_date": format!("2025-{:02}-{:02}", rng.random_range(1..13), rng.random_range(1..29)),
        },
    })
}

/// Validation verdict: `doc.validated` or `doc.validation.failed`.
pub fn doc_validation<R: Rng + ?Sized>(rng: &mut R, input: &Value, fail_ratio: f64) -> (EventType, Value) {
    let document_id = field(input, "document_id");
    let doc_type = field(input, "doc_type");
    let fields = input.get("fields").cloned().unwrap_or_else(|| json!({}));
    if rng.random_bool(fail_ratio.clamp(0.0, 1.0)) {
        let (f, rule, msg) = *[
            ("total_amount", "sum_matches_line_items", "line items do not add up to the total"),
            ("issue_date", "date_not_in_future", "issue date lies in the future"),
            ("vendor_name", "vendor_known", "vendor not found in supplier registry"),
            ("document_number", "unique_number", "document number already booked"),
        ]
        .choose(rng)
        .unwrap_or(&("total_amount", "sum_matches_line_items", "mismatch"));
        let data = json!({
            "document_id": document_id,
            "doc_type": doc_type,
            "rules_checked": 14,
            "errors": [{"field": f, "rule": rule, "message": msg}],
            "action": "route_to_manual_review",
        });
        (EventType::DocValidationFailed, data)
    } else {
        let data = json!({
            "document_id": document_id,
            "doc_type": doc_type,
            "rules_checked": 14,
            "warnings": rng.random_range(0..2),
            "fields": fields,
        });
        (EventType::DocValidated, data)
    }
}

/// `doc.entities.resolved` data.
pub fn entities_resolved<R: Rng + ?Sized>(rng: &mut R, input: &Value) -> Value {
    let fields = input.get("fields").cloned().unwrap_or_else(|| json!({}));
    json!({
        "document_id": field(input, "document_id"),
        "doc_type": field(input, "doc_type"),
        "entities": [
            {"type": "vendor", "text": field(&fields, "vendor_name"), "match_id": format!("SUP-{}", rng.random_range(1000..9999)), "score": 0.97},
            {"type": "currency", "text": field(&fields, "currency"), "match_id": field(&fields, "currency"), "score": 1.0},
            {"type": "cost_center", "text": "auto", "match_id": format!("CC-{}", rng.random_range(100..999)), "score": 0.81},
        ],
        "master_data": "erp",
        "unresolved": rng.random_range(0..2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, SeedableRng};

    #[test]
    fn ids_flow_downstream() {
        let mut rng = SmallRng::seed_from_u64(11);
        let created = ticket_created(&mut rng);
        let classified = ticket_classified(&mut rng, &created);
        let drafted = answer_drafted(&mut rng, &classified);
        let (_, verdict) = qa_verdict(&mut rng, &drafted, 0.0);
        let sent = answer_sent(&mut rng, &verdict);
        for v in [&classified, &drafted, &verdict, &sent] {
            assert_eq!(v["ticket_id"], created["ticket_id"]);
        }
        let doc = doc_extracted(&mut rng);
        let (t, validated) = doc_validation(&mut rng, &doc, 0.0);
        assert_eq!(t, EventType::DocValidated);
        let resolved = entities_resolved(&mut rng, &validated);
        assert_eq!(resolved["document_id"], doc["document_id"]);
        assert_eq!(resolved["entities"][0]["text"], doc["fields"]["vendor_name"]);
    }

    #[test]
    fn verdict_ratios_are_honoured() {
        let mut rng = SmallRng::seed_from_u64(2);
        let input = json!({"ticket_id": "TCK-1"});
        assert_eq!(qa_verdict(&mut rng, &input, 1.0).0, EventType::AnswerRejected);
        assert_eq!(qa_verdict(&mut rng, &input, 0.0).0, EventType::AnswerApproved);
        assert_eq!(doc_validation(&mut rng, &input, 1.0).0, EventType::DocValidationFailed);
        let rejected = (0..2000).filter(|_| qa_verdict(&mut rng, &input, 0.15).0 == EventType::AnswerRejected).count();
        assert!((200..400).contains(&rejected), "{rejected}");
    }
}
