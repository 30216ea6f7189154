//! Who may see and change a follow-up (design section 7): only within its institution, and
//! only where the viewer or one of its teams owns it or it is shared with them; an `admin`
//! sees and changes its whole institution. The read model's queries mirror this rule.

use crate::followup::FollowUp;
use crate::values::{Access, InstitutionId, Principal, TeamId, UserId};

/// The user looking at follow-ups, as its token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// The user (`sub`).
    pub user: UserId,
    /// Its institution (`inst`): it sees nothing elsewhere.
    pub institution: InstitutionId,
    /// Its teams (`teams`): it sees what they own or what is shared with them.
    pub teams: Vec<TeamId>,
    /// Whether it has the `admin` role: it sees its whole institution.
    pub admin: bool,
}

impl Viewer {
    /// The user and its teams, as principals.
    pub fn principals(&self) -> Vec<Principal> {
        std::iter::once(Principal::User(self.user.clone()))
            .chain(self.teams.iter().cloned().map(Principal::Team))
            .collect()
    }

    /// Whether `principal` is this user or one of its teams.
    pub fn is(&self, principal: &Principal) -> bool {
        match principal {
            Principal::User(user) => *user == self.user,
            Principal::Team(team) => self.teams.contains(team),
        }
    }
}

/// What `viewer` may do with `followup`: `None` (it may not even know it exists), `Read`, or
/// `Write`.
pub fn access(followup: &FollowUp, viewer: &Viewer) -> Option<Access> {
    if followup.institution != viewer.institution {
        return None;
    }
    if viewer.admin || viewer.is(&followup.owner) {
        return Some(Access::Write);
    }
    followup
        .shares
        .iter()
        .filter(|(principal, _)| viewer.is(principal))
        .map(|(_, access)| *access)
        .max_by_key(|access| matches!(access, Access::Write))
}
