//! The event: unit keys, time, name, typed properties, context.

use crate::time::Micros;
use crate::value::{Text, Value};

/// Flattened `(dotted.key, value)` pairs, in arrival order.
pub type Props = Vec<(Text, Value)>;

/// Which kind of message an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum MessageKind {
    /// A flat record from a file (key, time, name, other columns as properties).
    Record = 0,
    /// Segment `track`.
    Track = 1,
    /// Segment `page` (event name `page_view`).
    Page = 2,
    /// Segment `screen` (event name `screen_view`).
    Screen = 3,
    /// Segment `identify` (links an anonymous id to a user id, carries traits).
    Identify = 4,
    /// Segment `alias` (links a previous id to a user id).
    Alias = 5,
    /// Segment `group`.
    Group = 6,
}

impl MessageKind {
    /// The kind for a stored byte; unknown bytes read as `Record`.
    pub fn from_u8(b: u8) -> MessageKind {
        match b {
            1 => MessageKind::Track,
            2 => MessageKind::Page,
            3 => MessageKind::Screen,
            4 => MessageKind::Identify,
            5 => MessageKind::Alias,
            6 => MessageKind::Group,
            _ => MessageKind::Record,
        }
    }
}

/// One event of one unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// What message it came from.
    pub kind: MessageKind,
    /// Event name (`page_view`, `purchase`, `W_Completeren aanvraag`, …).
    pub name: Text,
    /// Event time, µs since the epoch (UTC), after clock-skew correction.
    pub time: Micros,
    /// Known user id.
    pub user_id: Option<Text>,
    /// Anonymous (device/cookie) id.
    pub anonymous_id: Option<Text>,
    /// For `alias`: the id being merged into `user_id`.
    pub previous_id: Option<Text>,
    /// Explicit session id, when the source carries one.
    pub session_id: Option<Text>,
    /// Conversation id (AI-agent conversations; `gen_ai.conversation.id`).
    pub conversation_id: Option<Text>,
    /// Producer-assigned id used to drop duplicates (Segment `messageId`).
    pub message_id: Option<Text>,
    /// Event properties, flattened.
    pub properties: Props,
    /// Context (device, os, app, network, locale, page, campaign…), flattened.
    pub context: Props,
    /// User traits (from `identify`, `group`, or `context.traits`), flattened.
    pub traits: Props,
}

impl Event {
    /// A bare event with no properties.
    pub fn new(user: impl Into<Text>, time: Micros, name: impl Into<Text>) -> Event {
        Event {
            kind: MessageKind::Record,
            name: name.into(),
            time,
            user_id: Some(user.into()),
            anonymous_id: None,
            previous_id: None,
            session_id: None,
            conversation_id: None,
            message_id: None,
            properties: Vec::new(),
            context: Vec::new(),
            traits: Vec::new(),
        }
    }

    /// The key of the user this event belongs to before identity stitching: the user id,
    /// else the anonymous id.
    pub fn unit_key(&self) -> Option<&str> {
        self.user_id.as_deref().or(self.anonymous_id.as_deref())
    }

    /// The identity link this event states, as `(from, to)`: an `alias` links its previous
    /// id to its user id; any other event carrying both ids links the anonymous id to the
    /// user id.
    pub fn identity_link(&self) -> Option<(&str, &str)> {
        let to = self.user_id.as_deref()?;
        let from = match self.kind {
            MessageKind::Alias => self.previous_id.as_deref()?,
            _ => self.anonymous_id.as_deref()?,
        };
        (from != to).then_some((from, to))
    }

    /// A property by key.
    pub fn property(&self, key: &str) -> Option<&Value> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}
