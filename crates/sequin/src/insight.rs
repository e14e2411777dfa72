//! Insight commands: `mine` (and the outcome, funnel, discovery and root-cause commands).

use std::io::{BufWriter, Write};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sequin_core::time::{TimeFormat, format_rfc3339, parse_duration, parse_text};
use sequin_insight::mine::{
    MineOptions, SequenceDb, absolute_support, prefixspan, store_sequences,
};
use sequin_insight::report::ReportOptions;
use sequin_lang::ast::UnitKind;
use sequin_store::StoreReader;

use crate::cli::{
    AtRiskArgs, DiscoverArgs, ExplainArgs, FunnelArgs, MineArgs, MineFormat, ReportArgs, TextOrJson,
};

pub fn mine(a: MineArgs) -> Result<()> {
    if !(a.min_support > 0.0 && a.min_support <= 1.0) {
        bail!(
            "--min-support {}: a share of sequences, above 0 and at most 1 (0.05 = 5%)",
            a.min_support
        );
    }
    let started = Instant::now();
    let unit: UnitKind = a.unit.into();
    let (db, what, from_store) = match (&a.store, &a.spmf) {
        (Some(store), _) => {
            let reader = StoreReader::open(store)
                .with_context(|| format!("opening store {}", store.display()))?;
            let gap = parse_duration(&a.session_gap)
                .map_err(anyhow::Error::msg)
                .context("--session-gap")?;
            (
                store_sequences(&reader, unit, gap, None)?,
                unit.keyword(),
                true,
            )
        }
        (None, Some(path)) => {
            let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
            let text = String::from_utf8(bytes)
                .with_context(|| format!("{}: not UTF-8 text", path.display()))?;
            (
                SequenceDb::parse_spmf(&text, &path.display().to_string())?,
                "sequences",
                false,
            )
        }
        (None, None) => bail!("give --store DIR or --spmf FILE"),
    };
    let loaded = started.elapsed().as_secs_f64();
    let min_support = absolute_support(a.min_support, db.len());
    let max_length = a.max_length.or(if from_store { Some(5) } else { None });
    let patterns = prefixspan(
        &db,
        MineOptions {
            min_support,
            max_length,
        },
    );
    let mined = started.elapsed().as_secs_f64() - loaded;
    let shown = &patterns[..a.limit.unwrap_or(usize::MAX).min(patterns.len())];
    let format = a.format.unwrap_or(if from_store {
        MineFormat::Text
    } else {
        MineFormat::Spmf
    });
    let mut out = BufWriter::new(std::io::stdout().lock());
    let share = |s: u32| s as f64 / db.len().max(1) as f64;
    match format {
        MineFormat::Spmf => {
            for p in shown {
                writeln!(out, "{}", p.spmf(&db))?;
            }
        }
        MineFormat::Text => {
            for p in shown {
                let items: Vec<String> = p
                    .itemsets
                    .iter()
                    .map(|set| {
                        let labels: Vec<&str> = set
                            .iter()
                            .map(|&x| db.labels[x as usize].as_str())
                            .collect();
                        if labels.len() == 1 {
                            labels[0].to_string()
                        } else {
                            format!("({})", labels.join(" "))
                        }
                    })
                    .collect();
                writeln!(
                    out,
                    "{:>9}  {:>6.2}%  {}",
                    p.support,
                    100.0 * share(p.support),
                    items.join(" → ")
                )?;
            }
        }
        MineFormat::Json => {
            let list: Vec<serde_json::Value> = shown
                .iter()
                .map(|p| {
                    let mut v = serde_json::json!({
                        "pattern": p.itemsets.iter().map(|set| {
                            set.iter().map(|&x| db.labels[x as usize].clone()).collect::<Vec<_>>()
                        }).collect::<Vec<_>>(),
                        "support": p.support,
                        "share": share(p.support),
                    });
                    if from_store && let Some(c) = p.sequence_criterion(&db) {
                        v["criterion"] = c.into();
                    }
                    v
                })
                .collect();
            serde_json::to_writer_pretty(
                &mut out,
                &serde_json::json!({
                    "sequences": db.len(),
                    "unit": if from_store { Some(unit.keyword()) } else { None },
                    "min_support": min_support,
                    "max_length": max_length,
                    "patterns_found": patterns.len(),
                    "patterns": list,
                }),
            )?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    eprintln!(
        "{} patterns with support ≥ {min_support} of {} {what} (read {loaded:.3}s, mined {mined:.4}s{})",
        patterns.len(),
        db.len(),
        match max_length {
            Some(l) => format!(", at most {l} items"),
            None => String::new(),
        }
    );
    Ok(())
}

/// Parses `--as-of`.
fn as_of(text: Option<&str>) -> Result<Option<i64>> {
    text.map(|t| parse_text(t, TimeFormat::Auto).map_err(anyhow::Error::msg))
        .transpose()
        .context("--as-of")
}

fn gap(text: &str) -> Result<i64> {
    parse_duration(text)
        .map_err(anyhow::Error::msg)
        .context("--session-gap")
}

fn open_store(path: &std::path::Path) -> Result<StoreReader> {
    StoreReader::open(path).with_context(|| format!("opening store {}", path.display()))
}

/// 12345 → "12,345".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn pct(x: f64) -> String {
    let p = 100.0 * x;
    if p != 0.0 && p.abs() < 0.1 {
        format!("{p:.2}%")
    } else {
        format!("{p:.1}%")
    }
}

fn p_text(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".into()
    } else {
        format!("p = {p:.3}")
    }
}

pub fn report(a: ReportArgs) -> Result<()> {
    let file = crate::segments::load_checked(&a.segments, None)?;
    let reader = open_store(&a.store)?;
    let opts = ReportOptions {
        segment: a.segment.clone(),
        outcome: a.outcome.clone(),
        base: a.base.clone(),
        value: a.value.clone(),
        as_of: as_of(a.as_of.as_deref())?,
        session_gap: gap(&a.session_gap)?,
    };
    let r = sequin_insight::report::report(&reader, &file, &opts)?;
    let mut out = std::io::stdout().lock();
    if a.format == TextOrJson::Json {
        serde_json::to_writer_pretty(&mut out, &r)?;
        writeln!(out)?;
        return Ok(());
    }
    let c = &r.comparison;
    let unit = &r.unit;
    writeln!(
        out,
        "{} {unit} ({} of {}) are in `{}` as of {}.",
        thousands(r.members.units),
        pct(r.share_of_population),
        r.population,
        r.segment,
        format_rfc3339(r.as_of)
    )?;
    let likely = match c.relative_risk {
        Some(rr) if rr.value.is_finite() && rr.value < 1.0 => format!(
            "{} less likely to reach `{}` (95% CI {} to {})",
            pct(1.0 - rr.value),
            r.outcome,
            pct(1.0 - rr.high),
            pct(1.0 - rr.low)
        ),
        Some(rr) if rr.value.is_finite() && rr.value < 2.0 => format!(
            "{} more likely to reach `{}` (95% CI {} to {})",
            pct(rr.value - 1.0),
            r.outcome,
            pct(rr.low - 1.0),
            pct(rr.high - 1.0)
        ),
        Some(rr) if rr.value.is_finite() => format!(
            "{:.1}× as likely to reach `{}` (95% CI {:.1}–{:.1}×)",
            rr.value, r.outcome, rr.low, rr.high
        ),
        _ => format!(
            "not comparable on `{}` (a group has no decided units or no outcome)",
            r.outcome
        ),
    };
    writeln!(
        out,
        "Members are {likely}: {} ({}–{}) of {} reach it, against {} ({}–{}) of the other {}; a difference of {:+.1} points (95% CI {:+.1} to {:+.1}), {} ({}).",
        pct(c.members.rate),
        pct(c.members.low),
        pct(c.members.high),
        thousands(c.members.total),
        pct(c.non_members.rate),
        pct(c.non_members.low),
        pct(c.non_members.high),
        thousands(c.non_members.total),
        100.0 * c.difference.value,
        100.0 * c.difference.low,
        100.0 * c.difference.high,
        p_text(c.p_value),
        match c.test {
            sequin_insight::stats::Test::FisherExact => "Fisher's exact test",
            sequin_insight::stats::Test::TwoProportionZ => "two-proportion z-test",
        }
    )?;
    if let Some(v) = &r.value_at_stake {
        let verb = if v.per_quarter >= 0.0 {
            "at stake"
        } else {
            "gained by members"
        };
        writeln!(
            out,
            "Value {verb}: {:.0} per quarter in {}.\n  formula: {}",
            v.per_quarter.abs(),
            v.measure,
            v.formula
        )?;
    }
    if r.members.pending + r.non_members.pending > 0 {
        writeln!(
            out,
            "Pending (outcome horizon {} reaches past the data, {}): {} members, {} non-members, left out of the rates.",
            r.horizon_micros
                .map_or("-".into(), sequin_lang::fmt::duration),
            format_rfc3339(r.observed_until),
            thousands(r.members.pending),
            thousands(r.non_members.pending)
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<14} {:>10} {:>10} {:>10} {:>9} {:>17}",
        "group", "units", "decided", "reached", "rate", "95% CI"
    )?;
    for (label, g, rate) in [
        ("members", r.members, c.members),
        ("non-members", r.non_members, c.non_members),
    ] {
        writeln!(
            out,
            "{label:<14} {:>10} {:>10} {:>10} {:>9} {:>17}",
            g.units,
            g.decided,
            g.reached,
            pct(rate.rate),
            format!("{}–{}", pct(rate.low), pct(rate.high))
        )?;
    }
    if let Some(rr) = c.relative_risk {
        writeln!(
            out,
            "relative risk {:.3} (95% CI {:.3}–{:.3}{}), p-value {:.3e}",
            rr.value,
            rr.low,
            rr.high,
            if c.relative_risk_corrected {
                ", 0.5 added to each cell for a zero count"
            } else {
                ""
            },
            c.p_value
        )?;
    }
    Ok(())
}

pub fn funnel(a: FunnelArgs) -> Result<()> {
    let (file, name) = match (&a.segments, &a.segment, &a.steps) {
        (Some(path), Some(name), _) => (crate::segments::load_checked(path, None)?, name.clone()),
        (_, _, Some(steps)) => {
            let unit: UnitKind = a.unit.into();
            let within = match &a.within {
                Some(w) => {
                    parse_duration(w)
                        .map_err(anyhow::Error::msg)
                        .context("--within")?;
                    format!(" within {w}")
                }
                None => String::new(),
            };
            let src = format!(
                "segment funnel of {} {{ sequence{within} {{ {steps} }} }}",
                unit.keyword()
            );
            let file = match sequin_lang::parse(&src) {
                Ok(f) => f,
                Err(d) => bail!("{}", d.render("--steps", &src).trim_end()),
            };
            if let Some(d) = sequin_lang::check(&file, None)
                .into_iter()
                .find(|d| d.is_error())
            {
                bail!("{}", d.render("--steps", &src).trim_end());
            }
            (file, "funnel".to_string())
        }
        _ => bail!("give --segments FILE --segment NAME, or --steps"),
    };
    let reader = open_store(&a.store)?;
    let f = sequin_insight::funnel::funnel(
        &reader,
        &file,
        &name,
        &sequin_insight::funnel::FunnelOptions {
            as_of: as_of(a.as_of.as_deref())?,
            session_gap: gap(&a.session_gap)?,
            by: a.by.clone(),
            top_values: a.top,
        },
    )?;
    let mut out = std::io::stdout().lock();
    if a.format == TextOrJson::Json {
        serde_json::to_writer_pretty(&mut out, &f)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "funnel `{}` of {} as of {}",
        f.segment,
        f.unit,
        format_rfc3339(f.as_of)
    )?;
    let table = |out: &mut dyn Write, steps: &[sequin_insight::funnel::FunnelStep]| -> Result<()> {
        writeln!(
            out,
            "  {:<4} {:>10} {:>10} {:>10} {:>14}  step",
            "#", "units", "from prev", "overall", "median gap"
        )?;
        for (i, s) in steps.iter().enumerate() {
            writeln!(
                out,
                "  {:<4} {:>10} {:>10} {:>10} {:>14}  {}",
                i + 1,
                thousands(s.units),
                pct(s.conversion_from_previous),
                pct(s.conversion_from_start),
                s.median_from_previous_micros
                    .map_or("-".to_string(), human_duration),
                s.step
            )?;
        }
        Ok(())
    };
    table(&mut out, &f.steps)?;
    if let Some(by) = &f.by {
        for b in &f.breakdown {
            writeln!(out, "\n{by} = {}", b.value)?;
            table(&mut out, &b.steps)?;
        }
    }
    Ok(())
}

/// 93_000_000 µs → "1m 33s".
pub fn human_duration(us: i64) -> String {
    let s = us.abs() as f64 / 1e6;
    let sign = if us < 0 { "-" } else { "" };
    if s < 1.0 {
        format!("{sign}{:.0}ms", s * 1e3)
    } else if s < 60.0 {
        format!("{sign}{s:.1}s")
    } else if s < 3600.0 {
        format!("{sign}{}m {:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else if s < 86400.0 {
        format!(
            "{sign}{}h {:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    } else {
        format!(
            "{sign}{}d {:02}h",
            (s / 86400.0) as u64,
            ((s % 86400.0) / 3600.0) as u64
        )
    }
}

pub fn discover(a: DiscoverArgs) -> Result<()> {
    let file = crate::segments::load_checked(&a.segments, None)?;
    let reader = open_store(&a.store)?;
    if !(a.fdr > 0.0 && a.fdr <= 1.0) {
        bail!("--fdr {}: a rate above 0 and at most 1", a.fdr);
    }
    let started = Instant::now();
    let d = sequin_insight::discover::discover(
        &reader,
        &file,
        &sequin_insight::discover::DiscoverOptions {
            outcome: a.outcome.clone(),
            base: a.base.clone(),
            top: a.top,
            max_length: a.max_length,
            min_units: a.min_units,
            fdr: a.fdr,
            as_of: as_of(a.as_of.as_deref())?,
            session_gap: gap(&a.session_gap)?,
            signals: !a.no_signals,
            exclude: a.exclude.clone(),
            keep_outcome_steps: a.keep_outcome_steps,
            search_sample: (a.search_sample > 0).then_some(a.search_sample),
        },
    )?;
    let mut out = std::io::stdout().lock();
    if a.format == TextOrJson::Json {
        serde_json::to_writer_pretty(&mut out, &d)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "# discover `{}` over {} {} (outcome rate {}): {} items, {} candidates scored{}, {} verified, {} findings",
            d.outcome,
            thousands(d.population_units),
            d.population,
            pct(d.population_rate),
            thousands(d.items as u64),
            thousands(d.candidates_scored),
            if d.searched_units < d.population_units {
                format!(" on a sample of {} units", thousands(d.searched_units))
            } else {
                String::new()
            },
            d.candidates_verified,
            d.findings.len()
        )?;
        if !d.outcome_steps.is_empty() {
            let shown: Vec<&str> = d.outcome_steps.iter().take(8).map(String::as_str).collect();
            writeln!(
                out,
                "# left out as steps of the outcome itself (--keep-outcome-steps offers them): {}{}",
                shown.join(", "),
                if d.outcome_steps.len() > shown.len() {
                    format!(" and {} more", d.outcome_steps.len() - shown.len())
                } else {
                    String::new()
                }
            )?;
        }
        for f in &d.findings {
            let c = &f.comparison;
            writeln!(
                out,
                "\n# {}. {} {} ({} of the population): {} reach `{}` against {} for the rest; relative risk {}, q = {:.2e}, impact {:.0} {}",
                f.rank,
                thousands(f.members),
                d.unit,
                pct(f.share),
                pct(c.members.rate),
                d.outcome,
                pct(c.non_members.rate),
                c.relative_risk
                    .map_or("-".into(), |r| format!("{:.2}", r.value)),
                f.q_value,
                f.impact,
                d.unit
            )?;
            write!(out, "{}", f.definition)?;
        }
    }
    eprintln!("discovered in {:.2}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `START..END` → (start, end), µs.
fn period(flag: &str, text: &str) -> Result<(i64, i64)> {
    sequin_core::time::parse_period(text).map_err(|why| anyhow::anyhow!("{flag} {text}: {why}"))
}

pub fn explain(a: ExplainArgs) -> Result<()> {
    let file = crate::segments::load_checked(&a.segments, None)?;
    let reader = open_store(&a.store)?;
    let e = sequin_insight::explain::explain(
        &reader,
        &file,
        &sequin_insight::explain::ExplainOptions {
            outcome: a.outcome.clone(),
            baseline: period("--baseline", &a.baseline)?,
            current: period("--current", &a.current)?,
            by: a.by.clone(),
            top: a.top,
            min_units: a.min_units,
            min_share: a.min_share,
            session_gap: gap(&a.session_gap)?,
        },
    )?;
    let mut out = std::io::stdout().lock();
    if a.format == TextOrJson::Json {
        serde_json::to_writer_pretty(&mut out, &e)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "`{}` moved from {} ({} of {} {}) to {} ({} of {}): {:+.2} points.",
        e.outcome,
        pct(e.baseline.rate),
        thousands(e.baseline.reached),
        thousands(e.baseline.decided),
        e.unit,
        pct(e.current.rate),
        thousands(e.current.reached),
        thousands(e.current.decided),
        100.0 * e.change
    )?;
    writeln!(
        out,
        "\n{:>7} {:>9}  {:>16} {:>16}  element",
        "share", "surprise", "baseline", "current"
    )?;
    for el in &e.elements {
        writeln!(
            out,
            "{:>7} {:>9.4}  {:>16} {:>16}  {} = {}",
            pct(el.share),
            el.surprise,
            format!(
                "{} of {}",
                pct(el.baseline.rate),
                thousands(el.baseline.decided)
            ),
            format!(
                "{} of {}",
                pct(el.current.rate),
                thousands(el.current.decided)
            ),
            el.dimension,
            el.value
        )?;
    }
    Ok(())
}

pub fn at_risk(a: AtRiskArgs) -> Result<()> {
    let file = crate::segments::load_checked(&a.segments, None)?;
    let reader = open_store(&a.store)?;
    let r = sequin_insight::at_risk::at_risk(
        &reader,
        &file,
        &sequin_insight::at_risk::AtRiskOptions {
            outcome: a.outcome.clone(),
            base: a.base.clone(),
            top: a.top,
            fdr: a.fdr,
            as_of: as_of(a.as_of.as_deref())?,
            session_gap: gap(&a.session_gap)?,
        },
    )?;
    let mut out = std::io::stdout().lock();
    if a.format == TextOrJson::Json {
        serde_json::to_writer_pretty(&mut out, &r)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{} of {} segments precede `{}`; {} units are in them with the outcome still open.",
        r.preceding.len(),
        r.segments_tried,
        r.outcome,
        thousands(r.units_at_risk)
    )?;
    for p in &r.preceding {
        let c = &p.report.comparison;
        writeln!(
            out,
            "  {:<32} {} of members reach it vs {} (relative risk {:.2}, q = {:.2e}); {} at risk now",
            p.segment,
            pct(c.members.rate),
            pct(c.non_members.rate),
            c.relative_risk.map_or(f64::NAN, |x| x.value),
            p.q_value,
            thousands(p.at_risk_now)
        )?;
    }
    if !r.units.is_empty() {
        writeln!(
            out,
            "\n{:>6}  {:<28} {:<24}  segments",
            "risk", "unit", "entered"
        )?;
        for u in &r.units {
            writeln!(
                out,
                "{:>6}  {:<28} {:<24}  {}",
                pct(u.risk),
                u.unit,
                format_rfc3339(u.entered_at),
                u.segments.join(", ")
            )?;
        }
    }
    Ok(())
}
