//! The endpoints behind the web UI (docs/ui.md): checking and previewing a definition, a
//! segment's history, report, funnel, members as CSV and Cohort Replay, discovery,
//! explanation and the agent overview.
//!
//! Everything that reads history runs on a blocking thread over a [`StoreReader`] taken
//! under the store's lock and released at once, so ingest goes on meanwhile (the server
//! never compacts, so a reader's files stay in place).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use rustc_hash::FxHashMap;
use sequin_core::time::format_rfc3339;
use sequin_engine::Program;
use sequin_engine::batch::{EvalOptions, evaluate};
use sequin_lang::ast::SegFile;
use sequin_lang::{Diagnostic, check, parse};
use sequin_store::{EventSource, StoreReader};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Access, authorize};
use crate::{ApiError, AppState};

fn reader(state: &AppState) -> StoreReader {
    state.store.lock().expect("store lock").reader()
}

fn live_file(state: &AppState) -> SegFile {
    let source = state.live.source.read().expect("source lock").clone();
    parse(&source).unwrap_or_default()
}

fn session_gap(state: &AppState) -> i64 {
    state.session_gap
}

/// Runs `f` on a blocking thread (history reads and insights are CPU-bound).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("worker: {e}")))?
}

fn insight_error(e: sequin_insight::InsightError) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

/// 1-based line and column of byte `at` in `src`.
fn line_col(src: &str, at: usize) -> (usize, usize) {
    let at = at.min(src.len());
    let before = &src[..src.floor_char_boundary(at)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn diagnostic_json(d: &Diagnostic, src: &str) -> Value {
    let (line, column) = line_col(src, d.span.start);
    let (end_line, end_column) = line_col(src, d.span.end.max(d.span.start));
    json!({
        "severity": if d.is_error() { "error" } else { "warning" },
        "message": d.message,
        "hint": d.hint,
        "line": line,
        "column": column,
        "end_line": end_line,
        "end_column": end_column,
        "rendered": d.render("definition", src),
    })
}

/// The store's names, cached for a few seconds: the editor checks on every pause in typing,
/// and listing the names reads every partition's footer.
fn cached_catalog(state: &AppState, reader: &StoreReader) -> Option<sequin_lang::Catalog> {
    const FRESH: std::time::Duration = std::time::Duration::from_secs(10);
    let mut cache = state.catalog.lock().expect("catalog lock");
    if let Some((at, cat)) = cache.as_ref()
        && at.elapsed() < FRESH
    {
        return Some(cat.clone());
    }
    let cat = catalog(reader)?;
    *cache = Some((std::time::Instant::now(), cat.clone()));
    Some(cat)
}

/// The store's names, for "did you mean" on events and properties.
fn catalog(reader: &StoreReader) -> Option<sequin_lang::Catalog> {
    let cat = reader.catalog().ok()?;
    Some(sequin_lang::Catalog::from_store(cat.names, cat.columns))
}

/// Checks `text` as it would be saved: together with the live definitions it does not
/// replace, so references to them resolve (and unit mismatches, cycles and near-miss names
/// are caught), with only the diagnostics that point into `text` kept.
fn check_text(text: &str, live: &SegFile, cat: Option<&sequin_lang::Catalog>) -> Value {
    let file = match parse(text) {
        Ok(f) => f,
        Err(d) => {
            return json!({ "ok": false, "names": [], "diagnostics": [diagnostic_json(&d, text)] });
        }
    };
    let names: Vec<&str> = file.items.iter().map(|i| i.name.name.as_str()).collect();
    // The text first, so that its spans stay its own; the rest of the live set after it.
    let rest = SegFile {
        items: live
            .items
            .iter()
            .filter(|i| !names.contains(&i.name.name.as_str()))
            .cloned()
            .collect(),
        signals: live
            .signals
            .iter()
            .filter(|b| !file.signals.iter().any(|n| n.signal.name == b.signal.name))
            .cloned()
            .collect(),
    };
    let combined_text = format!("{text}\n\n{}", sequin_lang::format_file(&rest));
    let diags: Vec<Diagnostic> = match parse(&combined_text) {
        Ok(combined) => check(&combined, cat)
            .into_iter()
            .filter(|d| d.span.start < text.len())
            .collect(),
        Err(_) => check(&file, cat),
    };
    let mut out: Vec<Value> = diags.iter().map(|d| diagnostic_json(d, text)).collect();
    if file.items.is_empty() {
        out.push(json!({
            "severity": "error", "message": "no definition yet", "hint": "start with `segment NAME { … }`",
            "line": 1, "column": 1, "end_line": 1, "end_column": 1,
            "rendered": "error: no definition yet\n  = hint: start with `segment NAME { … }`\n",
        }));
    }
    let ok = !diags.iter().any(Diagnostic::is_error) && !file.items.is_empty();
    json!({ "ok": ok, "names": names, "diagnostics": out })
}

/// `POST /api/check`: the body is definition text.
pub async fn check_definition(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: String,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, Access::Read)?;
    let live = live_file(&state);
    let reader = reader(&state);
    let st = state.clone();
    blocking(move || {
        let cat = cached_catalog(&st, &reader);
        Ok(Json(check_text(&body, &live, cat.as_ref())))
    })
    .await
}

/// The live definitions with `text`'s items in place of those of the same name.
fn with_text(live: SegFile, text: &str) -> Result<(SegFile, Vec<String>), ApiError> {
    let new = parse(text).map_err(|d| ApiError::BadRequest(d.render("definition", text)))?;
    let names: Vec<String> = new.items.iter().map(|i| i.name.name.clone()).collect();
    if names.is_empty() {
        return Err(ApiError::BadRequest("the text defines nothing".into()));
    }
    let SegFile {
        mut items,
        mut signals,
    } = live;
    items.retain(|i| !names.contains(&i.name.name));
    items.extend(new.items);
    signals.retain(|b| !new.signals.iter().any(|n| n.signal.name == b.signal.name));
    signals.extend(new.signals);
    let file = SegFile { items, signals };
    let errors: Vec<String> = check(&file, None)
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.message.clone())
        .collect();
    if !errors.is_empty() {
        return Err(ApiError::BadRequest(errors.join("\n")));
    }
    Ok((file, names))
}

/// `POST /api/preview`: evaluates the body's first definition over history, saving nothing.
pub async fn preview(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: String,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, Access::Read)?;
    let (file, names) = with_text(live_file(&state), &body)?;
    let reader = reader(&state);
    let gap = session_gap(&state);
    blocking(move || {
        let name = &names[0];
        let program =
            Program::compile(&file, name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let unit = format!("{:?}", program.unit).to_lowercase();
        let eval = evaluate(
            &reader,
            &[program],
            &EvalOptions {
                as_of: None,
                session_gap: gap,
            },
        )
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        let members = &eval.segments[0].members;
        Ok(Json(json!({
            "name": name,
            "unit": unit,
            "members": members.len(),
            "sample": members.iter().take(10).map(|m| m.unit.clone()).collect::<Vec<_>>(),
            "as_of": eval.as_of.map(format_rfc3339),
        })))
    })
    .await
}

/// Points of a history chart.
#[derive(Deserialize)]
pub struct Buckets {
    buckets: Option<usize>,
}

/// Members entering and leaving between two sorted member lists.
fn entries_and_exits(before: &[String], after: &[String]) -> (u64, u64) {
    let (mut i, mut j, mut entries, mut exits) = (0, 0, 0u64, 0u64);
    while i < before.len() || j < after.len() {
        match (before.get(i), after.get(j)) {
            (Some(a), Some(b)) if a == b => (i, j) = (i + 1, j + 1),
            (Some(a), Some(b)) if a < b => (i, exits) = (i + 1, exits + 1),
            (Some(_), None) => (i, exits) = (i + 1, exits + 1),
            _ => (j, entries) = (j + 1, entries + 1),
        }
    }
    (entries, exits)
}

/// `GET /api/segments/{name}/history`: the membership at `buckets` evenly spaced as-of
/// times, from the earliest entry of a current member to the latest event, each evaluated
/// over history by the engine as it would have stood then (so exits count, and a redefined
/// segment shows its new definition throughout), with the entries and exits between
/// consecutive points. One batch evaluation per point: the cost grows with the store.
pub async fn history(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<Buckets>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, Access::Read)?;
    let buckets = q.buckets.unwrap_or(30);
    if !(2..=120).contains(&buckets) {
        return Err(ApiError::BadRequest("buckets: 2 to 120 points".into()));
    }
    let first_entry = {
        let engine = state.live.engine.read().expect("engine lock");
        let members = engine
            .members(&name)
            .ok_or_else(|| ApiError::NotFound(format!("no segment named `{name}`")))?;
        members.values().min().copied()
    };
    let program = Program::compile(&live_file(&state), &name)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let reader = reader(&state);
    let gap = session_gap(&state);
    blocking(move || {
        let Some(latest) = reader.latest_time() else {
            return Ok(Json(json!({ "segment": name, "points": [] })));
        };
        let from = first_entry.unwrap_or(latest).min(latest);
        let step = ((latest - from) / (buckets as i64 - 1)).max(1);
        let mut points = Vec::with_capacity(buckets);
        let mut previous: Vec<String> = Vec::new();
        for b in 0..buckets {
            let as_of = if b + 1 == buckets {
                latest
            } else {
                from + step * b as i64
            };
            let eval = evaluate(
                &reader,
                std::slice::from_ref(&program),
                &EvalOptions {
                    as_of: Some(as_of),
                    session_gap: gap,
                },
            )
            .map_err(|e| ApiError::Internal(e.to_string()))?;
            let mut members: Vec<String> = eval.segments[0]
                .members
                .iter()
                .map(|m| m.unit.clone())
                .collect();
            members.sort_unstable();
            let (entries, exits) = entries_and_exits(&previous, &members);
            points.push(json!({
                "time": format_rfc3339(as_of),
                "size": members.len(),
                "entries": entries,
                "exits": exits,
            }));
            previous = members;
        }
        Ok(Json(json!({ "segment": name, "points": points })))
    })
    .await
}

/// Report parameters.
#[derive(Deserialize)]
pub struct ReportQuery {
    outcome: String,
    base: Option<String>,
    value: Option<String>,
}

/// `GET /api/segments/{name}/report?outcome=O`: the JSON of `sequin report`.
pub async fn report(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<ReportQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, Access::Read)?;
    let file = live_file(&state);
    let reader = reader(&state);
    let gap = session_gap(&state);
    blocking(move || {
        let r = sequin_insight::report::report(
            &reader,
            &file,
            &sequin_insight::report::ReportOptions {
                segment: name,
                outcome: q.outcome,
                base: q.base.filter(|b| !b.is_empty()),
                value: q.value.filter(|v| !v.trim().is_empty()),
                as_of: None,
                session_gap: gap,
            },
        )
        .map_err(insight_error)?;
        Ok(Json(serde_json::to_value(r).expect("report serializes")))
    })
    .await
}

/// Funnel parameters.
#[derive(Deserialize)]
pub struct FunnelQuery {
    by: Option<String>,
}

/// `GET /api/segments/{name}/funnel`: the JSON of `sequin funnel`.
pub async fn funnel(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<FunnelQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, Access::Read)?;
    let file = live_file(&state);
    let item = file
        .items
        .iter()
        .find(|i| i.name.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no segment named `{name}`")))?;
    if !sequin_insight::funnel::has_funnel(item) {
        return Err(ApiError::BadRequest(format!(
            "`{name}` has no sequence to draw as a funnel"
        )));
    }
    let reader = reader(&state);
    let gap = session_gap(&state);
    blocking(move || {
        let f = sequin_insight::funnel::funnel(
            &reader,
            &file,
            &name,
            &sequin_insight::funnel::FunnelOptions {
                as_of: None,
                session_gap: gap,
                by: q.by.filter(|b| !b.is_empty()),
                top_values: 6,
            },
        )
        .map_err(insight_error)?;
        Ok(Json(serde_json::to_value(f).expect("funnel serializes")))
    })
    .await
}

/// A CSV field, quoted when it needs to be. A key a spreadsheet would run as a formula
/// (`=…`, `+…`, `@…`, `-` not followed by a number) gets a leading `'`.
fn csv_field(s: &str) -> String {
    let formula =
        s.starts_with(['=', '+', '@']) || (s.starts_with('-') && s[1..].parse::<f64>().is_err());
    if formula {
        return csv_field(&format!("'{s}"));
    }
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `GET /api/segments/{name}/members.csv`.
pub async fn members_csv(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Access::Read)?;
    // A snapshot under the engine's lock, the text built off it (the evaluator writes
    // under that lock).
    let members: Vec<(String, i64)> = {
        let engine = state.live.engine.read().expect("engine lock");
        engine
            .members(&name)
            .ok_or_else(|| ApiError::NotFound(format!("no segment named `{name}`")))?
            .iter()
            .map(|(u, t)| (u.clone(), *t))
            .collect()
    };
    let out = blocking(move || {
        let mut out = String::from("unit,entered_at\n");
        for (unit, t) in &members {
            out.push_str(&csv_field(unit));
            out.push(',');
            out.push_str(&format_rfc3339(*t));
            out.push('\n');
        }
        Ok(out)
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.csv\"", name.replace('"', "")),
            ),
        ],
        out,
    )
        .into_response())
}

/// Replay parameters.
#[derive(Deserialize)]
pub struct ReplayQuery {
    start: Option<String>,
    steps: Option<usize>,
    sample: Option<usize>,
}

/// `GET /api/segments/{name}/replay`: Cohort Replay.
pub async fn replay(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<ReplayQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, Access::Read)?;
    use sequin_insight::replay::{ReplayOptions, ReplayStart};
    let start = match q.start.as_deref() {
        None | Some("session") => ReplayStart::Session,
        Some("entry") => ReplayStart::Entry,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "start={other}: expected `session` or `entry`"
            )));
        }
    };
    let steps = q.steps.unwrap_or(10);
    let sample = q.sample.unwrap_or(400);
    if !(1..=30).contains(&steps) || sample > 5000 {
        return Err(ApiError::BadRequest(
            "steps: 1 to 30; sample: at most 5000 journeys".into(),
        ));
    }
    let (unit, members): (_, FxHashMap<String, i64>) = {
        let engine = state.live.engine.read().expect("engine lock");
        let program = engine
            .programs()
            .find(|p| p.name == name)
            .ok_or_else(|| ApiError::NotFound(format!("no segment named `{name}`")))?;
        let members = engine.members(&name).expect("a program has members");
        (
            program.unit,
            members.iter().map(|(u, t)| (u.clone(), *t)).collect(),
        )
    };
    let config = sequin_signals::Config::from_file(&live_file(&state))
        .map_err(|d| ApiError::Internal(d.message))?;
    let reader = reader(&state);
    let gap = session_gap(&state);
    blocking(move || {
        let r = sequin_insight::replay::replay(
            &reader,
            &name,
            unit,
            &members,
            config,
            &ReplayOptions {
                start,
                steps,
                sample,
                session_gap: gap,
                ..ReplayOptions::default()
            },
        )
        .map_err(insight_error)?;
        Ok(Json(serde_json::to_value(r).expect("replay serializes")))
    })
    .await
}

/// Discovery parameters.
#[derive(Deserialize)]
pub struct DiscoverQuery {
    outcome: String,
    base: Option<String>,
    top: Option<usize>,
    max_length: Option<usize>,
    /// Comma-separated event names never offered as steps.
    exclude: Option<String>,
}

/// `GET /api/discover`: the JSON of `sequin discover`.
pub async fn discover(
    State(state): State<Arc<AppState>>,
    Query(q): Query<DiscoverQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, Access::Read)?;
    let top = q.top.unwrap_or(10);
    let max_length = q.max_length.unwrap_or(3);
    if !(1..=100).contains(&top) || !(1..=5).contains(&max_length) {
        return Err(ApiError::BadRequest(
            "top: 1 to 100; max_length: 1 to 5".into(),
        ));
    }
    let file = live_file(&state);
    let reader = reader(&state);
    let gap = session_gap(&state);
    blocking(move || {
        let d = sequin_insight::discover::discover(
            &reader,
            &file,
            &sequin_insight::discover::DiscoverOptions {
                outcome: q.outcome,
                base: q.base.filter(|b| !b.is_empty()),
                top,
                max_length,
                min_units: 30,
                fdr: 0.05,
                as_of: None,
                session_gap: gap,
                signals: true,
                exclude: q
                    .exclude
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                keep_outcome_steps: false,
                search_sample: Some(50_000),
            },
        )
        .map_err(insight_error)?;
        Ok(Json(serde_json::to_value(d).expect("discovery serializes")))
    })
    .await
}

/// Explain parameters.
#[derive(Deserialize)]
pub struct ExplainQuery {
    outcome: String,
    baseline: String,
    current: String,
    top: Option<usize>,
}

fn period(what: &str, text: &str) -> Result<(i64, i64), ApiError> {
    sequin_core::time::parse_period(text)
        .map_err(|why| ApiError::BadRequest(format!("{what}={text}: {why}")))
}

/// A saveable definition for an explain element over attributes (`os.name × app.version`
/// = `iOS × 17.3`); None for segment elements (already saved) and missing values.
fn element_definition(unit: &str, dimension: &str, value: &str) -> Option<String> {
    if dimension.starts_with("segment ") {
        return None;
    }
    let dims: Vec<&str> = dimension.split(" × ").collect();
    let vals: Vec<&str> = value.split(" × ").collect();
    if dims.len() != vals.len() || vals.iter().any(|v| v.starts_with('(')) {
        return None;
    }
    let conditions: Vec<String> = dims
        .iter()
        .zip(&vals)
        .map(|(d, v)| format!("{d} == {}", sequin_lang::fmt::quote(v)))
        .collect();
    let slug: String = dims
        .iter()
        .zip(&vals)
        .flat_map(|(d, v)| [*d, *v])
        .collect::<Vec<_>>()
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut name = slug
        .split('_')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert_str(0, "seg_");
    }
    let of = if unit == "users" {
        String::new()
    } else {
        format!(" of {unit}")
    };
    Some(format!(
        "segment {name}{of} {{\n    {}\n}}\n",
        conditions.join(" and ")
    ))
}

/// `GET /api/explain`: the JSON of `sequin explain`, elements with a `definition`.
pub async fn explain(
    State(state): State<Arc<AppState>>,
    Query(q): Query<ExplainQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, Access::Read)?;
    let baseline = period("baseline", &q.baseline)?;
    let current = period("current", &q.current)?;
    let file = live_file(&state);
    let reader = reader(&state);
    let gap = session_gap(&state);
    blocking(move || {
        let e = sequin_insight::explain::explain(
            &reader,
            &file,
            &sequin_insight::explain::ExplainOptions {
                outcome: q.outcome,
                baseline,
                current,
                by: Vec::new(),
                top: q.top.unwrap_or(10).clamp(1, 100),
                min_units: 30,
                min_share: 0.1,
                session_gap: gap,
            },
        )
        .map_err(insight_error)?;
        let mut v = serde_json::to_value(&e).expect("explanation serializes");
        if let Some(elements) = v["elements"].as_array_mut() {
            for (el, src) in elements.iter_mut().zip(&e.elements) {
                el["definition"] = json!(element_definition(&e.unit, &src.dimension, &src.value));
            }
        }
        Ok(Json(v))
    })
    .await
}

/// `GET /api/agents`: signal rates over conversations, conversation segments, examples.
pub async fn agents(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, Access::Read)?;
    let file = live_file(&state);
    let segments: Vec<Value> = {
        let engine = state.live.engine.read().expect("engine lock");
        engine
            .programs()
            .filter(|p| p.unit == sequin_lang::ast::UnitKind::Conversations)
            .map(|p| json!({ "name": p.name, "members": engine.members(&p.name).map_or(0, |m| m.len()) }))
            .collect()
    };
    let config =
        sequin_signals::Config::from_file(&file).map_err(|d| ApiError::Internal(d.message))?;
    let reader = reader(&state);
    let gap = session_gap(&state);
    blocking(move || {
        let o = sequin_insight::agents::agent_overview(&reader, config, gap, None, 60)
            .map_err(insight_error)?;
        let mut v = serde_json::to_value(&o).expect("overview serializes");
        v["segments"] = json!(segments);
        for ex in v["examples"].as_array_mut().into_iter().flatten() {
            for ev in ex["events"].as_array_mut().into_iter().flatten() {
                if let Some(t) = ev["time"].as_i64() {
                    ev["time"] = json!(format_rfc3339(t));
                }
            }
        }
        Ok(Json(v))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("u1"), "u1");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-12"), "-12");
        assert_eq!(csv_field("-x"), "'-x");
    }

    #[test]
    fn explain_elements_become_definitions_the_checker_accepts() {
        let d = element_definition("users", "os.name × app.version", "iOS × 17.3").unwrap();
        assert_eq!(
            d,
            "segment os_name_ios_app_version_17_3 {\n    os.name == \"iOS\" and app.version == \"17.3\"\n}\n"
        );
        let file = parse(&d).unwrap();
        assert!(check(&file, None).iter().all(|x| !x.is_error()));
        let s = element_definition("sessions", "device.type", "mobile").unwrap();
        assert!(s.starts_with("segment device_type_mobile of sessions {"));
        assert_eq!(element_definition("users", "segment slow", "member"), None);
        assert_eq!(element_definition("users", "os.name", "(none)"), None);
    }

    #[test]
    fn check_points_at_the_typo_and_resolves_live_references() {
        let live = parse("segment buyers { did purchase }").unwrap();
        let v = check_text(
            "segment x {\n    did purchase and in segment buyerz\n}",
            &live,
            None,
        );
        assert_eq!(v["ok"], false);
        let d = &v["diagnostics"][0];
        assert_eq!(
            (d["line"].as_u64(), d["severity"].as_str()),
            (Some(2), Some("error"))
        );
        assert!(d["rendered"].as_str().unwrap().contains('^'), "{d}");
        let v = check_text(
            "segment x { did purchase and in segment buyers }",
            &live,
            None,
        );
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["names"], json!(["x"]));
        // Checked against the live set: a near-miss name gets its hint, a unit mismatch is
        // caught, and replacing a live definition is not a duplicate.
        let v = check_text("segment x { in segment buyer }", &live, None);
        let hint = v["diagnostics"][0]["hint"].as_str().unwrap_or("");
        assert!(hint.contains("buyers"), "{v}");
        let v = check_text("segment x of sessions { in segment buyers }", &live, None);
        assert_eq!(v["ok"], false, "{v}");
        let v = check_text(
            "segment buyers during last 1d { did purchase }",
            &live,
            None,
        );
        assert_eq!(v["ok"], true, "{v}");
    }
}
