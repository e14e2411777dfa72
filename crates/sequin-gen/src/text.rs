//! Conversation text: requests, their rephrasings, blunt replies, agent turns.

/// Support intents: (tool the agent uses, ways a user states the request).
pub const INTENTS: &[(&str, &[&str])] = &[
    (
        "get_order_status",
        &[
            "Where is my order {order}? It was supposed to arrive yesterday.",
            "Can you tell me where order {order} is right now?",
            "I still don't know where my order {order} is. Where is it?",
            "Order {order}: where is it? I need to know when it arrives.",
        ],
    ),
    (
        "refund_order",
        &[
            "I want a refund for order {order}, the item arrived broken.",
            "Please refund order {order}. The item I got is broken.",
            "Again: I need my money back for order {order}, it came broken.",
            "How many times do I have to ask for a refund on order {order}?",
        ],
    ),
    (
        "update_payment_method",
        &[
            "I need to change the card on my account, the old one expired.",
            "Can I update my payment card? Mine has expired.",
            "I just want to replace my expired card with a new one.",
            "Change my card. The old card expired. That's all I need.",
        ],
    ),
    (
        "cancel_subscription",
        &[
            "How do I cancel my subscription before the next billing date?",
            "I'd like to cancel my subscription please, before I'm billed again.",
            "Cancel my subscription. I don't want to be charged again.",
            "I asked to cancel the subscription. Please cancel it now.",
        ],
    ),
];

/// Short, blunt replies of a frustrated user.
pub const AGGRESSIVE: &[&str] = &[
    "This is useless.",
    "Just do it!",
    "Human. Now.",
    "Are you even listening?",
    "Stop wasting my time.",
    "Ridiculous.",
    "Get me a real person!",
];

/// Ordinary user follow-ups.
pub const FOLLOW_UPS: &[&str] = &[
    "Sure, my email is on the account.",
    "Yes, that's the one.",
    "Okay, thanks for checking.",
    "It's the most recent order on my account.",
    "Yes please go ahead.",
];

/// Agent turns.
pub const AGENT: &[&str] = &[
    "I can help with that. Let me look it up for you.",
    "Thanks for your patience. I'm checking the details now.",
    "I understand. Could you confirm the order number?",
    "I've found your account. One moment while I review it.",
    "I'm sorry for the trouble. Let me see what I can do.",
];

/// Agent turn after resolving.
pub const AGENT_DONE: &[&str] = &[
    "All done! Is there anything else I can help you with?",
    "That's taken care of. You'll get a confirmation email shortly.",
];

/// Agent turn when handing over.
pub const AGENT_HANDOFF: &str = "I'm transferring you to a human agent who can help further.";

/// Closing user turn after a resolution.
pub const THANKS: &[&str] = &[
    "Great, thank you!",
    "Perfect, thanks.",
    "Thanks, that's all.",
];
