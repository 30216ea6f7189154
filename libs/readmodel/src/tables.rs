//! [`Tables`]: the set of tables one projection writes, so that the same projection logic
//! serves the live read model and the shadow tables a rebuild or a verification builds
//! beside it.

/// The tables a projector writes and the name its checkpoint has in
/// `projection_checkpoints`. The names are fixed constants (never caller text), so they may
/// be written into SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tables {
    /// One row per follow-up (`followups_view` when live).
    pub followups: &'static str,
    /// Each user's state of each notification (`notification_inbox` when live).
    pub inbox: &'static str,
    /// One row per subscription (`subscriptions` when live).
    pub subscriptions: &'static str,
    /// The projector's checkpoint in `projection_checkpoints`.
    pub checkpoint: &'static str,
    /// What the shadow's table and index names end with (empty for the live tables): a
    /// shadow index is named after the live one plus this, and renamed back at the switch.
    pub suffix: &'static str,
}

impl Tables {
    /// The live read model, which the API queries.
    pub const LIVE: Tables = Tables {
        followups: "followups_view",
        inbox: "notification_inbox",
        subscriptions: "subscriptions",
        checkpoint: "followups",
        suffix: "",
    };

    /// The shadow tables of `followupctl rebuild`, switched in for the live ones at the end.
    pub const REBUILD: Tables = Tables {
        followups: "followups_view__rebuild",
        inbox: "notification_inbox__rebuild",
        subscriptions: "subscriptions__rebuild",
        checkpoint: "followups.rebuild",
        suffix: "__rebuild",
    };

    /// The shadow tables of `followupctl verify`, compared with the live ones and dropped.
    pub const VERIFY: Tables = Tables {
        followups: "followups_view__verify",
        inbox: "notification_inbox__verify",
        subscriptions: "subscriptions__verify",
        checkpoint: "followups.verify",
        suffix: "__verify",
    };

    /// The three tables, each with the live table it stands for.
    pub fn pairs(&self) -> [(&'static str, &'static str); 3] {
        [
            (self.followups, Tables::LIVE.followups),
            (self.inbox, Tables::LIVE.inbox),
            (self.subscriptions, Tables::LIVE.subscriptions),
        ]
    }
}
