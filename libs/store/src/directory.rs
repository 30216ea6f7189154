//! The directory in the store: the executors over directory users and teams, whose streams
//! are of type `directory_user` and `directory_team` (their ids are the SCIM ids).

use followup_domain::directory::{DirectoryTeam, DirectoryUser};

use crate::executor::{ExecuteError, Executor};

/// Loads directory users and runs commands on them.
pub type DirectoryUsers = Executor<DirectoryUser>;

/// Loads directory teams and runs commands on them.
pub type DirectoryTeams = Executor<DirectoryTeam>;

/// Why a command on a directory user did not run.
pub type UserRepoError = ExecuteError<DirectoryUser>;

/// Why a command on a directory team did not run.
pub type TeamRepoError = ExecuteError<DirectoryTeam>;
