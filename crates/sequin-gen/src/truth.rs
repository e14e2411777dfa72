//! Ground truth: which units carry each planted behaviour, and the effect it was given.

use serde::Serialize;

/// What one user got planted (collected per user, then summarised).
#[derive(Debug, Clone, Default)]
pub struct UserTruth {
    /// The user's unit key after identity stitching (user id, else anonymous id).
    pub unit: String,
    /// Sessions (ids as `unit@start_ms`) with a payment-widget render over 8 s.
    pub slow_payment_sessions: Vec<String>,
    /// Saw error 4022 on the payment step.
    pub error_4022: bool,
    /// Sessions with rage clicks on the broken coupon button.
    pub rage_click_sessions: Vec<String>,
    /// Viewed pricing 3+ times and never started a trial (planted intent).
    pub pricing_no_trial: bool,
    /// Conversations with rephrased requests.
    pub rephrase_conversations: Vec<String>,
    /// Conversations with short aggressive replies.
    pub aggressive_conversations: Vec<String>,
    /// Conversations that escalated to a human.
    pub escalated_conversations: Vec<String>,
    /// All conversations.
    pub conversations: Vec<String>,
    /// Stopped all activity after repeated friction.
    pub churned_after_friction: bool,
    /// In the incident segment and had a checkout during the incident week.
    pub incident_affected: bool,
    /// Number of purchases.
    pub purchases: u32,
    /// Reached checkout at least once.
    pub checkout_started: bool,
    /// Duplicate deliveries (same messageId sent twice).
    pub duplicates: u32,
}

/// One planted behaviour.
#[derive(Debug, Clone, Serialize)]
pub struct Behaviour {
    /// Short id: `slow_payment_android`, …
    pub id: String,
    /// What was planted, in words.
    pub description: String,
    /// The unit kind the ids are: users, sessions or conversations.
    pub unit: String,
    /// The effect that was given to it.
    pub effect: String,
    /// Affected units.
    pub count: usize,
    /// Their ids (users: unit key; sessions: `unit@start_ms`; conversations: conversation id).
    pub ids: Vec<String>,
}

/// The whole ground truth.
#[derive(Debug, Clone, Serialize)]
pub struct Truth {
    /// Seed used.
    pub seed: u64,
    /// Users generated.
    pub users: u64,
    /// Period start (RFC 3339).
    pub start: String,
    /// Days.
    pub days: u32,
    /// Planted behaviours.
    pub behaviours: Vec<Behaviour>,
    /// The incident, when planted.
    pub incident: Option<Incident>,
    /// Messages delivered twice (same messageId), to exercise de-duplication.
    pub duplicate_deliveries: u64,
}

/// The planted incident.
#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    /// The segment whose checkout conversion drops.
    pub segment: String,
    /// Incident start (RFC 3339, inclusive).
    pub start: String,
    /// Incident end (RFC 3339, exclusive).
    pub end: String,
    /// What happens.
    pub effect: String,
}
