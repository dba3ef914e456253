//! What ships beside the binary, tested with the real tools: the alert rules
//! (promtool check and unit tests, plus the house rules every alert must
//! follow), the Helm chart (helm lint --strict, helm template for every
//! values file under helm/pipewarden/ci/, kubeconform against offline
//! Kubernetes schemas, assertions on the rendered objects), and the
//! dashboards (structure, and every query parses and names only exported
//! metrics and labels). The tools are installed by `scripts/tools.sh`,
//! which the test script runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize as _;
use serde_yaml::Value;

mod common;
use common::dashboards::*;

/// The Kubernetes version the chart is rendered and validated for (the
/// schemas scripts/tools.sh writes are of this version).
const KUBE_VERSION: &str = "1.37.2";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tool(name: &str) -> PathBuf {
    let path = root().join(".cache/tools/bin").join(name);
    assert!(path.exists(), "{} missing: run scripts/tools.sh install", path.display());
    path
}

/// Runs a command in the repository root; panics with its output unless it succeeds.
fn run(command: &mut Command) -> String {
    let output = command.current_dir(root()).output().expect("spawn tool");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap()
}

/// Every alerting rule of the canonical rules file.
fn alerts() -> Vec<Value> {
    let rules = yaml(&read("alerts/pipewarden.rules.yml"));
    let mut alerts = Vec::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            if rule.get("alert").is_some() {
                alerts.push(rule.clone());
            }
        }
    }
    alerts
}

fn test_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("alerts/tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".test.yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let promtool = tool("promtool");
    let out = run(Command::new(&promtool).args(["check", "rules", "alerts/pipewarden.rules.yml"]));
    assert!(out.contains("SUCCESS"), "{out}");
    let out = run(Command::new(&promtool).args(["test", "rules"]).args(test_files()));
    assert!(!out.contains("FAILED"), "{out}");
}

#[test]
fn every_alert_follows_the_house_rules_and_has_firing_pending_and_quiet_tests() {
    let runbooks = read("docs/runbooks.md");
    let anchors: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase().replace(' ', "-"))
        .collect();
    // Per alert: (tests where it fires, tests where it must stay quiet).
    let mut coverage: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for file in test_files() {
        let tests = yaml(&std::fs::read_to_string(&file).unwrap());
        for test in tests["tests"].as_sequence().unwrap() {
            for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap().to_string();
                let firing = case["exp_alerts"].as_sequence().is_some_and(|a| !a.is_empty());
                let entry = coverage.entry(name).or_default();
                if firing {
                    entry.0 += 1;
                } else {
                    entry.1 += 1;
                }
            }
        }
    }
    let alerts = alerts();
    assert!(alerts.len() >= 5, "{} alerts", alerts.len());
    let mut names = BTreeSet::new();
    for alert in &alerts {
        let name = alert["alert"].as_str().unwrap();
        // One name may have several rules only with distinct severities
        // (fast and slow burn rates of one SLO).
        let severity_key = format!("{name}/{}", alert["labels"]["severity"].as_str().unwrap_or_default());
        assert!(names.insert(severity_key), "duplicate alert {name} with the same severity");
        assert!(
            name.starts_with("Pipewarden") && name.chars().all(|c| c.is_ascii_alphanumeric()),
            "{name}: CamelCase with the Pipewarden prefix"
        );
        let severity = alert["labels"]["severity"].as_str().unwrap_or_default();
        assert!(["critical", "warning", "info"].contains(&severity), "{name}: severity {severity:?}");
        let for_ = alert["for"].as_str().unwrap_or_default();
        assert!(!for_.is_empty() && for_ != "0s" && for_ != "0m", "{name}: needs a for: duration");
        let annotations = &alert["annotations"];
        for key in ["summary", "description", "runbook_url"] {
            assert!(annotations[key].as_str().is_some_and(|v| !v.is_empty()), "{name}: annotation {key}");
        }
        assert!(annotations["description"].as_str().unwrap().contains("{{"), "{name}: description is templated");
        let runbook = annotations["runbook_url"].as_str().unwrap();
        let anchor = runbook.rsplit_once("docs/runbooks.md#").map(|(_, a)| a).unwrap_or_default();
        assert_eq!(anchor, name.to_lowercase(), "{name}: runbook_url points to its own section");
        assert!(anchors.contains(anchor), "{name}: docs/runbooks.md has no section {anchor}");
        let (fires, quiet) = coverage.get(name).copied().unwrap_or_default();
        assert!(fires >= 1, "{name}: no test where it fires");
        // One quiet case before its for: has passed, one on healthy data.
        assert!(quiet >= 2, "{name}: needs a pending (not yet firing) and a healthy test, has {quiet}");
    }
    for tested in coverage.keys() {
        assert!(names.iter().any(|n| n.starts_with(&format!("{tested}/"))), "tests name an unknown alert {tested}");
    }
}

/// `helm template` of the chart with one values file (and the Prometheus
/// Operator API announced, so the monitoring objects render).
fn render(values: &Path) -> Vec<Value> {
    let out = run(Command::new(tool("helm"))
        .args(["template", "pw", "helm/pipewarden", "--namespace", "agents", "--kube-version", KUBE_VERSION])
        .args(["--api-versions", "monitoring.coreos.com/v1", "-f", values.to_str().unwrap()]));
    serde_yaml::Deserializer::from_str(&out)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .collect()
}

fn ci_values() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("helm/pipewarden/ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3);
    files
}

fn kinds(objects: &[Value]) -> BTreeSet<String> {
    objects.iter().map(|o| o["kind"].as_str().unwrap().to_string()).collect()
}

fn find<'a>(objects: &'a [Value], kind: &str) -> Option<&'a Value> {
    objects.iter().find(|o| o["kind"].as_str() == Some(kind))
}

#[test]
fn the_chart_lints_renders_and_validates_for_every_ci_values_file() {
    let helm = tool("helm");
    let schemas = root().join(".cache/tools/k8s-schemas");
    for values in ci_values() {
        run(Command::new(&helm)
            .args(["lint", "--strict", "--kube-version", KUBE_VERSION, "helm/pipewarden", "-f"])
            .arg(&values));
        let rendered = run(Command::new(&helm)
            .args(["template", "pw", "helm/pipewarden", "--kube-version", KUBE_VERSION])
            .args(["--api-versions", "monitoring.coreos.com/v1", "-f"])
            .arg(&values));
        let manifest = std::env::temp_dir().join(format!("pipewarden-chart-{}.yaml", std::process::id()));
        std::fs::write(&manifest, rendered).unwrap();
        let out = run(Command::new(tool("kubeconform"))
            .args(["-strict", "-summary", "-schema-location"])
            .arg(format!("{}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json", schemas.display()))
            .arg(&manifest));
        std::fs::remove_file(&manifest).ok();
        assert!(out.contains("Invalid: 0, Errors: 0, Skipped: 0"), "{}: {out}", values.display());
    }
}

#[test]
fn the_rendered_chart_is_hardened_and_its_toggles_work() {
    let values = root().join("helm/pipewarden/ci");
    let defaults = render(&values.join("default-values.yaml"));
    let full = render(&values.join("full-values.yaml"));
    let external = render(&values.join("existing-secret-values.yaml"));

    let deployment = find(&defaults, "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], Value::Bool(true));
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"].as_str(), Some("RuntimeDefault"));
    assert_eq!(pod["automountServiceAccountToken"], Value::Bool(false));
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], Value::Bool(false));
    assert_eq!(security["readOnlyRootFilesystem"], Value::Bool(true));
    assert_eq!(security["capabilities"]["drop"][0].as_str(), Some("ALL"));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"].as_str(), Some("/healthz"));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"));
    assert!(container["resources"]["limits"]["memory"].is_string());
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert!(annotations["checksum/config"].as_str().is_some_and(|c| c.len() == 64));
    assert_eq!(find(&defaults, "Service").unwrap()["spec"]["publishNotReadyAddresses"], Value::Bool(true));

    // The ConfigMap holds the configuration and no secret value.
    let config = find(&full, "ConfigMap").unwrap()["data"]["config.toml"].as_str().unwrap().to_string();
    assert!(config.contains("[kafka]") && config.contains("${SCHEMA_REGISTRY_PASSWORD:-}"));
    assert!(!config.contains("example-only"), "a secret value leaked into the ConfigMap");

    // The default configuration is valid; the HTTP tokens come from the
    // Secret's keys and the routes stay open while those are absent.
    let default_config = find(&defaults, "ConfigMap").unwrap()["data"]["config.toml"].as_str().unwrap().to_string();
    let open = pipewarden::config::Config::from_toml(&default_config, &|name: &str| {
        (name == "KAFKA_BOOTSTRAP").then(|| "kafka:9092".to_string())
    })
    .expect("the chart's default config is valid");
    assert!(open.http.auth.metrics_token.is_none() && open.http.auth.api_token.is_none());
    let protected = pipewarden::config::Config::from_toml(&default_config, &|name: &str| match name {
        "KAFKA_BOOTSTRAP" => Some("kafka:9092".to_string()),
        "PIPEWARDEN_METRICS_TOKEN" | "PIPEWARDEN_API_TOKEN" => Some("t0ken".to_string()),
        _ => None,
    })
    .expect("valid with tokens");
    let bearer = axum::http::HeaderValue::from_static("Bearer t0ken");
    assert!(protected.http.auth.metrics_token.as_ref().is_some_and(|t| t.admits(Some(&bearer))));
    assert!(protected.http.auth.api_token.as_ref().is_some_and(|t| t.admits(Some(&bearer))));
    // Prometheus scrapes with the token from the Secret when one is named,
    // and `helm test` sends it too.
    let monitor = |objects: &[Value]| find(objects, "ServiceMonitor").unwrap()["spec"]["endpoints"][0].clone();
    assert!(monitor(&defaults)["authorization"].is_null(), "no token by default");
    let authorization = &monitor(&full)["authorization"];
    assert_eq!(authorization["type"].as_str(), Some("Bearer"));
    assert_eq!(authorization["credentials"]["name"].as_str(), Some("pw-pipewarden"));
    assert_eq!(authorization["credentials"]["key"].as_str(), Some("PIPEWARDEN_METRICS_TOKEN"));
    let test_pod = |objects: &[Value]| {
        objects.iter().find(|o| o["metadata"]["name"].as_str() == Some("pw-pipewarden-test")).unwrap().clone()
    };
    let check = &test_pod(&full)["spec"]["containers"][0];
    assert_eq!(check["env"][0]["valueFrom"]["secretKeyRef"]["key"].as_str(), Some("PIPEWARDEN_METRICS_TOKEN"));
    assert_eq!(check["env"][0]["valueFrom"]["secretKeyRef"]["optional"], Value::Bool(true));
    assert!(check["command"][2].as_str().unwrap().contains("Authorization: Bearer $PIPEWARDEN_METRICS_TOKEN"));
    assert!(test_pod(&defaults)["spec"]["containers"][0]["env"].is_null(), "no Secret, no token");

    // Toggles.
    let default_kinds = kinds(&defaults);
    for kind in ["Deployment", "Service", "ConfigMap", "ServiceAccount", "PodDisruptionBudget", "ServiceMonitor"] {
        assert!(default_kinds.contains(kind), "defaults render a {kind}: {default_kinds:?}");
    }
    assert!(default_kinds.contains("PrometheusRule"));
    assert!(!default_kinds.contains("Secret") && !default_kinds.contains("NetworkPolicy"));
    let full_kinds = kinds(&full);
    assert!(full_kinds.contains("Secret") && full_kinds.contains("NetworkPolicy"), "{full_kinds:?}");
    let secret = find(&full, "Secret").unwrap();
    assert!(secret["data"]["KAFKA_SASL_PASSWORD"].is_string());
    let full_pod = &find(&full, "Deployment").unwrap()["spec"]["template"]["spec"];
    assert_eq!(find(&full, "Deployment").unwrap()["spec"]["replicas"].as_u64(), Some(2));
    assert!(full_pod["containers"][0]["image"].as_str().unwrap().contains("@sha256:"));
    assert!(full_pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|v| v["secret"]["secretName"].as_str() == Some("kafka-client-tls")));
    let external_kinds = kinds(&external);
    for kind in ["Secret", "ServiceMonitor", "PrometheusRule", "PodDisruptionBudget"] {
        assert!(!external_kinds.contains(kind), "existing-secret values render no {kind}: {external_kinds:?}");
    }
    let external_pod = &find(&external, "Deployment").unwrap()["spec"]["template"]["spec"];
    assert_eq!(
        external_pod["containers"][0]["envFrom"][0]["secretRef"]["name"].as_str(),
        Some("pipewarden-credentials")
    );
    assert!(!external.iter().any(|o| o["metadata"]["name"].as_str().is_some_and(|n| n.ends_with("-dashboards"))));

    // Without the Prometheus Operator API, no monitoring objects.
    let plain =
        run(Command::new(tool("helm")).args(["template", "pw", "helm/pipewarden", "--kube-version", KUBE_VERSION]));
    assert!(!plain.contains("kind: ServiceMonitor") && !plain.contains("kind: PrometheusRule"));

    // The shipped rules are the tested rules.
    let rule = find(&defaults, "PrometheusRule").unwrap();
    assert_eq!(
        rule["spec"],
        yaml(&read("alerts/pipewarden.rules.yml")),
        "PrometheusRule differs from the canonical rules"
    );
}

#[test]
fn the_chart_ships_the_canonical_rules_and_dashboards_unchanged() {
    assert_eq!(
        read("helm/pipewarden/files/pipewarden.rules.yml"),
        read("alerts/pipewarden.rules.yml"),
        "run: cp alerts/pipewarden.rules.yml helm/pipewarden/files/"
    );
    let mut canonical = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert_eq!(
                read(&format!("helm/pipewarden/files/dashboards/{name}")),
                read(&format!("dashboards/{name}")),
                "run: cp dashboards/*.json helm/pipewarden/files/dashboards/"
            );
            canonical.insert(name);
        }
    }
    let shipped: BTreeSet<String> = std::fs::read_dir(root().join("helm/pipewarden/files/dashboards"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(shipped, canonical);
}

#[test]
fn dashboards_follow_the_structural_rules() {
    let dashboards = dashboards();
    let names: BTreeSet<&str> = dashboards.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["cost.json", "flows.json", "governance.json", "lag.json", "overview.json"]));
    let mut variables_seen = BTreeSet::new();
    for (name, dashboard) in &dashboards {
        let text = serde_json::to_string(dashboard).unwrap();
        assert!(
            !text.contains("__inputs") && !text.contains("${DS_"),
            "{name}: imports need no __inputs or ${{DS_...}}"
        );
        assert!(dashboard["uid"].as_str().is_some_and(|u| u.starts_with("pipewarden-")), "{name}: uid");
        let variables: Vec<&serde_json::Value> = dashboard["templating"]["list"].as_array().unwrap().iter().collect();
        let datasource = variables.iter().find(|v| v["type"] == "datasource").expect("datasource variable");
        assert_eq!(datasource["query"], "prometheus", "{name}");
        for variable in &variables {
            variables_seen.insert(variable["name"].as_str().unwrap().to_string());
            if variable["type"] == "query" {
                assert_eq!(
                    variable["datasource"]["uid"], "${datasource}",
                    "{name}: variable on the datasource variable"
                );
            }
        }
        let panels = dashboard["panels"].as_array().unwrap();
        assert!(panels.len() >= 5, "{name}: {} panels", panels.len());
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or_default();
            assert!(!title.is_empty(), "{name}: a panel without a title");
            assert!(panel["description"].as_str().is_some_and(|d| d.len() > 10), "{name}/{title}: description");
            assert!(
                panel["fieldConfig"]["defaults"]["unit"].as_str().is_some_and(|u| !u.is_empty()),
                "{name}/{title}: unit"
            );
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{name}/{title}: datasource variable");
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for window in expr.match_indices('[').map(|(i, _)| &expr[i..]) {
                    assert!(window.starts_with("[$__rate_interval]"), "{name}/{title}: use $__rate_interval: {expr}");
                }
            }
        }
    }
    for needed in ["datasource", "job", "topic", "group", "flow"] {
        assert!(variables_seen.contains(needed), "no dashboard has a {needed} variable");
    }
}

#[test]
fn every_dashboard_query_parses_and_names_only_documented_metrics_and_labels() {
    let metrics = documented_metrics();
    assert!(metrics.len() > 30, "{} documented metrics", metrics.len());
    let mut checked = 0;
    for (name, dashboard) in dashboards() {
        for (panel, query) in queries(&dashboard) {
            let expr = promql_parser::parser::parse(&substitute(&query, "5m"))
                .unwrap_or_else(|e| panic!("{name}/{panel}: {query}: {e}"));
            let (mut found, mut grouping) = (Vec::new(), Vec::new());
            selectors(&expr, &mut found, &mut grouping);
            assert!(!found.is_empty(), "{name}/{panel}: no metric in {query}");
            let mut allowed: BTreeSet<String> = TARGET_LABELS.iter().map(|l| l.to_string()).collect();
            for (metric, labels) in &found {
                let (_, family_labels, extra) = family_of(metric, &metrics)
                    .unwrap_or_else(|| panic!("{name}/{panel}: {metric} is not in docs/metrics.md"));
                for label in labels {
                    assert!(
                        family_labels.contains(label)
                            || TARGET_LABELS.contains(&label.as_str())
                            || extra == Some(label.as_str()),
                        "{name}/{panel}: {metric} has no label {label}"
                    );
                }
                allowed.extend(family_labels.iter().cloned());
                allowed.extend(extra.map(str::to_string));
            }
            for label in &grouping {
                assert!(allowed.contains(label), "{name}/{panel}: groups by {label}, which no selected metric has");
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "{checked} queries checked");
}
