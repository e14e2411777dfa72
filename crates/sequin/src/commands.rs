//! Subcommand implementations.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use sequin_core::flat::FlatOptions;
use sequin_import::{ImportOptions, InputFormat, Progress};
use sequin_store::{Store, StoreOptions};

use crate::cli::{Cli, Command, DemoArgs, GenArgs, ImportArgs, StatsArgs};
use crate::segments;

/// Runs one command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Import(a) => import(a),
        Command::Stats(a) => stats(a),
        Command::Gen(a) => gen_cmd(a),
        Command::Demo(a) => demo(a),
        Command::Check(a) => segments::check(a),
        Command::Fmt(a) => segments::fmt(a),
        Command::Eval(a) => segments::eval(a),
        Command::Report(a) => crate::insight::report(a),
        Command::Funnel(a) => crate::insight::funnel(a),
        Command::Discover(a) => crate::insight::discover(a),
        Command::Explain(a) => crate::insight::explain(a),
        Command::AtRisk(a) => crate::insight::at_risk(a),
        Command::Mine(a) => crate::insight::mine(a),
        Command::Serve(a) => crate::serve::serve(a),
        Command::Load(a) => crate::load::load(a),
    }
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn update(&self, bytes: u64, events: u64) {
        self.0.set_position(bytes);
        self.0.set_message(format!("{events} events"));
    }
}

fn import(a: ImportArgs) -> Result<()> {
    let flat = FlatOptions {
        unit: a.unit.clone(),
        time: a.time.clone(),
        event: a.event.clone(),
        event_name: a.event_name.clone(),
        anonymous: a.anonymous.clone(),
        session: a.session.clone(),
        conversation: a.conversation.clone(),
        message_id: a.message_id.clone(),
        time_format: a
            .time_format
            .parse()
            .map_err(anyhow::Error::msg)
            .context("--time-format")?,
    };
    let format = a
        .input_format
        .as_deref()
        .map(str::parse::<InputFormat>)
        .transpose()
        .map_err(anyhow::Error::msg)
        .context("--input-format")?;
    let opts = ImportOptions {
        format,
        flat,
        strict: a.strict,
        rejects: a.rejects.clone(),
    };
    for f in &a.files {
        if !f.exists() {
            bail!("{}: no such file", f.display());
        }
    }
    let mut store = Store::open(
        &a.store,
        &StoreOptions {
            partitions: a.partitions,
            memtable_bytes: a.memtable_mb << 20,
            create: true,
            read_only: false,
            // Bulk history: no arrival numbers (see StoreOptions::keep_arrival).
            keep_arrival: false,
        },
    )
    .with_context(|| format!("opening store {}", a.store.display()))?;
    let mut ack_log = match &a.ack_log {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| p.display().to_string())?,
        ),
        None => None,
    };
    let mut total = 0u64;
    let mut rejected = 0u64;
    let started = Instant::now();
    let mut failure = None;
    for file in &a.files {
        let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        let bar = ProgressBar::new(size);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix} [{bar:30}] {bytes}/{total_bytes} {msg} ({eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(file.display().to_string());
        let t0 = Instant::now();
        let base = total;
        let mut on_ack = |n: u64| {
            if let Some(log) = ack_log.as_mut() {
                let _ = writeln!(log, "acked {}", base + n);
                let _ = log.flush();
            }
        };
        let result =
            sequin_import::import_file(&mut store, file, &opts, &Bar(bar.clone()), &mut on_ack);
        bar.finish_and_clear();
        match result {
            Ok(r) => {
                total += r.imported;
                rejected += r.rejected;
                let secs = t0.elapsed().as_secs_f64();
                eprintln!(
                    "{}: imported {} events from {} rows in {:.2}s ({:.0} events/s){}{}",
                    r.file,
                    r.imported,
                    r.rows,
                    secs,
                    r.imported as f64 / secs.max(1e-9),
                    if r.duplicates > 0 {
                        format!(", {} duplicates dropped", r.duplicates)
                    } else {
                        String::new()
                    },
                    if r.rejected > 0 {
                        format!(", {} rows rejected", r.rejected)
                    } else {
                        String::new()
                    },
                );
                for e in &r.first_errors {
                    eprintln!("  {e}");
                }
                if r.rejected > r.first_errors.len() as u64 {
                    eprintln!("  … and {} more", r.rejected - r.first_errors.len() as u64);
                }
                if let Some(p) = &r.rejects_file {
                    eprintln!("  rejected rows written to {}", p.display());
                }
            }
            Err(e) => {
                failure =
                    Some(anyhow::Error::new(e).context(format!("importing {}", file.display())));
                break;
            }
        }
    }
    if !a.no_compact {
        let t0 = Instant::now();
        store.compact().context("compacting the store")?;
        eprintln!("compacted history in {:.2}s", t0.elapsed().as_secs_f64());
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "total: {total} events in {secs:.2}s ({:.0} events/s){}",
        total as f64 / secs.max(1e-9),
        if rejected > 0 {
            format!(", {rejected} rows rejected")
        } else {
            String::new()
        }
    );
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn open_existing(dir: &Path) -> Result<Store> {
    Store::open(
        dir,
        &StoreOptions {
            create: false,
            ..Default::default()
        },
    )
    .with_context(|| format!("opening store {}", dir.display()))
}

fn stats(a: StatsArgs) -> Result<()> {
    let gap = sequin_core::time::parse_duration(&a.session_gap)
        .map_err(anyhow::Error::msg)
        .context("--session-gap")?;
    let store = open_existing(&a.store)?;
    let reader = store.reader();
    let s = sequin_store::stats::compute(&reader, gap)?;
    match a.format.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&s)?),
        "text" => print_stats(&s),
        other => bail!("unknown --format `{other}` (expected text or json)"),
    }
    Ok(())
}

fn print_stats(s: &sequin_store::stats::Stats) {
    println!("events         {}", s.events);
    println!("units (users)  {}", s.units);
    println!("sessions       {}", s.sessions);
    println!("conversations  {}", s.conversations);
    println!(
        "time range     {} .. {}",
        s.first_event.as_deref().unwrap_or("-"),
        s.last_event.as_deref().unwrap_or("-")
    );
    println!("\nevent names ({}):", s.event_names.len());
    for n in s.event_names.iter().take(30) {
        println!("  {:>10}  {}", n.count, n.name);
    }
    if s.event_names.len() > 30 {
        println!("  … {} more", s.event_names.len() - 30);
    }
    println!("\nmost common properties:");
    for p in s.properties.iter().take(20) {
        println!("  {:>10}  {} ({})", p.events, p.name, p.types.join("|"));
    }
}

fn gen_cmd(a: GenArgs) -> Result<()> {
    let cfg = sequin_gen::GenConfig {
        users: a.users,
        days: a.days,
        seed: a.seed,
        incident: a.incident,
    };
    let t0 = Instant::now();
    let report = sequin_gen::generate_to_file(&cfg, &a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!(
        "wrote {} events of {} users to {} in {:.2}s; ground truth in {}",
        report.events,
        report.users,
        a.out.display(),
        t0.elapsed().as_secs_f64(),
        report.truth_path.display()
    );
    Ok(())
}

/// Demo step 5: a report on a planted behaviour, and `explain` on the planted incident.
fn demo_insights(store: &Path, segments: &Path, truth: &Path) -> Result<()> {
    let report = |segment: &str, outcome: &str, value: Option<&str>| {
        crate::insight::report(crate::cli::ReportArgs {
            store: store.to_path_buf(),
            segments: segments.to_path_buf(),
            segment: segment.into(),
            outcome: outcome.into(),
            base: None,
            value: value.map(str::to_string),
            as_of: None,
            format: crate::cli::TextOrJson::Text,
            session_gap: "30m".into(),
        })
    };
    eprintln!(
        "$ sequin report --segment payment_4022_ios173 --outcome converted --value 'sum(purchase.amount)'"
    );
    report(
        "payment_4022_ios173",
        "converted",
        Some("sum(purchase.amount)"),
    )?;
    let truth: serde_json::Value = serde_json::from_slice(
        &std::fs::read(truth).with_context(|| truth.display().to_string())?,
    )?;
    let incident = &truth["incident"];
    if let (Some(start), Some(end)) = (incident["start"].as_str(), incident["end"].as_str()) {
        let day = |s: &str| s.get(..10).unwrap_or(s).to_string();
        let start_t = sequin_core::time::parse_text(start, sequin_core::time::TimeFormat::Auto)
            .map_err(anyhow::Error::msg)?;
        let week_before = sequin_core::time::format_rfc3339(start_t - 7 * sequin_core::time::DAY);
        let (baseline, current) = (
            format!("{}..{}", day(&week_before), day(start)),
            format!("{}..{}", day(start), day(end)),
        );
        eprintln!(
            "\n$ sequin explain --outcome purchased --baseline {baseline} --current {current}   (planted: {})",
            incident["segment"].as_str().unwrap_or("?")
        );
        crate::insight::explain(crate::cli::ExplainArgs {
            store: store.to_path_buf(),
            segments: segments.to_path_buf(),
            outcome: "purchased".into(),
            baseline,
            current,
            by: Vec::new(),
            top: 5,
            min_units: 30,
            min_share: 0.1,
            format: crate::cli::TextOrJson::Text,
            session_gap: "30m".into(),
        })?;
    }
    Ok(())
}

fn demo(a: DemoArgs) -> Result<()> {
    std::fs::create_dir_all(&a.dir).with_context(|| a.dir.display().to_string())?;
    let data = a.dir.join("events.ndjson.gz");
    let store_dir = a.dir.join("store");
    if store_dir.exists() {
        std::fs::remove_dir_all(&store_dir).with_context(|| store_dir.display().to_string())?;
    }
    eprintln!(
        "== 1/6 generate: {} users, 30 days → {}",
        a.users,
        data.display()
    );
    gen_cmd(GenArgs {
        out: data.clone(),
        users: a.users,
        days: 30,
        seed: a.seed,
        incident: true,
    })?;
    eprintln!("\n== 2/6 import → {}", store_dir.display());
    import(ImportArgs {
        store: store_dir.clone(),
        files: vec![data],
        unit: None,
        time: None,
        event: None,
        event_name: None,
        anonymous: None,
        session: None,
        conversation: None,
        message_id: None,
        time_format: "auto".into(),
        input_format: None,
        strict: false,
        rejects: None,
        partitions: 16,
        ack_log: None,
        no_compact: false,
        memtable_mb: 2048,
    })?;
    eprintln!("\n== 3/6 stats");
    stats(StatsArgs {
        store: store_dir.clone(),
        format: "text".into(),
        session_gap: "30m".into(),
    })?;
    let segments = a.dir.join("demo.seg");
    std::fs::write(&segments, include_str!("../../../examples/demo.seg"))
        .with_context(|| segments.display().to_string())?;
    let members = a.dir.join("members.csv");
    eprintln!(
        "\n== 4/6 evaluate {} → {}",
        segments.display(),
        members.display()
    );
    crate::segments::eval(crate::cli::EvalArgs {
        store: store_dir.clone(),
        segments: segments.clone(),
        segment: Vec::new(),
        as_of: None,
        format: crate::cli::MemberFormat::Csv,
        output: Some(members),
        session_gap: "30m".into(),
    })?;
    eprintln!("\n== 5/6 insights: outcome report, and what explains the incident week");
    demo_insights(
        &store_dir,
        &segments,
        &a.dir.join("events.ndjson.gz.truth.json"),
    )?;
    eprintln!("\n== 6/6 serve: the same segments live");
    crate::serve::demo_live(
        &store_dir,
        &segments,
        (!a.no_serve).then_some(a.serve.as_str()),
    )
}
