//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Sequin: behavioral segments over every event of every user.
#[derive(Debug, Parser)]
#[command(name = "sequin", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The one-command tour: generate data, import it, summarise it, evaluate example segments.
    Demo(DemoArgs),
    /// Generate realistic synthetic telemetry (Segment NDJSON, or Parquet) with planted behaviours.
    Gen(GenArgs),
    /// Import event files (NDJSON, CSV, Parquet; .gz too) into a store.
    Import(ImportArgs),
    /// Summarise a store: events, units, sessions, conversations, names, properties.
    Stats(StatsArgs),
    /// Check a segment file: syntax, references, and (with --store) unknown names.
    Check(CheckArgs),
    /// Print a segment file in canonical form.
    Fmt(FmtArgs),
    /// Evaluate segments over a store: one row per member.
    Eval(EvalArgs),
    /// How a segment's members fare on an outcome against the rest of the population.
    Report(ReportArgs),
    /// Step-by-step conversion through a sequence: counts, conversion, median time between
    /// steps, optionally broken down by an attribute.
    Funnel(FunnelArgs),
    /// Find the behaviours whose units differ most in an outcome; each finding is a
    /// ready-to-save segment definition.
    Discover(DiscoverArgs),
    /// Which segments and attribute values explain most of a change in an outcome rate
    /// between two periods.
    Explain(ExplainArgs),
    /// The segments that precede an outcome (e.g. churn) and the units in them now.
    AtRisk(AtRiskArgs),
    /// Frequent sequential patterns over a store's units, or over an SPMF sequence file.
    Mine(MineArgs),
    /// Serve Segment-compatible ingest and live segments over HTTP.
    Serve(ServeArgs),
    /// Replay a Segment NDJSON file against a server; report throughput and latency.
    Load(LoadArgs),
}

/// What a definition or an analysis groups.
#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum UnitArg {
    /// People.
    Users,
    /// Sessions.
    Sessions,
    /// Conversations.
    Conversations,
}

impl From<UnitArg> for sequin_lang::ast::UnitKind {
    fn from(u: UnitArg) -> Self {
        match u {
            UnitArg::Users => sequin_lang::ast::UnitKind::Users,
            UnitArg::Sessions => sequin_lang::ast::UnitKind::Sessions,
            UnitArg::Conversations => sequin_lang::ast::UnitKind::Conversations,
        }
    }
}

/// Output formats of `mine`.
#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum MineFormat {
    /// Readable: support, share, pattern (and for a store, the segment criterion).
    Text,
    /// One JSON document with every pattern.
    Json,
    /// SPMF's output lines: `a -1 b -1 #SUP: n`.
    Spmf,
}

/// Text or JSON.
#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum TextOrJson {
    /// Plain words first, then the figures.
    Text,
    /// Every figure under stable field names.
    Json,
}

/// `sequin report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Store directory.
    #[arg(long)]
    pub store: PathBuf,
    /// Segment file (.seg) holding the segment, the outcome and the base.
    #[arg(long)]
    pub segments: PathBuf,
    /// The segment whose members are compared.
    #[arg(long)]
    pub segment: String,
    /// The outcome (evaluated after each unit's anchor).
    #[arg(long)]
    pub outcome: String,
    /// The population: a base segment [default: units active in the segment's window].
    #[arg(long)]
    pub base: Option<String>,
    /// A value measure for the value at stake, e.g. `sum(purchase.amount)`.
    #[arg(long)]
    pub value: Option<String>,
    /// When membership is taken: RFC 3339 or epoch s/ms/µs [default: the latest event].
    /// Outcomes still see all data after it.
    #[arg(long)]
    pub as_of: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: TextOrJson,
    /// Inactivity that ends a session or conversation.
    #[arg(long, default_value = "30m")]
    pub session_gap: String,
}

/// `sequin funnel`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("funnel").required(true).args(["segment", "steps"])))]
pub struct FunnelArgs {
    /// Store directory.
    #[arg(long)]
    pub store: PathBuf,
    /// Segment file (.seg), with --segment.
    #[arg(long, requires = "segment")]
    pub segments: Option<PathBuf>,
    /// A sequence segment of --segments: its positive steps are the funnel's steps.
    #[arg(long, requires = "segments")]
    pub segment: Option<String>,
    /// Or the steps themselves, as a sequence body: 'page_view where page == "pricing";
    /// checkout_start; purchase'.
    #[arg(long, conflicts_with = "segments")]
    pub steps: Option<String>,
    /// With --steps: the whole funnel within this span (first to last step), e.g. 7d.
    #[arg(long, requires = "steps")]
    pub within: Option<String>,
    /// With --steps: what converts.
    #[arg(long, value_enum, default_value = "users")]
    pub unit: UnitArg,
    /// Break down by a unit attribute, e.g. device.type.
    #[arg(long)]
    pub by: Option<String>,
    /// Attribute values shown in the breakdown (the rest as `(other)`).
    #[arg(long, default_value_t = 8)]
    pub top: usize,
    /// "Now": RFC 3339 or epoch s/ms/µs [default: the latest event time].
    #[arg(long)]
    pub as_of: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: TextOrJson,
    /// Inactivity that ends a session or conversation.
    #[arg(long, default_value = "30m")]
    pub session_gap: String,
}

/// `sequin discover`.
#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Store directory.
    #[arg(long)]
    pub store: PathBuf,
    /// Segment file (.seg) holding the outcome (and the base).
    #[arg(long)]
    pub segments: PathBuf,
    /// The outcome to explain; its unit kind is what discovery groups.
    #[arg(long)]
    pub outcome: String,
    /// The population: a base segment [default: every unit with behaviour].
    #[arg(long)]
    pub base: Option<String>,
    /// Findings to print.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Longest event pattern, in steps.
    #[arg(long, default_value_t = 3)]
    pub max_length: usize,
    /// Smallest group worth a rate (members, and items seen at least this often).
    #[arg(long, default_value_t = 30)]
    pub min_units: u64,
    /// False-discovery rate (Benjamini–Hochberg over every candidate scored).
    #[arg(long, default_value_t = 0.05)]
    pub fdr: f64,
    /// "Now": RFC 3339 or epoch s/ms/µs [default: the latest event time].
    #[arg(long)]
    pub as_of: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: TextOrJson,
    /// Inactivity that ends a session or conversation.
    #[arg(long, default_value = "30m")]
    pub session_gap: String,
    /// Leave derived signals (`signal.rage_click` …) out of the candidates.
    #[arg(long)]
    pub no_signals: bool,
    /// Never offer this event as a step (repeatable).
    #[arg(long, value_name = "EVENT")]
    pub exclude: Vec<String>,
    /// Offer steps of the outcome itself too (by default, events without which almost no
    /// unit reaches the outcome, such as the `payment_submit` before every `purchase`, are
    /// found and left out).
    #[arg(long)]
    pub keep_outcome_steps: bool,
    /// Search a uniform sample of about this many units when the population is larger; the
    /// candidates are still verified on every unit (0: search every unit).
    #[arg(long, default_value_t = 50_000)]
    pub search_sample: usize,
}

/// `sequin explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Store directory.
    #[arg(long)]
    pub store: PathBuf,
    /// Segment file (.seg): the outcome, and segments (of its unit kind) used as dimensions.
    #[arg(long)]
    pub segments: PathBuf,
    /// The outcome whose rate changed.
    #[arg(long)]
    pub outcome: String,
    /// Baseline period START..END (RFC 3339 times or dates; END excluded).
    #[arg(long)]
    pub baseline: String,
    /// Current period START..END.
    #[arg(long)]
    pub current: String,
    /// Attributes to break down by, comma-separated [default: every attribute with 2–30
    /// values].
    #[arg(long, value_delimiter = ',')]
    pub by: Vec<String>,
    /// Elements to print.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Smallest element considered (decided units in either period).
    #[arg(long, default_value_t = 30)]
    pub min_units: u64,
    /// Smallest share of the change an element must carry to be listed.
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    pub min_share: f64,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: TextOrJson,
    /// Inactivity that ends a session or conversation.
    #[arg(long, default_value = "30m")]
    pub session_gap: String,
}

/// `sequin at-risk`.
#[derive(Debug, Args)]
pub struct AtRiskArgs {
    /// Store directory.
    #[arg(long)]
    pub store: PathBuf,
    /// Segment file (.seg): the outcome, and the segments to try.
    #[arg(long)]
    pub segments: PathBuf,
    /// The outcome (e.g. churned).
    #[arg(long)]
    pub outcome: String,
    /// The population: a base segment [default: active units].
    #[arg(long)]
    pub base: Option<String>,
    /// Units to list.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// False-discovery rate (Benjamini–Hochberg over the segments tried).
    #[arg(long, default_value_t = 0.05)]
    pub fdr: f64,
    /// "Now": RFC 3339 or epoch s/ms/µs [default: the latest event time].
    #[arg(long)]
    pub as_of: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: TextOrJson,
    /// Inactivity that ends a session or conversation.
    #[arg(long, default_value = "30m")]
    pub session_gap: String,
}

/// `sequin mine`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["store", "spmf"])))]
pub struct MineArgs {
    /// Store whose units' event sequences to mine.
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// SPMF sequence file (a line per sequence, itemsets ended by -1, the line by -2).
    #[arg(long)]
    pub spmf: Option<PathBuf>,
    /// Minimum support, as a share of sequences (0–1]; absolute support is
    /// ceil(S × sequences).
    #[arg(long)]
    pub min_support: f64,
    /// Longest pattern, in items [default: unlimited for --spmf, 5 for a store, whose long
    /// event histories otherwise yield astronomically many patterns].
    #[arg(long)]
    pub max_length: Option<usize>,
    /// What a sequence is, for a store.
    #[arg(long, value_enum, default_value = "users")]
    pub unit: UnitArg,
    /// Inactivity that ends a session or conversation.
    #[arg(long, default_value = "30m")]
    pub session_gap: String,
    /// Print at most this many patterns (all are counted).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Output format [default: text for a store, spmf for --spmf].
    #[arg(long, value_enum)]
    pub format: Option<MineFormat>,
}

/// `sequin load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Segment NDJSON file (e.g. from `sequin gen`).
    pub file: PathBuf,
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Write key.
    #[arg(long, env = "SEQUIN_WRITE_KEY", hide_env_values = true)]
    pub write_key: String,
    /// Read key: also measure acknowledgement → membership change over the change stream.
    #[arg(long, env = "SEQUIN_READ_KEY", hide_env_values = true)]
    pub read_key: Option<String>,
    /// Target events per second (0: as fast as the server takes them).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Events per request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Send at most this many events.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Append the message ids of acknowledged events to this file (one per line).
    #[arg(long)]
    pub acked: Option<PathBuf>,
    /// Order of replay. Either way each device's messages go through one connection in
    /// order, as one SDK instance sends them.
    #[arg(long, value_enum, default_value_t = ReplayOrder::Time)]
    pub order: ReplayOrder,
}

/// How `sequin load` orders the file's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplayOrder {
    /// By event time, as live traffic arrives.
    Time,
    /// As written (a file from `sequin gen` holds user after user: replayed this way, nearly
    /// every event is older than the watermark, as in a backfill).
    File,
}

/// `sequin serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Store directory (created if missing).
    #[arg(long)]
    pub store: PathBuf,
    /// Segment definitions to start with. Once definitions change through the API, the
    /// store keeps its own copy (STORE/live/segments.seg), which then takes precedence.
    #[arg(long)]
    pub segments: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Key for ingest (HTTP Basic `writeKey:`). Generated and printed when absent.
    #[arg(long, env = "SEQUIN_WRITE_KEY", hide_env_values = true)]
    pub write_key: Option<String>,
    /// Key for reading memberships (bearer). Generated and printed when absent.
    #[arg(long, env = "SEQUIN_READ_KEY", hide_env_values = true)]
    pub read_key: Option<String>,
    /// Key for managing definitions (bearer). Generated and printed when absent.
    #[arg(long, env = "SEQUIN_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// How far the watermark trails the largest event time seen.
    #[arg(long, default_value = "5s")]
    pub lateness: String,
    /// Inactivity that ends a session or conversation.
    #[arg(long, default_value = "30m")]
    pub session_gap: String,
    /// Do not move the watermark with the wall clock while no events arrive (for
    /// replaying old data and for tests).
    #[arg(long)]
    pub no_idle_advance: bool,
    /// Flush accepted events to columnar history after about this many MB.
    #[arg(long, default_value_t = 256)]
    pub memtable_mb: usize,
    /// Checkpoint live state this often (a restart then replays only the log after it).
    #[arg(long, default_value = "30s")]
    pub checkpoint_every: String,
    /// Hold acknowledgements back while this many accepted events wait for live
    /// evaluation (0: no limit). Bounds memory and the delay of membership under
    /// sustained overload; a backfill of new definitions is never held back.
    #[arg(long, default_value_t = 200_000)]
    pub max_backlog: u64,
}

/// `sequin check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Segment file (.seg).
    pub file: PathBuf,
    /// Store whose event names and properties to check against ("did you mean").
    #[arg(long)]
    pub store: Option<PathBuf>,
}

/// `sequin fmt`.
#[derive(Debug, Args)]
pub struct FmtArgs {
    /// Segment file (.seg).
    pub file: PathBuf,
    /// Rewrite the file in place instead of printing.
    #[arg(long)]
    pub write: bool,
}

/// Output formats for members.
#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum MemberFormat {
    /// `segment,unit,entered_at` with a header.
    Csv,
    /// One JSON object per line.
    Ndjson,
}

/// `sequin eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Store directory.
    #[arg(long)]
    pub store: PathBuf,
    /// Segment file (.seg).
    #[arg(long)]
    pub segments: PathBuf,
    /// Evaluate only these segments (repeatable) [default: every segment in the file].
    #[arg(long = "segment")]
    pub segment: Vec<String>,
    /// "Now": RFC 3339 or epoch seconds/ms/µs [default: the latest event time in the store].
    #[arg(long)]
    pub as_of: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: MemberFormat,
    /// Write members here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Inactivity that ends a session or conversation.
    #[arg(long, default_value = "30m")]
    pub session_gap: String,
}

/// `sequin import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Store directory (created if missing).
    #[arg(long)]
    pub store: PathBuf,
    /// Files to import.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Column holding the unit (user) key [default: user_id, case_id, conversation_id, … if present].
    #[arg(long)]
    pub unit: Option<String>,
    /// Column holding the event time [default: timestamp, ts, time, date].
    #[arg(long)]
    pub time: Option<String>,
    /// Column holding the event name [default: event, activity, type, name].
    #[arg(long)]
    pub event: Option<String>,
    /// Event name for every row, for inputs without an event column (e.g. a purchases table).
    #[arg(long)]
    pub event_name: Option<String>,
    /// Column holding an anonymous id.
    #[arg(long)]
    pub anonymous: Option<String>,
    /// Column holding a session id [default: session_id if present].
    #[arg(long)]
    pub session: Option<String>,
    /// Column holding a conversation id [default: conversation_id if present].
    #[arg(long)]
    pub conversation: Option<String>,
    /// Column holding a message id used to drop duplicates [default: message_id if present].
    #[arg(long)]
    pub message_id: Option<String>,
    /// How times are written: auto, rfc3339, s, ms, us, ns.
    #[arg(long, default_value = "auto")]
    pub time_format: String,
    /// Input format: ndjson, csv, parquet [default: from the file name].
    #[arg(long)]
    pub input_format: Option<String>,
    /// Stop at the first bad row; nothing of that file is imported.
    #[arg(long)]
    pub strict: bool,
    /// Where to write rejected rows [default: STORE/rejects/FILE.rejects.ndjson].
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    /// Partitions of a new store.
    #[arg(long, default_value_t = 16)]
    pub partitions: usize,
    /// Append "acked N" lines to this file after every durable append (for scripts and crash tests).
    #[arg(long)]
    pub ack_log: Option<PathBuf>,
    /// Leave the imported events in the log and memtable runs (skip the final compaction).
    #[arg(long)]
    pub no_compact: bool,
    /// Flush the in-memory table to history whenever it holds about this many MiB.
    #[arg(long, default_value_t = 2048)]
    pub memtable_mb: usize,
}

/// `sequin stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Store directory.
    #[arg(long)]
    pub store: PathBuf,
    /// Output format: text or json.
    #[arg(long, default_value = "text")]
    pub format: String,
    /// Inactivity that ends a session.
    #[arg(long, default_value = "30m")]
    pub session_gap: String,
}

/// `sequin gen`.
#[derive(Debug, Args)]
pub struct GenArgs {
    /// Output file: .ndjson (Segment messages), .ndjson.gz, or .parquet.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of users.
    #[arg(long, default_value_t = 10_000)]
    pub users: u64,
    /// Days of activity.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Random seed (same seed, same output).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Plant an incident: one week in which checkout conversion drops for one segment.
    #[arg(long)]
    pub incident: bool,
}

/// `sequin demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Working directory for the generated file and the store.
    #[arg(long, default_value = "target/demo")]
    pub dir: PathBuf,
    /// Number of users to generate.
    #[arg(long, default_value_t = 20_000)]
    pub users: u64,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// After the tour, serve the web UI and the API on this address (until Ctrl-C).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub serve: String,
    /// Stop after the tour instead of serving.
    #[arg(long)]
    pub no_serve: bool,
}
