//! Flat records to events: one key column, one time column, one event column (or a constant
//! event name), every other non-empty column a property.
//!
//! Column names are matched exactly; when a role is not named, the first present column from
//! a list of customary names is used (`user_id`, `case_id`, `conversation_id`,
//! `session_id`… for the unit; `timestamp`, `ts`, `time`, `date` for the time; `event`,
//! `activity`, `type`, `name` for the event). A unit column named like a session or
//! conversation id also sets that id, so `--unit session_id` makes every unit a session.

use crate::error::MapError;
use crate::event::{Event, MessageKind};
use crate::time::{TimeFormat, from_epoch, from_epoch_int, parse_text};
use crate::value::{Text, Value, flatten_into};

/// Customary names for the unit key column, in order of preference.
pub const UNIT_COLUMNS: &[&str] = &[
    "user_id",
    "userId",
    "anonymous_id",
    "anonymousId",
    "case_id",
    "customer_id",
    "conversation_id",
    "session_id",
    "unit",
    "id",
];
/// Customary names for the time column.
pub const TIME_COLUMNS: &[&str] = &["timestamp", "ts", "time", "event_time", "datetime", "date"];
/// Customary names for the event-name column.
pub const EVENT_COLUMNS: &[&str] = &["event", "event_name", "activity", "name", "type", "action"];

/// What the user asked for: which column plays which role (`None` = detect).
#[derive(Debug, Clone, Default)]
pub struct FlatOptions {
    /// Unit (user) key column.
    pub unit: Option<String>,
    /// Time column.
    pub time: Option<String>,
    /// Event name column.
    pub event: Option<String>,
    /// Constant event name when the input has no event column (e.g. a purchases table).
    pub event_name: Option<String>,
    /// Anonymous id column.
    pub anonymous: Option<String>,
    /// Session id column (detected: `session_id`).
    pub session: Option<String>,
    /// Conversation id column (detected: `conversation_id`).
    pub conversation: Option<String>,
    /// Message id column, for de-duplication (detected: `message_id`, `messageId`).
    pub message_id: Option<String>,
    /// How times are written.
    pub time_format: TimeFormat,
}

/// The roles resolved against one input's columns.
#[derive(Debug, Clone)]
pub struct FlatMapping {
    /// Unit key column.
    pub unit: String,
    /// Time column.
    pub time: String,
    /// Event column, if any.
    pub event: Option<String>,
    /// Constant event name, when there is no event column.
    pub event_name: Option<String>,
    /// Anonymous id column.
    pub anonymous: Option<String>,
    /// Session id column.
    pub session: Option<String>,
    /// Conversation id column.
    pub conversation: Option<String>,
    /// Message id column.
    pub message_id: Option<String>,
    /// How times are written.
    pub time_format: TimeFormat,
}

/// The roles one column of a flat input plays, as bits (none: a property).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    const UNIT: u8 = 1;
    const TIME: u8 = 2;
    const EVENT: u8 = 4;
    const ANONYMOUS: u8 = 8;
    const SESSION: u8 = 16;
    const CONVERSATION: u8 = 32;
    const MESSAGE_ID: u8 = 64;

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    /// No role: the column is a property.
    pub fn is_property(self) -> bool {
        self.0 == 0
    }
}

/// One cell of a flat record.
#[derive(Debug, Clone, Copy)]
pub enum Cell<'a> {
    /// Empty / null.
    Missing,
    /// Text whose type is to be inferred (CSV).
    Text(&'a str),
    /// Text that is known to be a string (typed sources).
    Str(&'a str),
    /// A whole number.
    Int(i64),
    /// A number.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A time already in µs (typed timestamp columns).
    Micros(i64),
    /// A JSON value (NDJSON).
    Json(&'a serde_json::Value),
}

impl Cell<'_> {
    fn key(&self, column: &str) -> Result<Option<String>, MapError> {
        Ok(match self {
            Cell::Missing => None,
            Cell::Text(s) | Cell::Str(s) => (!s.is_empty()).then(|| s.to_string()),
            Cell::Int(i) | Cell::Micros(i) => Some(itoa::Buffer::new().format(*i).to_string()),
            Cell::Json(serde_json::Value::String(s)) => (!s.is_empty()).then(|| s.clone()),
            Cell::Json(serde_json::Value::Number(n)) => Some(n.to_string()),
            Cell::Json(serde_json::Value::Null) => None,
            other => {
                return Err(MapError::new(
                    column,
                    format!("must be a string or an integer, found {other:?}"),
                ));
            }
        })
    }

    fn time(&self, column: &str, format: TimeFormat) -> Result<i64, MapError> {
        let r = match self {
            Cell::Missing => Err("missing".to_string()),
            Cell::Text(s) | Cell::Str(s) => parse_text(s, format),
            Cell::Int(i) => from_epoch_int(*i, format),
            Cell::Float(f) => from_epoch(*f, format),
            Cell::Micros(t) => Ok(*t),
            Cell::Json(serde_json::Value::String(s)) => parse_text(s, format),
            Cell::Json(serde_json::Value::Number(n)) => match n.as_i64() {
                Some(i) => from_epoch_int(i, format),
                None => from_epoch(n.as_f64().unwrap_or(f64::NAN), format),
            },
            Cell::Json(serde_json::Value::Null) => Err("missing".to_string()),
            Cell::Bool(_) | Cell::Json(_) => {
                Err("must be a time, found a non-time value".to_string())
            }
        };
        r.map_err(|e| MapError::new(column, e))
    }

    fn push_props(&self, column: &str, out: &mut Vec<(Text, Value)>) {
        let v = match self {
            Cell::Missing => None,
            Cell::Text(s) => Value::infer(s),
            Cell::Str(s) => Some(Value::Str((*s).into())),
            Cell::Int(i) => Some(Value::Int(*i)),
            Cell::Float(f) => Some(Value::Float(*f)),
            Cell::Bool(b) => Some(Value::Bool(*b)),
            Cell::Micros(t) => Some(Value::Str(crate::time::format_rfc3339(*t).into())),
            Cell::Json(j @ serde_json::Value::Object(_)) => {
                flatten_into(column, j, out);
                None
            }
            Cell::Json(j) => Value::from_json(j),
        };
        if let Some(v) = v {
            out.push((column.into(), v));
        }
    }
}

fn pick(
    explicit: &Option<String>,
    candidates: &[&str],
    columns: &[&str],
    role: &str,
) -> Result<Option<String>, String> {
    if let Some(name) = explicit {
        if columns.contains(&name.as_str()) {
            return Ok(Some(name.clone()));
        }
        return Err(format!(
            "the {role} column `{name}` is not in the input (columns: {})",
            columns.join(", ")
        ));
    }
    Ok(candidates
        .iter()
        .find(|c| columns.contains(c))
        .map(|c| c.to_string()))
}

impl FlatMapping {
    /// Resolves the options against the columns of one input.
    pub fn resolve(opts: &FlatOptions, columns: &[&str]) -> Result<FlatMapping, String> {
        let unit = pick(&opts.unit, UNIT_COLUMNS, columns, "unit")?.ok_or_else(|| {
            format!(
                "no unit column: pass --unit (columns: {})",
                columns.join(", ")
            )
        })?;
        let time = pick(&opts.time, TIME_COLUMNS, columns, "time")?.ok_or_else(|| {
            format!(
                "no time column: pass --time (columns: {})",
                columns.join(", ")
            )
        })?;
        let event = if opts.event_name.is_some() && opts.event.is_none() {
            None
        } else {
            let candidates: Vec<&str> = EVENT_COLUMNS
                .iter()
                .copied()
                .filter(|c| *c != unit && *c != time)
                .collect();
            pick(&opts.event, &candidates, columns, "event")?
        };
        if event.is_none() && opts.event_name.is_none() {
            return Err(format!(
                "no event column: pass --event COLUMN or --event-name NAME (columns: {})",
                columns.join(", ")
            ));
        }
        let session = pick(
            &opts.session,
            &["session_id", "sessionId"],
            columns,
            "session",
        )?;
        let conversation = pick(
            &opts.conversation,
            &[
                "conversation_id",
                "conversationId",
                "gen_ai.conversation.id",
            ],
            columns,
            "conversation",
        )?;
        let message_id = pick(
            &opts.message_id,
            &["message_id", "messageId"],
            columns,
            "message id",
        )?;
        let anon_candidates: Vec<&str> = ["anonymous_id", "anonymousId"]
            .into_iter()
            .filter(|c| *c != unit)
            .collect();
        let anonymous = pick(&opts.anonymous, &anon_candidates, columns, "anonymous id")?;
        Ok(FlatMapping {
            unit,
            time,
            event,
            event_name: opts.event_name.clone(),
            anonymous,
            session,
            conversation,
            message_id,
            time_format: opts.time_format,
        })
    }

    /// Is this column one of the roles (and so not a property)?
    pub fn is_role(&self, column: &str) -> bool {
        !self.roles(column).is_property()
    }

    /// The roles `column` plays (none: it is a property). Resolve once per input and use
    /// [`FlatMapping::map_resolved`] to keep name comparisons out of the per-row work.
    pub fn roles(&self, column: &str) -> Roles {
        let is = |c: &Option<String>| c.as_deref() == Some(column);
        let mut bits = 0;
        for (on, bit) in [
            (column == self.unit, Roles::UNIT),
            (column == self.time, Roles::TIME),
            (is(&self.event), Roles::EVENT),
            (is(&self.anonymous), Roles::ANONYMOUS),
            (is(&self.session), Roles::SESSION),
            (is(&self.conversation), Roles::CONVERSATION),
            (is(&self.message_id), Roles::MESSAGE_ID),
        ] {
            if on {
                bits |= bit;
            }
        }
        Roles(bits)
    }

    /// Maps one record given as `(column, cell)` pairs.
    pub fn map<'a>(
        &self,
        cells: impl IntoIterator<Item = (&'a str, Cell<'a>)>,
    ) -> Result<Event, MapError> {
        self.map_resolved(
            cells
                .into_iter()
                .map(|(col, cell)| (col, self.roles(col), cell)),
        )
    }

    /// [`FlatMapping::map`] with each column's roles already resolved.
    pub fn map_resolved<'a>(
        &self,
        cells: impl IntoIterator<Item = (&'a str, Roles, Cell<'a>)>,
    ) -> Result<Event, MapError> {
        let mut unit = None;
        let mut anonymous = None;
        let mut time = None;
        let mut name = self.event_name.clone();
        let mut session = None;
        let mut conversation = None;
        let mut message_id = None;
        let mut properties = Vec::new();
        for (col, roles, cell) in cells {
            if roles.is_property() {
                cell.push_props(col, &mut properties);
                continue;
            }
            if roles.has(Roles::UNIT) {
                unit = cell.key(col)?;
            }
            if roles.has(Roles::ANONYMOUS) {
                anonymous = cell.key(col)?;
            }
            if roles.has(Roles::TIME) {
                time = Some(cell.time(col, self.time_format)?);
            }
            if roles.has(Roles::EVENT) {
                name = cell.key(col)?;
            }
            if roles.has(Roles::SESSION) {
                session = cell.key(col)?;
            }
            if roles.has(Roles::CONVERSATION) {
                conversation = cell.key(col)?;
            }
            if roles.has(Roles::MESSAGE_ID) {
                message_id = cell.key(col)?;
            }
        }
        if unit.is_none() && anonymous.is_none() {
            return Err(MapError::new(&self.unit, "missing unit key"));
        }
        let time = time.ok_or_else(|| MapError::new(&self.time, "missing time"))?;
        let name = name.ok_or_else(|| {
            MapError::new(
                self.event.as_deref().unwrap_or("event"),
                "missing event name",
            )
        })?;
        Ok(Event {
            kind: MessageKind::Record,
            name: name.into(),
            time,
            user_id: unit.map(Text::from),
            anonymous_id: anonymous.map(Text::from),
            previous_id: None,
            session_id: session.map(Text::from),
            conversation_id: conversation.map(Text::from),
            message_id: message_id.map(Text::from),
            properties,
            context: Vec::new(),
            traits: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_roles_and_types_cells() {
        let cols = [
            "case_id",
            "activity",
            "lifecycle",
            "timestamp",
            "amount_req",
        ];
        let m = FlatMapping::resolve(&FlatOptions::default(), &cols).unwrap();
        assert_eq!(
            (m.unit.as_str(), m.time.as_str(), m.event.as_deref()),
            ("case_id", "timestamp", Some("activity"))
        );
        let cells = [
            "173688",
            "A_SUBMITTED",
            "COMPLETE",
            "2011-09-30T22:38:44.546Z",
            "20000",
        ];
        let ev = m
            .map(
                cols.iter()
                    .copied()
                    .zip(cells.iter().map(|c| Cell::Text(c))),
            )
            .unwrap();
        assert_eq!(ev.user_id.as_deref(), Some("173688"));
        assert_eq!(ev.name, "A_SUBMITTED");
        assert_eq!(ev.property("amount_req"), Some(&Value::Int(20000)));
        assert_eq!(
            ev.property("lifecycle"),
            Some(&Value::Str("COMPLETE".into()))
        );
        assert_eq!(ev.time, 1_317_422_324_546_000);
    }

    #[test]
    fn unit_column_that_is_a_conversation_id_sets_it() {
        let cols = ["conversation_id", "ts", "event", "text"];
        let m = FlatMapping::resolve(&FlatOptions::default(), &cols).unwrap();
        let cells = [
            Cell::Text("task0-trial0"),
            Cell::Text("2024-06-01T00:00:00.000Z"),
            Cell::Text("user_message"),
            Cell::Text("hi"),
        ];
        let ev = m.map(cols.iter().copied().zip(cells)).unwrap();
        assert_eq!(ev.conversation_id.as_deref(), Some("task0-trial0"));
        assert_eq!(ev.user_id.as_deref(), Some("task0-trial0"));
    }

    #[test]
    fn bad_rows_say_which_column() {
        let cols = ["user_id", "ts", "event"];
        let m = FlatMapping::resolve(&FlatOptions::default(), &cols).unwrap();
        let e = m
            .map(cols.iter().copied().zip([
                Cell::Text("u"),
                Cell::Text("not a time"),
                Cell::Text("x"),
            ]))
            .unwrap_err();
        assert_eq!(e.field, "ts");
        let e = m
            .map(cols.iter().copied().zip([
                Cell::Text(""),
                Cell::Text("2024-01-01"),
                Cell::Text("x"),
            ]))
            .unwrap_err();
        assert_eq!(e.field, "user_id");
        assert!(
            FlatMapping::resolve(
                &FlatOptions {
                    unit: Some("nope".into()),
                    ..Default::default()
                },
                &cols
            )
            .is_err()
        );
    }
}
