//! Follow-ups in the store: their stream type, the upcaster that reads old payloads, and the
//! names the rest of the service uses for the executor over follow-ups ([`FollowUps`]).

use std::sync::Arc;

use followup_domain::aggregate::Aggregate;
use followup_domain::FollowUp;
use serde_json::Value;

use crate::event_store::Upcaster;
use crate::executor::{ExecuteError, Executor};

/// The stream type of follow-up streams.
pub const STREAM_TYPE: &str = <FollowUp as Aggregate>::STREAM_TYPE;

/// Loads follow-ups and runs commands on them: the executor over follow-ups.
pub type FollowUps = Executor<FollowUp>;

/// Why a follow-up command did not run.
pub type RepoError = ExecuteError<FollowUp>;

/// The result of a follow-up command.
pub type Outcome = crate::executor::Outcome<FollowUp>;

/// Upcasts stored follow-up events with the domain's upcasters.
#[derive(Debug, Clone, Copy, Default)]
pub struct FollowUpUpcaster;

impl Upcaster for FollowUpUpcaster {
    fn upcast(
        &self,
        stream_type: &str,
        event_type: &str,
        schema_version: i32,
        payload: Value,
    ) -> Result<(i32, Value), String> {
        if stream_type != STREAM_TYPE {
            return Ok((schema_version, payload));
        }
        FollowUp::upcast(event_type, schema_version, payload)
    }
}

/// The upcaster for stores that hold follow-ups.
pub fn upcaster() -> Arc<dyn Upcaster> {
    Arc::new(FollowUpUpcaster)
}
