//! One user's life: profile, sessions, journeys, conversations, planted behaviours.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::text;
use crate::truth::UserTruth;
use crate::{GenConfig, START_MS};

/// Message type of a generated event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `track`.
    Track,
    /// `page`.
    Page,
    /// `screen`.
    Screen,
    /// `identify`.
    Identify,
}

/// A property value.
#[derive(Debug, Clone, PartialEq)]
pub enum PropValue {
    /// Static text.
    S(&'static str),
    /// Owned text.
    Str(String),
    /// Whole number.
    Int(i64),
    /// Number.
    Float(f64),
    /// Boolean.
    Bool(bool),
}

/// One generated event (true time; the writer adds device clock skew and delivery times).
#[derive(Debug, Clone)]
pub struct GenEvent {
    /// True event time, ms since the epoch.
    pub time_ms: i64,
    /// Message type.
    pub kind: Kind,
    /// Event name (for page/screen: the page or screen name).
    pub name: &'static str,
    /// Whether the user is identified (userId sent) at this point.
    pub identified: bool,
    /// Properties.
    pub props: Vec<(&'static str, PropValue)>,
    /// Network type at the time.
    pub network: &'static str,
    /// Delivered twice with the same messageId (a client retry).
    pub duplicate: bool,
}

/// Who the user is and what they use.
#[derive(Debug, Clone)]
pub struct Profile {
    /// User index.
    pub index: u64,
    /// `web`, `ios` or `android`.
    pub platform: &'static str,
    /// `desktop` or `mobile`.
    pub device_type: &'static str,
    /// Device model.
    pub device_model: &'static str,
    /// `low`, `mid`, `high`.
    pub device_tier: &'static str,
    /// OS name.
    pub os_name: &'static str,
    /// OS version.
    pub os_version: &'static str,
    /// App version (apps only).
    pub app_version: Option<&'static str>,
    /// Browser (web only).
    pub browser: Option<&'static str>,
    /// Locale.
    pub locale: &'static str,
    /// Device clock skew in ms.
    pub skew_ms: i64,
    /// Acquisition channel.
    pub utm_source: &'static str,
}

impl Profile {
    /// The anonymous id.
    pub fn anonymous_id(&self) -> String {
        format!(
            "anon-{:08x}",
            self.index.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32
        )
    }

    /// The user id (once identified).
    pub fn user_id(&self) -> String {
        format!("user-{}", self.index)
    }

    /// Android app on a mid-tier device with app version 5.2.x: the slow payment widget.
    pub fn slow_payment_cohort(&self) -> bool {
        self.platform == "android"
            && self.device_tier == "mid"
            && self.app_version.is_some_and(|v| v.starts_with("5.2."))
    }

    /// The incident segment: Android app 5.3.0.
    pub fn incident_cohort(&self) -> bool {
        self.platform == "android" && self.app_version == Some("5.3.0")
    }
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|i| i.1).sum();
    let mut x = rng.random_range(0..total);
    for &(v, w) in items {
        if x < w {
            return v;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

fn profile(rng: &mut ChaCha8Rng, index: u64) -> Profile {
    let platform = pick(rng, &[("web", 55), ("ios", 20), ("android", 25)]);
    let (device_type, os_name, os_version, device_model, device_tier, app_version, browser) =
        match platform {
            "ios" => {
                let v = pick(
                    rng,
                    &[
                        ("16.7", 10),
                        ("17.1", 12),
                        ("17.2", 15),
                        ("17.3", 20),
                        ("17.4", 25),
                        ("18.0", 18),
                    ],
                );
                let m = pick(
                    rng,
                    &[
                        ("iPhone 12", 20),
                        ("iPhone 13", 25),
                        ("iPhone 14", 30),
                        ("iPhone 15", 25),
                    ],
                );
                let app = pick(
                    rng,
                    &[("5.1.0", 15), ("5.2.0", 20), ("5.2.1", 25), ("5.3.0", 40)],
                );
                ("mobile", "iOS", v, m, "high", Some(app), None)
            }
            "android" => {
                let v = pick(rng, &[("12", 25), ("13", 35), ("14", 40)]);
                let (m, tier) = pick(
                    rng,
                    &[
                        (("Galaxy A14", "low"), 20),
                        (("Galaxy A34", "mid"), 20),
                        (("Redmi Note 12", "mid"), 15),
                        (("Pixel 7", "high"), 20),
                        (("Galaxy S23", "high"), 25),
                    ],
                );
                let app = pick(
                    rng,
                    &[
                        ("5.0.3", 10),
                        ("5.1.0", 15),
                        ("5.2.0", 20),
                        ("5.2.1", 20),
                        ("5.3.0", 35),
                    ],
                );
                ("mobile", "Android", v, m, tier, Some(app), None)
            }
            _ => {
                if rng.random_bool(0.6) {
                    let (os, v) = pick(
                        rng,
                        &[
                            (("Windows", "11"), 45),
                            (("Windows", "10"), 25),
                            (("macOS", "14.4"), 30),
                        ],
                    );
                    let b = pick(
                        rng,
                        &[
                            ("Chrome", 60),
                            ("Safari", 15),
                            ("Firefox", 10),
                            ("Edge", 15),
                        ],
                    );
                    ("desktop", os, v, "PC", "high", None, Some(b))
                } else {
                    let (os, v) = pick(
                        rng,
                        &[
                            (("iOS", "17.3"), 20),
                            (("iOS", "17.4"), 30),
                            (("Android", "14"), 50),
                        ],
                    );
                    let b = pick(rng, &[("Chrome", 55), ("Safari", 45)]);
                    ("mobile", os, v, "phone", "mid", None, Some(b))
                }
            }
        };
    Profile {
        index,
        platform,
        device_type,
        device_model,
        device_tier,
        os_name,
        os_version,
        app_version,
        browser,
        locale: pick(
            rng,
            &[
                ("en-US", 50),
                ("en-GB", 15),
                ("de-DE", 15),
                ("fr-FR", 10),
                ("nl-NL", 10),
            ],
        ),
        skew_ms: if platform == "web" {
            rng.random_range(-2_000..2_000)
        } else {
            rng.random_range(-120_000..120_000)
        },
        utm_source: pick(
            rng,
            &[
                ("google", 45),
                ("direct", 25),
                ("facebook", 15),
                ("newsletter", 10),
                ("tiktok", 5),
            ],
        ),
    }
}

struct Sim<'a> {
    rng: ChaCha8Rng,
    p: &'a Profile,
    cfg: &'a GenConfig,
    out: Vec<GenEvent>,
    t: i64,
    identified: bool,
    has_account: bool,
    network: &'static str,
    truth: UserTruth,
    pricing_lover: bool,
    trial_started: bool,
    friction_sessions: u32,
    order_seq: u32,
    conv_seq: u32,
}

const PRODUCTS: &[(&str, f64)] = &[
    ("sku-100", 19.99),
    ("sku-101", 49.0),
    ("sku-102", 89.5),
    ("sku-103", 129.0),
    ("sku-104", 9.99),
    ("sku-105", 249.0),
    ("sku-106", 35.0),
    ("sku-107", 64.9),
];
const QUERIES: &[&str] = &[
    "running shoes",
    "rain jacket",
    "headphones",
    "gift card",
    "backpack",
    "coffee grinder",
];

impl Sim<'_> {
    fn choose(&mut self, items: &[&'static str]) -> &'static str {
        items[self.rng.random_range(0..items.len())]
    }

    fn emit(&mut self, kind: Kind, name: &'static str, props: Vec<(&'static str, PropValue)>) {
        let duplicate = self.rng.random_bool(0.001);
        if duplicate {
            self.truth.duplicates += 1;
        }
        self.out.push(GenEvent {
            time_ms: self.t,
            kind,
            name,
            identified: self.identified,
            props,
            network: self.network,
            duplicate,
        });
    }

    fn wait(&mut self, lo_ms: i64, hi_ms: i64) {
        self.t += self.rng.random_range(lo_ms..hi_ms);
    }

    /// A page (web) or screen (app) view with its load time.
    fn view(&mut self, page: &'static str) {
        let load = (self.rng.random::<f64>().powi(3) * 6000.0) as i64 + 150;
        let kind = if self.p.platform == "web" {
            Kind::Page
        } else {
            Kind::Screen
        };
        let path = match page {
            "landing" => "/",
            "pricing" => "/pricing",
            "search" => "/search",
            "product" => "/product",
            "cart" => "/cart",
            "checkout" => "/checkout",
            "signup" => "/signup",
            "help" => "/help",
            _ => "/other",
        };
        self.emit(
            kind,
            page,
            vec![
                ("path", PropValue::S(path)),
                ("load_time_ms", PropValue::Int(load)),
            ],
        );
    }

    fn click(&mut self, element: &'static str) {
        let x = self.rng.random_range(10..1200);
        let y = self.rng.random_range(10..800);
        self.emit(
            Kind::Track,
            "click",
            vec![
                ("element_id", PropValue::S(element)),
                ("x", PropValue::Int(x)),
                ("y", PropValue::Int(y)),
            ],
        );
    }

    fn error(&mut self, code: i64, step: &'static str, silent: bool, message: &'static str) {
        self.emit(
            Kind::Track,
            "error",
            vec![
                ("code", PropValue::Int(code)),
                ("step", PropValue::S(step)),
                ("silent", PropValue::Bool(silent)),
                ("message", PropValue::S(message)),
            ],
        );
    }

    fn identify(&mut self) {
        self.identified = true;
        self.emit(Kind::Identify, "identify", vec![]);
    }

    fn session_id(&self, start: i64) -> String {
        format!("{}@{}", self.unit_key(), start)
    }

    fn unit_key(&self) -> String {
        if self.has_account {
            self.p.user_id()
        } else {
            self.p.anonymous_id()
        }
    }

    /// One visit. Returns true if it had friction.
    fn session(&mut self, start: i64, day: u32) -> bool {
        self.t = start;
        self.network = if self.p.platform == "web" {
            pick(&mut self.rng, &[("wifi", 70), ("4g", 25), ("3g", 5)])
        } else {
            pick(
                &mut self.rng,
                &[("wifi", 45), ("4g", 35), ("5g", 15), ("3g", 5)],
            )
        };
        let sid = self.session_id(start);
        let mut friction = false;
        if self.p.platform != "web" {
            self.emit(Kind::Track, "app_open", vec![]);
            self.wait(500, 3_000);
        }
        self.view("landing");
        if self.has_account && !self.identified {
            self.wait(2_000, 20_000);
            self.click("login-button");
            self.identify();
        }
        // Pricing.
        let pricing_views = if self.pricing_lover {
            self.rng.random_range(1..3)
        } else if self.rng.random_bool(0.3) {
            1
        } else {
            0
        };
        for _ in 0..pricing_views {
            self.wait(3_000, 40_000);
            self.view("pricing");
            self.click("plan-card");
        }
        if pricing_views > 0
            && !self.pricing_lover
            && !self.trial_started
            && self.rng.random_bool(0.25)
        {
            self.wait(5_000, 30_000);
            if !self.has_account {
                self.signup();
            }
            self.click("start-trial");
            let plan = pick(&mut self.rng, &[("basic", 60), ("pro", 40)]);
            self.emit(
                Kind::Track,
                "trial_start",
                vec![("plan", PropValue::S(plan))],
            );
            self.trial_started = true;
        }
        // Browse.
        if self.rng.random_bool(0.5) {
            self.wait(2_000, 15_000);
            self.view("search");
            let q = QUERIES[self.rng.random_range(0..QUERIES.len())];
            let results = self.rng.random_range(0..40);
            self.emit(
                Kind::Track,
                "search",
                vec![
                    ("query", PropValue::S(q)),
                    ("results", PropValue::Int(results)),
                ],
            );
        }
        let views = self.rng.random_range(0..4);
        let mut cart: Vec<(&'static str, f64)> = Vec::new();
        for _ in 0..views {
            self.wait(4_000, 60_000);
            let (sku, price) = PRODUCTS[self.rng.random_range(0..PRODUCTS.len())];
            self.view("product");
            self.emit(
                Kind::Track,
                "product_view",
                vec![
                    ("product_id", PropValue::S(sku)),
                    ("price", PropValue::Float(price)),
                ],
            );
            if self.rng.random_bool(0.05) {
                self.error(1001, "product", true, "recommendations failed to load");
            }
            if self.rng.random_bool(0.35) {
                self.wait(2_000, 20_000);
                self.click("add-to-cart");
                self.emit(
                    Kind::Track,
                    "add_to_cart",
                    vec![
                        ("product_id", PropValue::S(sku)),
                        ("price", PropValue::Float(price)),
                    ],
                );
                cart.push((sku, price));
            }
        }
        if cart.is_empty() {
            if self.rng.random_bool(0.1) {
                self.wait(3_000, 30_000);
                self.view("help");
                self.click("faq-item");
            }
            return friction;
        }
        self.wait(3_000, 30_000);
        self.view("cart");
        // (c) The broken coupon button: clicks do nothing, users hammer it.
        let mut abandon = 0.2;
        if self.rng.random_bool(0.12) {
            self.wait(2_000, 10_000);
            let n = self.rng.random_range(3..7);
            for _ in 0..n {
                let x = 640 + self.rng.random_range(-8..8);
                let y = 512 + self.rng.random_range(-8..8);
                self.emit(
                    Kind::Track,
                    "click",
                    vec![
                        ("element_id", PropValue::S("apply-coupon")),
                        ("x", PropValue::Int(x)),
                        ("y", PropValue::Int(y)),
                    ],
                );
                self.t += self.rng.random_range(90..260);
            }
            self.truth.rage_click_sessions.push(sid.clone());
            friction = true;
            abandon = 0.5;
        }
        if self.rng.random_bool(abandon) {
            return friction;
        }
        self.wait(2_000, 20_000);
        self.click("checkout-button");
        self.truth.checkout_started = true;
        self.emit(
            Kind::Track,
            "checkout_start",
            vec![("items", PropValue::Int(cart.len() as i64))],
        );
        if !self.has_account && self.rng.random_bool(0.5) {
            self.signup();
        }
        self.wait(10_000, 60_000);
        self.emit(
            Kind::Track,
            "form_submit",
            vec![("form_id", PropValue::S("shipping"))],
        );
        if self.rng.random_bool(0.04) {
            self.wait(1_000, 3_000);
            self.emit(
                Kind::Track,
                "form_submit",
                vec![("form_id", PropValue::S("shipping"))],
            );
        }
        self.emit(Kind::Track, "shipping_step", vec![]);
        self.wait(2_000, 10_000);
        // (a) Slow payment widget on mid-tier Android with app 5.2.x.
        let slow = self.p.slow_payment_cohort() && self.rng.random_bool(0.85);
        let render = if slow {
            self.rng.random_range(8_500..15_000)
        } else {
            self.rng.random_range(250..2_500)
        };
        self.emit(
            Kind::Track,
            "payment_step_view",
            vec![
                ("render_ms", PropValue::Int(render)),
                ("widget", PropValue::S("card-form")),
            ],
        );
        self.t += render;
        let mut leave: f64 = 0.12;
        if slow {
            self.truth.slow_payment_sessions.push(sid.clone());
            friction = true;
            leave = 0.7;
        }
        // (b) Error 4022 on the payment step on iOS 17.3.
        if self.p.os_name == "iOS" && self.p.os_version == "17.3" && self.rng.random_bool(0.6) {
            self.wait(1_000, 8_000);
            self.click("pay-button");
            self.error(4022, "payment", false, "card tokenization failed");
            self.truth.error_4022 = true;
            friction = true;
            leave = leave.max(0.75);
        }
        if self.rng.random_bool(leave) {
            // Gone: the session just ends here.
            if self.rng.random_bool(0.3) {
                self.wait(1_000, 20_000);
                self.click("back");
            }
            return friction;
        }
        self.wait(5_000, 40_000);
        self.click("pay-button");
        let method = pick(
            &mut self.rng,
            &[("card", 70), ("paypal", 20), ("apple_pay", 10)],
        );
        self.emit(
            Kind::Track,
            "payment_submit",
            vec![("method", PropValue::S(method))],
        );
        // (g) The incident: payments of Android app 5.3.0 fail silently for a week.
        let in_incident = self.cfg.incident && (14..21).contains(&day) && self.p.incident_cohort();
        if in_incident {
            self.truth.incident_affected = true;
            if self.rng.random_bool(0.8) {
                self.wait(500, 3_000);
                self.error(5031, "payment", true, "payment confirmation lost");
                return true;
            }
        }
        self.wait(1_000, 6_000);
        self.order_seq += 1;
        let amount: f64 = cart.iter().map(|c| c.1).sum::<f64>();
        let amount = (amount * 100.0).round() / 100.0;
        let order_id = format!("o-{}-{}", self.p.index, self.order_seq);
        self.emit(
            Kind::Track,
            "purchase",
            vec![
                ("order_id", PropValue::Str(order_id)),
                ("amount", PropValue::Float(amount)),
                ("currency", PropValue::S("USD")),
            ],
        );
        self.truth.purchases += 1;
        friction
    }

    fn signup(&mut self) {
        self.wait(3_000, 20_000);
        self.view("signup");
        self.emit(
            Kind::Track,
            "form_submit",
            vec![("form_id", PropValue::S("signup"))],
        );
        self.has_account = true;
        let method = pick(
            &mut self.rng,
            &[("email", 60), ("google", 30), ("apple", 10)],
        );
        self.emit(
            Kind::Track,
            "signup",
            vec![("method", PropValue::S(method))],
        );
        self.identify();
    }

    /// (e) A support conversation with the AI agent.
    fn conversation(&mut self, start: i64) {
        self.t = start;
        self.conv_seq += 1;
        let conv = format!("conv-{}-{}", self.p.index, self.conv_seq);
        self.truth.conversations.push(conv.clone());
        let intent = self.rng.random_range(0..text::INTENTS.len());
        let (tool, phrasings) = text::INTENTS[intent];
        let order = format!("o-{}-{}", self.p.index, self.order_seq.max(1));
        let frustrated = self.rng.random_bool(0.3);
        let mut turn = 0i64;
        let mut say = |sim: &mut Sim, role: &'static str, text: String, name: &'static str| {
            sim.emit(
                Kind::Track,
                name,
                vec![
                    ("conversation_id", PropValue::Str(conv.clone())),
                    ("role", PropValue::S(role)),
                    ("text", PropValue::Str(text)),
                    ("turn", PropValue::Int(turn)),
                ],
            );
            turn += 1;
        };
        say(
            self,
            "user",
            phrasings[0].replace("{order}", &order),
            "user_message",
        );
        self.wait(1_000, 4_000);
        {
            let s = self.choose(text::AGENT);
            say(self, "assistant", s.to_string(), "agent_message");
        }
        let tool_call = |sim: &mut Sim, name: &'static str, ok: bool| {
            sim.wait(500, 2_000);
            let mut props = vec![
                ("conversation_id", PropValue::Str(conv.clone())),
                ("tool_name", PropValue::S(name)),
                ("status", PropValue::S(if ok { "success" } else { "error" })),
            ];
            if !ok {
                props.push(("error.type", PropValue::S("timeout")));
            }
            sim.emit(Kind::Track, "tool_call", props);
        };
        let mut escalate = false;
        if frustrated {
            tool_call(self, tool, false);
            let rephrases = self.rng.random_range(1..4);
            for r in 0..rephrases {
                self.wait(8_000, 40_000);
                say(
                    self,
                    "user",
                    phrasings[1 + r % (phrasings.len() - 1)].replace("{order}", &order),
                    "user_message",
                );
                self.wait(1_000, 4_000);
                {
                    let s = self.choose(text::AGENT);
                    say(self, "assistant", s.to_string(), "agent_message");
                }
            }
            self.truth.rephrase_conversations.push(conv.clone());
            if self.rng.random_bool(0.7) {
                self.wait(3_000, 15_000);
                {
                    let s = self.choose(text::AGGRESSIVE);
                    say(self, "user", s.to_string(), "user_message");
                }
                self.truth.aggressive_conversations.push(conv.clone());
                escalate = self.rng.random_bool(0.85);
            } else {
                escalate = self.rng.random_bool(0.55);
            }
        } else {
            let ok = self.rng.random_bool(0.93);
            tool_call(self, tool, ok);
            self.wait(5_000, 30_000);
            {
                let s = self.choose(text::FOLLOW_UPS);
                say(self, "user", s.to_string(), "user_message");
            }
            escalate = escalate || self.rng.random_bool(0.08);
        }
        self.wait(1_000, 5_000);
        if escalate {
            say(
                self,
                "assistant",
                text::AGENT_HANDOFF.to_string(),
                "agent_message",
            );
            tool_call(self, "transfer_to_human_agents", true);
            self.emit(
                Kind::Track,
                "escalation",
                vec![
                    ("conversation_id", PropValue::Str(conv.clone())),
                    ("reason", PropValue::S("handoff")),
                ],
            );
            self.truth.escalated_conversations.push(conv.clone());
        } else {
            tool_call(self, tool, true);
            {
                let s = self.choose(text::AGENT_DONE);
                say(self, "assistant", s.to_string(), "agent_message");
            }
            self.wait(3_000, 20_000);
            {
                let s = self.choose(text::THANKS);
                say(self, "user", s.to_string(), "user_message");
            }
            self.emit(
                Kind::Track,
                "resolved",
                vec![("conversation_id", PropValue::Str(conv.clone()))],
            );
        }
    }
}

/// Generates one user.
pub fn user(cfg: &GenConfig, index: u64) -> (Vec<GenEvent>, UserTruth) {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ index.wrapping_mul(0xA24B_AED4_963E_E407));
    let p = profile(&mut rng, index);
    let has_account = rng.random_bool(0.25);
    let pricing_lover = rng.random_bool(0.06);
    let mut sim = Sim {
        p: &p,
        cfg,
        out: Vec::with_capacity(32),
        t: 0,
        identified: false,
        has_account,
        network: "wifi",
        truth: UserTruth::default(),
        pricing_lover,
        trial_started: false,
        friction_sessions: 0,
        order_seq: 0,
        conv_seq: 0,
        rng: ChaCha8Rng::seed_from_u64(0),
    };
    sim.rng = rng;
    // Sessions: 1 + geometric, spread over the period, each on its own day/time.
    let mut n = 1;
    while n < 12 && sim.rng.random_bool(0.45) {
        n += 1;
    }
    let day_ms = 86_400_000i64;
    let span = i64::from(cfg.days.max(1)) * day_ms;
    let mut starts: Vec<i64> = (0..n)
        .map(|_| START_MS + sim.rng.random_range(0..span - 2 * 3_600_000))
        .collect();
    starts.sort_unstable();
    // Sessions must not overlap: keep each at least 2 hours after the previous one.
    for i in 1..starts.len() {
        starts[i] = starts[i].max(starts[i - 1] + 2 * 3_600_000);
    }
    starts.retain(|&s| s < START_MS + span);
    let chat_after = if sim.rng.random_bool(0.12) {
        Some(sim.rng.random_range(0..starts.len()))
    } else {
        None
    };
    let mut churned = false;
    for (i, &s) in starts.iter().enumerate() {
        let day = ((s - START_MS) / day_ms) as u32;
        let friction = sim.session(s, day);
        if Some(i) == chat_after || (friction && sim.rng.random_bool(0.1)) {
            let t = sim.t + sim.rng.random_range(60_000..1_200_000);
            if t < START_MS + span {
                sim.conversation(t);
            }
        }
        if friction {
            sim.friction_sessions += 1;
            // (f) Churn after repeated friction: the user is never seen again.
            if sim.friction_sessions >= 2 && i + 1 < starts.len() && sim.rng.random_bool(0.7) {
                churned = true;
                break;
            }
        }
    }
    sim.truth.churned_after_friction = churned;
    sim.truth.pricing_no_trial = pricing_lover
        && !sim.trial_started
        && sim.out.iter().filter(|e| e.name == "pricing").count() >= 3;
    sim.truth.unit = sim.unit_key();
    // Session ids were formed with the unit key known at the time; users who signed up
    // later are stitched to their user id, so rename those ids.
    let anon = p.anonymous_id();
    let unit = sim.truth.unit.clone();
    for list in [
        &mut sim.truth.slow_payment_sessions,
        &mut sim.truth.rage_click_sessions,
    ] {
        for s in list.iter_mut() {
            if let Some(rest) = s.strip_prefix(&anon) {
                *s = format!("{unit}{rest}");
            }
        }
    }
    let truth = std::mem::take(&mut sim.truth);
    (std::mem::take(&mut sim.out), truth)
}

/// The profile `user` draws for this user (the same random stream, first draws).
pub fn profile_for(cfg: &GenConfig, index: u64) -> Profile {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ index.wrapping_mul(0xA24B_AED4_963E_E407));
    profile(&mut rng, index)
}
