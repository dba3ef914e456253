#!/usr/bin/env python3
"""Writes pipewarden's Grafana dashboards (dashboards/*.json) and the Helm
chart's copies (helm/pipewarden/files/dashboards/) from the panel lists
below, so every dashboard follows the same rules: a datasource variable (no
__inputs), job/topic/group/flow variables, $__rate_interval in every rate,
a unit, title and description on every panel. tests/ship.rs checks the
written files; run this after editing a panel:

    python3 scripts/dashboards/generate.py
"""
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
JOB = 'job=~"$job"'


def variable(name, label, query, multi=True):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": f"{name}-values", "qryType": 1},
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "includeAll": multi,
        "multi": multi,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if multi else {},
        "hide": 0,
    }


def templating(extra):
    datasource = {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
    }
    job = variable("job", "Job", "label_values(pipewarden_build_info, job)")
    variables = {
        "topic": variable("topic", "Topic", f"label_values(pipewarden_records_total{{{JOB}}}, topic)"),
        "group": variable("group", "Consumer group", f"label_values(pipewarden_consumergroup_lag_messages{{{JOB}}}, group)"),
        "flow": variable("flow", "Flow", f"label_values(pipewarden_flow_traces_total{{{JOB}}}, flow)"),
        "model": variable("model", "Model", f"label_values(pipewarden_llm_tokens_total{{{JOB}}}, model)"),
    }
    return {"list": [datasource, job] + [variables[name] for name in extra]}


class Dashboard:
    def __init__(self, uid, title, description, variables):
        self.uid, self.title, self.description, self.variables = uid, title, description, variables
        self.panels, self.x, self.y, self.row_height = [], 0, 0, 0

    def panel(self, kind, title, description, unit, targets, width=12, height=8, **options):
        if self.x + width > 24:
            self.x, self.y = 0, self.y + self.row_height
            self.row_height = 0
        panel = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DS,
            "gridPos": {"x": self.x, "y": self.y, "w": width, "h": height},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {},
            "targets": [
                {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
                for i, (expr, legend) in enumerate(targets)
            ],
        }
        if kind == "timeseries":
            panel["fieldConfig"]["defaults"]["custom"] = {"fillOpacity": 10, "lineWidth": 1, "showPoints": "never"}
            panel["options"] = {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}
        elif kind == "stat":
            panel["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "value"}
        elif kind == "table":
            for target in panel["targets"]:
                target["format"] = "table"
                target["instant"] = True
            panel["options"] = {"showHeader": True}
            panel["transformations"] = [{"id": "organize", "options": {"excludeByName": {"Time": True}}}]
        panel["options"].update(options)
        self.panels.append(panel)
        self.x += width
        self.row_height = max(self.row_height, height)

    def json(self):
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["pipewarden", "kafka", "agents"],
            "timezone": "browser",
            "editable": True,
            "graphTooltip": 1,
            "refresh": "30s",
            "schemaVersion": 39,
            "version": 1,
            "time": {"from": "now-1h", "to": "now"},
            "templating": templating(self.variables),
            "annotations": {"list": []},
            "links": [{"title": "pipewarden dashboards", "type": "dashboards", "tags": ["pipewarden"], "asDropdown": True}],
            "panels": self.panels,
        }


def overview():
    d = Dashboard("pipewarden-overview", "pipewarden / Overview",
                  "Pipeline health at a glance: throughput, end-to-end latency per flow, stalled traces, "
                  "quarantine and DLQ rates, worst lag in seconds and LLM cost per hour.", ["topic", "group", "flow"])
    d.panel("stat", "Events per second", "Records pipewarden reads per second across the selected topics.", "ops",
            [(f'sum(rate(pipewarden_records_total{{{JOB},topic=~"$topic"}}[{RATE}]))', "events/s")], width=6, height=4)
    d.panel("stat", "Stalled traces", "Traces whose flow SLA passed without a terminal event, open now.", "short",
            [(f'sum(pipewarden_stalled_open_traces{{{JOB},flow=~"$flow"}})', "stalled")], width=6, height=4)
    d.panel("stat", "Worst lag", "Largest consumer-group lag in seconds over the selected groups.", "s",
            [(f'max(pipewarden_consumergroup_lag_seconds{{{JOB},group=~"$group"}})', "lag")], width=6, height=4)
    d.panel("stat", "LLM cost per hour", "LLM spend rate across the selected topics, in US dollars per hour.", "currencyUSD",
            [(f'sum(rate(pipewarden_llm_cost_usd_total{{{JOB},topic=~"$topic"}}[{RATE}])) * 3600', "USD/h")], width=6, height=4)
    d.panel("timeseries", "Throughput per topic", "Records read per second, per topic.", "ops",
            [(f'sum by (topic) (rate(pipewarden_records_total{{{JOB},topic=~"$topic"}}[{RATE}]))', "{{topic}}")])
    d.panel("timeseries", "End-to-end latency per flow (p50, p95, p99)",
            "Latency of completed traces from their first to their terminal event, from event timestamps.", "s",
            [(f'histogram_quantile({q}, sum by (le, flow) (rate(pipewarden_flow_duration_seconds_bucket{{{JOB},flow=~"$flow"}}[{RATE}])))',
              f"{{{{flow}}}} p{int(q * 100)}") for q in (0.5, 0.95, 0.99)])
    d.panel("timeseries", "Quarantine and DLQ rates", "Records quarantined by pipewarden and records arriving on dead-letter topics, per second.", "ops",
            [(f'sum by (topic) (rate(pipewarden_quarantined_records_total{{{JOB},topic=~"$topic"}}[{RATE}]))', "quarantined {{topic}}"),
             (f'sum by (source_topic) (rate(pipewarden_dlq_records_total{{{JOB}}}[{RATE}]))', "DLQ {{source_topic}}")])
    d.panel("timeseries", "Lag in seconds per group", "Age of the oldest record each group has not consumed yet (worst topic).", "s",
            [(f'max by (group) (pipewarden_consumergroup_lag_seconds{{{JOB},group=~"$group"}})', "{{group}}")])
    return d


def flows():
    d = Dashboard("pipewarden-flows", "pipewarden / Flows and stages",
                  "End-to-end latency per flow and outcome, latency of each stage (edge between event types), "
                  "stalled traces and correlation quality.", ["flow", "topic"])
    d.panel("timeseries", "Completed traces per flow", "Traces that reached a terminal event, per flow and outcome, per second.", "ops",
            [(f'sum by (flow, outcome) (rate(pipewarden_flow_traces_total{{{JOB},flow=~"$flow"}}[{RATE}]))', "{{flow}} {{outcome}}")])
    d.panel("timeseries", "Flow latency p95 by outcome", "95th percentile end-to-end latency, per flow and outcome.", "s",
            [(f'histogram_quantile(0.95, sum by (le, flow, outcome) (rate(pipewarden_flow_duration_seconds_bucket{{{JOB},flow=~"$flow"}}[{RATE}])))', "{{flow}} {{outcome}}")])
    d.panel("timeseries", "Stage latency p95", "95th percentile latency of each observed transition from one event type to the next.", "s",
            [(f'histogram_quantile(0.95, sum by (le, from_event_type, to_event_type) (rate(pipewarden_stage_duration_seconds_bucket{{{JOB}}}[{RATE}])))', "{{from_event_type}} → {{to_event_type}}")], width=24)
    d.panel("timeseries", "Stalled traces", "Open stalled traces per flow and last stage reached.", "short",
            [(f'sum by (flow, last_stage) (pipewarden_stalled_open_traces{{{JOB},flow=~"$flow"}})', "{{flow}} at {{last_stage}}")])
    d.panel("timeseries", "Correlation quality", "Duplicate deliveries, out-of-order events and events without a correlation ID, per second.", "ops",
            [(f'sum(rate(pipewarden_duplicate_events_total{{{JOB},topic=~"$topic"}}[{RATE}]))', "duplicates"),
             (f'sum(rate(pipewarden_out_of_order_events_total{{{JOB},topic=~"$topic"}}[{RATE}]))', "out of order"),
             (f'sum(rate(pipewarden_uncorrelated_events_total{{{JOB},topic=~"$topic"}}[{RATE}]))', "no correlation ID")])
    d.panel("timeseries", "Trace table", "Traces held in memory and evictions per second by cause.", "short",
            [(f'sum(pipewarden_trace_table_traces{{{JOB}}})', "open traces"),
             (f'sum by (cause) (rate(pipewarden_trace_evictions_total{{{JOB}}}[{RATE}]))', "evicted ({{cause}})/s")])
    d.panel("timeseries", "Clock skew p95 per producer", "95th percentile difference between an event's created_at and its Kafka record timestamp, per producer.", "s",
            [(f'histogram_quantile(0.95, sum by (le, producer) (rate(pipewarden_clock_skew_seconds_bucket{{{JOB}}}[{RATE}])))', "{{producer}}")])
    return d


def lag():
    d = Dashboard("pipewarden-lag", "pipewarden / Lag",
                  "Consumer-group lag in messages and in seconds, group status and state.", ["group", "topic"])
    d.panel("timeseries", "Lag in seconds", "Age of the first record each group has not consumed, per group and topic (exact for watched topics, interpolated otherwise).", "s",
            [(f'max by (group, topic) (pipewarden_consumergroup_lag_seconds{{{JOB},group=~"$group",topic=~"$topic"}})', "{{group}} {{topic}}")])
    d.panel("timeseries", "Lag in messages", "Records between each group's committed offset and the end of the partition, summed per group and topic.", "short",
            [(f'sum by (group, topic) (pipewarden_consumergroup_lag_messages{{{JOB},group=~"$group",topic=~"$topic"}})', "{{group}} {{topic}}")])
    d.panel("table", "Group status", "Current status of each group (ok, lagging, stalled, stopped, rewound); 1 marks the active status.", "short",
            [(f'max by (group, status) (pipewarden_consumergroup_status{{{JOB},group=~"$group"}}) == 1', "")])
    d.panel("timeseries", "Members per group", "Active members of each consumer group.", "short",
            [(f'max by (group) (pipewarden_consumergroup_members{{{JOB},group=~"$group"}})', "{{group}}")])
    d.panel("timeseries", "Lag poll duration", "Average time one lag poll over every group takes.", "s",
            [(f'sum(rate(pipewarden_lag_poll_duration_seconds_sum{{{JOB}}}[{RATE}])) / sum(rate(pipewarden_lag_poll_duration_seconds_count{{{JOB}}}[{RATE}]))', "poll")])
    d.panel("timeseries", "Stuck partitions", "Partitions whose committed offset is frozen while the same group progresses elsewhere.", "short",
            [(f'sum by (group) (pipewarden_consumergroup_stuck_partitions{{{JOB},group=~"$group"}})', "{{group}}")])
    return d


def governance():
    d = Dashboard("pipewarden-governance", "pipewarden / Governance",
                  "Validation verdicts, invalid records by reason and topic, PII, contract problems, quarantine and schema registry health.", ["topic"])
    d.panel("timeseries", "Verdicts", "Records per second by verdict (valid, invalid, unverified).", "ops",
            [(f'sum by (verdict) (rate(pipewarden_verdicts_total{{{JOB},topic=~"$topic"}}[{RATE}]))', "{{verdict}}")])
    d.panel("timeseries", "Invalid records by reason", "Invalid records per second by reason and topic.", "ops",
            [(f'sum by (topic, reason) (rate(pipewarden_invalid_records_total{{{JOB},topic=~"$topic"}}[{RATE}]))', "{{topic}} {{reason}}")])
    d.panel("timeseries", "PII detections", "Records whose string values contain PII, per kind and topic, per second.", "ops",
            [(f'sum by (topic, kind) (rate(pipewarden_pii_detections_total{{{JOB},topic=~"$topic"}}[{RATE}]))', "{{topic}} {{kind}}")])
    d.panel("timeseries", "Contract problems", "Envelope problems (missing or ill-typed contract fields) per second, by problem.", "ops",
            [(f'sum by (reason) (rate(pipewarden_envelope_problems_total{{{JOB},topic=~"$topic"}}[{RATE}]))', "{{reason}}")])
    d.panel("timeseries", "Quarantine", "Copies written per second, failed writes per second and copies awaiting acknowledgement.", "short",
            [(f'sum(rate(pipewarden_quarantined_records_total{{{JOB},topic=~"$topic"}}[{RATE}]))', "written/s"),
             (f'sum(rate(pipewarden_quarantine_failures_total{{{JOB},topic=~"$topic"}}[{RATE}]))', "failed/s"),
             (f'sum(pipewarden_quarantine_in_flight{{{JOB}}})', "in flight")])
    d.panel("timeseries", "Schema registry", "1 when the registry answers; paused partitions waiting for a schema.", "short",
            [(f'min(pipewarden_schema_registry_up{{{JOB}}})', "registry up"),
             (f'sum(pipewarden_paused_partitions{{{JOB},reason="schema_unavailable"}})', "paused (schema)")])
    return d


def cost():
    d = Dashboard("pipewarden-cost", "pipewarden / Cost",
                  "LLM token usage and cost per topic and model, cost per completed flow, budgets and unpriced tokens.", ["topic", "flow", "model"])
    d.panel("timeseries", "Cost per hour by topic", "LLM spend rate per topic, in US dollars per hour.", "currencyUSD",
            [(f'sum by (topic) (rate(pipewarden_llm_cost_usd_total{{{JOB},topic=~"$topic",model=~"$model"}}[{RATE}])) * 3600', "{{topic}}")])
    d.panel("timeseries", "Cost per hour by model", "LLM spend rate per model, in US dollars per hour.", "currencyUSD",
            [(f'sum by (model) (rate(pipewarden_llm_cost_usd_total{{{JOB},topic=~"$topic",model=~"$model"}}[{RATE}])) * 3600', "{{model}}")])
    d.panel("timeseries", "Tokens per second by type", "Tokens per second by normalised type (input, cached input, cache write, output, reasoning).", "short",
            [(f'sum by (type) (rate(pipewarden_llm_tokens_total{{{JOB},topic=~"$topic",model=~"$model"}}[{RATE}]))', "{{type}}")])
    d.panel("timeseries", "Cost per completed flow (p50, p95)", "Cost of one completed trace of each flow, in US dollars.", "currencyUSD",
            [(f'histogram_quantile({q}, sum by (le, flow) (rate(pipewarden_flow_cost_usd_bucket{{{JOB},flow=~"$flow"}}[{RATE}])))', f"{{{{flow}}}} p{int(q * 100)}") for q in (0.5, 0.95)])
    d.panel("timeseries", "Budget use", "Share of each hourly budget used (1 = the budget is spent).", "percentunit",
            [(f'max by (budget) (pipewarden_budget_used_ratio{{{JOB}}})', "{{budget}}")])
    d.panel("timeseries", "Unpriced tokens", "Tokens of models missing from the price table, per second: their cost is unknown, not zero.", "short",
            [(f'sum by (model) (rate(pipewarden_llm_unpriced_tokens_total{{{JOB},topic=~"$topic"}}[{RATE}]))', "{{model}}")])
    return d


def main():
    for dashboard in (overview(), flows(), lag(), governance(), cost()):
        text = json.dumps(dashboard.json(), indent=2, ensure_ascii=False) + "\n"
        name = dashboard.uid.removeprefix("pipewarden-") + ".json"
        for folder in ("dashboards", "helm/pipewarden/files/dashboards"):
            os.makedirs(os.path.join(ROOT, folder), exist_ok=True)
            with open(os.path.join(ROOT, folder, name), "w") as f:
                f.write(text)
        print(f"dashboards/{name}: {len(dashboard.panels)} panels")


if __name__ == "__main__":
    main()
