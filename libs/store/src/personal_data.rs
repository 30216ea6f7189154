//! Personal data in events, encrypted at the store's edge (crypto-shredding).
//!
//! Which fields of which events are personal, and whose they are, is a [`PersonalData`]
//! policy (for follow-ups: [`crate::followups::FollowUpPersonalData`]); the domain knows
//! nothing of it. On append, the store takes those fields out of the payload and stores them
//! encrypted (XChaCha20-Poly1305, with the event id as associated data) under the key of the
//! event's stream, in `"sealed": {"fields": [...], "data": "<base64>"}`; the stream's key is
//! created with its first sealed event, in the same statement. On read they are decrypted and
//! put back, so every reader sees the event as it was appended, unless the key was destroyed
//! ([`destroy_keys`]): then each sealed field reads as [`followup_domain::ERASED`].
//!
//! Keys live in `data_keys` (see `migrations/*_personal_data_keys.sql`), one per stream,
//! tagged with the stream's institution and data subject. A destroyed key leaves its row with
//! no key material, so later events of the stream are written already anonymised rather than
//! under a new key.
//!
//! # Layout
//! - [`PersonalData`]: the policy trait; [`KeyTag`]: what a new key is tagged with.
//! - [`StreamKey`], [`seal`], [`open`]: one payload in and out.
//! - [`destroy_keys`], [`keys_of_subject`]: what erasure and retention call.

use std::collections::HashMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use serde_json::{Map, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::event_store::StoreError;

/// The payload field that holds the sealed personal fields.
pub const SEALED: &str = "sealed";

/// What a stream's new key is tagged with: whose data it seals, for erasure requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTag {
    /// The institution of the stream.
    pub institution: Option<String>,
    /// The data subject's type and id (`student`, `S-1`), if the stream is about someone.
    pub subject: Option<(String, String)>,
}

/// Which fields of an event are personal data, and whose.
pub trait PersonalData: Send + Sync + fmt::Debug {
    /// The paths (`subject`, `regarding.id`) of the personal fields of events of this type.
    fn fields(&self, stream_type: &str, event_type: &str) -> &'static [&'static str];

    /// The tag of the key for a stream whose first sealed event is `payload`.
    fn tag(&self, stream_type: &str, payload: &Value, actor: &Value) -> KeyTag;

    /// What the field at `path` reads as once its key is destroyed (`None`: left out).
    fn erased(&self, path: &str) -> Option<Value>;
}

/// A stream's key as the store holds it.
#[derive(Clone, PartialEq, Eq)]
pub enum StreamKey {
    /// The key that seals its events.
    Live {
        /// The key material.
        key: [u8; 32],
    },
    /// The key was destroyed: personal fields are written as erased.
    Destroyed,
}

impl fmt::Debug for StreamKey {
    // Never prints the key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Live { .. } => f.write_str("Live"),
            Self::Destroyed => f.write_str("Destroyed"),
        }
    }
}

impl StreamKey {
    /// A new random key (from the thread's cryptographically secure generator, seeded by
    /// the operating system).
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self::Live { key }
    }

    /// The key of `stream` as read from `data_keys` (`None` material: destroyed).
    pub fn from_row(stream: &str, material: Option<Vec<u8>>) -> Result<Self, StoreError> {
        match material {
            None => Ok(Self::Destroyed),
            Some(bytes) => {
                let key: [u8; 32] = bytes.try_into().map_err(|_| {
                    StoreError::Corrupt(format!("the data key of {stream} is not 32 bytes long"))
                })?;
                Ok(Self::Live { key })
            }
        }
    }
}

/// Takes the `fields` that `payload` has out of it and seals them under `key`, bound to
/// `event_id`. With a destroyed key the fields are replaced by what `erased` says instead.
/// Returns whether anything was sealed or erased.
pub fn seal(
    payload: &mut Value,
    fields: &[&str],
    key: &StreamKey,
    event_id: Uuid,
    erased: impl Fn(&str) -> Option<Value>,
) -> Result<bool, StoreError> {
    let Some(object) = payload.as_object_mut() else {
        return Ok(false);
    };
    let mut taken = Map::new();
    for &path in fields {
        if let Some(value) = take(object, path) {
            taken.insert(path.to_owned(), value);
        }
    }
    if taken.is_empty() {
        return Ok(false);
    }
    match key {
        StreamKey::Destroyed => {
            for path in taken.keys() {
                if let Some(value) = erased(path) {
                    put(object, path, value);
                }
            }
        }
        StreamKey::Live { key, .. } => {
            let plaintext = serde_json::to_vec(&taken)
                .map_err(|e| StoreError::Corrupt(format!("personal fields as JSON: {e}")))?;
            let cipher = XChaCha20Poly1305::new(key.into());
            let mut nonce = [0u8; 24];
            rand::rng().fill_bytes(&mut nonce);
            let nonce = XNonce::from(nonce);
            let sealed = cipher
                .encrypt(
                    &nonce,
                    Payload {
                        msg: &plaintext,
                        aad: event_id.as_bytes(),
                    },
                )
                .map_err(|_| StoreError::Corrupt("encryption failed".into()))?;
            let mut bytes = nonce.to_vec();
            bytes.extend_from_slice(&sealed);
            let fields: Vec<Value> = taken.keys().map(|k| Value::String(k.clone())).collect();
            object.insert(
                SEALED.to_owned(),
                serde_json::json!({ "fields": fields, "data": BASE64.encode(bytes) }),
            );
        }
    }
    Ok(true)
}

/// Puts the sealed fields of a stored `payload` back: decrypted with `key`, or as `erased`
/// says when there is no key (it was destroyed). A payload without sealed fields is returned
/// as it is.
pub fn open(
    payload: &mut Value,
    key: Option<&[u8]>,
    event_id: Uuid,
    erased: impl Fn(&str) -> Option<Value>,
) -> Result<(), StoreError> {
    let Some(object) = payload.as_object_mut() else {
        return Ok(());
    };
    let Some(sealed) = object.remove(SEALED) else {
        return Ok(());
    };
    let corrupt = |what: &str| StoreError::Corrupt(format!("event {event_id}: {what}"));
    let fields: Vec<String> = sealed
        .get("fields")
        .and_then(Value::as_array)
        .ok_or_else(|| corrupt("sealed fields without a list of fields"))?
        .iter()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect();
    let Some(key) = key else {
        for path in &fields {
            if let Some(value) = erased(path) {
                put(object, path, value);
            }
        }
        return Ok(());
    };
    let key: &[u8; 32] = key
        .try_into()
        .map_err(|_| corrupt("its data key is not 32 bytes long"))?;
    let bytes = sealed
        .get("data")
        .and_then(Value::as_str)
        .and_then(|d| BASE64.decode(d).ok())
        .filter(|b| b.len() > 24)
        .ok_or_else(|| corrupt("sealed data is not base64 of a nonce and a ciphertext"))?;
    let (nonce, ciphertext) = bytes.split_at(24);
    let plaintext = XChaCha20Poly1305::new(key.into())
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: event_id.as_bytes(),
            },
        )
        .map_err(|_| corrupt("sealed data does not decrypt with its key"))?;
    let taken: Map<String, Value> = serde_json::from_slice(&plaintext)
        .map_err(|_| corrupt("sealed data is not a JSON object"))?;
    for (path, value) in taken {
        put(object, &path, value);
    }
    Ok(())
}

/// Removes the value at `path` (`a` or `a.b`) and returns it.
fn take(object: &mut Map<String, Value>, path: &str) -> Option<Value> {
    match path.split_once('.') {
        None => object.remove(path).filter(|v| !v.is_null()),
        Some((head, rest)) => take(object.get_mut(head)?.as_object_mut()?, rest),
    }
}

/// Sets the value at `path`; a nested path needs its parent object to be there.
fn put(object: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            object.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            if let Some(inner) = object.get_mut(head).and_then(Value::as_object_mut) {
                put(inner, rest, value);
            }
        }
    }
}

/// The keys of `stream_ids` that exist (live or destroyed).
pub async fn stream_keys(
    pool: &PgPool,
    stream_ids: &[&str],
) -> Result<HashMap<String, StreamKey>, StoreError> {
    let rows: Vec<(String, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT stream_id, key_material FROM data_keys WHERE stream_id = ANY($1)")
            .bind(stream_ids)
            .fetch_all(pool)
            .await?;
    rows.into_iter()
        .map(|(stream, material)| {
            let key = StreamKey::from_row(&stream, material)?;
            Ok((stream, key))
        })
        .collect()
}

/// The streams whose live keys are tagged with the data subject (`subject_type`, `id`), at
/// `institution` or at every institution.
pub async fn keys_of_subject(
    pool: &PgPool,
    institution: Option<&str>,
    subject_type: &str,
    subject_id: &str,
) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT stream_id FROM data_keys
         WHERE subject_type = $1 AND subject_id = $2 AND ($3::text IS NULL OR institution = $3)
           AND key_material IS NOT NULL
         ORDER BY stream_id",
    )
    .bind(subject_type)
    .bind(subject_id)
    .bind(institution)
    .fetch_all(pool)
    .await?)
}

/// Destroys the keys of `stream_ids` (their material and the subject's id), so their
/// events' personal fields read as erased from now on. Returns the streams whose key was live
/// until now. A stream without a key gets a destroyed one, so nothing later is sealed.
pub async fn destroy_keys(pool: &PgPool, stream_ids: &[String]) -> Result<Vec<String>, StoreError> {
    let destroyed: Vec<String> = sqlx::query_scalar(
        "WITH destroyed AS (
             UPDATE data_keys SET key_material = NULL, subject_id = NULL, destroyed_at = now()
             WHERE stream_id = ANY($1) AND key_material IS NOT NULL
             RETURNING stream_id),
         missing AS (
             INSERT INTO data_keys (stream_id, destroyed_at)
             SELECT s, now() FROM unnest($1::text[]) AS s
             ON CONFLICT (stream_id) DO NOTHING)
         SELECT stream_id FROM destroyed",
    )
    .bind(stream_ids)
    .fetch_all(pool)
    .await?;
    Ok(destroyed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn erased(path: &str) -> Option<Value> {
        (path != "person").then(|| json!("[slettet]"))
    }

    const FIELDS: &[&str] = &["subject", "regarding.id", "person"];

    #[test]
    fn sealed_fields_leave_the_payload_and_come_back_with_the_key() {
        let original = json!({"type": "created", "subject": "Ansøger A-1",
            "regarding": {"type": "application", "id": "APP-1"}, "person": {"type": "applicant", "id": "A-1"}, "priority": "high"});
        let mut payload = original.clone();
        let key = StreamKey::generate();
        let event_id = Uuid::new_v4();
        assert!(seal(&mut payload, FIELDS, &key, event_id, erased).unwrap());
        let stored = payload.to_string();
        assert!(
            !stored.contains("A-1") && !stored.contains("APP-1"),
            "{stored}"
        );
        assert_eq!(payload["regarding"], json!({"type": "application"}));
        assert_eq!(payload["priority"], json!("high"));
        let StreamKey::Live { key: material, .. } = key else {
            unreachable!()
        };
        open(&mut payload, Some(&material), event_id, erased).unwrap();
        assert_eq!(payload, original);
    }

    #[test]
    fn without_its_key_a_sealed_payload_reads_as_erased() {
        let mut payload = json!({"type": "created", "subject": "Ansøger A-1",
            "regarding": {"type": "application", "id": "APP-1"}, "person": {"type": "applicant", "id": "A-1"}});
        let event_id = Uuid::new_v4();
        seal(
            &mut payload,
            FIELDS,
            &StreamKey::generate(),
            event_id,
            erased,
        )
        .unwrap();
        open(&mut payload, None, event_id, erased).unwrap();
        assert_eq!(
            payload,
            json!({"type": "created", "subject": "[slettet]",
                "regarding": {"type": "application", "id": "[slettet]"}})
        );
    }

    #[test]
    fn a_sealed_payload_does_not_open_for_another_event_or_key() {
        let mut payload = json!({"subject": "Ansøger A-1"});
        let key = StreamKey::generate();
        seal(&mut payload, FIELDS, &key, Uuid::new_v4(), erased).unwrap();
        let StreamKey::Live { key: material, .. } = key else {
            unreachable!()
        };
        assert!(open(
            &mut payload.clone(),
            Some(&material),
            Uuid::new_v4(),
            erased
        )
        .is_err());
        let StreamKey::Live { key: other, .. } = StreamKey::generate() else {
            unreachable!()
        };
        assert!(open(&mut payload, Some(&other), Uuid::new_v4(), erased).is_err());
    }

    #[test]
    fn with_a_destroyed_key_the_fields_are_written_erased() {
        let mut payload = json!({"type": "edited", "subject": "Ansøger A-1", "priority": "low"});
        let key = StreamKey::Destroyed;
        seal(&mut payload, FIELDS, &key, Uuid::new_v4(), erased).unwrap();
        assert_eq!(
            payload,
            json!({"type": "edited", "subject": "[slettet]", "priority": "low"})
        );
    }

    #[test]
    fn a_payload_without_personal_fields_is_left_alone() {
        let mut payload = json!({"type": "assigned", "owner": {"type": "user", "id": "u1"}});
        let before = payload.clone();
        assert!(!seal(
            &mut payload,
            FIELDS,
            &StreamKey::generate(),
            Uuid::new_v4(),
            erased
        )
        .unwrap());
        assert_eq!(payload, before);
    }
}
