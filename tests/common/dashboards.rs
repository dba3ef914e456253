//! The bundled Grafana dashboards as tests see them: every panel query and
//! query variable, Grafana's variables replaced by values PromQL accepts,
//! and the metric families (with their labels) docs/metrics.md documents.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every dashboard file of `dashboards/` with its parsed JSON, by file name.
pub fn dashboards() -> Vec<(String, serde_json::Value)> {
    let mut out: Vec<(String, serde_json::Value)> = std::fs::read_dir(root().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Metric families documented in docs/metrics.md: name → (type, labels).
pub fn documented_metrics() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let mut metrics = BTreeMap::new();
    for line in std::fs::read_to_string(root().join("docs/metrics.md")).unwrap().lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5 || !cells[1].starts_with("`pipewarden_") {
            continue;
        }
        let name = cells[1].trim_matches('`').to_string();
        let labels = cells[3]
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_string())
            .filter(|l| !l.is_empty() && l != "—")
            .collect();
        metrics.insert(name, (cells[2].to_string(), labels));
    }
    metrics
}

/// Labels every scraped series may carry besides its own: target labels
/// added by Prometheus or the Prometheus Operator, and `le` of histogram buckets.
pub const TARGET_LABELS: &[&str] = &["job", "instance", "namespace", "pod", "service", "container", "endpoint"];

/// The documented family a series name belongs to, and the extra labels it has.
pub fn family_of<'a>(
    name: &str,
    metrics: &'a BTreeMap<String, (String, BTreeSet<String>)>,
) -> Option<(&'a String, &'a BTreeSet<String>, Option<&'static str>)> {
    if let Some((family, (_, labels))) = metrics.get_key_value(name) {
        return Some((family, labels, None));
    }
    for (suffix, extra) in [("_bucket", Some("le")), ("_sum", None), ("_count", None)] {
        if let Some(base) = name.strip_suffix(suffix) {
            if let Some((family, (kind, labels))) = metrics.get_key_value(base) {
                if kind.contains("histogram") {
                    return Some((family, labels, extra));
                }
            }
        }
    }
    None
}

/// Collects (metric, labels it names) from a PromQL expression, with the
/// `by`/`on` labels of aggregations and matchings checked against `scope`.
pub fn selectors(expr: &promql_parser::parser::Expr, out: &mut Vec<(String, Vec<String>)>, grouping: &mut Vec<String>) {
    use promql_parser::parser::{Expr, LabelModifier};
    let group = |modifier: &Option<LabelModifier>, grouping: &mut Vec<String>| {
        if let Some(LabelModifier::Include(labels) | LabelModifier::Exclude(labels)) = modifier {
            grouping.extend(labels.labels.iter().cloned());
        }
    };
    match expr {
        Expr::Aggregate(a) => {
            group(&a.modifier, grouping);
            selectors(&a.expr, out, grouping);
            if let Some(param) = &a.param {
                selectors(param, out, grouping);
            }
        }
        Expr::Unary(u) => selectors(&u.expr, out, grouping),
        Expr::Binary(b) => {
            if let Some(modifier) = &b.modifier {
                group(&modifier.matching, grouping);
            }
            selectors(&b.lhs, out, grouping);
            selectors(&b.rhs, out, grouping);
        }
        Expr::Paren(p) => selectors(&p.expr, out, grouping),
        Expr::Subquery(s) => selectors(&s.expr, out, grouping),
        Expr::VectorSelector(v) => out.push((
            v.name.clone().unwrap_or_default(),
            v.matchers.matchers.iter().map(|m| m.name.clone()).filter(|n| n != "__name__").collect(),
        )),
        Expr::MatrixSelector(m) => out.push((
            m.vs.name.clone().unwrap_or_default(),
            m.vs.matchers.matchers.iter().map(|m| m.name.clone()).filter(|n| n != "__name__").collect(),
        )),
        Expr::Call(c) => c.args.args.iter().for_each(|arg| selectors(arg, out, grouping)),
        _ => {}
    }
}

/// A query with Grafana's variables replaced by values PromQL accepts;
/// `$__rate_interval` becomes `rate_interval`.
pub fn substitute(query: &str, rate_interval: &str) -> String {
    query
        .replace("$__rate_interval", rate_interval)
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("${datasource}", "prometheus")
        .replace("$job", "pipewarden")
        .replace("$topic", ".*")
        .replace("$group", ".*")
        .replace("$flow", ".*")
        .replace("$model", ".*")
}

/// Every query of a dashboard: panel targets and query variables.
pub fn queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push((
                panel["title"].as_str().unwrap_or_default().to_string(),
                target["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] == "query" {
            let query = variable["definition"].as_str().unwrap();
            // label_values(<selector>, <label>): check the selector.
            let inner = query.trim_start_matches("label_values(").trim_end_matches(')');
            let selector = inner.rsplit_once(',').map_or(inner, |(s, _)| s);
            out.push((format!("variable {}", variable["name"]), selector.to_string()));
        }
    }
    out
}
